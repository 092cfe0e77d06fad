"""The WSDL is a contract: byte for byte what the hand-written ContentService served before the
service class was generated from the operation table (tests/integration/soap/contentservice.wsdl)."""

from __future__ import annotations

from pathlib import Path

from werkzeug.test import Client

from protocol.soap import spyne_wsgi_app

GOLDEN = Path(__file__).with_name("contentservice.wsdl")


def test_wsdl_is_byte_identical_to_the_recorded_contract(make_runtime) -> None:  # type: ignore[no-untyped-def]
    rt = make_runtime(broker=False, public_url="http://example.test:8080")
    got = Client(spyne_wsgi_app(rt)).get("/?wsdl")
    assert got.status_code == 200
    assert got.get_data() == GOLDEN.read_bytes()
