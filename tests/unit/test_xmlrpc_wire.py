"""protocol.xmlrpc.wire without I/O: the parser's types and limits, base64 streaming both ways."""

from __future__ import annotations

import base64
import xmlrpc.client
from datetime import UTC, datetime
from xml.parsers import expat

import pytest

from app.domain.errors import BadArgument, TooLarge
from protocol.xmlrpc import wire


def parse(body: bytes | str, **kw):  # type: ignore[no-untyped-def]
    data = body.encode() if isinstance(body, str) else body
    return wire.parse([data[i : i + 7] for i in range(0, len(data), 7)], **kw)  # tiny chunks: incremental


def test_parses_what_xmlrpc_client_writes():
    when = datetime(2026, 1, 2, 3, 4, 5)
    params = ("My factory", 1, -2, True, 1.5, [1, "a"], {"k": "v", "n": {"x": []}}, xmlrpc.client.Binary(b"\x00\xff"),
              xmlrpc.client.DateTime(when), None, "<&>é")
    call = parse(xmlrpc.client.dumps(params, "jobs.poll", allow_none=True))
    assert call.method == "jobs.poll"
    got = call.params
    assert got[:7] == ["My factory", 1, -2, True, 1.5, [1, "a"], {"k": "v", "n": {"x": []}}]
    assert isinstance(got[7], wire.Base64Value) and got[7].decode(10) == b"\x00\xff"
    assert got[8] == when.replace(tzinfo=UTC) and got[9] is None and got[10] == "<&>é"


def test_untyped_value_is_a_string_and_empty_value_is_empty():
    call = parse("<methodCall><methodName>m</methodName><params><param><value>abc</value></param>"
                 "<param><value></value></param><param><value>\n<i4>7</i4>\n</value></param></params></methodCall>")
    assert call.params == ["abc", "", 7]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('<!DOCTYPE x><methodCall><methodName>m</methodName></methodCall>', "DOCTYPE"),
        ("<methodCall><methodName>m</methodName><params><param><value><int>1</int><int>2</int></value></param></params></methodCall>", "only one value"),
        ("<methodCall><methodName>m</methodName><params><param><value><struct><member><name>a</name><value>1</value></member>"
         "<member><name>a</name><value>2</value></member></struct></value></param></params></methodCall>", "twice"),
        ("<methodCall><methodName>m</methodName><params><param><value><struct><member><value>1</value></member></struct></value></param></params></methodCall>", "<member>"),
        ("<methodCall><methodName>m</methodName><params><param></param></params></methodCall>", "<param>"),
        ("<methodCall><methodName>m</methodName><params><param><value><boolean>2</boolean></value></param></params></methodCall>", "boolean"),
        ("<methodCall><methodName>m</methodName><params><param><value><int>" + "1" * 65 + "</int></value></param></params></methodCall>", "longer than 64"),
        ("<methodCall><methodName>m</methodName><params>stray<param><value>1</value></param></params></methodCall>", "unexpected text"),
        ("<methodCall><params/></methodCall>", "methodName"),
        ("<methodCall><methodName>m</methodName><script/></methodCall>", "unknown element"),
        ("<methodCall><methodName>m</methodName>", "malformed XML"),
    ],
)
def test_refusals(body, words):
    with pytest.raises(BadArgument) as info:
        parse(body)
    assert words in str(info.value)


def test_depth_and_value_limits():
    def nested(n: int) -> str:
        return ("<methodCall><methodName>m</methodName><params><param>" + "<value><array><data>" * n
                + "</data></array></value>" * n + "</param></params></methodCall>")

    assert parse(nested(9)).params  # 4 + 3*9 = 31 levels: fine
    with pytest.raises(BadArgument, match="deeper than 32"):
        parse(nested(10))
    many = "<methodCall><methodName>m</methodName><params><param><value><array><data>" + "<value>1</value>" * 50 + "</data></array></value></param></params></methodCall>"
    assert len(parse(many, max_values=51).params[0]) == 50
    with pytest.raises(BadArgument, match="more than 50 values"):
        parse(many, max_values=50)


def test_stock_expat_refuses_entity_amplification():
    """The stack fact we lean on (STACK-NOTES): expat >= 2.4 stops billion laughs by itself."""
    assert expat.version_info >= (2, 4, 0)
    bomb = ('<!DOCTYPE m [<!ENTITY a "aaaaaaaaaa">' + "".join(f'<!ENTITY {c} "{("&" + p + ";") * 10}">'
            for p, c in zip("abcdefgh", "bcdefghi", strict=True)) + ']><m>&i;</m>')
    p = expat.ParserCreate()
    with pytest.raises(expat.ExpatError, match="amplification"):
        p.Parse(bomb, True)
    with pytest.raises(BadArgument, match="DOCTYPE"):  # and ours never gets that far
        parse(bomb)


def test_big_strings_spill_and_decode_in_blocks():
    data = bytes(range(256)) * 100
    text = base64.encodebytes(data).decode()  # with newlines, as xmlrpc.client.Binary writes
    call = parse(f"<methodCall><methodName>m</methodName><params><param><value><string>{text}</string></value></param>"
                 f"<param><value><base64>{text}</base64></value></param></params></methodCall>", spill_at=1000)
    try:
        big, b64 = call.params
        assert isinstance(big, wire.LargeText) and big.chars == len(text)
        assert b"".join(wire.decode_base64(big, len(data))) == data
        assert b64.decode(len(data)) == data
        with pytest.raises(TooLarge):
            list(wire.decode_base64(big, len(data) - 1))
    finally:
        call.close()


@pytest.mark.parametrize("bad", ["QUJD=", "QU=JD", "QUJD QUI=QUJD", "@@@@", "QUJDé==="])
def test_decode_base64_is_strict(bad):
    with pytest.raises(BadArgument):
        list(wire.decode_base64(bad, 100))


@pytest.mark.parametrize("sizes", [[1], [2, 2, 2], [3, 1, 5, 7], [1 << 16, 1, 1 << 16], []])
def test_b64_stream_matches_b64encode_at_every_chunk_boundary(sizes):
    chunks = [bytes((i * 7 + j) % 256 for j in range(n)) for i, n in enumerate(sizes)]
    whole = b"".join(chunks)
    pieces = list(wire.b64_stream(iter(chunks), len(whole)))
    assert b"".join(pieces) == base64.b64encode(whole)
    assert all(len(p) % 4 == 0 for p in pieces)  # every piece is valid base64 on its own


def test_b64_stream_refuses_a_size_mismatch():
    with pytest.raises(RuntimeError):
        list(wire.b64_stream(iter([b"abcd"]), 3))
    with pytest.raises(RuntimeError):
        list(wire.b64_stream(iter([b"ab"]), 3))


def test_marshal_streams_with_an_exact_length_and_clients_can_read_it():
    doc = bytes(range(256)) * 5 + b"x"
    value = {"job": "g", "pageStart": 1, "big": 2**40, "ok": False, "when": datetime(2026, 1, 1, 13, 0, tzinfo=UTC),
             "document": wire.StreamedBase64(len(doc), lambda: iter([doc[:100], doc[100:]])),
             "list": [1.5, b"\x01", None], "ctl": "a\x01b"}
    pieces = wire.marshal(value)
    body = b"".join(wire.stream(pieces))
    assert len(body) == wire.content_length(pieces)
    (got,), _ = xmlrpc.client.loads(body, use_builtin_types=True, )
    assert got["document"] == base64.b64encode(doc).decode() and got["pageStart"] == 1 and got["big"] == 2**40
    assert got["when"] == datetime(2026, 1, 1, 13, 0) and got["ctl"] == "a\ufffdb" and got["list"] == [1.5, b"\x01", None]
    assert b"<value><string>" + base64.b64encode(doc[:3]) in body  # the seed's form: base64 text in <string>


def test_fault_body():
    with pytest.raises(xmlrpc.client.Fault) as info:
        xmlrpc.client.loads(wire.fault(409, "lease <x> & y"))
    assert info.value.faultCode == 409 and info.value.faultString == "lease <x> & y"


def test_the_prebuilt_empty_poll_answer_is_what_marshal_builds():
    class Struct(dict):  # type: ignore[type-arg]
        """Not a plain dict: marshalled the general way."""

    assert wire.marshal({}) == [b"".join(wire.marshal(Struct()))]
    assert xmlrpc.client.loads(wire.marshal({})[0]) == (({},), None)
