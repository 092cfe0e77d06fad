"""`convhub`: operator commands. Errors are one clear line on stderr and a non-zero exit.

Server commands import the server stack lazily, so `convhub factory run` works on a factory host
that installed convhub without the `server` extra.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from app import cli_compare, cli_results
from app.config import ConfigError, Settings, load_settings


class CliError(Exception):
    """A one-line error for the operator."""


# ---------------------------------------------------------------- helpers


def _settings() -> Settings:
    return load_settings()


def _runtime(broker: bool = True):  # type: ignore[no-untyped-def]
    from app.runtime import build_runtime

    # An operator's command may touch many rows on purpose (removing a client): the maintenance
    # statement timeout, not the web requests' one.
    return build_runtime(_settings(), broker=broker, maintenance=True)


def _print_table(rows: list[dict[str, object]], columns: list[str]) -> None:
    if not rows:
        print("(none)")
        return
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns))


def _secret_or_generate(given: str | None) -> tuple[str, bool]:
    from app.domain.credentials import SHORT_SECRET, generate_secret

    if given is None:
        return generate_secret(), True
    if len(given) < SHORT_SECRET:
        print(f"warning: the secret is short ({len(given)} characters); a generated one is safer", file=sys.stderr)
    return given, False


# ---------------------------------------------------------------- db


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from app.db.migrate import upgrade

    s = _settings()
    upgrade(s.database_url)
    print(f"database at head: {_redact(s.database_url)}")
    return 0


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}" if ":" in creds else url
    return url


# ---------------------------------------------------------------- clients


def cmd_clients_add(args: argparse.Namespace) -> int:
    from app.services import admin

    rt = _runtime(broker=False)
    secret, generated = _secret_or_generate(args.secret)
    with rt.db.session() as s:
        admin.add_client(
            s, rt.now(), args.name, secret, weight=args.weight if args.weight is not None else 1,
            max_queued=args.max_queued, max_in_flight=args.max_in_flight,
        )
    print(f"client {args.name!r} added")
    if generated:
        print(f"secret: {secret}")
        print("(shown once; it is stored only as a hash)")
    return 0


def cmd_clients_list(args: argparse.Namespace) -> int:
    from app.services import admin

    rt = _runtime(broker=False)
    with rt.db.read_session() as s:
        rows = admin.list_clients(s)
    _print_table(rows, ["name", "jobs", "disabled", "created", "weight", "max_queued", "max_in_flight", "id"])
    return 0


def cmd_clients_set(args: argparse.Namespace) -> int:
    from app.services import admin

    if args.weight is None and args.max_queued is None and args.max_in_flight is None:
        raise CliError("nothing to change: give --weight, --max-queued and/or --max-in-flight")
    rt = _runtime(broker=False)
    with rt.db.session() as s:
        c = admin.set_client(s, args.name, weight=args.weight, max_queued=args.max_queued, max_in_flight=args.max_in_flight)
        shown = (c.weight, c.max_queued, c.max_in_flight)
    print(f"client {args.name!r}: weight {shown[0]}, max_queued {shown[1] or 'default'}, max_in_flight {shown[2] or 'unlimited'}")
    return 0


def cmd_clients_remove(args: argparse.Namespace) -> int:
    from app.services import admin

    rt = _runtime(broker=False)
    with rt.db.session() as s:
        admin.remove_client(s, args.name)
    print(f"client {args.name!r} removed")
    return 0


# ---------------------------------------------------------------- factories


def cmd_factories_add(args: argparse.Namespace) -> int:
    from app.domain.matching import WorkerSpec
    from app.services import admin

    try:
        workers = [WorkerSpec.parse(w) for w in args.worker]
    except ValueError as exc:
        raise CliError(str(exc)) from None
    rt = _runtime()
    secret, generated = _secret_or_generate(args.secret)
    with rt.db.session() as s:
        admin.add_factory(s, rt.now(), args.name, secret, workers)
    _declare_queues(rt, [w.pair for w in workers])
    print(f"factory {args.name!r} added with {len(workers)} worker(s)")
    if generated:
        print(f"secret: {secret}")
        print("(shown once; it is stored only as a hash)")
    return 0


def _declare_queues(rt, pairs):  # type: ignore[no-untyped-def]
    declare = getattr(rt.mirror, "declare", None)
    if declare is None:
        return
    try:
        declare(pairs)
    except Exception as exc:  # the queues are declared again at the first publish
        print(f"warning: broker unavailable, queues not declared yet ({exc.__class__.__name__})", file=sys.stderr)


def cmd_factories_list(args: argparse.Namespace) -> int:
    from app.services import admin

    rt = _runtime(broker=False)
    with rt.db.read_session() as s:
        rows = admin.list_factories(s)
    _print_table(rows, ["name", "disabled", "last_poll", "leases", "workers"])
    return 0


def cmd_factories_disable(args: argparse.Namespace) -> int:
    from app.services import admin

    rt = _runtime(broker=False)
    with rt.db.session() as s:
        admin.set_factory_disabled(s, args.name, not args.enable)
    print(f"factory {args.name!r} {'enabled' if args.enable else 'disabled'}")
    return 0


# ---------------------------------------------------------------- jobs


def cmd_jobs_submit(args: argparse.Namespace) -> int:
    from app.domain.matching import parse_pages
    from app.services import admin, submission

    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    try:
        start, end = parse_pages(args.pages)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    rt = _runtime()
    with rt.db.session() as s:
        client = admin.client_by_name(s, args.client)
        with path.open("rb") as fh:
            content = submission.upload(
                s, rt.now(), client_id=client.id, filename=path.name, parts=iter(lambda: fh.read(1 << 20), b""),
                max_bytes=rt.settings.max_document_bytes,
            )
        job = submission.submit(
            s, rt.now(), rt.mirror, client_id=client.id, content=content, application=args.application,
            version=args.version, fmt=args.format or "", page_start=start, page_end=end,
            max_attempts=rt.settings.max_attempts, priority=args.priority,
            default_max_queued=rt.settings.client_max_queued,
            no_cache=args.no_cache, notifier=rt.notifier, share_across_clients=rt.settings.share_results_across_clients,
        )
        job_id, guid, cached_from, follows = job.id, job.guid, job.cached_from, job.follows_job_id
    from app.domain.matching import queue_name

    if cached_from is not None:
        line = f"job {job_id} ({guid}) COMPLETE from the result cache (shares job {cached_from}'s result)"
    elif follows is not None:
        line = f"job {job_id} ({guid}) QUEUED, following job {follows} (same document and target)"
    else:
        line = f"job {job_id} ({guid}) QUEUED on {queue_name(args.application, args.version)}"
    return cli_results.after_submit(args, job_id, line)


def cmd_jobs_list(args: argparse.Namespace) -> int:
    from app.services import admin

    rt = _runtime(broker=False)
    with rt.db.read_session() as s:
        rows = admin.list_jobs(s, state=args.state, client=args.client, limit=args.limit)
    _print_table(rows, ["id", "guid", "state", "client", "application", "version", "format", "attempts", "submitted"])
    return 0


def cmd_jobs_show(args: argparse.Namespace) -> int:
    from app.services import admin

    rt = _runtime(broker=False)
    with rt.db.read_session() as s:
        info = admin.show_job(s, args.job)
    print(json.dumps(info, indent=2, default=str))
    return 0


def cmd_jobs_requeue(args: argparse.Namespace) -> int:
    from app.services import admin, maintenance

    rt = _runtime()
    with rt.db.session() as s:
        job_id = admin.resolve_job_id(s, args.job)
        maintenance.requeue(s, rt.now(), rt.mirror, job_id)
    print(f"job {job_id} requeued")
    return 0


def cmd_jobs_cancel(args: argparse.Namespace) -> int:
    from app.services import admin, client_views

    rt = _runtime()
    with rt.db.session() as s:
        job_id = admin.resolve_job_id(s, args.job)
        outcome = client_views.cancel_any(s, rt.now(), job_id, mirror=rt.mirror)
    if outcome == client_views.CANCELLED:
        print(f"job {job_id} cancelled (it was queued: removed)")
    else:
        print(f"job {job_id}: cancel requested; its factory stops at its next heartbeat")
    return 0


# ---------------------------------------------------------------- content


def cmd_content_quarantined(args: argparse.Namespace) -> int:
    from app.services import quarantine

    rt = _runtime(broker=False)
    with rt.db.read_session() as s:
        rows = quarantine.listing(s, include_released=args.all)
    _print_table(
        [
            {"sha256": r.sha256, "since": r.since, "factories": ",".join(r.factories), "released": r.released_at or "", "reason": r.reason}
            for r in rows
        ],
        ["sha256", "since", "factories", "released", "reason"],
    )
    return 0


def cmd_content_release(args: argparse.Namespace) -> int:
    from app.services import quarantine

    rt = _runtime(broker=False)
    with rt.db.session() as s:
        done = quarantine.release(s, rt.now(), args.hash)
    print(f"content {done.sha256} released; new conversions of it are accepted again")
    return 0


# ---------------------------------------------------------------- processes


def cmd_web(args: argparse.Namespace) -> int:
    s = _settings()  # fail early on bad configuration
    from app.web.serving import prepare_metrics_dir, web_argv
    from app.web.wsgi import MASTER_PID_ENV, THREADS_ENV

    # Prometheus multiprocess mode (counters summed over the workers): a directory of this server's
    # own (one per port), emptied of the previous run's files before the workers start.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(prepare_metrics_dir(s, args.port))
    os.environ[MASTER_PID_ENV] = str(os.getpid())  # granian's master after the exec below
    os.environ[THREADS_ENV] = str(args.threads)
    argv = web_argv(args.host, args.port, workers=args.workers, threads=args.threads, access_log=args.access_log,
                    buffer_bodies=s.web_buffer_bodies)
    os.execv(argv[0], argv)
    return 0  # pragma: no cover


def _celery():  # type: ignore[no-untyped-def]
    from app.runtime import build_worker_app

    return build_worker_app(_settings())


def cmd_worker(args: argparse.Namespace) -> int:
    from app.logs import quiet_celery_outages

    quiet_celery_outages()
    app = _celery()
    app.start(
        ["worker", "-Q", "convhub", "--loglevel", _settings().log_level, "--concurrency", str(args.concurrency),
         "--pool", args.pool, "-n", args.hostname, "--without-mingle", "--without-gossip"]
    )
    return 0


def cmd_beat(args: argparse.Namespace) -> int:
    s = _settings()
    s.data_dir.mkdir(parents=True, exist_ok=True)
    from app.logs import quiet_celery_outages

    quiet_celery_outages()
    app = _celery()
    app.start(["beat", "--loglevel", s.log_level, "--schedule", str(s.data_dir / "celerybeat-schedule"), "--pidfile="])
    return 0


def cmd_flower(args: argparse.Namespace) -> int:
    from tasks.flower import run_flower

    return run_flower(_settings(), port=args.port, address=args.address)


def cmd_serve(args: argparse.Namespace) -> int:
    """All-in-one for one machine: migrate, then web + Celery worker + beat (+ the local factory,
    see app/local_factory.py) as child processes."""
    s = _settings()
    from app import local_factory
    from app.db.migrate import upgrade

    try:
        workers = local_factory.detect(args.factory)
    except local_factory.LocalFactoryError as exc:
        raise CliError(str(exc)) from None
    upgrade(s.database_url)
    env = dict(os.environ)
    env.setdefault("CONVHUB_PUBLIC_URL", f"http://{args.host}:{args.port}")
    me = [sys.executable, "-m", "app.cli"]
    from app.supervisor import Child, Supervisor

    children = [
        Child("web", me + ["web", "--host", args.host, "--port", str(args.port), "--workers", str(args.web_workers)], env),
        Child("worker", me + ["worker", "--pool", "threads", "--concurrency", "4"], env),
        Child("beat", me + ["beat"], env),
    ]
    if workers:
        # The reference factory as one more child: registered (idempotently) for what it serves,
        # with a secret generated once into the data directory; passed by environment, not argv.
        secret = local_factory.load_or_create_secret(s.data_dir)
        rt = _runtime()
        try:
            local_factory.register(rt, local_factory.NAME, secret, workers)
        finally:
            if rt.celery is not None:
                rt.celery.pool.force_close_all()
            rt.close()
        argv = me + ["factory", "run", "--server", local_factory.server_url(args.host, args.port),
                     "--name", local_factory.NAME, "--concurrency", str(args.factory_concurrency)]
        children.append(Child("factory", argv, dict(env, CONVHUB_FACTORY_SECRET=secret)))
    base = f"http://{args.host}:{args.port}"
    print(f"convhub serving on {base}", flush=True)
    print(f"  factories (XML-RPC): {base}/xmlrpc", flush=True)
    print(f"  clients (SOAP):      {base}/cds-controller/contentService?wsdl", flush=True)
    print(f"  health:              {base}/healthz   metrics: {base}/metrics   ops: {base}/ops", flush=True)
    print(f"  database: {_redact(s.database_url)}   broker: {_redact(s.broker_url)}", flush=True)
    if workers:
        print(f"  conversion targets (local factory {local_factory.NAME!r}):", flush=True)
        for line in local_factory.describe(workers):
            print(f"    {line}", flush=True)
    elif args.factory == "off":
        print("  no local factory (--factory off); register factories with `convhub factories add`", flush=True)
    else:
        problem = local_factory.missing_tools() or "the reference factory found nothing to serve"
        print(f"  no local factory: {problem}; {local_factory.INSTALL_HINT}", flush=True)
    # A crashed child is restarted with back-off; everything stops on SIGTERM/SIGINT, or on a crash loop.
    code = Supervisor(children).run()
    print("convhub stopped", flush=True)
    return code


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="convhub", description="Document-conversion job server.")
    sub = p.add_subparsers(dest="command", required=True)

    sp = sub.add_parser("serve", help="all-in-one: web + worker + beat on this machine")
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=8080)
    sp.add_argument("--web-workers", type=int, default=2)
    sp.add_argument(
        "--factory", choices=["auto", "on", "off"], default="auto",
        help="run the reference factory as one more child (auto: when LibreOffice is installed)",
    )
    sp.add_argument("--factory-concurrency", type=int, default=1, help="the local factory's conversion slots")
    sp.set_defaults(func=cmd_serve)

    sp = sub.add_parser("web", help="the web server (granian)")
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=8080)
    sp.add_argument("--workers", type=int, default=2)
    sp.add_argument("--threads", type=int, default=8)
    sp.add_argument("--access-log", action="store_true")
    sp.set_defaults(func=cmd_web)

    sp = sub.add_parser("worker", help="a Celery worker for beat tasks and callbacks")
    sp.add_argument("--concurrency", type=int, default=2)
    sp.add_argument("--pool", default="prefork", choices=["prefork", "threads", "solo"])
    sp.add_argument("--hostname", default="convhub@%h")
    sp.set_defaults(func=cmd_worker)

    sp = sub.add_parser("beat", help="Celery beat (run exactly one)")
    sp.set_defaults(func=cmd_beat)

    sp = sub.add_parser("flower", help="Flower on the configured broker")
    sp.add_argument("--port", type=int, default=None)
    sp.add_argument("--address", default="127.0.0.1")
    sp.set_defaults(func=cmd_flower)

    db = sub.add_parser("db", help="database").add_subparsers(dest="db_command", required=True)
    sp = db.add_parser("upgrade", help="alembic upgrade head")
    sp.set_defaults(func=cmd_db_upgrade)

    cl = sub.add_parser("clients", help="client applications (SOAP)").add_subparsers(dest="clients_command", required=True)
    sp = cl.add_parser("add")
    sp.add_argument("name")
    sp.add_argument("--secret")
    _policy_args(sp, reset=False)
    sp.set_defaults(func=cmd_clients_add)
    sp = cl.add_parser("set", help="change a client's weight and limits")
    sp.add_argument("name")
    _policy_args(sp, reset=True)
    sp.set_defaults(func=cmd_clients_set)
    sp = cl.add_parser("list")
    sp.set_defaults(func=cmd_clients_list)
    sp = cl.add_parser("remove")
    sp.add_argument("name")
    sp.set_defaults(func=cmd_clients_remove)

    fa = sub.add_parser("factories", help="factories (XML-RPC)").add_subparsers(dest="factories_command", required=True)
    sp = fa.add_parser("add")
    sp.add_argument("name")
    sp.add_argument("--secret")
    sp.add_argument("--worker", action="append", required=True, metavar="APPLICATION|VERSION|DOCTYPES|FORMATS")
    sp.set_defaults(func=cmd_factories_add)
    sp = fa.add_parser("list")
    sp.set_defaults(func=cmd_factories_list)
    sp = fa.add_parser("disable")
    sp.add_argument("name")
    sp.add_argument("--enable", action="store_true", help="enable again")
    sp.set_defaults(func=cmd_factories_disable)

    jb = sub.add_parser("jobs", help="jobs").add_subparsers(dest="jobs_command", required=True)
    sp = jb.add_parser("submit")
    sp.add_argument("file")
    sp.add_argument("--client", required=True)
    sp.add_argument("--application", required=True)
    sp.add_argument("--version", required=True)
    sp.add_argument("--format", default="")
    sp.add_argument("--pages", default=None, help="N, N-M or N- (default: all)")
    sp.add_argument("--priority", type=int, default=None, help="0-9, higher first among this client's jobs (default 5)")
    sp.add_argument("--no-cache", action="store_true", help="convert even if the same conversion is cached or running")
    sp.set_defaults(func=cmd_jobs_submit)
    cli_results.add_wait_options(sp)
    sp = jb.add_parser("list")
    sp.add_argument("--state", type=int, choices=[0, 1, 2, 3, 4])
    sp.add_argument("--client")
    sp.add_argument("--limit", type=int, default=50)
    sp.set_defaults(func=cmd_jobs_list)
    sp = jb.add_parser("show")
    sp.add_argument("job", help="jobId or GUID")
    sp.set_defaults(func=cmd_jobs_show)
    sp = jb.add_parser("requeue")
    sp.add_argument("job", help="jobId or GUID")
    sp.set_defaults(func=cmd_jobs_requeue)
    sp = jb.add_parser("cancel", help="cancel a job: removed if queued, stopped at its next heartbeat if running")
    sp.add_argument("job", help="jobId or GUID")
    sp.set_defaults(func=cmd_jobs_cancel)

    co = sub.add_parser("content", help="uploaded documents (quarantine)").add_subparsers(dest="content_command", required=True)
    sp = co.add_parser("quarantined", help="list quarantined documents (content SHA-256)")
    sp.add_argument("--all", action="store_true", help="include released ones")
    sp.set_defaults(func=cmd_content_quarantined)
    sp = co.add_parser("release", help="release a quarantined document")
    sp.add_argument("hash", help="the content SHA-256")
    sp.set_defaults(func=cmd_content_release)
    cli_results.add_subcommands(sub, jb)
    cli_compare.add_subcommand(sub)

    add_factory_commands(sub)
    return p


def _policy_args(sp: argparse.ArgumentParser, *, reset: bool) -> None:
    """The farm-policy options of `clients add` and `clients set`."""
    again = " (-1: back to the default)" if reset else ""
    sp.add_argument("--weight", type=int, default=None, help="fair-share weight, 1-1000 (default 1)")
    sp.add_argument("--max-queued", type=int, default=None, help=f"queued jobs allowed (default CONVHUB_CLIENT_MAX_QUEUED){again}")
    sp.add_argument("--max-in-flight", type=int, default=None, help=f"jobs handed out at once (default unlimited){again}")


# -- factory subcommands ---------------------------------------------------------------------------


def add_factory_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``factory run|workers`` come from the reference factory's own CLI (standard library only);
    ``factory celery``, the push factory, needs the server stack and is registered here."""
    from app.factory import cli as factory_cli

    factory_sub = factory_cli.add_subcommands(sub)
    push = factory_sub.add_parser(
        "celery",
        help="push-style factory: a Celery worker on the server's per-pair queues (needs convhub[server])",
        description="Consume the server's per-(application, version) Celery queues for this host's workers; "
        "broker and database come from CONVHUB_BROKER_URL and CONVHUB_DATABASE_URL.",
    )
    push.add_argument("--name", help="lease owner and worker name (default: celery@<host>)")
    factory_cli.add_common_options(push)
    push.add_argument("--timeout", type=float, help="seconds per conversion (default 120)")
    push.add_argument("--restart-every", type=int, help="restart a LibreOffice instance after K conversions")
    push.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    push.set_defaults(func=cmd_factory_celery)


def cmd_factory_celery(args: argparse.Namespace) -> int:
    """The push factory lives in ``tasks.factory_worker`` (server stack), imported only when run."""
    try:
        from tasks import factory_worker
    except ImportError as exc:
        print(
            f"convhub factory: error: `convhub factory celery` needs the server stack ({exc.name or exc} is "
            "missing): pip install 'convhub[server]'",
            file=sys.stderr,
        )
        return 2
    return factory_worker.cli_main(args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (CliError, ConfigError) as exc:
        print(f"convhub: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # one clear line, never a traceback
        from app.domain.errors import ConvhubError

        if isinstance(exc, ConvhubError):
            print(f"convhub: {exc.message}", file=sys.stderr)
            return 1
        if os.environ.get("CONVHUB_DEBUG"):
            raise
        print(f"convhub: {exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else 'failed'}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
