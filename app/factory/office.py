"""Warm LibreOffice instances: one ``soffice --headless --accept=pipe`` listener per instance, driven
through a small UNO bridge process (``uno_bridge.py``) run by the system python that has python3-uno.

Why two processes: convhub may run in any interpreter (a venv, pyenv), while the ``uno`` module only
exists for the system python that Debian built it for. The bridge keeps one UNO connection open, so
a conversion costs a JSON line each way instead of a LibreOffice start (see docs/factory.md).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import secrets
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import ConversionCancelled, ConversionError, ConversionTimeout

log = logging.getLogger("convhub.factory.office")

BRIDGE_SCRIPT = Path(__file__).with_name("uno_bridge.py")
DEFAULT_UNO_PYTHON = "/usr/bin/python3"
_POLL_SLICE = 0.2  # how often a waiting conversion looks at its cancel event


class _BridgeGone(Exception):
    """The bridge's stdout closed: the bridge or soffice died."""


class OfficeInstance:
    """One warm soffice listener with a private user profile, plus its bridge.

    Not thread-safe: the pool hands an instance to one thread at a time.
    """

    def __init__(
        self,
        index: int,
        workdir: str | os.PathLike[str],
        *,
        soffice: str = "soffice",
        python: str = DEFAULT_UNO_PYTHON,
        restart_every: int = 200,
        startup_timeout: float = 60.0,
    ):
        self.index = index
        self.workdir = Path(workdir)
        self.profile = self.workdir / f"profile-{index}"
        self.soffice = soffice
        self.python = python
        self.restart_every = restart_every
        self.startup_timeout = startup_timeout
        self.conversions = 0  # since the last (re)start
        self.total_conversions = 0
        self.starts = 0
        self.version = ""
        self._office: subprocess.Popen[bytes] | None = None
        self._bridge: subprocess.Popen[bytes] | None = None
        self._buf = b""
        self._seq = 0

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """Pid (and process group id) of the soffice launcher, for signals in tests and ops."""
        return self._office.pid if self._office else None

    def alive(self) -> bool:
        return (
            self._office is not None
            and self._office.poll() is None
            and self._bridge is not None
            and self._bridge.poll() is None
        )

    def start(self) -> None:
        self.stop()
        self.profile.mkdir(parents=True, exist_ok=True)
        # A fresh pipe name per start, so a bridge can never reach a dying predecessor.
        pipe = f"convhub-{os.getpid()}-{self.index}-{secrets.token_hex(4)}"
        connect = f"pipe,name={pipe};urp;StarOffice.ComponentContext"
        logf = open(self.workdir / f"instance-{self.index}.log", "wb")  # (handed to Popen)
        try:
            self._office = subprocess.Popen(
                [
                    self.soffice,
                    "--headless",
                    "--invisible",
                    "--nologo",
                    "--norestore",
                    "--nodefault",
                    "--nolockcheck",
                    "--nofirststartwizard",
                    f"-env:UserInstallation={self.profile.resolve().as_uri()}",
                    f"--accept={connect}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=logf,
                start_new_session=True,  # own process group: one killpg reaches oosplash and soffice.bin
            )
            self._bridge = subprocess.Popen(
                [
                    self.python,
                    str(BRIDGE_SCRIPT),
                    "--connect",
                    connect,
                    "--connect-timeout",
                    str(self.startup_timeout),
                    # A factory killed outright leaves no soffice behind: the bridge kills it.
                    "--parent",
                    str(os.getpid()),
                    "--office-group",
                    str(self._office.pid),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=logf,
                start_new_session=True,
            )
        except OSError as exc:
            self.stop()
            raise ConversionError(f"cannot start LibreOffice: {exc}") from exc
        finally:
            logf.close()
        self._buf = b""
        try:
            ready = self._read_line(time.monotonic() + self.startup_timeout + 5, None)
        except (_BridgeGone, TimeoutError) as exc:
            self.stop(kill=True)
            raise ConversionError(
                f"LibreOffice instance {self.index} did not start ({exc or 'no reply'})"
            ) from exc
        if ready.get("event") != "ready":
            self.stop(kill=True)
            raise ConversionError(f"LibreOffice instance {self.index} did not start: {ready.get('error')}")
        self.version = ready.get("version", "")
        self.conversions = 0
        self.starts += 1
        log.info("LibreOffice instance %d ready (pid %s, %s)", self.index, self.pid, self.version)

    def stop(self, kill: bool = False) -> None:
        """Stop soffice and the bridge; ``kill`` skips the polite SIGTERM (hung or stopped soffice)."""
        bridge, office = self._bridge, self._office
        self._bridge = self._office = None
        if bridge is not None:
            with contextlib.suppress(OSError):
                if bridge.stdin:
                    bridge.stdin.close()
            _kill_group(bridge, signal.SIGKILL)
            bridge.wait()
            if bridge.stdout:
                bridge.stdout.close()
        if office is not None:
            if not kill and office.poll() is None:
                _kill_group(office, signal.SIGTERM)
                try:
                    office.wait(5)
                except subprocess.TimeoutExpired:
                    pass
            _kill_group(office, signal.SIGKILL)
            office.wait()

    def restart(self, reason: str, *, kill: bool = True, fresh_profile: bool = False) -> None:
        log.warning("restarting LibreOffice instance %d: %s", self.index, reason)
        self.stop(kill=kill)
        if fresh_profile:
            # After a crash or kill the profile may be half-written; a new one costs ~1 s once.
            shutil.rmtree(self.profile, ignore_errors=True)
        self.start()

    # -- work ----------------------------------------------------------------------------------

    def call(self, request: dict[str, Any], timeout: float, cancel: threading.Event | None = None) -> dict[str, Any]:
        """Send one request to the bridge and wait for its reply, at most ``timeout`` seconds.

        A hung instance is killed and restarted; the failure is raised as ConversionTimeout,
        ConversionCancelled or (crash) ConversionError.
        """
        if not self.alive():
            self.restart("not running", fresh_profile=self.starts > 0)
        self._seq += 1
        request = dict(request, id=self._seq)
        deadline = time.monotonic() + timeout
        assert self._bridge is not None and self._bridge.stdin is not None
        try:
            self._bridge.stdin.write(json.dumps(request).encode() + b"\n")
            self._bridge.stdin.flush()
            while True:
                reply = self._read_line(deadline, cancel)
                if reply.get("id") == self._seq:
                    break
        except TimeoutError:
            self._recover(f"conversion exceeded {timeout:g} s")
            raise ConversionTimeout(f"LibreOffice did not finish within {timeout:g} s") from None
        except _Cancelled:
            self._recover("conversion cancelled")
            raise ConversionCancelled("conversion cancelled") from None
        except (_BridgeGone, OSError):
            self._recover("LibreOffice crashed")
            raise ConversionError("LibreOffice crashed while converting the document") from None
        self.conversions += 1
        self.total_conversions += 1
        if not reply.get("ok") and not self.alive():
            self._recover("LibreOffice crashed")
            raise ConversionError("LibreOffice crashed while converting the document")
        if self.restart_every and self.conversions >= self.restart_every:
            # Long-lived soffice grows and leaks; a planned restart keeps the profile.
            with contextlib.suppress(ConversionError):
                self.restart(f"after {self.conversions} conversions", kill=False)
        return reply

    def _recover(self, reason: str) -> None:
        try:
            self.restart(reason, kill=True, fresh_profile=True)
        except ConversionError as exc:
            # The next call retries the start; the job in hand fails with its own reason.
            log.error("LibreOffice instance %d failed to restart: %s", self.index, exc)

    def _read_line(self, deadline: float, cancel: threading.Event | None) -> dict[str, Any]:
        assert self._bridge is not None and self._bridge.stdout is not None
        fd = self._bridge.stdout.fileno()
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line, self._buf = self._buf[:nl], self._buf[nl + 1 :]
                try:
                    reply: dict[str, Any] = json.loads(line)
                    return reply
                except ValueError:
                    continue  # not ours (e.g. a stray print from a UNO component)
            if cancel is not None and cancel.is_set():
                raise _Cancelled
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], min(remaining, _POLL_SLICE))
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise _BridgeGone("bridge exited")
                self._buf += chunk


class _Cancelled(Exception):
    pass


def _kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


class OfficePool:
    """``size`` warm instances; a thread borrows one with ``with pool.instance() as inst:``."""

    def __init__(
        self,
        size: int = 1,
        *,
        workdir: str | os.PathLike[str] | None = None,
        soffice: str = "soffice",
        python: str = DEFAULT_UNO_PYTHON,
        restart_every: int = 200,
        startup_timeout: float = 60.0,
    ):
        if size < 1:
            raise ValueError("pool size must be at least 1")
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="convhub-factory-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.instances = [
            OfficeInstance(
                i,
                self.workdir,
                soffice=soffice,
                python=python,
                restart_every=restart_every,
                startup_timeout=startup_timeout,
            )
            for i in range(size)
        ]
        self._free: queue.Queue[OfficeInstance] = queue.Queue()
        for inst in self.instances:
            self._free.put(inst)
        self._closed = False

    def start(self) -> None:
        """Start every instance now (in parallel) rather than on first use."""
        errors: list[Exception] = []

        def run(inst: OfficeInstance) -> None:
            try:
                if not inst.alive():
                    inst.start()
            except Exception as exc:  # reported below, in the caller's thread
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in self.instances]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    @contextlib.contextmanager
    def instance(self, timeout: float | None = None) -> Iterator[OfficeInstance]:
        if self._closed:
            raise ConversionError("LibreOffice pool is closed")
        try:
            inst = self._free.get(timeout=timeout)
        except queue.Empty:
            raise ConversionTimeout("no free LibreOffice instance") from None
        try:
            yield inst
        finally:
            self._free.put(inst)

    def close(self) -> None:
        self._closed = True
        for inst in self.instances:
            inst.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> OfficePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
