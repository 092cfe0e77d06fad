"""Fixtures of the operations tests: a runtime with operator credentials, a factory poll helper."""

from __future__ import annotations

import base64

import pytest

OPERATOR = ("admin", "op-secret-for-tests")


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


OPERATOR_HEADERS = basic(*OPERATOR)


def poll_once(rt, name: str = "factory-1", secret: str = "factory-secret-1"):  # type: ignore[no-untyped-def]
    """A factory's jobs.poll through the service layer (what the XML-RPC adapter calls)."""
    from app.services.poll import poll

    with rt.db.read_session() as s:
        ident = rt.auth.factory(s, name, secret, rt.now())
    return poll(rt.db, rt.now(), rt.policy, rt.mirror, ident)


@pytest.fixture(autouse=True)
def _fresh_touch_cache():  # type: ignore[no-untyped-def]
    # poll.touch_factory remembers factory ids per process; ids repeat across test databases.
    from app.services import poll as poll_mod

    poll_mod._touched.clear()
    yield
    poll_mod._touched.clear()


@pytest.fixture
def ops_rt(make_runtime):  # type: ignore[no-untyped-def]
    """SQLite + the embedded broker, operator password set."""
    return make_runtime(operator_user=OPERATOR[0], operator_password=OPERATOR[1])


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chromium: drives Debian's /usr/bin/chromium through Playwright")
