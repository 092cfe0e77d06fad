"""Fixtures of the SOAP tests (helpers live in soapkit.py)."""

from __future__ import annotations

import pytest

from tests.conftest import add_client, add_factory, start_server


@pytest.fixture
def soap(runtime):  # type: ignore[no-untyped-def]
    """A live server with the seed's client (petshow / Wf) and one Writer factory."""
    add_client(runtime)
    add_factory(runtime)
    srv = start_server(runtime)
    yield srv
    srv.stop()
