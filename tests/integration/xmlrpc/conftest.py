"""Fixtures for the XML-RPC tests (helpers live in xrkit.py)."""

from __future__ import annotations

import pytest

from tests.conftest import add_client, add_factory
from tests.integration.xmlrpc.xrkit import FACTORY, SECRET, proxy


@pytest.fixture
def rt(live_server):  # type: ignore[no-untyped-def]
    return live_server.runtime


@pytest.fixture
def client_id(rt) -> int:  # type: ignore[no-untyped-def]
    return add_client(rt)


@pytest.fixture
def factory(rt) -> str:  # type: ignore[no-untyped-def]
    add_factory(rt, FACTORY, SECRET)
    return FACTORY


@pytest.fixture
def fp(live_server, factory):  # type: ignore[no-untyped-def]
    """A ServerProxy for the registered factory "My factory"."""
    return proxy(live_server.url)
