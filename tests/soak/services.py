"""Private PostgreSQL, Redis and RabbitMQ instances, and a size-limited data directory, for the loss
soak (tests/soak/test_loss.py): each can be stopped, restarted, wiped or filled without touching the
shared services that other tests and CI use.

Every class starts its process itself, owns it by pid and stops only that process. A missing binary
or a refused mount raises `Unavailable` with the reason; the test turns it into a skip (or a failure
under CI=true, like every real-service fixture).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import free_port, port_open, wait_for


class Unavailable(Exception):
    """This private service cannot run on this machine (the message says why)."""


def _which(path: str) -> str:
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise Unavailable(f"{path} is not installed")
    return path


def _run(argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 60) -> str:
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])}... exited {out.returncode}: {(out.stderr or out.stdout)[-800:]}")
    return out.stdout


class PrivateRedis:
    """`redis-server` with persistence off: a restart loses every queue, as the soak wants."""

    def __init__(self, workdir: Path) -> None:
        self.binary = shutil.which("redis-server") or ""
        if not self.binary:
            raise Unavailable("redis-server is not installed")
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        with (self.dir / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.dir)],
                stdout=log, stderr=subprocess.STDOUT,
            )
        wait_for(lambda: port_open("127.0.0.1", self.port), 20, "the private redis-server")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=20)
        self.proc = None

    def restart(self) -> None:
        """Kill it (no save) and start it again on the same port: every queue and binding is gone."""
        self.kill()
        self.start()
        self.restarts += 1


class PrivatePostgres:
    """A throw-away cluster (initdb + pg_ctl) on a free port, owned by the postgres user when run as
    root (initdb refuses root). fsync is off: the soak tests availability, not the disk."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
        if not bins:
            raise Unavailable("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
        self.bin = bins[-1]
        self.initdb, self.pg_ctl = _which(f"{self.bin}/initdb"), _which(f"{self.bin}/pg_ctl")
        self.as_user: list[str] = []
        # Outside pytest's tmp_path: that tree is private to root, and the server runs as postgres.
        self.dir = Path(tempfile.mkdtemp(prefix="convhub-soak-pg-"))
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise Unavailable("running as root and there is no postgres user to own the cluster") from exc
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.data = self.dir / "data"
        self.port = free_port()
        self.stops = 0

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/convhub"

    def init(self) -> None:
        _run(self.as_user + [self.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"],
             timeout=120)
        self.start()
        _run(self.as_user + [f"{self.bin}/psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "postgres",
                             "-qc", "CREATE DATABASE convhub"])

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        _run(self.as_user + [self.pg_ctl, "-D", str(self.data), "-o", opts, "-l", str(self.dir / "server.log"), "-w", "start"])

    def stop(self) -> None:
        """Fast shutdown: every session is terminated, new connections are refused."""
        _run(self.as_user + [self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop"])
        self.stops += 1

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(self.as_user + [self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


RABBIT_BIN = "/usr/lib/rabbitmq/bin"


class PrivateRabbitMQ:
    """A RabbitMQ node of its own (name, ports, database, logs, cookie and plugins in a temp dir),
    beside the shared `rabbit` node. Debian's /usr/sbin wrappers switch to the rabbitmq user; the
    scripts behind them run as root with HOME pointing at the private dir.

    Erlang resolves host names itself and, with the machine's unreachable name server, every node
    boot and every start_app waited ~20 s for DNS timeouts: an inetrc that looks in /etc/hosts
    first makes both take about a second."""

    def __init__(self, workdir: Path) -> None:
        if os.geteuid() != 0:
            raise Unavailable("a private RabbitMQ node needs root here (Debian's scripts run as root or rabbitmq)")
        self.server, self.ctl = _which(f"{RABBIT_BIN}/rabbitmq-server"), _which(f"{RABBIT_BIN}/rabbitmqctl")
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port, self.dist_port = free_port(), free_port()
        self.node = f"soak-{self.port}@localhost"
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "inetrc").write_text('{lookup, [file, native]}.\n{hosts_file, "/etc/hosts"}.\n')
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        self.env.update(
            HOME=str(self.dir),
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(self.dir / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.dir / "log"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.dir / "enabled_plugins"),
            RABBITMQ_CONFIG_FILE=str(self.dir / "none"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(self.dir / "none-advanced.config"),
            RABBITMQ_CONF_ENV_FILE=str(self.dir / "none-env.conf"),
            RABBITMQ_PID_FILE=str(self.dir / "node.pid"),
            ERL_EPMD_ADDRESS="127.0.0.1",
            ERL_INETRC=str(self.dir / "inetrc"),
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def ctl_run(self, *args: str) -> str:
        return _run([self.ctl, "-n", self.node, *args], env=self.env, timeout=120)

    def start(self) -> None:
        with (self.dir / "node.out").open("ab") as log:
            # In the foreground (not -detached): this Popen is the node, stopped by its own pid.
            self.proc = subprocess.Popen([self.server], env=self.env, cwd=self.dir, stdout=log, stderr=subprocess.STDOUT)

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the private RabbitMQ node exited: {(self.dir / 'node.out').read_text()[-1500:]}")
            return port_open("127.0.0.1", self.port)

        wait_for(up, 120, "the private RabbitMQ node", interval=0.2)

    def wait_app(self) -> None:
        wait_for(lambda: port_open("127.0.0.1", self.port), 60, "RabbitMQ's AMQP listener", interval=0.1)

    def restart(self, *, wipe: bool = False) -> None:
        """stop_app / start_app: every connection is closed. With `wipe`, `reset` in between: every
        queue, binding and message is gone as well (the default user and vhost come back)."""
        self.ctl_run("stop_app")
        if wipe:
            self.ctl_run("reset")
        self.ctl_run("start_app")
        self.wait_app()
        self.restarts += 1

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.ctl_run("stop")
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class SmallDisk:
    """A tmpfs of `size_mb` mounted on `path` (the data directory of the embedded default), and a
    filler file that takes all its free space."""

    def __init__(self, path: Path, size_mb: int) -> None:
        self.path = path
        self.path.mkdir(parents=True, exist_ok=True)
        self.size_mb = size_mb
        self.mounted = False
        out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(path)],
                             capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise Unavailable(f"cannot mount a tmpfs for the data dir: {out.stderr.strip() or out.returncode}")
        self.mounted = True
        self.filler = self.path / "filler.bin"

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self) -> int:
        """Write zeros until the file system refuses (ENOSPC); the bytes written."""
        chunk = b"\0" * (1024 * 1024)
        written = 0
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            for size in (len(chunk), 64 * 1024, 4096, 512):  # down to the last partial megabyte
                while True:
                    try:
                        n = os.write(fd, chunk[:size])
                    except OSError:
                        break
                    written += n
                    if n < size:
                        break
        finally:
            os.close(fd)
        return written

    def release(self) -> None:
        self.filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True, timeout=30)
            self.mounted = False
