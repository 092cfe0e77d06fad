"""Rows over HTTP: the ceilings, dispatch poll->finish cycles, and the serving stacks side by side."""

from __future__ import annotations

import base64
import contextlib
import http.client
import os
import socket
import time
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kit import (
    AMQP,
    REDIS,
    Row,
    Server,
    bench_env,
    free_port,
    in_child,
    ms,
    pct,
    python,
    run_clients,
    scratch_pg,
    set_target,
    start_server,
    target_of,
    tmpdir,
    web_argv,
)

CLIENTS = 8
DOC = os.urandom(10 * 1024)  # the 10 KiB document and result of the dispatch rows
SECRET = "bench-secret-1"
IDLE_AUTH = "Basic " + base64.b64encode(f"idle:{SECRET}".encode()).decode()


def xml_call(method: str, *params: str) -> bytes:
    ps = "".join(f"<param><value><string>{p}</string></value></param>" for p in params)
    return f"<?xml version='1.0'?><methodCall><methodName>{method}</methodName><params>{ps}</params></methodCall>".encode()


# ------------------------------------------------------------------ client loops (one process each)


def raw_client(port: int, body: bytes, auth: str, keepalive: bool, *, start_at: float, stop_at: float) -> dict[str, Any]:
    """POST the same body to /xmlrpc in a loop; latencies of the calls inside the window."""
    headers = {"Content-Type": "text/xml"} | ({"Authorization": auth} if auth else {})
    if not keepalive:
        headers["Connection"] = "close"
    conn: http.client.HTTPConnection | None = None
    lat: list[float] = []
    faults = 0
    while (now := time.time()) < stop_at:
        t0 = time.perf_counter()
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/xmlrpc", body, headers)
        resp = conn.getresponse()
        data = resp.read()
        if not keepalive or resp.will_close:
            conn.close()
            conn = None
        if now >= start_at:
            lat.append(time.perf_counter() - t0)
            faults += b"<fault>" in data
    if conn is not None:
        conn.close()
    return {"lat": lat, "faults": faults}


def warm(port: int, body: bytes, auth: str, calls: int = 12, timeout: float = 180) -> None:
    """Until `calls` answers came back: the server's workers have loaded the app (a master may
    listen before its workers are ready) and checked the secret once each (then cached)."""
    headers = {"Content-Type": "text/xml"} | ({"Authorization": auth} if auth else {})
    end, ok = time.monotonic() + timeout, 0
    while ok < calls:
        if time.monotonic() > end:
            raise RuntimeError(f"server on {port} not answering after {timeout} s")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("POST", "/xmlrpc", body, headers | {"Connection": "close"})
            resp = conn.getresponse()
            resp.read()
            conn.close()
            ok += resp.status == 200
        except OSError:
            time.sleep(0.2)


def stdlib_client(port: int, *, start_at: float, stop_at: float) -> dict[str, Any]:
    proxy = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{port}/")
    lat = []
    while (now := time.time()) < stop_at:
        t0 = time.perf_counter()
        proxy.ping()
        if now >= start_at:
            lat.append(time.perf_counter() - t0)
    return {"lat": lat, "faults": 0}


def factory_client(url: str, name: str, *, start_at: float, stop_at: float) -> dict[str, Any]:
    """The reference factory's transport (app.factory.xmlrpc_client: one kept-alive connection):
    poll, and finish every job handed out with a 10 KiB result."""
    from app.factory.xmlrpc_client import make_proxy

    proxy = make_proxy(url, name, SECRET)
    for _ in range(6):  # each web worker checks the secret once (scrypt), then caches it: not in the window
        proxy.system.listMethods()
    poll_lat: list[float] = []
    empty_lat: list[float] = []
    finish_lat: list[float] = []
    result = xmlrpc.client.Binary(DOC)
    while (now := time.time()) < stop_at:  # cycles before start_at warm the server up, unrecorded
        t0 = time.perf_counter()
        job = proxy.jobs.poll(name)
        t1 = time.perf_counter()
        if not job:
            if now >= start_at:
                empty_lat.append(t1 - t0)
            continue
        proxy.jobs.finish(name, job["job"], "pdf", result, job["lease"])
        if now >= start_at:
            poll_lat.append(t1 - t0)
            finish_lat.append(time.perf_counter() - t1)
    return {"poll": poll_lat, "empty": empty_lat, "finish": finish_lat}


def trickler(port: int, conns: int, *, start_at: float, stop_at: float) -> dict[str, Any]:
    """`conns` connections that send a request line and then one header byte per second."""
    socks = []
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"POST /xmlrpc HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)
    alive = conns
    while time.time() < stop_at:
        time.sleep(1)
        for s in socks:
            try:
                s.sendall(b"X")
            except OSError:
                alive -= 1
    for s in socks:
        s.close()
    return {"alive": alive}


def rate(results: list[dict[str, Any]], key: str, seconds: float) -> float:
    return sum(len(r[key]) for r in results) / seconds


def merged(results: list[dict[str, Any]], key: str) -> list[float]:
    return [x for r in results for x in r[key]]


# ------------------------------------------------------------------ ceilings

STDLIB = """
import sys
from xmlrpc.server import SimpleXMLRPCServer
srv = SimpleXMLRPCServer(("127.0.0.1", int(sys.argv[1])), logRequests=False)
srv.register_function(lambda: "pong", "ping")
srv.serve_forever()
"""


def stack_ping(seconds: float) -> list[float]:
    """Latencies of the trivial ping under `convhub web`'s serving stack, 8 keep-alive clients."""
    with tmpdir() as tmp:
        port = free_port()
        argv, mp_dir = web_argv(tmp, port)
        argv = set_target(argv, "wsgi_apps:ping")
        srv = start_server(argv, port, bench_env(PROMETHEUS_MULTIPROC_DIR=mp_dir))
        try:
            warm(port, xml_call("ping"), "")
            res = run_clients(raw_client, [(port, xml_call("ping"), "", True)] * CLIENTS, seconds)
        finally:
            srv.stop()
    return merged(res, "lat")


def ceilings(seconds: float, ctx: dict[str, Any]) -> list[Row]:
    rows = []
    port = free_port()
    srv = start_server([python(), "-c", STDLIB, str(port)], port, bench_env())
    try:
        res = run_clients(stdlib_client, [(port,)] * CLIENTS, seconds)
    finally:
        srv.stop()
    lat = merged(res, "lat")
    ctx["stdlib_ping"] = len(lat) / seconds
    rows.append(Row("ceilings", "stdlib SimpleXMLRPCServer ping, 8 clients",
                    {"calls/s": ctx["stdlib_ping"], "p50_ms": ms(pct(lat, .5)), "p99_ms": ms(pct(lat, .99))}))
    lat = stack_ping(seconds)
    ctx["stack_ping"] = len(lat) / seconds
    rows.append(Row("ceilings", "trivial WSGI ping, `convhub web` granian (2x8), keep-alive, 8 clients",
                    {"calls/s": ctx["stack_ping"], "p50_ms": ms(pct(lat, .5)), "p99_ms": ms(pct(lat, .99))}))
    return rows


# ------------------------------------------------------------------ dispatch


@dataclass
class Stage:
    env: dict[str, str]
    factories: list[str]
    idle: str
    pairs: list[tuple[str, str]]


def empty_queues(tmp: Path, db_url: str, broker_url: str, pairs: list[tuple[str, str]]) -> None:
    """Leave the shared broker as it was: the run's queues emptied."""
    from app.config import Settings
    from app.runtime import build_runtime

    rt = build_runtime(Settings(data_dir=tmp, database_url=db_url, broker_url=broker_url, log_level="WARNING"))
    try:
        for pair in pairs:
            rt.mirror.rebuild(*pair, [])
    finally:
        rt.close()  # (kombu's connection pools are process-wide: closing one closes it for the next runtime)


def seed_dispatch(tmp: Path, db_url: str, broker_url: str, backlog: int) -> Stage:
    """20 pairs; 8 factories serving 3 pairs each (factory k: pairs 3k..3k+2 mod 20); one idle factory
    serving pairs with no jobs; `backlog` QUEUED jobs spread over the 20 pairs, published to the broker."""
    from app.config import Settings
    from app.db.migrate import upgrade
    from app.domain.matching import WorkerSpec
    from app.runtime import build_runtime
    from app.services import admin, submission

    tag = os.urandom(3).hex()
    pairs = [(f"Bench{tag} {i}", "1") for i in range(20)]
    upgrade(db_url)
    settings = Settings(data_dir=tmp, database_url=db_url, broker_url=broker_url, log_level="WARNING")
    rt = build_runtime(settings)
    try:
        rt.mirror.declare(pairs)
        now = rt.now()
        with rt.db.session() as s:
            client_id = admin.add_client(s, now, "bench", "bench").id
            names = []
            for k in range(CLIENTS):
                served = [pairs[(3 * k + j) % 20] for j in range(3)]
                admin.add_factory(s, now, f"f{k}", SECRET, [WorkerSpec(a, v, frozenset({"odt"}), frozenset({"pdf"})) for a, v in served])
                names.append(f"f{k}")
            admin.add_factory(s, now, "idle", SECRET, [WorkerSpec(f"Idle{tag} {i}", "1", frozenset({"odt"}), frozenset({"pdf"})) for i in range(3)])
        with rt.db.session() as s:
            content = submission.upload(s, now, client_id=client_id, filename="doc.odt", parts=DOC, max_bytes=10**6)
        for start in range(0, backlog, 500):
            with rt.db.session() as s:
                for i in range(start, min(backlog, start + 500)):
                    a, v = pairs[i % 20]
                    submission.enqueue(s, now, rt.mirror, client_id=client_id, content=content, application=a, version=v, fmt="pdf")
    finally:
        rt.close()  # (kombu's connection pools are process-wide: closing one closes it for the next runtime)
    env = {"CONVHUB_DATA_DIR": str(tmp), "CONVHUB_DATABASE_URL": db_url, "CONVHUB_BROKER_URL": broker_url, "CONVHUB_LOG_LEVEL": "WARNING"}
    return Stage(env, names, "idle", pairs)


def measure_window(srv: Server, count_dir: Path, fn: Any, args: list[tuple[Any, ...]], seconds: float, lead: float = 1.0) -> tuple[list[dict[str, Any]], float, dict[str, int]]:
    """Run the clients; CPU seconds of the server and statement counts over the same window."""
    import threading

    from wsgi_apps import read_counts

    snaps: dict[str, Any] = {}

    def sample() -> None:
        time.sleep(lead)  # run_clients starts the window `lead` s from now
        snaps["cpu0"], snaps["n0"] = srv.cpu_seconds(), read_counts(count_dir)
        time.sleep(seconds + 0.5)  # + the counters' write interval
        snaps["cpu1"], snaps["n1"] = srv.cpu_seconds(), read_counts(count_dir)

    t = threading.Thread(target=sample)
    t.start()
    res = run_clients(fn, args, seconds, lead)
    t.join()
    counts = {k: snaps["n1"][k] - snaps["n0"][k] for k in snaps["n0"]}
    return res, snaps["cpu1"] - snaps["cpu0"], counts


def start_counted(tmp: Path, env: dict[str, str], argv_edit: Any = None) -> tuple[Server, Path]:
    port = free_port()
    count_dir = tmp / f"counts-{port}"
    count_dir.mkdir()
    argv, mp_dir = web_argv(tmp, port)
    argv = set_target(argv, "wsgi_apps:counted()")
    if argv_edit:
        argv = argv_edit(argv, port)
    srv = start_server(argv, port, bench_env(**env, PROMETHEUS_MULTIPROC_DIR=mp_dir, CONVHUB_BENCH_COUNT_DIR=str(count_dir),
                                             CONVHUB_PUBLIC_URL=f"http://127.0.0.1:{port}"), log=tmp / "web.log")
    return srv, count_dir


def dispatch_one(label: str, seconds: float, backlog: int, ctx: dict[str, Any], db: str, broker: str, lead: float = 4.0) -> list[Row]:
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tmpdir())
        db_url = f"sqlite:///{tmp / 'convhub.db'}" if db == "sqlite" else stack.enter_context(scratch_pg())
        broker_url = {"sqla": f"sqla+sqlite:///{tmp / 'broker.db'}", "redis": REDIS, "amqp": AMQP}[broker]
        t0 = time.monotonic()
        st = in_child(seed_dispatch, tmp, db_url, broker_url, backlog)
        seed_s = time.monotonic() - t0
        # The load on a shared machine varies: the stack's ping is measured again next to this row.
        ping_here = len(stack_ping(min(seconds, 5))) / min(seconds, 5)
        srv, count_dir = start_counted(tmp, st.env)
        try:
            warm(srv.port, xml_call("jobs.poll", "idle"), IDLE_AUTH)
            res, cpu, counts = measure_window(srv, count_dir, factory_client, [(srv.url, n) for n in st.factories], seconds, lead=lead)
            cycles = len(merged(res, "finish"))
            empties_during = len(merged(res, "empty"))
            ires, icpu, icounts = measure_window(srv, count_dir, raw_client,
                                                 [(srv.port, xml_call("jobs.poll", "idle"), IDLE_AUTH, True)] * CLIENTS,
                                                 min(seconds, 5))
        except Exception as exc:
            log = (tmp / "web.log").read_text(errors="replace").strip().splitlines()
            raise RuntimeError(f"{type(exc).__name__}: {exc}; web log: {' | '.join(log[-3:])}") from exc
        finally:
            srv.stop()
            in_child(empty_queues, tmp, db_url, broker_url, st.pairs)
    cps = cycles / seconds
    polls, fins = merged(res, "poll"), merged(res, "finish")
    empty = merged(ires, "lat")
    empty_rate = len(empty) / min(seconds, 5)
    cpu_ms = cpu / cycles * 1000 if cycles else float("nan")
    per = {k: round(v / cycles, 1) if cycles else None for k, v in counts.items()}
    stdlib, ping = ctx.get("stdlib_ping"), ping_here
    r1 = 2 * cps / stdlib if stdlib else None
    r2 = 2 * cps / ping if ping else None
    vals = {"cycles/s": round(cps, 1), "poll_p50_ms": ms(pct(polls, .5)), "poll_p99_ms": ms(pct(polls, .99)),
            "finish_p50_ms": ms(pct(fins, .5)), "finish_p99_ms": ms(pct(fins, .99)), "web_cpu_ms/cycle": round(cpu_ms, 2),
            "stmts/cycle": per["statements"], "begins/cycle": per["transactions"], "checkouts/cycle": per["checkouts"],
            "2xcycles/stdlib": round(r1, 3) if r1 else None, "stack_ping_now/s": round(ping_here),
            "2xcycles/stack_ping": round(r2, 3) if r2 else None,
            "empty_polls_during": empties_during, "seed_s": round(seed_s, 1)}
    met = None if r1 is None or r2 is None else (r1 >= 0.15 and r2 >= 0.5 and cpu_ms <= 3)
    rows = [Row("dispatch", f"poll->finish, 8 factories x 3 of 20 pairs, {label}", vals,
                "2xcycles/stdlib >= 0.15, >= 0.5 x stack ping, web CPU <= 3 ms/cycle", met)]
    e_per = {k: round(v / len(empty), 1) if empty else None for k, v in icounts.items()}
    er = empty_rate / ping if ping else None
    rows.append(Row("dispatch", f"empty polls, 8 clients, {label}",
                    {"polls/s": round(empty_rate, 1), "p50_ms": ms(pct(empty, .5)), "p99_ms": ms(pct(empty, .99)),
                     "web_cpu_ms/poll": round(icpu / len(empty) * 1000, 2) if empty else None, "stmts/poll": e_per["statements"],
                     "checkouts/poll": e_per["checkouts"], "x_stack_ping": round(er, 3) if er else None},
                    ">= 0.8 x stack ping", None if er is None else er >= 0.8))
    return rows


def dispatch(seconds: float, backlog: int, ctx: dict[str, Any], lead: float = 4.0) -> list[Row]:
    rows = []
    for label, db, broker in (("embedded (SQLite + sqla broker)", "sqlite", "sqla"), ("PostgreSQL + Redis", "pg", "redis"),
                              ("PostgreSQL + RabbitMQ", "pg", "amqp")):
        try:
            rows += dispatch_one(label, seconds, backlog, ctx, db, broker, lead)
        except Exception as exc:  # noqa: BLE001 - a row that could not run says why
            rows.append(Row("dispatch", f"poll->finish, {label}", note=f"not run: {type(exc).__name__}: {exc}"))
    return rows


# ------------------------------------------------------------------ serving stacks


def _gunicorn(worker_class: str, workers: int, threads: int = 1, extra: tuple[str, ...] = ()) -> Any:
    """gunicorn (bench extras) as `convhub web` ran it before granian: same timeouts, no config file."""
    def edit(argv: list[str], port: int) -> list[str]:
        return [python(), "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
                "--threads", str(threads), "--worker-class", worker_class, "--timeout", "300", "--graceful-timeout", "20",
                "--access-logfile", "/dev/null", *extra, target_of(argv)]
    return edit


def _waitress(argv: list[str], port: int) -> list[str]:
    target = ["wsgi_apps:ping"] if target_of(argv) == "wsgi_apps:ping" else ["--call", "wsgi_apps:counted"]
    return [python(), "-m", "waitress", "--listen", f"127.0.0.1:{port}", "--threads", "8", *target]


def _granian_direct(argv: list[str], port: int) -> list[str]:
    """`convhub web` with CONVHUB_WEB_BUFFER_BODIES=0: granian's own WSGI interface."""
    from app.web.serving import web_argv as granian_argv

    return set_target(granian_argv("127.0.0.1", port, workers=2, threads=8, buffer_bodies=False), target_of(argv))


SERVERS: list[tuple[str, Any]] = [
    ("convhub web: granian rsgi 2x8, bodies buffered (chosen)", None),
    ("convhub web: granian wsgi 2x8, CONVHUB_WEB_BUFFER_BODIES=0", _granian_direct),
    ("gunicorn gthread 2x8 (before)", _gunicorn("gthread", 2, 8)),
    ("gunicorn sync 4", _gunicorn("sync", 4)),
    ("gunicorn gevent 2x100", _gunicorn("gevent", 2, extra=("--worker-connections", "100"))),
    ("waitress 1x8", _waitress),
]


def serving(seconds: float, ctx: dict[str, Any]) -> list[Row]:
    rows = []
    with tmpdir() as tmp, scratch_pg() as db_url:
        st = in_child(seed_dispatch, tmp, db_url, REDIS, 0)
        auth = IDLE_AUTH
        for name, edit in SERVERS:
            vals: dict[str, Any] = {}
            try:
                for app in ("ping", "poll"):
                    if app == "ping":
                        port = free_port()
                        argv, mp_dir = web_argv(tmp, port)
                        argv = set_target(argv, "wsgi_apps:ping")
                        srv = start_server(edit(argv, port) if edit else argv, port, bench_env(PROMETHEUS_MULTIPROC_DIR=mp_dir), log=tmp / "serving.log")
                        body = xml_call("ping")
                    else:
                        srv, _ = start_counted(tmp, st.env, edit)
                        body = xml_call("jobs.poll", "idle")
                    try:
                        warm(srv.port, body, auth if app == "poll" else "")
                        for ka in (True, False):
                            res = run_clients(raw_client, [(srv.port, body, auth if app == "poll" else "", ka)] * CLIENTS, seconds)
                            lat = merged(res, "lat")
                            key = f"{app}_{'ka' if ka else 'close'}"
                            vals[f"{key}/s"] = round(len(lat) / seconds, 1)
                            vals[f"{key}_p99_ms"] = ms(pct(lat, .99))
                        if app == "poll":  # 200 slow clients trickling headers while 8 pollers poll
                            n = 200
                            args = [(srv.port, body, auth, True)] * CLIENTS + [("trickle", srv.port, n)]
                            res = run_clients(_either, args, seconds)
                            lat = merged([r for r in res if "lat" in r], "lat")
                            vals["poll_ka_with_200_slow/s"] = round(len(lat) / seconds, 1)
                            vals["poll_ka_with_200_slow_p99_ms"] = ms(pct(lat, .99))
                    finally:
                        srv.stop()
                rows.append(Row("serving", name, vals))
            except Exception as exc:  # noqa: BLE001 - a server that is not installable or fails: said so
                rows.append(Row("serving", name, vals, note=f"not run: {type(exc).__name__}: {exc}"))
    return rows


def _either(*args: Any, start_at: float, stop_at: float) -> dict[str, Any]:
    if args[0] == "trickle":
        return trickler(args[1], args[2], start_at=start_at, stop_at=stop_at)
    return raw_client(*args, start_at=start_at, stop_at=stop_at)
