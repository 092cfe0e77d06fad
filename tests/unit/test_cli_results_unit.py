"""The client commands' pure parts: target choice, file names, the wait loop, the upload's length."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest

from app.cli_results import (
    TIMED_OUT,
    CommandFailed,
    StatusLine,
    choose_target,
    default_output,
    describe,
    require_complete,
    safe_name,
    wait_for_end,
)
from app.convert_client import PART_BYTES, ContentServiceClient, JobStatus, ResultInfo, encoded_length
from app.domain.matching import WorkerSpec

TARGETS = [
    WorkerSpec.parse("LibreOffice Writer|7.4|odt|pdf,png,odf"),
    WorkerSpec.parse("LibreOffice Writer|7.10|odt|pdf,png"),
    WorkerSpec.parse("AbiWord|3.0|odt|pdf"),
    WorkerSpec.parse("LibreOffice Calc|7.4|ods|pdf,png,odf"),
    WorkerSpec.parse("Gnumeric|1.12|ods|pdf"),
]


def pick(doctype: str, fmt: str, application: str | None = None, version: str | None = None, targets=TARGETS):  # type: ignore[no-untyped-def]
    t = choose_target(targets, doctype, fmt, application, version, where="here", hint="start one")
    return t.application, t.version


def test_the_doctypes_usual_application_at_its_highest_version():
    assert pick("odt", "pdf") == ("LibreOffice Writer", "7.10")  # 7.10 > 7.4: versions compare as numbers
    assert pick("odt", "odf") == ("LibreOffice Writer", "7.4")  # 7.10 does not produce odf
    assert pick("ods", "png") == ("LibreOffice Calc", "7.4")
    assert pick("odt", "pdf", targets=[t for t in TARGETS if "Writer" not in t.application]) == ("AbiWord", "3.0")


def test_asked_application_and_version_win():
    assert pick("odt", "pdf", "AbiWord") == ("AbiWord", "3.0")
    assert pick("odt", "pdf", None, "7.4") == ("LibreOffice Writer", "7.4")
    assert pick("ods", "pdf", "Gnumeric", "1.12") == ("Gnumeric", "1.12")


def test_nothing_serves_it_says_so_and_how_to_start_one():
    with pytest.raises(CommandFailed, match=r"no registered factory converts odp to pdf at here; start one") as exc:
        pick("odp", "pdf")
    assert exc.value.code == 1
    with pytest.raises(CommandFailed, match=r"with AbiWord 9 at here \(served: LibreOffice Writer 7.4, LibreOffice Writer 7.10, AbiWord 3.0\)"):
        pick("odt", "pdf", "AbiWord", "9")
    with pytest.raises(CommandFailed, match="no registered factory converts odt to pdf"):
        pick("odt", "pdf", targets=[])


def test_server_file_names_cannot_leave_the_directory():
    assert safe_name("report.pdf", "x") == "report.pdf"
    assert safe_name("../../etc/passwd", "x") == "passwd"
    assert safe_name("/abs/path/r.png", "x") == "r.png"
    assert safe_name("a\\..\\b.pdf", "x") == "b.pdf"
    for bad in ("", "..", ".", ".bashrc", "dir/"):
        assert safe_name(bad, "fallback.pdf") == "fallback.pdf"


def test_default_output_names():
    r = ResultInfo("png", "server-name.png", 10)
    assert default_output(Path("/docs/report.odt"), "pdf")(r) == "report.pdf"
    assert default_output(Path("/docs/sheet.ods"), "odf")(r) == "sheet.ods"
    assert default_output(Path("/docs/report.odt"), "png")(r) == "server-name.png"
    assert default_output(Path("/docs/report.odt"), "png")(ResultInfo("png", "../", 1)) == "report.png"


def test_upload_length_is_the_length_of_the_encoded_parts():
    for size in (0, 1, 2, 3, 4, PART_BYTES - 1, PART_BYTES, PART_BYTES + 1, 2 * PART_BYTES + 2):
        data = bytes(size)
        parts = [data[i : i + PART_BYTES] for i in range(0, size, PART_BYTES)] or [b""]
        assert encoded_length(size) == sum(len(b"<content>" + base64.b64encode(p) + b"</content>") for p in parts), size


def test_client_speaks_the_servers_namespace_and_path():
    from app import convert_client
    from protocol import soap

    assert (convert_client.NS, convert_client.PATH) == (soap.NS, soap.PATH)
    assert ContentServiceClient("http://h:1", "c", "s").endpoint == "http://h:1" + soap.PATH
    assert ContentServiceClient("https://h/prefix/", "c", "s").endpoint == "https://h/prefix" + soap.PATH
    assert ContentServiceClient("http://h" + soap.PATH, "c", "s").endpoint == "http://h" + soap.PATH


def status(state: int, attempts: int = 0, reason: str | None = None) -> JobStatus:
    return JobStatus(7, "g-7", state, attempts, "LibreOffice Writer", "7.4", "pdf", reason)


class ScriptedBackend:
    """Answers status() from a script, one entry per call (the last one repeats)."""

    where = "script"

    def __init__(self, *states: JobStatus) -> None:
        self.states = list(states)
        self.calls = 0

    def status(self, job: str) -> JobStatus:
        self.calls += 1
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]


class Clock:
    def __init__(self) -> None:
        self.t = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


def test_wait_shows_state_attempt_and_elapsed_until_the_end():
    backend = ScriptedBackend(status(0), status(1, 1), status(0, 1, "lease expired"), status(2, 2), status(3, 2))
    out = io.StringIO()
    clock = Clock()
    st = wait_for_end(backend, "7", StatusLine(out, enabled=True), clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]
    assert st.state == 3 and backend.calls == 5
    text = out.getvalue()
    assert "job 7 QUEUED (waiting for a factory)  0:00" in text
    assert "job 7 REQUESTED_FOR_PROCESSING, attempt 1" in text
    assert "job 7 QUEUED, attempt 1 (last: lease expired)" in text
    assert "job 7 PROCESSING, attempt 2  0:00" in text
    assert text.endswith("\r")  # the line is wiped at the end
    assert clock.sleeps == sorted(clock.sleeps) and max(clock.sleeps) <= 2.0


def test_wait_gives_up_after_the_timeout_with_its_own_exit_status():
    clock = Clock()
    with pytest.raises(CommandFailed, match=r"gave up waiting after 5 s: job 7 QUEUED") as exc:
        wait_for_end(ScriptedBackend(status(0)), "7", StatusLine(io.StringIO(), enabled=False), timeout=5, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]
    assert exc.value.code == TIMED_OUT
    assert clock.t - 100.0 >= 5


def test_status_line_is_silent_when_not_a_terminal():
    out = io.StringIO()
    line = StatusLine(out)  # StringIO.isatty() is False: as when stderr is piped
    line.show("job 7 QUEUED")
    line.transfer("uploading", "a.odt")(10, 100)
    line.clear()
    assert out.getvalue() == "" and not line.enabled


def test_failed_and_unfinished_jobs_have_no_result():
    with pytest.raises(CommandFailed, match="job 7 FAILED: not an ODF package"):
        require_complete(status(4, 3, "not an ODF package"))
    with pytest.raises(CommandFailed, match="job 7 PROCESSING, attempt 1: no result yet"):
        require_complete(status(2, 1))
    require_complete(status(3, 1))
    assert describe(status(9)) == "job 7 9"  # a state this client does not know is shown as a number
