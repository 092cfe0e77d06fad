"""Unit tests of job parsing, ODF checks, the INI format and CLI argument handling (no renderer runs)."""

import argparse
import base64
import io
import xmlrpc.client
import zipfile

import pytest

from app.factory import cli
from app.factory.config import command_converter, load_config
from app.factory.converters import CommandConverter, CompositeConverter, check_odf, parse_job, worker_dict
from app.factory.errors import ConfigError, ConversionError


def odf_bytes(mimetype="application/vnd.oasis.opendocument.text"):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zipfile.ZipInfo("mimetype"), mimetype)
        zf.writestr("content.xml", "<x/>")
    return buf.getvalue()


def test_parse_job_decodes_base64_text_and_string_pages():
    doc = odf_bytes()
    job = parse_job(
        {
            "job": "g",
            "doctype": "ODT",
            "format": "",
            "pageStart": "2",
            "pageEnd": "3",
            "document": base64.b64encode(doc).decode(),
        }
    )
    assert (job.doctype, job.format, job.first_page, job.last_page, job.document) == ("odt", "pdf", 2, 3, doc)
    assert not job.whole_document
    assert parse_job({"doctype": "odp", "document": xmlrpc.client.Binary(b"x")}).document == b"x"
    assert parse_job({"doctype": "ods", "pageStart": 1, "document": b"x"}).whole_document


@pytest.mark.parametrize(
    "job, message",
    [
        ({"doctype": "doc", "document": b"x"}, "doctype"),
        ({"doctype": "odt", "format": "gif", "document": b"x"}, "format"),
        ({"doctype": "odt", "pageStart": 4, "pageEnd": 2, "document": b"x"}, "page range"),
        ({"doctype": "odt", "pageStart": -1, "document": b"x"}, "negative"),
        ({"doctype": "odt", "pageStart": "two", "document": b"x"}, "not a number"),
        ({"doctype": "odt", "document": "!!!"}, "base64"),
        ({"doctype": "odt"}, "no document"),
    ],
)
def test_parse_job_rejects(job, message):
    with pytest.raises(ConversionError, match=message):
        parse_job(job)


def test_check_odf():
    check_odf(odf_bytes(), "odt")
    check_odf(odf_bytes("application/vnd.oasis.opendocument.text-template"), "odt")
    with pytest.raises(ConversionError, match="not ods"):
        check_odf(odf_bytes(), "ods")
    with pytest.raises(ConversionError, match="not an ODF package"):
        check_odf(b"%PDF-1.4", "odt")


def test_ini_file(tmp_path, monkeypatch):
    monkeypatch.delenv("CONVHUB_FACTORY_SECRET", raising=False)
    (tmp_path / "secret").write_text("s3cret\n")
    ini = tmp_path / "f.ini"
    ini.write_text(
        "[factory]\nserver = http://h\nname = f1\nsecret_file = secret\nconcurrency = 3\ntimeout = 9\n"
        "restart_every = 0\n[libreoffice]\nenabled = no\n"
        "[command:cat]\napplication = Cat\nversion = 1.0\ndoctypes = odt\nformats = odf, pdf\n"
        "command = cp {input} {output}\ncommand_pdf = sh -c 'exit 1'\npage_ranges = yes\n"
    )
    cfg = load_config(ini)
    assert (cfg.server, cfg.name, cfg.secret, cfg.concurrency, cfg.timeout, cfg.restart_every) == (
        "http://h",
        "f1",
        "s3cret",
        3,
        9.0,
        0,
    )
    assert cfg.libreoffice == "no"
    conv = command_converter(cfg.commands[0], cfg)
    assert isinstance(conv, CommandConverter)
    # formats = odf, pdf: a worker's formats are a set (app.domain's WorkerSpec), shown in the domain's order
    assert worker_dict(conv.workers()[0]) == {
        "application": "Cat",
        "version": "1.0",
        "doctypes": ["odt"],
        "formats": ["pdf", "odf"],
    }
    assert conv.default_format == "odf" and conv.page_ranges and conv.timeout == 9.0
    assert conv.commands == {"odf": "cp {input} {output}", "pdf": "sh -c 'exit 1'"}


@pytest.mark.parametrize(
    "text, message",
    [
        ("[factory]\nconcurrency = many\n", "invalid literal"),
        ("[bogus]\n", "unknown section"),
        ("[command:x]\napplication = X\nversion = 1\ndoctypes = odt\nformats = pdf\n", "needs command"),
        ("[command:x]\napplication = X\ndoctypes = odt\nformats = pdf\ncommand = true\n", "version"),
        (
            "[command:x]\napplication = X\nversion = 1\ndoctypes = doc\nformats = pdf\ncommand = true\n",
            "unknown doctype",
        ),
        (
            "[command:x]\napplication = X\nversion = 1\ndoctypes = odt\nformats = pdf\ncommand = true\nfoo = 1\n",
            "unknown option",
        ),
        (
            "[command:x]\napplication = X\nversion = 1\ndoctypes = odt\nformats = pdf\ncommand = 'unclosed\n",
            "quotation",
        ),
    ],
)
def test_bad_ini(tmp_path, text, message):
    ini = tmp_path / "f.ini"
    ini.write_text(text)
    with pytest.raises(ConfigError, match=message):
        cfg = load_config(ini)
        for section in cfg.commands:
            command_converter(section, cfg)


def test_version_command_probe(tmp_path):
    ini = tmp_path / "f.ini"
    ini.write_text(
        "[command:x]\napplication = X\nversion_command = echo tool version 3.14.1\n"
        "doctypes = odt\nformats = pdf\ncommand = true\n"
    )
    cfg = load_config(ini)
    assert command_converter(cfg.commands[0], cfg).workers()[0].version == "3.14"


def test_composite_routes_by_application_and_version():
    a = CommandConverter("a", application="A", version="1", doctypes=["odt"], formats=["pdf"], command="true")
    b = CommandConverter("b", application="A", version="2", doctypes=["odt"], formats=["pdf"], command="true")
    comp = CompositeConverter([a, b])
    assert comp.backend_for({"application": "A", "version": "2"}) is b
    with pytest.raises(ConversionError, match="no worker for A 3"):
        comp.backend_for({"application": "A", "version": "3"})
    with pytest.raises(ConfigError, match="two backends"):
        CompositeConverter([a, a])


def parse_cli(argv):
    parser = argparse.ArgumentParser(prog="convhub")
    cli.add_subcommands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_registers_run_with_all_flags(monkeypatch):
    monkeypatch.setenv("CONVHUB_FACTORY_SECRET", "from-env")
    args = parse_cli(
        [
            "factory",
            "run",
            "--server",
            "http://h",
            "--name",
            "n",
            "--concurrency",
            "2",
            "--timeout",
            "30",
            "--restart-every",
            "50",
            "--once",
        ]
    )
    assert args.func is cli.main and args.once
    cfg = cli.config_from_args(args)
    assert (cfg.server, cfg.name, cfg.secret, cfg.concurrency, cfg.timeout, cfg.restart_every) == (
        "http://h",
        "n",
        "from-env",
        2,
        30.0,
        50,
    )
    args = parse_cli(["factory", "run", "--secret", "flag", "--server", "http://h", "--name", "n"])
    assert cli.config_from_args(args).secret == "flag"


def test_cli_errors_are_one_line_and_nonzero(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("CONVHUB_FACTORY_SECRET", raising=False)
    assert cli.standalone(["run", "--server", "http://h"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing --name" in err and "CONVHUB_FACTORY_SECRET" in err
    assert cli.standalone(["run", "--config", str(tmp_path / "nope.ini")]) == 2
    assert "cannot read" in capsys.readouterr().err
