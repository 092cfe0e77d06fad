"""XML-RPC on the wire: a hardened request parser and a streaming response writer.

Parsing is incremental (the body is fed to expat as it is read) and refuses, cheaply:
any DOCTYPE (so no entity can be declared: no billion laughs, no quadratic blow-up, no external
entity), nesting deeper than ``MAX_DEPTH``, more than ``MAX_VALUES`` values, unknown elements.
A string or base64 value longer than ``spill_at`` characters is spooled to an unlinked temporary
file instead of memory (``LargeText``), so a 100 MiB upload costs a few MiB of RAM.

Writing: ``marshal`` turns a result into a list of byte pieces and ``StreamedBase64`` markers, whose
exact length is known before the first byte is sent; ``stream`` yields the bytes, encoding each
streamed document chunk by chunk (in multiples of 3 bytes, so every piece is valid base64).
"""

from __future__ import annotations

import base64
import binascii
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any
from xml.parsers import expat

from app.domain.errors import BadArgument, TooLarge

MAX_DEPTH = 32
MAX_VALUES = 10_000
MAX_ELEMENTS = 50_000
MAX_NAME_CHARS = 256
MAX_SCALAR_CHARS = 64
SPILL_AT = 1024 * 1024
READ_BLOCK = 64 * 1024

# ----------------------------------------------------------------------------- values


class LargeText:
    """A string (or base64) value too big for memory: its UTF-8 text in an unlinked temp file."""

    def __init__(self, file: IO[bytes], chars: int) -> None:
        self.file = file
        self.chars = chars

    def blocks(self, size: int = 1024 * 1024) -> Iterator[bytes]:
        self.file.seek(0)
        while block := self.file.read(size):
            yield block

    def close(self) -> None:
        self.file.close()

    def __repr__(self) -> str:
        return f"<LargeText {self.chars} chars>"


@dataclass(frozen=True)
class Base64Value:
    """An XML-RPC ``<base64>`` value, decoded lazily (it may be a spooled LargeText)."""

    text: str | LargeText

    def decode(self, max_bytes: int) -> bytes:
        return b"".join(decode_base64(self.text, max_bytes, what="base64 value"))


class _Name(str):
    """A struct member's name on the parse stack (distinct from a string value)."""


@dataclass
class _Member:
    name: str
    value: object


def text_blocks(value: str | LargeText) -> Iterator[bytes]:
    if isinstance(value, LargeText):
        yield from value.blocks()
        return
    try:
        yield value.encode("ascii")
    except UnicodeEncodeError:
        raise BadArgument("base64 text contains non-ASCII characters") from None


_WS = b" \t\r\n"


def decode_base64(value: str | LargeText, max_bytes: int, *, what: str = "document") -> Iterator[bytes]:
    """Decoded bytes of base64 text, block by block; whitespace ignored, anything else strict.

    Raises BadArgument on invalid base64 and TooLarge as soon as more than ``max_bytes`` decode.
    """
    carry = b""
    total = 0
    ended = False
    for block in text_blocks(value):
        data = carry + block.translate(None, _WS)
        cut = len(data) - len(data) % 4
        carry = data[cut:]
        if not cut:
            continue
        if ended:  # padding already seen: nothing may follow
            raise BadArgument(f"{what} is not valid base64 (data after padding)")
        try:
            out = binascii.a2b_base64(data[:cut], strict_mode=True)
        except binascii.Error:
            raise BadArgument(f"{what} is not valid base64") from None
        ended = data[cut - 1 : cut] == b"="
        total += len(out)
        if total > max_bytes:
            raise TooLarge(f"{what} is larger than the limit of {max_bytes} bytes")
        if out:
            yield out
    if carry:
        raise BadArgument(f"{what} is not valid base64 (its length is not a multiple of 4)")


# ----------------------------------------------------------------------------- parsing


@dataclass
class Call:
    """A parsed methodCall. Close it to release spooled values."""

    method: str
    params: list[Any]
    spools: list[LargeText] = field(default_factory=list)

    def close(self) -> None:
        for s in self.spools:
            s.close()
        self.spools.clear()

    def __enter__(self) -> Call:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SCALARS = ("string", "int", "i4", "i8", "boolean", "double", "dateTime.iso8601", "base64", "nil")
_PARENTS: dict[str, tuple[str | None, ...]] = {
    "methodCall": (None,),
    "methodName": ("methodCall",),
    "params": ("methodCall",),
    "param": ("params",),
    "value": ("param", "data", "member"),
    "array": ("value",),
    "data": ("array",),
    "struct": ("value",),
    "member": ("struct",),
    "name": ("member",),
    **{t: ("value",) for t in _SCALARS},
}
_INT_RE = re.compile(r"[+-]?[0-9]{1,20}")
_DT_FORMATS = ("%Y%m%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y%m%dT%H%M%S")


class _Text:
    """Character data of one element: capped, or spilled to a temp file past ``spill_at``."""

    __slots__ = ("tag", "cap", "spill_at", "parts", "n", "file", "spools")

    def __init__(self, tag: str, cap: int | None, spill_at: int | None, spools: list[LargeText]) -> None:
        self.tag, self.cap, self.spill_at, self.spools = tag, cap, spill_at, spools
        self.parts: list[str] = []
        self.n = 0
        self.file: IO[bytes] | None = None

    def add(self, s: str) -> None:
        self.n += len(s)
        if self.file is not None:
            self.file.write(s.encode("utf-8"))
            return
        if self.cap is not None and self.n > self.cap:
            raise BadArgument(f"<{self.tag}> is longer than {self.cap} characters")
        self.parts.append(s)
        if self.spill_at is not None and self.n > self.spill_at:
            self.file = tempfile.TemporaryFile()
            for p in self.parts:
                self.file.write(p.encode("utf-8"))
            self.parts = []

    def value(self) -> str | LargeText:
        if self.file is None:
            return "".join(self.parts)
        large = LargeText(self.file, self.n)
        self.spools.append(large)
        return large


class _Refused(Exception):
    """Raised inside an expat handler to stop parsing at once."""

    def __init__(self, error: Exception) -> None:
        self.error = error


class Parser:
    """Incremental, limited XML-RPC ``methodCall`` parser: ``feed(bytes)``..., then ``close()``."""

    def __init__(self, *, spill_at: int = SPILL_AT, max_depth: int = MAX_DEPTH, max_values: int = MAX_VALUES) -> None:
        self.spill_at, self.max_depth, self.max_values = spill_at, max_depth, max_values
        p = expat.ParserCreate()
        p.buffer_text = True
        p.buffer_size = READ_BLOCK
        p.StartDoctypeDeclHandler = self._doctype
        p.EntityDeclHandler = self._entity
        p.StartElementHandler = self._guard(self._start)
        p.EndElementHandler = self._guard(self._end)
        p.CharacterDataHandler = self._guard(self._data)
        self._p = p
        self._tags: list[str] = []
        self._values: list[Any] = []
        self._marks: list[int] = []
        self._typed: list[bool] = []
        self._text: _Text | None = None
        self._method: str | None = None
        self._elements = 0
        self._nvalues = 0
        self.spools: list[LargeText] = []

    # expat swallows nothing: an exception in a handler aborts Parse() and propagates.
    @staticmethod
    def _guard(fn: Callable[..., None]) -> Callable[..., None]:
        def wrapped(*args: Any) -> None:
            try:
                fn(*args)
            except BadArgument as exc:
                raise _Refused(exc) from None

        return wrapped

    def _doctype(self, *args: object) -> None:
        raise _Refused(BadArgument("DOCTYPE declarations are not allowed"))

    def _entity(self, *args: object) -> None:
        raise _Refused(BadArgument("entity declarations are not allowed"))

    def _start(self, tag: str, attrs: dict[str, str]) -> None:
        self._elements += 1
        if self._elements > MAX_ELEMENTS:
            raise BadArgument(f"request has more than {MAX_ELEMENTS} elements")
        parent = self._tags[-1] if self._tags else None
        allowed = _PARENTS.get(tag)
        if allowed is None:
            raise BadArgument(f"unknown element <{tag[:40]}>")
        if parent not in allowed:
            raise BadArgument(f"<{tag}> is not allowed inside {'<' + parent + '>' if parent else 'the document root'}")
        if len(self._tags) >= self.max_depth:
            raise BadArgument(f"XML is nested deeper than {self.max_depth} levels")
        self._tags.append(tag)
        if tag == "value":
            self._nvalues += 1
            if self._nvalues > self.max_values:
                raise BadArgument(f"request has more than {self.max_values} values")
            self._typed.append(False)
            self._marks.append(len(self._values))
            self._text = _Text("value", None, self.spill_at, self.spools)  # untyped value = string
        elif parent == "value":
            if self._typed[-1]:
                raise BadArgument("a <value> may hold only one value")
            self._typed[-1] = True
            self._text = None
            if tag in ("array", "struct"):
                self._marks.append(len(self._values))
            elif tag in ("string", "base64"):
                self._text = _Text(tag, None, self.spill_at, self.spools)
            elif tag != "nil":
                self._text = _Text(tag, MAX_SCALAR_CHARS, None, self.spools)
        elif tag in ("member", "param"):
            self._marks.append(len(self._values))
        elif tag in ("name", "methodName"):
            self._text = _Text(tag, MAX_NAME_CHARS, None, self.spools)

    def _data(self, s: str) -> None:
        if self._text is not None:
            self._text.add(s)
        elif s.strip():
            raise BadArgument(f"unexpected text inside <{self._tags[-1] if self._tags else 'document'}>")

    def _end(self, tag: str) -> None:
        self._tags.pop()
        text, self._text = self._text, None
        vals = self._values
        if tag == "value":
            if not self._typed.pop():
                vals.append(text.value() if text is not None else "")
            start = self._marks.pop()
            if len(vals) != start + 1:
                raise BadArgument("a <value> must hold exactly one value")
        elif tag in ("array", "struct", "member"):
            start = self._marks.pop()
            items = vals[start:]
            del vals[start:]
            if tag == "array":
                vals.append(items)
            elif tag == "member":
                if len(items) != 2 or not isinstance(items[0], _Name) or isinstance(items[1], _Name):
                    raise BadArgument("a <member> must hold one <name> then one <value>")
                vals.append(_Member(str(items[0]), items[1]))
            else:
                out: dict[str, Any] = {}
                for m in items:
                    if m.name in out:
                        raise BadArgument(f"struct member {m.name[:40]!r} appears twice")
                    out[m.name] = m.value
                vals.append(out)
        elif tag == "param":
            if len(vals) != self._marks.pop() + 1:
                raise BadArgument("a <param> must hold exactly one <value>")
        elif tag == "name":
            vals.append(_Name(text.value() if text is not None else ""))
        elif tag == "methodName":
            self._method = str(text.value()) if text is not None else ""
        elif tag in _SCALARS:
            vals.append(_scalar(tag, text.value() if text is not None else ""))

    def feed(self, data: bytes) -> None:
        self._parse(data, False)

    def close(self) -> Call:
        self._parse(b"", True)
        if not self._method:
            raise BadArgument("methodName is missing or empty")
        return Call(self._method, list(self._values), self.spools)

    def abort(self) -> None:
        for s in self.spools:
            s.close()

    def _parse(self, data: bytes, final: bool) -> None:
        try:
            self._p.Parse(data, final)
        except _Refused as r:
            raise r.error from None
        except expat.ExpatError as exc:
            raise BadArgument(f"malformed XML: {exc}") from None


def _scalar(tag: str, raw: str | LargeText) -> object:
    if tag in ("string",):
        return raw
    if tag == "base64":
        return Base64Value(raw)
    if tag == "nil":
        return None
    assert isinstance(raw, str)
    s = raw.strip()
    if tag in ("int", "i4", "i8"):
        if not _INT_RE.fullmatch(s):
            raise BadArgument(f"<{tag}> {s[:20]!r} is not an integer")
        v = int(s)
        limit = 2**63 if tag == "i8" else 2**31
        if not -limit <= v < limit:
            raise BadArgument(f"<{tag}> {s[:20]} is out of range")
        return v
    if tag == "boolean":
        if s in ("0", "1"):
            return s == "1"
        raise BadArgument(f"<boolean> must be 0 or 1, got {s[:20]!r}")
    if tag == "double":
        try:
            return float(s)
        except ValueError:
            raise BadArgument(f"<double> {s[:20]!r} is not a number") from None
    # dateTime.iso8601: the XML-RPC form 19980717T14:08:55 (UTC here), or ISO 8601 with Z.
    t = s[:-1] if s.endswith("Z") else s
    for fmt in _DT_FORMATS:
        try:
            return datetime.strptime(t, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise BadArgument(f"<dateTime.iso8601> {s[:30]!r} is not a date-time")


def parse(chunks: Iterable[bytes], **limits: Any) -> Call:
    """Parse a whole methodCall from byte chunks (see ``Parser``)."""
    parser = Parser(**limits)
    try:
        for chunk in chunks:
            parser.feed(chunk)
        return parser.close()
    except BaseException:
        parser.abort()
        raise


# ----------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class StreamedBase64:
    """A document sent as base64 text in a ``<string>`` (the seed's form), streamed from chunks."""

    size: int
    chunks: Callable[[], Iterable[bytes]]

    @property
    def encoded_length(self) -> int:
        return 4 * ((self.size + 2) // 3)


def b64_stream(chunks: Iterable[bytes], expected_size: int) -> Iterator[bytes]:
    """Base64 of the concatenated chunks, piece by piece: each piece covers a multiple of 3 bytes."""
    carry = b""
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > expected_size:
            raise RuntimeError(f"document is longer than its recorded size {expected_size}")
        data = carry + chunk if carry else chunk
        cut = len(data) - len(data) % 3
        carry = bytes(data[cut:])
        if cut:
            yield base64.b64encode(data[:cut])
    if total != expected_size:
        raise RuntimeError(f"document is {total} bytes, its recorded size is {expected_size}")
    if carry:
        yield base64.b64encode(carry)


_BAD_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def escape(s: str) -> str:
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BAD_XML_CHARS.sub("\ufffd", s)


def format_datetime(dt: datetime) -> str:
    """XML-RPC dateTime.iso8601 in UTC (the format carries no zone; ours is always UTC)."""
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC)
    return dt.strftime("%Y%m%dT%H:%M:%S")


def _dump(value: object, out: list[str | StreamedBase64]) -> None:
    if isinstance(value, StreamedBase64):
        out.append("<value><string>")
        out.append(value)
        out.append("</string></value>")
    elif value is None:
        out.append("<value><nil/></value>")
    elif isinstance(value, bool):
        out.append(f"<value><boolean>{int(value)}</boolean></value>")
    elif isinstance(value, int):
        tag = "int" if -(2**31) <= value < 2**31 else "i8"
        out.append(f"<value><{tag}>{value}</{tag}></value>")
    elif isinstance(value, float):
        out.append(f"<value><double>{value!r}</double></value>")
    elif isinstance(value, str):
        out.append(f"<value><string>{escape(value)}</string></value>")
    elif isinstance(value, bytes | bytearray):
        out.append(f"<value><base64>{base64.b64encode(value).decode('ascii')}</base64></value>")
    elif isinstance(value, datetime):
        out.append(f"<value><dateTime.iso8601>{format_datetime(value)}</dateTime.iso8601></value>")
    elif isinstance(value, dict) and not value:
        out.append("<value><struct></struct></value>")  # the seed's "empty result"
    elif isinstance(value, dict):
        out.append("<value><struct>\n")
        for k, v in value.items():
            out.append(f"<member>\n<name>{escape(str(k))}</name>\n")
            _dump(v, out)
            out.append("\n</member>\n")
        out.append("</struct></value>")
    elif isinstance(value, list | tuple):
        out.append("<value><array><data>\n")
        for v in value:
            _dump(v, out)
            out.append("\n")
        out.append("</data></array></value>")
    else:
        raise TypeError(f"cannot marshal {type(value).__name__}")


HEAD = '<?xml version="1.0" encoding="utf-8"?>\n'


def marshal(value: object) -> list[bytes | StreamedBase64]:
    """A methodResponse for ``value``: byte pieces and streamed documents, in order."""
    if type(value) is dict and not value:
        return [_EMPTY_STRUCT]  # the empty poll's answer, built once
    out: list[str | StreamedBase64] = [HEAD + "<methodResponse>\n<params>\n<param>\n"]
    _dump(value, out)
    out.append("\n</param>\n</params>\n</methodResponse>\n")
    pieces: list[bytes | StreamedBase64] = []
    buf: list[str] = []
    for item in out:
        if isinstance(item, str):
            buf.append(item)
        else:
            pieces.append("".join(buf).encode("utf-8"))
            buf = []
            pieces.append(item)
    pieces.append("".join(buf).encode("utf-8"))
    return pieces


_EMPTY_STRUCT = (HEAD + "<methodResponse>\n<params>\n<param>\n<value><struct></struct></value>\n</param>\n</params>\n</methodResponse>\n").encode()


def fault(code: int, message: str) -> bytes:
    out: list[str | StreamedBase64] = [HEAD + "<methodResponse>\n<fault>\n"]
    _dump({"faultCode": code, "faultString": message}, out)
    out.append("\n</fault>\n</methodResponse>\n")
    return "".join(str(x) for x in out).encode("utf-8")


def content_length(pieces: list[bytes | StreamedBase64]) -> int:
    return sum(p.encoded_length if isinstance(p, StreamedBase64) else len(p) for p in pieces)


def stream(pieces: list[bytes | StreamedBase64]) -> Iterator[bytes]:
    for p in pieces:
        if isinstance(p, StreamedBase64):
            yield from b64_stream(p.chunks(), p.size)
        elif p:
            yield p
