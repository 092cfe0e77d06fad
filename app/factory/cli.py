"""``convhub factory ...`` subcommands. The main CLI calls ``add_subcommands`` and dispatches with
``args.func(args)`` (or ``main(args)``), which returns the exit status."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from .config import SECRET_ENV, FactoryConfig, build_converter, load_config
from .errors import ConfigError, FactoryError
from .runner import FactoryRunner, make_proxy

log = logging.getLogger("convhub.factory")


def add_subcommands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``factory run`` and ``factory workers`` under the given subparsers object."""
    factory = subparsers.add_parser("factory", help="run the reference conversion factory")
    sub = factory.add_subparsers(dest="factory_command", metavar="COMMAND")
    sub.required = True

    run = sub.add_parser("run", help="poll a convhub server for jobs and convert them")
    run.add_argument("--server", help="server base URL, e.g. https://convhub.example.org")
    run.add_argument("--name", help="factory name, as registered with `convhub factories add`")
    run.add_argument("--secret", help=f"factory secret (default: ${SECRET_ENV} or the config file)")
    _common(run)
    run.add_argument("--timeout", type=float, help="seconds per conversion (default 120)")
    run.add_argument("--restart-every", type=int, help="restart a LibreOffice instance after K conversions")
    run.add_argument("--once", action="store_true", help="poll once per slot, handle what comes, exit")
    run.add_argument("-v", "--verbose", action="store_true", help="log every poll and call")
    run.set_defaults(func=main)

    workers = sub.add_parser("workers", help="print the workers this host can serve, as JSON")
    _common(workers)
    workers.set_defaults(func=main)

    push = sub.add_parser(
        "celery",
        help="push-style factory: a Celery worker on the server's per-pair queues (needs convhub[server])",
        description="Consume the server's per-(application, version) Celery queues for this host's workers; "
        "broker and database come from CONVHUB_BROKER_URL and CONVHUB_DATABASE_URL.",
    )
    push.add_argument("--name", help="lease owner and worker name (default: celery@<host>)")
    _common(push)
    push.add_argument("--timeout", type=float, help="seconds per conversion (default 120)")
    push.add_argument("--restart-every", type=int, help="restart a LibreOffice instance after K conversions")
    push.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    push.set_defaults(func=main)
    return factory


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="factory INI file (see docs/factory.md)")
    p.add_argument("--concurrency", type=int, help="conversion slots, one LibreOffice instance each")


def config_from_args(args: argparse.Namespace) -> FactoryConfig:
    """INI file, then environment, then flags (flags win)."""
    cfg = load_config(getattr(args, "config", None))
    if getattr(args, "secret", None) is None and os.environ.get(SECRET_ENV):
        cfg.secret = os.environ[SECRET_ENV]
    for flag, attr in (
        ("server", "server"),
        ("name", "name"),
        ("secret", "secret"),
        ("concurrency", "concurrency"),
        ("timeout", "timeout"),
        ("restart_every", "restart_every"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            setattr(cfg, attr, value)
    return cfg


def main(args: argparse.Namespace) -> int:
    """Dispatch target for ``factory run`` / ``factory workers``; returns the exit status."""
    command = getattr(args, "factory_command", "run")
    _setup_logging(getattr(args, "verbose", False))
    try:
        cfg = config_from_args(args)
        cfg.validate(need_server=command == "run")
        if command == "celery":
            _celery_stack()  # a clear error before LibreOffice is probed
        converter = build_converter(cfg)
        if command == "workers":
            print(json.dumps([w.as_dict() for w in converter.workers()], indent=2))
            return 0
        if command == "celery":
            return _run_celery(cfg, converter, getattr(args, "verbose", False))
        proxy_factory = lambda: make_proxy(cfg.server, cfg.name, cfg.secret, cfg.http_timeout)  # noqa: E731
        proxy_factory()  # validates the URL before anything starts
        try:
            converter.start()
            runner = FactoryRunner(
                proxy_factory,
                cfg.name,
                converter,
                concurrency=cfg.concurrency,
                timeout=cfg.timeout,
                lease_seconds=cfg.lease_seconds,
                once=getattr(args, "once", False),
            )
            return runner.run()
        finally:
            converter.close()
    except (FactoryError, ValueError) as exc:
        print(f"convhub factory: error: {exc}", file=sys.stderr)
        return 2


def _celery_stack():  # type: ignore[no-untyped-def]
    """The push-style factory lives in ``tasks.factory_worker`` (server stack), imported lazily."""
    try:
        from tasks import factory_worker
    except ImportError as exc:
        raise ConfigError(
            f"`convhub factory celery` needs the server stack ({exc.name or exc} is missing): "
            "pip install 'convhub[server]'"
        ) from None
    return factory_worker


def _run_celery(cfg: FactoryConfig, converter, verbose: bool) -> int:  # type: ignore[no-untyped-def]
    from app.config import ConfigError as SettingsError
    from app.config import load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        raise ConfigError(str(exc)) from None
    return _celery_stack().run(
        settings,
        converter,
        name=cfg.name or None,
        concurrency=cfg.concurrency,
        timeout=cfg.timeout,
        loglevel="DEBUG" if verbose else settings.log_level,
    )


def _setup_logging(verbose: bool) -> None:
    root = logging.getLogger()
    if not root.handlers:  # the main CLI may have configured logging already
        logging.basicConfig(
            level=logging.DEBUG if verbose else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )


def standalone(argv: list[str] | None = None) -> int:
    """``python -m app.factory.cli run ...`` without the main convhub CLI."""
    parser = argparse.ArgumentParser(prog="convhub")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["factory", *(argv if argv is not None else sys.argv[1:])])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(standalone())
