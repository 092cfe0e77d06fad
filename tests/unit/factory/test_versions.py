"""Version detection: what the factory reports for LibreOffice, AbiWord and Gnumeric is major.minor
of the program's own `--version` output (the outputs below are the real ones, Debian bookworm and
other releases)."""

from __future__ import annotations

import pytest

from app.factory.converters import major_minor, parse_libreoffice_version, tool_version


@pytest.mark.parametrize(
    "text, version",
    [
        ("LibreOffice 7.4.7.2 40(Build:2)\n", "7.4"),
        ("LibreOffice 24.2.0.3 420(Build:3)", "24.2"),
        ("LibreOffice 7.0.4.2 00(Build:2)", "7.0"),
        ("LibreOffice 25.8.1.1 580(Build:1)\nsome warning", "25.8"),
        ("Warning: failed to launch javaldx\nLibreOffice 6.4.7.2 40(Build:2)", "6.4"),
        ("", None),
        ("soffice: command not found", None),
        ("OpenOffice 4.1.14", None),
    ],
)
def test_libreoffice_version_parsing(text, version):
    assert parse_libreoffice_version(text) == version


@pytest.mark.parametrize(
    "text, version",
    [
        ("3.0.5\n", "3.0"),  # abiword --version
        ("\n3.0.4", "3.0"),
        ("ssconvert version '1.12.55'\ndatadir := '/usr/share/gnumeric/1.12.55'", "1.12"),
        ("ssconvert version '1.12.57'", "1.12"),
        ("2.10", "2.10"),
        ("no version here", None),
        ("", None),
        ("build 7", None),
    ],
)
def test_major_minor(text, version):
    assert major_minor(text) == version


def test_tool_version_of_a_missing_program_is_none(tmp_path):
    assert tool_version([str(tmp_path / "no-such-program"), "--version"]) is None


def test_tool_version_runs_the_program(tmp_path):
    script = tmp_path / "fake-abiword"
    script.write_text("#!/bin/sh\necho 3.0.5\n")
    script.chmod(0o755)
    assert tool_version([str(script), "--version"]) == "3.0"
    noisy = tmp_path / "fake-ssconvert"
    noisy.write_text("#!/bin/sh\necho \"ssconvert version '1.12.55'\" >&2\n")
    noisy.chmod(0o755)
    assert tool_version([str(noisy), "--version"]) == "1.12"
