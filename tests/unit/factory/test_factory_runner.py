"""Unit tests of the poll loop, backoff and heartbeat with a fake XML-RPC proxy (no network, no sleeping)."""

import datetime as dt
import os
import signal
import threading
import xmlrpc.client

import pytest

from app.factory.backoff import Backoff
from app.factory.converters import Converter, WorkerSpec
from app.factory.errors import ConversionCancelled, ConversionError, ConversionTimeout, DocumentRejected
from app.factory.heartbeat import Heartbeat, heartbeat_interval
from app.factory.runner import FactoryRunner
from app.factory.xmlrpc_client import make_proxy, parse_lease_expires, xmlrpc_url
from app.factory.xmlrpc_lease import XmlRpcLeaseClient

NOW = 1_700_000_000.0


def iso(ts):
    return xmlrpc.client.DateTime(dt.datetime.fromtimestamp(ts, dt.UTC).replace(tzinfo=None))


def make_job(n=1, **extra):
    job = {
        "job": f"guid-{n}",
        "application": "Fake Writer",
        "version": "1.0",
        "pageStart": 0,
        "pageEnd": 0,
        "format": "pdf",
        "filename": "a.odt",
        "doctype": "odt",
        "document": "UEsD",
        "lease": f"lease-{n}",
        "leaseExpires": iso(NOW + 300),
        "attempt": 1,
    }
    job.update(extra)
    return job


class FakeJobs:
    """Scripted jobs.* methods; each script entry is a value to return or an exception to raise."""

    def __init__(self, polls=(), extends=(), finishes=(), fails=()):
        self.scripts = {
            "poll": list(polls),
            "extend": list(extends),
            "finish": list(finishes),
            "fail": list(fails),
        }
        self.defaults = {
            "poll": {},
            "extend": {"leaseExpires": iso(NOW + 300), "cancelled": False},
            "finish": "result-guid",
            "fail": {"jobStatus": 0},
        }
        self.calls = []
        self.lock = threading.Lock()

    def _call(self, method, *args):
        with self.lock:
            self.calls.append((method, args))
            script = self.scripts[method]
            item = script.pop(0) if script else self.defaults[method]
        if isinstance(item, BaseException):
            raise item
        return item

    def poll(self, *a):
        return self._call("poll", *a)

    def extend(self, *a):
        return self._call("extend", *a)

    def finish(self, *a):
        return self._call("finish", *a)

    def fail(self, *a):
        return self._call("fail", *a)

    def named(self, method):
        return [args for m, args in self.calls if m == method]


class FakeProxy:
    def __init__(self, jobs):
        self.jobs = jobs


class FakeConverter(Converter):
    def __init__(self, action=None):
        self.action = action or (lambda job, cancel: ("pdf", b"%PDF-1.4 fake"))
        self.jobs = []

    def workers(self):
        return [WorkerSpec("Fake Writer", "1.0", frozenset({"odt"}), frozenset({"pdf"}))]

    def convert(self, job, deadline_seconds=None, cancel=None):
        self.jobs.append((job, deadline_seconds))
        return self.action(job, cancel)


class Recorder:
    """An injectable sleep: records the delay; after `stop_after` calls it stops the runner."""

    def __init__(self):
        self.delays = []
        self.runner = None
        self.stop_after = None

    def __call__(self, seconds):
        self.delays.append(seconds)
        if self.stop_after is not None and len(self.delays) >= self.stop_after:
            self.runner.stop()


def runner_for(jobs, converter=None, stop_after=None, **kw):
    sleep = Recorder()
    runner = FactoryRunner(
        lambda: FakeProxy(jobs),
        "fac",
        converter or FakeConverter(),
        clock=lambda: NOW,
        sleep=sleep,
        heartbeat_wait=lambda s: None,
        **kw,
    )
    sleep.runner, sleep.stop_after = runner, stop_after
    return runner, sleep


# -- helpers -------------------------------------------------------------------------------------


def test_backoff_doubles_to_thirty_and_resets():
    b = Backoff(1, 30)
    assert [b.next() for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    b.reset()
    assert b.next() == 1
    b.hold_max()
    assert b.next() == 30


@pytest.mark.parametrize(
    "expires, lease, expected",
    [
        (NOW + 300, 300, 100),  # a fresh five-minute lease: every 100 s
        (NOW + 30, 300, 10),  # a third of what is left
        (None, 300, 100),  # unknown expiry: a third of the configured lease
        (None, 60, 20),
        (NOW + 3600, 300, 100),  # never more than a third of the lease length
        (NOW - 5, 300, 0.5),  # already past: extend at once (floor against a hot loop)
    ],
)
def test_heartbeat_interval(expires, lease, expected):
    # The third-of-the-lease rule, without the default 30 s ceiling (tested below).
    assert heartbeat_interval(expires, NOW, lease, maximum=float("inf")) == pytest.approx(expected)


@pytest.mark.parametrize(
    "expires, lease, expected",
    [
        (NOW + 300, 300, 30),  # a fresh five-minute lease: every 30 s, so a cancellation is seen within 30 s
        (None, 300, 30),
        (NOW + 30, 300, 10),  # a third of what is left is shorter
        (None, 60, 20),  # a third of a short lease is shorter
        (NOW - 5, 300, 0.5),
    ],
)
def test_heartbeat_interval_is_at_most_30_s_by_default(expires, lease, expected):
    assert heartbeat_interval(expires, NOW, lease) == pytest.approx(expected)


def test_heartbeat_interval_ceiling_is_configurable():
    assert heartbeat_interval(NOW + 300, NOW, 300, maximum=5) == pytest.approx(5)


def test_parse_lease_expires_forms():
    assert parse_lease_expires(iso(NOW + 10)) == pytest.approx(NOW + 10)
    assert (
        parse_lease_expires("2024-01-02T03:04:05Z")
        == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC).timestamp()
    )
    assert (
        parse_lease_expires("20240102T03:04:05")
        == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC).timestamp()
    )
    assert parse_lease_expires(dt.datetime(2024, 1, 2, 3, 4, 5)) == parse_lease_expires("20240102T03:04:05")
    assert parse_lease_expires(None) is None
    assert parse_lease_expires("garbage") is None


def test_xmlrpc_url_and_auth_header():
    assert xmlrpc_url("https://h.example/") == "https://h.example/xmlrpc"
    assert xmlrpc_url("http://u:p@h:8080/base") == "http://h:8080/base/xmlrpc"
    assert xmlrpc_url("http://h/xmlrpc") == "http://h/xmlrpc"
    with pytest.raises(ValueError):
        xmlrpc_url("ftp://h")
    proxy = make_proxy("http://h:1", "My factory", "s3cret:x", timeout=7)
    transport = proxy._ServerProxy__transport
    host, headers, _ = transport.get_host_info("h:1")
    assert ("Authorization", "Basic TXkgZmFjdG9yeTpzM2NyZXQ6eA==") in headers
    assert "s3cret" not in repr(proxy)


# -- the loop ------------------------------------------------------------------------------------


def test_idle_backoff_then_reset_after_work():
    jobs = FakeJobs(polls=[{}, {}, {}, make_job(), {}, {}])
    runner, sleep = runner_for(jobs, stop_after=5)
    assert runner.run(install_signals=False) == 0
    assert sleep.delays == [1, 2, 4, 1, 2]  # no sleep right after a job: poll again at once
    assert runner.stats["finished"] == 1


def test_success_finishes_with_binary_and_lease():
    jobs = FakeJobs(polls=[make_job()])
    conv = FakeConverter()
    runner, _ = runner_for(jobs, conv, once=True, timeout=42)
    assert runner.run(install_signals=False) == 0
    ((name, job, fmt, data, lease),) = jobs.named("finish")
    assert (name, job, fmt, lease) == ("fac", "guid-1", "pdf", "lease-1")
    assert isinstance(data, xmlrpc.client.Binary) and data.data == b"%PDF-1.4 fake"
    assert jobs.named("extend")[0] == ("fac", "guid-1", "lease-1")  # confirms work at once
    assert conv.jobs[0][1] == 42
    assert not jobs.named("fail")


def test_lease_argument_omitted_when_server_sends_none():
    job = make_job()
    del job["lease"], job["leaseExpires"]
    jobs = FakeJobs(polls=[job])
    runner, _ = runner_for(jobs, once=True)
    runner.run(install_signals=False)
    assert jobs.named("finish")[0][:3] == ("fac", "guid-1", "pdf") and len(jobs.named("finish")[0]) == 4


@pytest.mark.parametrize("error", [ConversionError("bad\ndocument  here"), ConversionTimeout("too slow")])
def test_conversion_error_fails_job_with_one_line(error):
    def boom(job, cancel):
        raise error

    jobs = FakeJobs(polls=[make_job()])
    runner, _ = runner_for(jobs, FakeConverter(boom), once=True)
    runner.run(install_signals=False)
    (args,) = jobs.named("fail")
    assert args == ("fac", "guid-1", error.reason, "lease-1")
    assert "\n" not in args[2]
    assert not jobs.named("finish")


@pytest.mark.parametrize(
    "error", [DocumentRejected("the document is not an ODF package (odt)"), ConversionError("no such page", permanent=True)]
)
def test_permanent_conversion_error_is_reported_permanent(error):
    def boom(job, cancel):
        raise error

    jobs = FakeJobs(polls=[make_job()])
    runner, _ = runner_for(jobs, FakeConverter(boom), once=True)
    runner.run(install_signals=False)
    (args,) = jobs.named("fail")
    assert args == ("fac", "guid-1", error.reason, "lease-1", True)


def test_permanent_flag_needs_the_lease_argument_before_it():
    jobs = FakeJobs()
    XmlRpcLeaseClient(FakeProxy(jobs), "fac").fail("guid-1", None, reason="bad", permanent=True)
    assert jobs.named("fail") == [("fac", "guid-1", "bad")]  # no lease to put before it: not sent


def test_unexpected_converter_exception_fails_job():
    jobs = FakeJobs(polls=[make_job()])
    runner, _ = runner_for(jobs, FakeConverter(lambda j, c: 1 / 0), once=True)
    runner.run(install_signals=False)
    assert jobs.named("fail")[0][2].startswith("factory error: ZeroDivisionError")


def test_finish_409_drops_result_without_retry_or_fail():
    jobs = FakeJobs(polls=[make_job()], finishes=[xmlrpc.client.Fault(409, "lease not held")])
    runner, _ = runner_for(jobs, once=True)
    runner.run(install_signals=False)
    assert len(jobs.named("finish")) == 1 and not jobs.named("fail")
    assert runner.stats["abandoned"] == 1


def test_finish_413_fails_job():
    jobs = FakeJobs(polls=[make_job()], finishes=[xmlrpc.client.Fault(413, "too large")])
    runner, _ = runner_for(jobs, once=True)
    runner.run(install_signals=False)
    assert "too large" in jobs.named("fail")[0][2]


def test_finish_503_is_retried_with_backoff():
    jobs = FakeJobs(
        polls=[make_job()],
        finishes=[xmlrpc.client.Fault(503, "db down"), ConnectionRefusedError(111, "refused"),
                  xmlrpc.client.Fault(429, "too many failed authentications"), "guid-r"],
    )
    runner, sleep = runner_for(jobs, once=True)
    runner.run(install_signals=False)
    assert len(jobs.named("finish")) == 4
    assert sleep.delays == [1, 2, 4]
    assert runner.stats["finished"] == 1


def test_poll_503_and_network_errors_back_off_and_retry():
    jobs = FakeJobs(polls=[xmlrpc.client.Fault(503, "unavailable"), OSError("refused"), make_job()])
    runner, sleep = runner_for(jobs, stop_after=3)
    assert runner.run(install_signals=False) == 0
    assert sleep.delays[:2] == [1, 2]
    assert runner.stats["finished"] == 1


@pytest.mark.parametrize(
    "error",
    [
        xmlrpc.client.Fault(401, "auth"),
        xmlrpc.client.Fault(404, "no such factory"),
        xmlrpc.client.ProtocolError("h/xmlrpc", 401, "Unauthorized", {}),
    ],
)
def test_auth_and_unknown_factory_are_fatal(error):
    jobs = FakeJobs(polls=[error])
    runner, sleep = runner_for(jobs, stop_after=10)
    assert runner.run(install_signals=False) == 1
    assert runner.fatal and "fac" in runner.fatal
    assert sleep.delays == []


def test_disabled_factory_polls_slowly():
    jobs = FakeJobs(polls=[xmlrpc.client.Fault(403, "disabled"), xmlrpc.client.Fault(403, "disabled")])
    runner, sleep = runner_for(jobs, stop_after=2)
    assert runner.run(install_signals=False) == 0
    assert sleep.delays == [30, 30]


def test_once_reports_unreachable_server():
    runner, _ = runner_for(FakeJobs(polls=[OSError("refused")]), once=True)
    assert runner.run(install_signals=False) == 1


def _blocking_converter(started):
    def convert(job, cancel):
        started.set()
        assert cancel.wait(5), "the runner never cancelled the conversion"
        raise ConversionCancelled("cancelled")

    return FakeConverter(convert)


@pytest.mark.parametrize(
    "extend_reply",
    [{"leaseExpires": iso(NOW + 300), "cancelled": True}, xmlrpc.client.Fault(409, "lease lost")],
)
def test_heartbeat_cancel_or_409_abandons_job(extend_reply):
    jobs = FakeJobs(
        polls=[make_job()], extends=[{"leaseExpires": iso(NOW + 300), "cancelled": False}, extend_reply]
    )
    runner, _ = runner_for(jobs, _blocking_converter(threading.Event()), once=True)
    runner.run(install_signals=False)
    assert not jobs.named("finish") and not jobs.named("fail")
    assert runner.stats["abandoned"] == 1


def test_heartbeat_waits_a_third_of_the_remaining_lease():
    clock = [NOW]
    waits = []
    jobs = FakeJobs(
        extends=[
            {"leaseExpires": iso(NOW + 300), "cancelled": False},
            {"leaseExpires": iso(NOW + 90), "cancelled": False},
            xmlrpc.client.Fault(503, "busy"),
            {"leaseExpires": iso(NOW + 300), "cancelled": True},
        ]
    )

    def wait(seconds):
        waits.append(seconds)

    # The third-of-the-lease rule without the default 30 s ceiling (tested below).
    hb = Heartbeat(
        XmlRpcLeaseClient(FakeProxy(jobs), "fac"), "g", "l", NOW + 300, clock=lambda: clock[0], wait=wait, max_interval=float("inf")
    )
    hb._run()  # synchronously: ends when the server says cancelled
    assert waits == [pytest.approx(100), pytest.approx(30), pytest.approx(30)]
    assert hb.lost.is_set() and "cancelled" in hb.reason
    assert len(jobs.named("extend")) == 4


def test_heartbeat_extends_at_least_every_30_s_by_default_and_sees_a_cancellation():
    waits = []
    jobs = FakeJobs(
        extends=[
            {"leaseExpires": iso(NOW + 300), "cancelled": False},
            {"leaseExpires": iso(NOW + 300), "cancelled": True},  # the client cancelled the job
        ]
    )
    cancel = threading.Event()
    hb = Heartbeat(XmlRpcLeaseClient(FakeProxy(jobs), "fac"), "g", "l", NOW + 300, clock=lambda: NOW, wait=waits.append, cancel=cancel)
    hb._run()  # beats at once, then every wait; it ends with the extend answered cancelled
    assert waits and waits == [pytest.approx(30)] * len(waits)
    assert len(jobs.named("extend")) == len(waits) + 1 == 2
    assert hb.cancelled.is_set() and cancel.is_set() and hb.lost.is_set()


def test_sigterm_finishes_job_in_hand_then_exits_zero():
    jobs = FakeJobs(polls=[make_job(), make_job(2)])

    def convert(job, cancel):
        os.kill(os.getpid(), signal.SIGTERM)  # delivered to the main thread, which is in run()
        # The handler runs in the main thread at its next bytecode: the signal lands during this job.
        assert runner.stopping.wait(5)
        return "pdf", b"data"

    before = signal.getsignal(signal.SIGTERM)
    runner, _ = runner_for(jobs, FakeConverter(convert))
    assert runner.run() == 0
    assert [a[1] for a in jobs.named("finish")] == ["guid-1"]
    assert len(jobs.named("poll")) == 1
    assert signal.getsignal(signal.SIGTERM) == before


def test_second_signal_fails_job_in_hand():
    jobs = FakeJobs(polls=[make_job()])

    def convert(job, cancel):
        os.kill(os.getpid(), signal.SIGINT)
        assert runner.stopping.wait(5)  # signals do not queue: let the first one land
        os.kill(os.getpid(), signal.SIGINT)
        assert cancel.wait(5)
        raise ConversionCancelled("cancelled")

    runner, _ = runner_for(jobs, FakeConverter(convert))
    assert runner.run() == 0
    assert jobs.named("fail")[0][2] == "factory shutting down"


def test_concurrency_runs_slots_in_parallel():
    jobs = FakeJobs(polls=[make_job(1), make_job(2)])
    both = threading.Barrier(2, timeout=5)

    def convert(job, cancel):
        both.wait()  # only passes when two conversions run at the same time
        return "pdf", job["job"].encode()

    runner, _ = runner_for(jobs, FakeConverter(convert), concurrency=2, once=True)
    assert runner.run(install_signals=False) == 0
    assert sorted(a[1] for a in jobs.named("finish")) == ["guid-1", "guid-2"]
