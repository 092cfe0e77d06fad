"""The generic command backend (real subprocesses), the shipped INI examples, and the CLI end to end
against a real XML-RPC server on a socket."""

from __future__ import annotations

import base64
import io
import os
import shutil
import struct
import threading
import zipfile
from pathlib import Path

import pytest

from app.factory import cli
from app.factory.config import build_converter, load_config
from app.factory.converters import ODF_MIMETYPES, CommandConverter, libreoffice_version
from app.factory.errors import ConversionCancelled, ConversionError, ConversionTimeout
from tests.factorykit import pdf_pages, tiny_odt


def job(doc: bytes, fmt: str = "odf", start: int = 0, end: int = 0, doctype: str = "odt") -> dict:
    return {
        "job": "guid-1",
        "application": "Tool",
        "version": "1",
        "doctype": doctype,
        "format": fmt,
        "pageStart": start,
        "pageEnd": end,
        "document": base64.b64encode(doc).decode(),
    }


def tool(command: str, **kw) -> CommandConverter:
    kw.setdefault("formats", ["odf", "pdf"])
    return CommandConverter("t", application="Tool", version="1", doctypes=["odt"], command=command, **kw)


def test_command_output_is_uploaded():
    doc = tiny_odt()
    assert tool("cp {input} {output}").convert(job(doc)) == ("odf", doc)
    # placeholders, a glob for the output, and values that are never shell-parsed
    conv = tool(
        'sh -c \'printf %s "$1" > "$2"/x-$3.bin\' sh {job}{pageStart}{pageEnd}{format} {outdir} {doctype}',
        output="out/x-*.bin",
    )
    assert conv.convert(job(doc, "pdf")) == ("pdf", b"guid-110pdf")
    assert tool("cp {input} {output}", default_format="odf").convert(job(doc, "")) == ("odf", doc)


def test_command_failures_are_one_line_reasons():
    doc = tiny_odt()
    with pytest.raises(ConversionError, match=r"sh exited with status 3: last words"):
        tool("sh -c 'echo noise >&2; echo last words >&2; exit 3'").convert(job(doc))
    with pytest.raises(ConversionError, match="produced no output"):
        tool("true").convert(job(doc))
    with pytest.raises(ConversionError, match="cannot run"):
        tool("/nonexistent/tool {input}").convert(job(doc))
    with pytest.raises(ConversionError, match="cannot render a page range"):
        tool("cp {input} {output}").convert(job(doc, "odf", 2, 3))
    with pytest.raises(ConversionError, match="does not write png"):
        tool("cp {input} {output}").convert(job(doc, "png"))
    with pytest.raises(ConversionError, match="does not read ods"):
        tool("cp {input} {output}").convert(job(doc, doctype="ods"))


def test_hanging_command_is_killed_at_timeout_with_its_children(tmp_path):
    pidfile = tmp_path / "sleep.pid"  # this run's own `sleep`, not any other on the machine
    conv = tool(f"sh -c 'sleep 60 & echo $! > \"$1\"; wait' sh {pidfile}", timeout=1)
    with pytest.raises(ConversionTimeout, match="did not finish within 1 s"):  # timed: bench/bench_timeouts.py
        conv.convert(job(tiny_odt()))
    # every process of the command's group is gone (no orphaned `sleep 60`; a zombie has no cmdline)
    cmdline = Path("/proc") / pidfile.read_text().strip() / "cmdline"
    try:
        left = cmdline.read_bytes()
    except FileNotFoundError:
        left = b""
    assert not left.startswith(b"sleep"), f"left running: {left!r}"
    # and the backend still works
    assert tool("cp {input} {output}", timeout=1).convert(job(tiny_odt()))[0] == "odf"


def test_command_cancel():
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    with pytest.raises(ConversionCancelled):
        tool("sleep 60").convert(job(tiny_odt()), 30, cancel)


# -- shipped examples ------------------------------------------------------------------------------


def test_examples_parse(examples_dir):
    names = sorted(p.name for p in examples_dir.glob("*.ini"))
    assert {"abiword.ini", "gnumeric.ini", "libreoffice.ini"} <= set(names)
    for path in examples_dir.glob("*.ini"):
        cfg = load_config(path)
        assert cfg.server and cfg.name and cfg.concurrency >= 1


@pytest.mark.libreoffice
@pytest.mark.parametrize(
    "example, binary, doctype, app",
    [("abiword.ini", "abiword", "odt", "AbiWord"), ("gnumeric.ini", "ssconvert", "ods", "Gnumeric")],
)
def test_example_tools_convert(examples_dir, odf_docs, example, binary, doctype, app):
    if not shutil.which(binary):
        pytest.skip(
            f"{binary} is not installed (CONVHUB_FACTORY_EXTRA_PACKAGES='abiword gnumeric' "
            "scripts/install-libreoffice.sh)"
        )
    cfg = load_config(examples_dir / example)
    conv = build_converter(cfg)
    (worker,) = conv.workers()
    assert worker.application == app and worker.version.count(".") == 1
    the_job = dict(job(odf_docs[doctype], "pdf", doctype=doctype), application=app, version=worker.version)
    fmt, data = conv.convert(the_job)
    assert fmt == "pdf" and pdf_pages(data) == 5
    fmt, data = conv.convert(dict(the_job, format="odf"))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.namelist()[0] == "mimetype" and zf.read("mimetype").decode() == ODF_MIMETYPES[doctype]
    if "png" in worker.formats:
        fmt, data = conv.convert(dict(the_job, format="png"))
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == (794, 1123)
    with pytest.raises(ConversionError, match="page range"):
        conv.convert(dict(the_job, pageStart=2, pageEnd=3))


# -- the CLI against a real XML-RPC server ---------------------------------------------------------


@pytest.mark.libreoffice
def test_cli_run_once_converts_a_polled_job(fake_server, odf_docs, tmp_path, monkeypatch):
    monkeypatch.setenv("CONVHUB_FACTORY_SECRET", fake_server.secret)
    fake_server.jobs.append(
        {
            "job": "4975c9c6-79a0-43a1-8134-0ba5c0a80105",
            "application": "LibreOffice Writer",
            "version": libreoffice_version(),
            "pageStart": 2,
            "pageEnd": 3,
            "format": "pdf",
            "filename": "mydocument.odt",
            "doctype": "odt",
            "document": base64.b64encode(odf_docs["odt"]).decode(),
            "lease": "tok-1",
            "leaseExpires": "20991231T00:00:00",
            "attempt": 1,
        }
    )
    ini = tmp_path / "f.ini"
    ini.write_text(f"[factory]\nworkdir = {tmp_path / 'work'}\n[libreoffice]\nenabled = yes\n")
    rc = cli.standalone(
        [
            "run",
            "--server",
            fake_server.url,
            "--name",
            fake_server.name,
            "--config",
            str(ini),
            "--once",
            "--timeout",
            "60",
        ]
    )
    assert rc == 0
    methods = [c[0] for c in fake_server.calls]
    assert methods[0] == "poll" and "extend" in methods and methods[-1] == "finish"
    _, name, job_id, fmt, data, lease = fake_server.calls[-1]
    assert (name, job_id, fmt, lease) == (
        fake_server.name,
        "4975c9c6-79a0-43a1-8134-0ba5c0a80105",
        "pdf",
        "tok-1",
    )
    assert pdf_pages(data) == 2
    expected = "Basic " + base64.b64encode(f"{fake_server.name}:{fake_server.secret}".encode()).decode()
    assert set(fake_server.auth_headers) == {expected}
    assert os.path.isdir(tmp_path / "work" / "profile-0")
