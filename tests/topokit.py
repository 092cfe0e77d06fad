"""Shared pieces of the tests that run convhub's real processes on sockets (tests/e2e/test_topology.py,
tests/soak/): a SOAP client that speaks the wire by hand, the environment the processes get, a table
of started processes with one log each, and a look into /proc (children, who holds which socket).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
CONVHUB = [sys.executable, "-m", "app.cli"]
NS = "http://www.yospace.com/tundra/ContentService/"
SOAP_PATH = "/cds-controller/contentService"


# ------------------------------------------------------------------ SOAP by hand


def envelope(client: str, secret: str, op: str, **fields: str) -> bytes:
    children = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in fields.items())
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        f'xmlns:cs="{NS}"><soapenv:Body><cs:{op}Request>'
        f"<clientApplicationId>{escape(client)}</clientApplicationId>"
        f"<clientApplicationCredentials>{escape(secret)}</clientApplicationCredentials>"
        f"{children}</cs:{op}Request></soapenv:Body></soapenv:Envelope>"
    ).encode()


def local(el: ET.Element, name: str) -> list[ET.Element]:
    """Every descendant of `el` (itself included) whose local name is `name`."""
    return [c for c in el.iter() if c.tag.split("}")[-1] == name]


def soap_response(op: str, content: bytes) -> tuple[str, ET.Element]:
    """The status and the <opResponse> element of a SOAP answer."""
    root = ET.fromstring(content)
    out = next(el for el in root.iter() if el.tag.endswith(f"{op}Response"))
    status = next(el.text for el in out.iter() if el.tag.split("}")[-1] == "status")
    return status or "", out


def soap_call(session: requests.Session, base: str, body: bytes, timeout: float = 30) -> requests.Response:
    return session.post(base + SOAP_PATH, data=body, headers={"Content-Type": "text/xml; charset=utf-8"}, timeout=timeout)


# ------------------------------------------------------------------ processes


def process_env(data_dir: Path, db_url: str, broker_url: str, base: str, **extra: str) -> dict[str, str]:
    """The environment of every convhub process of a test topology: this machine's environment minus
    any CONVHUB_/PROMETHEUS_ setting, plus the test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONVHUB_", "PROMETHEUS_"))}
    env.update(
        CONVHUB_DATA_DIR=str(data_dir),
        CONVHUB_DATABASE_URL=db_url,
        CONVHUB_BROKER_URL=broker_url,
        CONVHUB_PUBLIC_URL=base,
        CONVHUB_LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


class Procs:
    """Started processes by label, each writing to `<tmp>/<label>.log` (appended across restarts).

    Every process leads its own session (process group), so a whole group can be killed at once,
    as a service manager kills a unit's control group.
    """

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp, self.env = tmp, env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.argvs: dict[str, list[str]] = {}
        self.optional: set[str] = set()  # labels whose exit is not a failure (factories stop by themselves)

    @property
    def items(self) -> list[tuple[str, subprocess.Popen[bytes]]]:
        return list(self.procs.items())

    def start(self, label: str, argv: list[str], *, optional: bool = False) -> subprocess.Popen[bytes]:
        with (self.tmp / f"{label}.log").open("ab") as fh:
            p = subprocess.Popen(
                argv, cwd=ROOT, env=self.env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.procs[label], self.argvs[label] = p, argv
        if optional:
            self.optional.add(label)
        return p

    def restart(self, label: str) -> subprocess.Popen[bytes]:
        return self.start(label, self.argvs[label], optional=label in self.optional)

    def reap(self, label: str, timeout: float = 10) -> None:
        """Wait for a killed process to be gone (and collect its exit status)."""
        p = self.procs[label]
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def check_alive(self) -> None:
        for label, p in self.procs.items():
            if p.poll() is not None and label not in self.optional:
                pytest.fail(f"{label} exited with {p.returncode}:\n{self.tail(label)}")

    def tail(self, label: str) -> str:
        path = self.tmp / f"{label}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def logs(self) -> list[Path]:
        return sorted(self.tmp.glob("*.log"))

    def stop(self, labels: list[str] | None = None) -> None:
        chosen = [(lb, p) for lb, p in self.procs.items() if labels is None or lb in labels]
        for _, p in chosen:
            if p.poll() is None:
                p.terminate()
        for _, p in chosen:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            # A group leader that exited may leave children behind (a web server's workers).
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


# ------------------------------------------------------------------ /proc


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def children(pid: int) -> dict[int, str]:
    """Direct children of `pid`: pid -> command line."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _ppid(int(entry.name)) == pid:
            try:
                out[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
    return out


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        kids = list(children(todo.pop()))
        found += kids
        todo += kids
    return found


def _socket_inodes(pid: int) -> set[int]:
    out = set()
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return out
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out


def _tcp_table() -> dict[int, tuple[int, int]]:
    """Socket inode -> (local port, remote port) for every TCP socket of this network namespace."""
    table = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            try:
                table[int(f[9])] = (int(f[1].rsplit(":", 1)[1], 16), int(f[2].rsplit(":", 1)[1], 16))
            except (IndexError, ValueError):
                continue
    return table


def serving_process(client_pid: int, server_pids: list[int], server_port: int) -> int | None:
    """Which of `server_pids` holds the other end of a connection that `client_pid` has open to
    `server_port` (the web worker serving that client's request, on a kept-alive connection)."""
    tcp = _tcp_table()
    client_ports = {tcp[i][0] for i in _socket_inodes(client_pid) if i in tcp and tcp[i][1] == server_port}
    if not client_ports:
        return None
    for pid in server_pids:
        if any(i in tcp and tcp[i][0] == server_port and tcp[i][1] in client_ports for i in _socket_inodes(pid)):
            return pid
    return None
