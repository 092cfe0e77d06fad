"""The hand-written hostile corpus: requests to SOAP, XML-RPC and /ops, each built for a seeded
target and written byte by byte to a socket. Every case is refused (the database must not change),
except the few marked `read_only`, which may succeed but only read."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from xml.sax.saxutils import escape

from protocol.soap import PATH
from tests.hostile.kit import (
    FACTORY,
    Target,
    basic,
    p,
    request_bytes,
    s,
    soap,
    soap_body,
    xmlrpc,
    xmlrpc_body,
)

Build = Callable[[Target], bytes]


@dataclass(frozen=True)
class Case:
    id: str
    build: Build
    read_only: bool = False  # may answer 200, but only reads
    half_close: bool = True  # close our sending side after the request


CASES: list[Case] = []


def case(id: str, build: Build, **kw: object) -> None:
    CASES.append(Case(id, build, **kw))  # type: ignore[arg-type]


ODT = base64.b64encode(b"PK hostile").decode()
MB = "A" * (1 << 20)

# ------------------------------------------------------------------ XML attacks (both endpoints)

LOL = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
    + "]>"
)
QUADRATIC = '<?xml version="1.0"?><!DOCTYPE q [<!ENTITY a "' + "x" * 50_000 + '">]>'
DOCTYPES = {
    "xxe-file": '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>',
    "xxe-http": '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "http://127.0.0.1:9/x">]>',
    "xxe-param": '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;]>',
    "xxe-ext-dtd": '<?xml version="1.0"?><!DOCTYPE x SYSTEM "file:///etc/passwd">',
    "xxe-php": '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "php://filter/resource=/etc/passwd">]>',
    "xxe-utf16-decl": '<?xml version="1.0" encoding="UTF-8"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///proc/self/environ">]>',
    "billion-laughs": LOL.replace("<!ENTITY e", "<!ENTITY x"),
    "quadratic": QUADRATIC,
}
REF = {"xxe-file": "&e;", "xxe-http": "&e;", "xxe-param": "x", "xxe-ext-dtd": "x", "xxe-php": "&e;",
       "xxe-utf16-decl": "&e;", "billion-laughs": "&lol9;", "quadratic": "&a;" * 2000}

for name, doctype in DOCTYPES.items():
    case(f"soap-{name}", lambda t, d=doctype, r=REF[name]: soap(d.encode() + soap_body("getContentConvertCounts", creds=(r, "Wf"))))
    case(f"xmlrpc-{name}", lambda t, d=doctype, r=REF[name]: xmlrpc(d.encode() + xmlrpc_body("jobs.poll", p(s(r)))[21:]))

DEEP = 10_000
case("soap-deep-nesting", lambda t: soap(soap_body("getContentConvertCounts", [("x", "<a>" * DEEP + "</a>" * DEEP)])))
case("soap-deep-envelope", lambda t: soap(b"<e>" * DEEP + b"</e>" * DEEP))
case("xmlrpc-deep-arrays", lambda t: xmlrpc(xmlrpc_body("system.multicall", p("<array><data><value>" * 3000 + "</value></data></array>" * 3000))))
case("xmlrpc-deep-structs", lambda t: xmlrpc(xmlrpc_body("jobs.poll", p("<struct><member><name>a</name><value>" * 3000 + "</value></member></struct>" * 3000))))
case("xmlrpc-many-values", lambda t: xmlrpc(xmlrpc_body("system.multicall", p("<array><data>" + "<value><i4>1</i4></value>" * 200_000 + "</data></array>"))))
# Unknown children and attributes are ignored (soft validation): answered, quickly, as a read.
case("soap-many-children", lambda t: soap(soap_body("getContentConvertCounts", [("filler", "x")] * 100_000)), read_only=True)
case("soap-many-attributes", lambda t: soap(soap_body("getContentConvertCounts").replace(b"<soap:Body>", b"<soap:Body " + b" ".join(b'a%d="x"' % i for i in range(20_000)) + b">")), read_only=True)
case("soap-long-name", lambda t: soap(soap_body("getContentConvertCounts", [("x" * 200_000, "1")])))

# ------------------------------------------------------------------ encodings, bytes

case("soap-invalid-utf8", lambda t: soap(soap_body("getContentConvertCounts", creds=("pet\udcff\udcfeshow", "Wf"))))
case("soap-nul-byte", lambda t: soap(soap_body("getContentConvertCounts", creds=("pet\x00show", "Wf"))))
case("soap-nul-char-ref", lambda t: soap(soap_body("getContentConvertCounts", creds=("pet&#0;show", "Wf"))))
case("soap-control-char-ref", lambda t: soap(soap_body("getContentConvertCounts", creds=("&#1;&#x1F;", "Wf"))))
case("soap-lone-surrogate-ref", lambda t: soap(soap_body("getContentConvertCounts", creds=("&#xD800;", "Wf"))))
case("soap-declared-latin1-lies", lambda t: soap(b'<?xml version="1.0" encoding="ISO-8859-1"?>' + soap_body("getContentConvertCounts", creds=("p\u00e9t", "x"))))
case("soap-unknown-encoding", lambda t: soap(b'<?xml version="1.0" encoding="x-klingon"?>' + soap_body("getContentConvertCounts")))
case("soap-utf16-no-bom", lambda t: soap(soap_body("getContentConvertCounts").decode().encode("utf-16-le")))
case("soap-bom-then-junk", lambda t: soap(b"\xef\xbb\xbf\xff\xfe" + soap_body("getContentConvertCounts")))
case("soap-binary-garbage", lambda t: soap(bytes(range(256)) * 64))
case("soap-empty-body", lambda t: soap(b""))
case("soap-whitespace-body", lambda t: soap(b" \r\n\t" * 100))
case("soap-not-xml", lambda t: soap(b"hello, world"))
case("soap-json", lambda t: soap(b'{"clientApplicationId": "petshow"}', {"Content-Type": "application/json"}))
case("soap-html", lambda t: soap(b"<html><body><script>alert(1)</script></body></html>"))
case("soap-cdata-creds", lambda t: soap(soap_body("getContentConvertCounts", creds=("<![CDATA[petshow]]>", "<![CDATA[nope]]>"))))
case("soap-pi-inside", lambda t: soap(soap_body("getContentConvertCounts", creds=("pet<?php system('id'); ?>show", "x"))))
case("soap-comment-split", lambda t: soap(soap_body("getContentConvertCounts", creds=("pet<!-- -->show", "W<!-- -->x"))))
case("soap-two-envelopes", lambda t: soap(soap_body("getContentConvertCounts") * 2))
def _two_operations() -> bytes:
    one = soap_body("deleteContentConversion", [("jobId", "1")])
    request = one[one.index(b"<ns2:") : one.index(b"</soap:Body>")]
    return one.replace(b"</soap:Body>", request.replace(b">Wf<", b">bad<") + b"</soap:Body>")


case("soap-two-operations", lambda t: soap(_two_operations()))
case("soap-no-body", lambda t: soap(b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"></soap:Envelope>'))
case("soap-empty-body-element", lambda t: soap(b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body/></soap:Envelope>'))
case("soap-soap12-envelope", lambda t: soap(soap_body("getContentConvertCounts").replace(b"http://schemas.xmlsoap.org/soap/envelope/", b"http://www.w3.org/2003/05/soap-envelope")))
case("soap-wrong-namespace", lambda t: soap(soap_body("getContentConvertCounts").replace(b"tundra", b"evil")))
case("soap-header-mustunderstand", lambda t: soap(soap_body("deleteContentConversion", [("jobId", "x")]).replace(b"<soap:Body>", b'<soap:Header><h soap:mustUnderstand="1">x</h></soap:Header><soap:Body>')))
case("xmlrpc-invalid-utf8", lambda t: xmlrpc(xmlrpc_body("jobs.poll", p(s("fac\udcfftory")))))
case("xmlrpc-nul-byte", lambda t: xmlrpc(xmlrpc_body("jobs.poll", p(s("factory-1\x00")))))
case("xmlrpc-nul-char-ref", lambda t: xmlrpc(xmlrpc_body("jobs.poll", p(s("&#0;")))))
case("xmlrpc-auth-nul-name", lambda t: xmlrpc(xmlrpc_body("jobs.poll", p(s("factory-1"))), auth=("factory-1\x00", "factory-secret-1")))
case("xmlrpc-auth-nul-secret", lambda t: xmlrpc(xmlrpc_body("jobs.poll", p(s("factory-1"))), auth=("factory-1", "factory-secret-1\x00")))
case("xmlrpc-cert-header-nul", lambda t: xmlrpc(xmlrpc_body("jobs.poll", p(s("factory-1"))), auth=None, headers={"X-Client-Cert-CN": "factory-1\x00"}))
case("xmlrpc-not-xml", lambda t: xmlrpc(b"hello"))
case("xmlrpc-empty", lambda t: xmlrpc(b""))
case("xmlrpc-binary", lambda t: xmlrpc(bytes(range(256)) * 16))
case("xmlrpc-no-methodname", lambda t: xmlrpc(b"<?xml version='1.0'?><methodCall><params/></methodCall>"))
case("xmlrpc-two-methodnames", lambda t: xmlrpc(b"<methodCall><methodName>jobs.poll</methodName><methodName>jobs.fail</methodName><params/></methodCall>"))
case("xmlrpc-unclosed", lambda t: xmlrpc(xmlrpc_body("jobs.poll", p(s("factory-1")))[:-20]))
case("xmlrpc-value-without-type-nested", lambda t: xmlrpc(xmlrpc_body("jobs.poll", "<param><value><value>x</value></value></param>")))
case("xmlrpc-struct-no-name", lambda t: xmlrpc(xmlrpc_body("jobs.poll", p("<struct><member><value>x</value></member></struct>"))))
case("xmlrpc-unknown-type", lambda t: xmlrpc(xmlrpc_body("jobs.poll", p("<ex:nil xmlns:ex='x'/>"))))
case("xmlrpc-utf16-declared", lambda t: xmlrpc(xmlrpc_body("jobs.poll", p(s("factory-1"))).replace(b"version='1.0'", b"version='1.0' encoding='utf-16'")))

# ------------------------------------------------------------------ numbers, dates, base64, pages

for i, v in enumerate(["99999999999999999999999999999", str(2**63), str(-(2**63) - 1), "1e3", "0x10", "1.5", "NaN", "-", "", " 1 2 ", "١٢٣", "+-1", "9" * 5000]):
    case(f"soap-jobid-{i}-{v[:12]}", lambda t, v=v: soap(soap_body("deleteContentConversion", [("jobId", v)])))
    case(f"soap-status-jobid-{i}-{v[:12]}", lambda t, v=v: soap(soap_body("getContentConvertStatus", [("jobId", v)])))
for name, v in [("huge", str(10**40)), ("neg", "-5"), ("float", "2.5"), ("word", "all")]:
    case(f"soap-maxresults-{name}", lambda t, v=v: soap(soap_body("getContentConvertsPerState", [("maxResults", v)])))
    case(f"soap-jobstatus-{name}", lambda t, v=v: soap(soap_body("getContentConvertsPerState", [("jobStatus", v)])))
case("soap-afterjobid-huge", lambda t: soap(soap_body("getContentConvertsPerState", [("afterJobId", str(2**64))])))
for v in ["2026-13-45T99:00:00Z", "2026-02-30T00:00:00Z", "0000-01-01T00:00:00Z", "10000-01-01T00:00:00Z", "-2026-01-01T00:00:00Z",
          "2026-01-01T00:00:00+24:00", "2026-01-01T00:00:00+99:99", "2026-01-01T25:00:00", "2026-01-01", "yesterday", "",
          "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "2026-W01-1T00:00:00Z",
          "1970-01-01T00:00:00Z'; DROP TABLE jobs;--"]:
    case(f"soap-deletefrom-{v[:26]}", lambda t, v=v: soap(soap_body("deleteContentConversions", [("deleteFrom", escape(v))])))
case("soap-deleteto-impossible", lambda t: soap(soap_body("deleteContentConversions", [("deleteFrom", "2026-01-01T00:00:00Z"), ("deleteTo", "2026-04-31T00:00:00Z")])))
case("soap-range-reversed", lambda t: soap(soap_body("deleteContentConversions", [("deleteFrom", "2030-01-01T00:00:00Z"), ("deleteTo", "2020-01-01T00:00:00Z")])))


def convert(t: Target, extra: list[tuple[str, str]], ident: str | None = None, app: str = "LibreOffice Writer") -> bytes:
    fields = [("contentIdentifier", ident or t.my_content), ("application", app), ("version", "7.4"), *extra]
    return soap(soap_body("contentConvert", fields))


for name, pages in [("negative-start", [("pageStart", "-1")]), ("negative-end", [("pageEnd", "-3")]), ("reversed", [("pageStart", "9"), ("pageEnd", "2")]),
                    ("huge-start", [("pageStart", str(10**30))]), ("huge-end", [("pageEnd", str(2**31))]), ("int-min", [("pageStart", str(-(2**31)))]),
                    ("float", [("pageStart", "1.5")]), ("word", [("pageEnd", "last")]), ("both-negative", [("pageStart", "-9"), ("pageEnd", "-1")])]:
    case(f"soap-pages-{name}", lambda t, pages=pages: convert(t, pages))
for name, content in [("bad-chars", "!!!not base64!!!"), ("one-char", "A"), ("padding-only", "===="), ("truncated", ODT[:-3]),
                      ("nul", "AA\x00AA"), ("unicode", "ÄÖÜ"), ("empty", ""), ("spaces", "    "), ("url-safe", "-_-_"), ("huge-line", "@" * 100_000)]:
    case(f"soap-upload-base64-{name}", lambda t, c=content: soap(soap_body("contentUpload", [("content", c), ("filename", "a.odt")])))
    case(f"xmlrpc-finish-base64-{name}", lambda t, c=content: xmlrpc(xmlrpc_body("jobs.finish", p(s(FACTORY[0])) + p(s(t.jobs[0][1])) + p(s("pdf")) + p(f"<base64>{c}</base64>"))))
case("soap-upload-no-content", lambda t: soap(soap_body("contentUpload", [("filename", "a.odt")])))
case("soap-upload-bad-suffix", lambda t: soap(soap_body("contentUpload", [("content", ODT), ("filename", "a.exe")])))
case("soap-upload-traversal-name", lambda t: soap(soap_body("contentUpload", [("content", ODT), ("filename", "../../etc/passwd")])))
for v in ["<i4>99999999999999999999</i4>", "<int>-99999999999999999999</int>", "<i8>1</i8>", "<double>NaN</double>", "<double>1e400</double>",
          "<boolean>2</boolean>", "<dateTime.iso8601>2026-13-45T99:00:00</dateTime.iso8601>", "<dateTime.iso8601>yesterday</dateTime.iso8601>",
          "<base64>!!</base64>", "<nil/>", "<array><data/></array>", "<struct/>"]:
    case(f"xmlrpc-poll-arg-{v[:24]}", lambda t, v=v: xmlrpc(xmlrpc_body("jobs.poll", p(v))))

# ------------------------------------------------------------------ metacharacters and 1 MB strings in every field

META = {
    "sql-quote": "' OR '1'='1",
    "sql-drop": "1; DROP TABLE jobs;--",
    "sql-sleep": "x'||pg_sleep(5)||'",
    "sql-union": "' UNION SELECT secret_hash FROM client_applications--",
    "shell-subst": "$(touch /tmp/convhub-pwned)",
    "shell-backtick": "`id`",
    "shell-pipe": "| cat /etc/passwd",
    "traversal": "../../../../etc/passwd",
    "template": "{{7*7}}${7*7}",
    "format": "%s%s%s%n",
    "crlf": "a\r\nX-Injected: 1",
    "bidi": "\u202egnp.exe\u2066",
    "mb": MB,
}


def soap_fields(t: Target) -> dict[str, Callable[[str], bytes]]:
    """One builder per (operation, field): the field gets the value, everything else is valid."""
    e = escape
    return {
        "counts.clientApplicationId": lambda v: soap(soap_body("getContentConvertCounts", creds=(e(v), "Wf"))),
        "counts.clientApplicationCredentials": lambda v: soap(soap_body("getContentConvertCounts", creds=("petshow", e(v)))),
        "upload.filename": lambda v: soap(soap_body("contentUpload", [("content", ODT), ("filename", e(v))])),
        "upload.requestId": lambda v: soap(soap_body("contentUpload", [("content", ODT), ("filename", "a.bin"), ("requestId", e(v))])),
        "convert.contentIdentifier": lambda v: convert(t, [], ident=e(v)),
        "convert.application": lambda v: convert(t, [], app=e(v)),
        "convert.format": lambda v: convert(t, [("format", e(v))]),
        "convert.successUrl": lambda v: convert(t, [("successUrl", e(v))]),
        "convert.failureUrl": lambda v: convert(t, [("failureUrl", e("http://" + v))]),
        "convert.requestId": lambda v: convert(t, [("pageStart", "-1"), ("requestId", e(v))]),
        "convert.priority": lambda v: convert(t, [("pageStart", "-1"), ("priority", e(v))]),
        "convert.noCache": lambda v: convert(t, [("pageStart", "-1"), ("noCache", e(v))]),
        "status.jobId": lambda v: soap(soap_body("getContentConvertStatus", [("jobId", e(v))])),
    }


def xmlrpc_fields(t: Target) -> dict[str, Callable[[str], bytes]]:
    e = escape
    guid = t.jobs[0][1]
    return {
        "poll.factory_name": lambda v: xmlrpc(xmlrpc_body("jobs.poll", p(s(e(v))))),
        "auth.name": lambda v: xmlrpc(xmlrpc_body("jobs.poll", p(s(FACTORY[0]))), auth=(v.replace("\r\n", " "), FACTORY[1])),
        "auth.secret": lambda v: xmlrpc(xmlrpc_body("jobs.poll", p(s(FACTORY[0]))), auth=(FACTORY[0], v.replace("\r\n", " "))),
        "finish.job": lambda v: xmlrpc(xmlrpc_body("jobs.finish", p(s(FACTORY[0])) + p(s(e(v))) + p(s("pdf")) + p("<base64>UEs=</base64>"))),
        "finish.format": lambda v: xmlrpc(xmlrpc_body("jobs.finish", p(s(FACTORY[0])) + p(s(guid)) + p(s(e(v))) + p("<base64>UEs=</base64>"))),
        "finish.lease": lambda v: xmlrpc(xmlrpc_body("jobs.finish", p(s(FACTORY[0])) + p(s(guid)) + p(s("pdf")) + p("<base64>UEs=</base64>") + p(s(e(v))))),
        "extend.lease": lambda v: xmlrpc(xmlrpc_body("jobs.extend", p(s(FACTORY[0])) + p(s(guid)) + p(s(e(v))))),
        "fail.reason": lambda v: xmlrpc(xmlrpc_body("jobs.fail", p(s(FACTORY[0])) + p(s(guid)) + p(s(e(v))) + p(s("wrong-lease")))),
        "methodName": lambda v: xmlrpc(xmlrpc_body(e(v))),
        "help.method_name": lambda v: xmlrpc(xmlrpc_body("system.methodHelp", p(s(e(v))))),
    }


SOAP_FIELDS = ["counts.clientApplicationId", "counts.clientApplicationCredentials", "upload.filename", "upload.requestId",
               "convert.contentIdentifier", "convert.application", "convert.format", "convert.successUrl", "convert.failureUrl",
               "convert.requestId", "convert.priority", "convert.noCache", "status.jobId"]
XMLRPC_FIELDS = ["poll.factory_name", "auth.name", "auth.secret", "finish.job", "finish.format", "finish.lease", "extend.lease",
                 "fail.reason", "methodName", "help.method_name"]

for f in SOAP_FIELDS:
    for m, v in META.items():
        case(f"soap-{f}-{m}", lambda t, f=f, v=v: soap_fields(t)[f](v))
for f in XMLRPC_FIELDS:
    for m, v in META.items():
        if f.startswith("auth.") and m == "mb":
            continue  # a 1 MB header line: covered by the HTTP cases below
        case(f"xmlrpc-{f}-{m}", lambda t, f=f, v=v: xmlrpc_fields(t)[f](v))

# ------------------------------------------------------------------ unknown operations, arity, multicall

for op in ["getNothing", "ContentService", "getContentConvertCountsResponse", "__init__", "../getContentConvertCounts", "x" * 5000]:
    case(f"soap-unknown-op-{op[:16]}", lambda t, op=op: soap(soap_body("getContentConvertCounts").replace(b"getContentConvertCountsRequest", f"{op}Request".encode())))
case("soap-missing-credentials", lambda t: soap(soap_body("getContentConvertCounts", creds=None)))
case("soap-missing-jobid", lambda t: soap(soap_body("deleteContentConversion")))
case("soap-jobid-twice", lambda t: soap(soap_body("deleteContentConversion", [("jobId", str(t.jobs[0][0])), ("jobId", str(t.jobs[1][0]))]).replace(b"Wf", b"bad")))
case("soap-unknown-child", lambda t: soap(soap_body("deleteContentConversion", [("jobId", "1"), ("dropTable", "jobs")]).replace(b">Wf<", b">bad<")))
case("soap-fields-reordered", lambda t: soap(soap_body("getContentConvertCounts", [("clientApplicationId", "petshow")], creds=("x", "y"))))
for name, body in [("no-args", ""), ("two-args", p(s("factory-1")) + p(s("x"))), ("six-args", p(s("factory-1")) * 6)]:
    case(f"xmlrpc-poll-arity-{name}", lambda t, b=body: xmlrpc(xmlrpc_body("jobs.poll", b)))
case("xmlrpc-finish-arity-2", lambda t: xmlrpc(xmlrpc_body("jobs.finish", p(s(FACTORY[0])) + p(s("x")))))
case("xmlrpc-fail-arity-9", lambda t: xmlrpc(xmlrpc_body("jobs.fail", p(s(FACTORY[0])) * 9)))
for m in ["jobs.nothing", "system.shutdown", "__class__", "jobs.poll.__globals__", "", "system.listMethods.x", "JOBS.POLL", "jobs..poll"]:
    case(f"xmlrpc-unknown-method-{m or 'empty'}", lambda t, m=m: xmlrpc(xmlrpc_body(escape(m), p(s(FACTORY[0])))))


def call_struct(method: str, params: str = "") -> str:
    return f"<value><struct><member><name>methodName</name><value>{s(method)}</value></member><member><name>params</name><value><array><data>{params}</data></array></value></member></struct></value>"


def multicall(calls: str) -> bytes:
    return xmlrpc(xmlrpc_body("system.multicall", p(f"<array><data>{calls}</data></array>")))


case("xmlrpc-multicall-nested", lambda t: multicall(call_struct("system.multicall", "<value><array><data>" + call_struct("jobs.poll", "<value>" + s(FACTORY[0]) + "</value>") + "</data></array></value>")))
case("xmlrpc-multicall-deep-nested", lambda t: multicall(call_struct("system.multicall", "<value><array><data>" * 50 + "</data></array></value>" * 50)))
case("xmlrpc-multicall-too-many", lambda t: multicall(call_struct("system.listMethods") * 101))
case("xmlrpc-multicall-not-struct", lambda t: multicall("<value><string>jobs.poll</string></value>" * 3))
case("xmlrpc-multicall-no-name", lambda t: multicall("<value><struct><member><name>params</name><value><array><data/></array></value></member></struct></value>"))
case("xmlrpc-multicall-finish-unknown", lambda t: multicall(call_struct("jobs.finish", "".join(f"<value>{s(x)}</value>" for x in [FACTORY[0], "nope", "pdf", "UEs="]))))
case("xmlrpc-multicall-fail-others", lambda t: multicall(call_struct("jobs.fail", "".join(f"<value>{s(x)}</value>" for x in [FACTORY[0], t.jobs[0][1], "r", "bad-lease"]))))
case("xmlrpc-multicall-params-not-array", lambda t: multicall("<value><struct><member><name>methodName</name><value>x</value></member><member><name>params</name><value><i4>1</i4></value></member></struct></value>"))
case("xmlrpc-finish-unknown-job", lambda t: xmlrpc(xmlrpc_body("jobs.finish", p(s(FACTORY[0])) + p(s("00000000-0000-0000-0000-000000000000")) + p(s("pdf")) + p("<base64>UEs=</base64>"))))
case("xmlrpc-finish-not-leased", lambda t: xmlrpc(xmlrpc_body("jobs.finish", p(s(FACTORY[0])) + p(s(t.jobs[0][1])) + p(s("pdf")) + p("<base64>UEs=</base64>"))))
case("xmlrpc-extend-not-leased", lambda t: xmlrpc(xmlrpc_body("jobs.extend", p(s(FACTORY[0])) + p(s(t.jobs[0][1])))))
case("xmlrpc-fail-not-leased", lambda t: xmlrpc(xmlrpc_body("jobs.fail", p(s(FACTORY[0])) + p(s(t.jobs[0][1])) + p(s("why")))))
case("xmlrpc-poll-as-other-factory", lambda t: xmlrpc(xmlrpc_body("jobs.poll", p(s("factory-2")))))

# ------------------------------------------------------------------ HTTP: lengths, chunking, methods, headers

big = soap_body("getContentConvertCounts")
case("http-soap-content-length-short", lambda t: soap(big, content_length=len(big) // 2))
case("http-soap-content-length-long", lambda t: soap(big, content_length=len(big) + 500))
case("http-soap-content-length-negative", lambda t: soap(big, content_length=-1))
case("http-soap-content-length-word", lambda t: soap(big, content_length="ten"))  # type: ignore[arg-type]
case("http-soap-content-length-huge", lambda t: soap(big, content_length=10**30))
case("http-soap-content-length-over-limit", lambda t: soap(big, content_length=t.rt.settings.max_request_bytes + 1))
# Two Content-Lengths: the HTTP server picks one (gunicorn refuses the request); a read either way.
case("http-soap-two-content-lengths", lambda t: soap(big, {"Content-Length": "5"}, content_length=None).replace(b"Content-Length: 5", b"Content-Length: 5\r\nContent-Length: %d" % len(big)), read_only=True)
case("http-soap-no-content-length", lambda t: soap(big, content_length=None))
case("http-soap-truncated-upload", lambda t: soap(soap_body("contentUpload", [("content", ODT * 50_000), ("filename", "a.odt")]), content_length=len(ODT) * 60_000))
case("http-soap-chunked-bad-sizes", lambda t: soap(b"zz\r\nabc\r\n0\r\n\r\n", {"Transfer-Encoding": "chunked"}, content_length=None))
case("http-soap-chunked-truncated", lambda t: soap(b"1000\r\n" + big[:100], {"Transfer-Encoding": "chunked"}, content_length=None))
case("http-soap-chunked-and-length", lambda t: soap(big, {"Transfer-Encoding": "chunked"}, content_length=len(big)))
case("http-soap-chunked-invalid-body", lambda t: soap(b"<soap:Envelope", chunked=True))
case("http-soap-chunked-bad-op", lambda t: soap(soap_body("deleteContentConversion", [("jobId", "nope")]), chunked=True))
case("http-xmlrpc-content-length-short", lambda t: xmlrpc(xmlrpc_body("jobs.poll", p(s("factory-1"))), content_length=20))
case("http-xmlrpc-content-length-long", lambda t: xmlrpc(xmlrpc_body("jobs.poll", p(s("factory-1"))), content_length=5000))
case("http-xmlrpc-content-length-over-limit", lambda t: xmlrpc(b"x", content_length=t.rt.settings.max_request_bytes + 1))
case("http-xmlrpc-chunked-truncated", lambda t: xmlrpc(b"ffff\r\n<methodCall>", headers={"Transfer-Encoding": "chunked"}, content_length=None))
case("http-xmlrpc-chunked-bad", lambda t: xmlrpc(xmlrpc_body("jobs.nothing"), chunked=True))
for method in ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "FOO", "CONNECT"]:
    case(f"http-soap-method-{method}", lambda t, m=method: request_bytes(m, PATH, soap_body("deleteContentConversion", [("jobId", str(t.jobs[0][0]))])),
         read_only=method in ("OPTIONS",))
    case(f"http-xmlrpc-method-{method}", lambda t, m=method: request_bytes(m, "/xmlrpc", xmlrpc_body("jobs.poll", p(s("factory-1"))), {"Authorization": basic(*FACTORY)}),
         read_only=method in ("OPTIONS",))
case("http-soap-head", lambda t: request_bytes("HEAD", PATH), read_only=True)
case("http-soap-get-wsdl-with-body", lambda t: request_bytes("GET", PATH + "?wsdl", b"x" * 1000), read_only=True)
case("http-soap-query-wsdl-post", lambda t: soap(soap_body("deleteContentConversion", [("jobId", "x")])).replace(PATH.encode(), (PATH + "?wsdl").encode(), 1))
case("http-xmlrpc-get", lambda t: request_bytes("GET", "/xmlrpc"))
# Not normalised: the SOAP mount matches the prefix and answers the (read-only) request.
case("http-soap-wrong-path", lambda t: soap(big).replace(PATH.encode(), b"/cds-controller/contentService/../../xmlrpc", 1), read_only=True)
case("http-soap-form-encoded", lambda t: soap(b"clientApplicationId=petshow", {"Content-Type": "application/x-www-form-urlencoded"}))
case("http-soap-multipart", lambda t: soap(b"--b\r\nContent-Disposition: form-data; name=x\r\n\r\n" + big + b"\r\n--b--", {"Content-Type": "multipart/form-data; boundary=b"}))
case("http-soap-expect-continue", lambda t: soap(soap_body("deleteContentConversion", [("jobId", "x")]), {"Expect": "100-continue"}))
case("http-long-header", lambda t: soap(big, {"X-Long": "a" * 200_000}))
case("http-many-headers", lambda t: soap(big, {f"X-H{i}": "v" for i in range(3000)}).replace(b">Wf<", b">bad<"))
case("http-header-nul", lambda t: soap(big, {"X-Nul": "a\x00b"}).replace(b">Wf<", b">bad<"))
case("http-bad-request-line", lambda t: b"POST\r\n\r\n")
case("http-garbage", lambda t: b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(200))  # a TLS ClientHello
case("http-version-2", lambda t: soap(big).replace(b"HTTP/1.1", b"HTTP/2.0", 1).replace(b">Wf<", b">bad<"))
case("http-version-junk", lambda t: soap(big).replace(b"HTTP/1.1", b"HTTP/9.x", 1))
case("http-absolute-uri", lambda t: soap(big).replace(PATH.encode(), b"http://evil.example" + PATH.encode(), 1).replace(b">Wf<", b">bad<"))
case("http-soap-action-other-op", lambda t: soap(soap_body("deleteContentConversion", [("jobId", str(t.jobs[0][0]))]), {"SOAPAction": '"getContentConvertCounts"'}))
case("http-soap-action-unknown", lambda t: soap(soap_body("deleteContentConversion", [("jobId", str(t.jobs[0][0]))]), {"SOAPAction": "dropEverything"}))
case("http-soap-action-url-other-op", lambda t: soap(soap_body("deleteContentConversions", [("deleteFrom", "2000-01-01T00:00:00Z")]),
                                                     {"SOAPAction": "http://www.yospace.com/tundra/ContentService/getConversionTargets"}))
case("http-soap-action-huge", lambda t: soap(soap_body("deleteContentConversion", [("jobId", str(t.jobs[0][0]))]), {"SOAPAction": "x" * 60_000}))
case("http-soap-action-matching-read", lambda t: soap(soap_body("getContentConvertCounts"), {"SOAPAction": '"getContentConvertCounts"'}), read_only=True)

# ------------------------------------------------------------------ /ops (operator page)

OPS_PATHS = ["/ops", "/ops/data.json", "/ops/trends?window=day", "/ops/jobs/1", "/ops/static/../../../../etc/passwd"]
for path in OPS_PATHS:
    case(f"ops-no-auth-{path}", lambda t, path=path: request_bytes("GET", path))
    case(f"ops-wrong-auth-{path}", lambda t, path=path: request_bytes("GET", path, headers={"Authorization": basic("admin", "guess")}))
for name, header in [("bad-base64", "Basic !!!"), ("no-colon", "Basic " + base64.b64encode(b"admin").decode()), ("bearer", "Bearer x"),
                     ("empty", ""), ("invalid-utf8", "Basic " + base64.b64encode(b"admin:\xff\xfe").decode()), ("huge", "Basic " + "A" * 100_000),
                     ("sql-user", basic("admin' --", "x")), ("nul", "Basic " + base64.b64encode(b"admin\x00:op-secret-hostile").decode())]:
    case(f"ops-auth-{name}", lambda t, h=header: request_bytes("GET", "/ops", headers={"Authorization": h}))
for name, path in [("sql", "/ops/jobs/1%27%20OR%20%271%27=%271"), ("traversal", "/ops/jobs/..%2F..%2Fetc%2Fpasswd"), ("huge-id", "/ops/jobs/" + "9" * 5000),
                   ("nul", "/ops/jobs/%00"), ("mb-ref", "/ops/jobs/" + "a" * 100_000), ("refresh-huge", "/ops?refresh=" + "9" * 500),
                   ("refresh-negative", "/ops?refresh=-5"), ("window-junk", "/ops/trends?window=%27%3Bdrop"), ("job-query-sql", "/ops?job=1%3BDROP%20TABLE%20jobs"),
                   ("data-huge-query", "/ops/data.json?" + "a=1&" * 20_000),
                   # One past the largest BIGINT: once an overflow and a 500 (found by the /ops fuzzing).
                   ("comparison-bigint", "/ops/comparisons/9223372036854775808"),
                   ("comparison-image-bigint", "/ops/comparisons/1/pages/9223372036854775808/1.png"),
                   ("comparison-diff-bigint", "/ops/comparisons/1/diff/1/2/99999999999999999999.png")]:
    case(f"ops-authed-{name}", lambda t, path=path: request_bytes("GET", path, headers={"Authorization": basic("admin", "op-secret-hostile")}), read_only=True)
for method in ["POST", "PUT", "DELETE", "PATCH"]:
    case(f"ops-method-{method}", lambda t, m=method: request_bytes(m, "/ops", b"x=1", {"Authorization": basic("admin", "op-secret-hostile")}))
case("ops-metrics-post", lambda t: request_bytes("POST", "/metrics", b"x"))
case("ops-healthz-post", lambda t: request_bytes("POST", "/healthz", b"x"))
case("ops-unknown-path", lambda t: request_bytes("GET", "/admin/../../etc/passwd"))

# ------------------------------------------------------------------ every other field, and /ops's fields
# The same metacharacters and 1 MB strings in the fields the lists above leave out: every request
# field of every SOAP operation, every XML-RPC argument, and what /ops reads from a request (the
# credentials, the path, the query, the release form). Each request stays refused by something
# else than the field under test where the field alone could not refuse it (a .bin file name, a
# negative page, a lease that is not held, a wrong form token), so the database must not change.

OPERATOR_AUTH = {"Authorization": basic("admin", "op-secret-hostile")}


def more_soap_fields(t: Target) -> dict[str, Callable[[str], bytes]]:
    e = escape
    job = str(t.jobs[0][0])
    return {
        "perstate.jobStatus": lambda v: soap(soap_body("getContentConvertsPerState", [("jobStatus", e(v))])),
        "perstate.afterJobId": lambda v: soap(soap_body("getContentConvertsPerState", [("afterJobId", e(v))])),
        "perstate.maxResults": lambda v: soap(soap_body("getContentConvertsPerState", [("maxResults", e(v))])),
        "delete.jobId": lambda v: soap(soap_body("deleteContentConversion", [("jobId", e(v))])),
        "deleterange.deleteFrom": lambda v: soap(soap_body("deleteContentConversions", [("deleteFrom", e(v))])),
        "deleterange.deleteTo": lambda v: soap(soap_body("deleteContentConversions", [("deleteFrom", "2100-01-01T00:00:00Z"), ("deleteTo", e(v))])),
        "upload.content": lambda v: soap(soap_body("contentUpload", [("content", e(v)), ("filename", "a.bin")])),
        "convert.version": lambda v: convert(t, [("pageStart", "-1")]).replace(b"<version>7.4</version>", f"<version>{e(v)}</version>".encode()),
        "convert.pageStart": lambda v: convert(t, [("pageStart", e(v)), ("pageEnd", "-1")]),
        "convert.pageEnd": lambda v: convert(t, [("pageStart", "-1"), ("pageEnd", e(v))]),
        "result.jobId": lambda v: soap(soap_body("getContentConvertResult", [("jobId", e(v))])),
        "cancel.jobId": lambda v: soap(soap_body("cancelContentConversion", [("jobId", e(v))])),
        "convertall.contentIdentifier": lambda v: soap(soap_body("contentConvertAll", [("contentIdentifier", e(v)), ("pageStart", "-1")])),
        "convertall.format": lambda v: soap(soap_body("contentConvertAll", [("contentIdentifier", t.my_content), ("format", e(v)), ("pageStart", "-1")])),
        "convertall.pageStart": lambda v: soap(soap_body("contentConvertAll", [("contentIdentifier", t.my_content), ("pageStart", e(v)), ("pageEnd", "-1")])),
        "convertall.pageEnd": lambda v: soap(soap_body("contentConvertAll", [("contentIdentifier", t.my_content), ("pageStart", "-1"), ("pageEnd", e(v))])),
        "comparison.comparisonId": lambda v: soap(soap_body("getContentComparison", [("comparisonId", e(v))])),
        "comparison.referenceJobId": lambda v: soap(soap_body("getContentComparison", [("comparisonId", "1"), ("referenceJobId", e(v))])),
        "targets.clientApplicationCredentials": lambda v: soap(soap_body("getConversionTargets", creds=("petshow", e(v)))),
        "delete.clientApplicationId": lambda v: soap(soap_body("deleteContentConversion", [("jobId", job)], creds=(e(v), "Wf"))),
    }


def more_xmlrpc_fields(t: Target) -> dict[str, Callable[[str], bytes]]:
    e = escape
    guid = t.jobs[0][1]
    return {
        "finish.factory_name": lambda v: xmlrpc(xmlrpc_body("jobs.finish", p(s(e(v))) + p(s(guid)) + p(s("pdf")) + p("<base64>UEs=</base64>"))),
        "finish.document": lambda v: xmlrpc(xmlrpc_body("jobs.finish", p(s(FACTORY[0])) + p(s(guid)) + p(s("pdf")) + p(s(e(v))) + p(s("wrong-lease")))),
        "extend.factory_name": lambda v: xmlrpc(xmlrpc_body("jobs.extend", p(s(e(v))) + p(s(guid)))),
        "extend.job": lambda v: xmlrpc(xmlrpc_body("jobs.extend", p(s(FACTORY[0])) + p(s(e(v))))),
        "fail.factory_name": lambda v: xmlrpc(xmlrpc_body("jobs.fail", p(s(e(v))) + p(s(guid)) + p(s("r")))),
        "fail.job": lambda v: xmlrpc(xmlrpc_body("jobs.fail", p(s(FACTORY[0])) + p(s(e(v))) + p(s("r")) + p(s("wrong-lease")))),
        "fail.permanent": lambda v: xmlrpc(xmlrpc_body("jobs.fail", p(s(FACTORY[0])) + p(s(guid)) + p(s("r")) + p(s("wrong-lease")) + p(s(e(v))))),
        "signature.method_name": lambda v: xmlrpc(xmlrpc_body("system.methodSignature", p(s(e(v))))),
        "multicall.methodName": lambda v: xmlrpc(xmlrpc_body("system.multicall", p(
            "<array><data><value><struct><member><name>methodName</name><value>" + s(e(v)) + "</value></member>"
            "<member><name>params</name><value><array><data/></array></value></member></struct></value></data></array>"))),
    }


def _q(v: str) -> str:
    from urllib.parse import quote

    return quote(v, safe="")


def ops_fields(t: Target) -> dict[str, tuple[Callable[[str], bytes], bool]]:
    """(builder, read_only): GETs of the ops page only read; the release form must be refused."""
    return {
        "auth.user": (lambda v: request_bytes("GET", "/ops", headers={"Authorization": basic(v.replace("\r\n", " "), "op-secret-hostile")}), False),
        "auth.password": (lambda v: request_bytes("GET", "/ops", headers={"Authorization": basic("admin", v.replace("\r\n", " "))}), False),
        "job.path": (lambda v: request_bytes("GET", "/ops/jobs/" + _q(v), headers=OPERATOR_AUTH), True),
        "job.query": (lambda v: request_bytes("GET", "/ops?job=" + _q(v), headers=OPERATOR_AUTH), True),
        "refresh.query": (lambda v: request_bytes("GET", "/ops?refresh=" + _q(v), headers=OPERATOR_AUTH), True),
        "trends.window": (lambda v: request_bytes("GET", "/ops/trends?window=" + _q(v), headers=OPERATOR_AUTH), True),
        "comparison.path": (lambda v: request_bytes("GET", "/ops/comparisons/" + _q(v), headers=OPERATOR_AUTH), True),
        "release.sha": (lambda v: request_bytes("POST", f"/ops/quarantine/{_q(v)}/release", b"csrf=wrong",
                                                {**OPERATOR_AUTH, "Content-Type": "application/x-www-form-urlencoded"}), False),
        "release.csrf": (lambda v: request_bytes("POST", "/ops/quarantine/" + "0" * 64 + "/release", ("csrf=" + _q(v)).encode(),
                                                 {**OPERATOR_AUTH, "Content-Type": "application/x-www-form-urlencoded"}), False),
    }


MORE_SOAP_FIELDS = ["perstate.jobStatus", "perstate.afterJobId", "perstate.maxResults", "delete.jobId", "deleterange.deleteFrom",
                    "deleterange.deleteTo", "upload.content", "convert.version", "convert.pageStart", "convert.pageEnd", "result.jobId",
                    "cancel.jobId", "convertall.contentIdentifier", "convertall.format", "convertall.pageStart", "convertall.pageEnd",
                    "comparison.comparisonId", "comparison.referenceJobId", "targets.clientApplicationCredentials", "delete.clientApplicationId"]
MORE_XMLRPC_FIELDS = ["finish.factory_name", "finish.document", "extend.factory_name", "extend.job", "fail.factory_name", "fail.job",
                      "fail.permanent", "signature.method_name", "multicall.methodName"]
OPS_FIELDS = ["auth.user", "auth.password", "job.path", "job.query", "refresh.query", "trends.window", "comparison.path",
              "release.sha", "release.csrf"]
# Read-only listings answer 200 for a value they ignore or take as a filter; they cannot write.
READ_ONLY_SOAP = {"perstate.jobStatus", "perstate.afterJobId", "perstate.maxResults"}
# The per-field sweep is long: `make test` tries three of the values in every field, `make soak` all.
SHORT_META = ("sql-quote", "shell-subst", "mb")
FIELD_SWEEP: list[Case] = []


def sweep(id: str, build: Build, **kw: object) -> None:
    FIELD_SWEEP.append(Case(id, build, **kw))  # type: ignore[arg-type]


for f in MORE_SOAP_FIELDS:
    for m, v in META.items():
        sweep(f"soap-{f}-{m}", lambda t, f=f, v=v: more_soap_fields(t)[f](v), read_only=f in READ_ONLY_SOAP)
for f in MORE_XMLRPC_FIELDS:
    for m, v in META.items():
        sweep(f"xmlrpc-{f}-{m}", lambda t, f=f, v=v: more_xmlrpc_fields(t)[f](v))
for f in OPS_FIELDS:
    for m, v in META.items():
        if f.startswith("auth.") and m == "mb":
            continue  # a 1 MB header line: refused by the HTTP server itself (http-long-header)
        sweep(f"ops-{f}-{m}", lambda t, f=f, v=v: ops_fields(t)[f][0](v), read_only=f in ("job.path", "job.query", "refresh.query", "trends.window", "comparison.path"))
