"""``convhub factory run|workers``. The main CLI calls ``add_subcommands`` and dispatches with
``args.func(args)`` (or ``main(args)``), which returns the exit status. ``factory celery`` (the
push factory, server stack) is registered by the server's CLI (app/cli.py) on the subparsers
``add_subcommands`` returns, with ``add_common_options``, ``config_from_args`` and ``report_errors``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import xmlrpc.client
from collections.abc import Callable

from .config import SECRET_ENV, FactoryConfig, build_converter, load_config
from .converters import worker_dict
from .errors import FactoryError
from .runner import FactoryRunner
from .xmlrpc_client import make_proxy

log = logging.getLogger("convhub.factory")


def add_subcommands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """Register ``factory run`` and ``factory workers`` under the given subparsers object; returns the
    ``factory`` command's own subparsers, where the server's CLI adds ``factory celery``."""
    factory = subparsers.add_parser("factory", help="run the reference conversion factory")
    sub = factory.add_subparsers(dest="factory_command", metavar="COMMAND")
    sub.required = True

    run = sub.add_parser("run", help="poll a convhub server for jobs and convert them")
    run.add_argument("--server", help="server base URL, e.g. https://convhub.example.org")
    run.add_argument("--name", help="factory name, as registered with `convhub factories add`")
    run.add_argument("--secret", help=f"factory secret (default: ${SECRET_ENV} or the config file)")
    add_common_options(run)
    run.add_argument("--timeout", type=float, help="seconds per conversion (default 120)")
    run.add_argument("--restart-every", type=int, help="restart a LibreOffice instance after K conversions")
    run.add_argument("--once", action="store_true", help="poll once per slot, handle what comes, exit")
    run.add_argument("-v", "--verbose", action="store_true", help="log every poll and call")
    run.set_defaults(func=main)

    workers = sub.add_parser("workers", help="print the workers this host can serve, as JSON")
    add_common_options(workers)
    workers.set_defaults(func=main)
    return sub


def add_common_options(p: argparse.ArgumentParser) -> None:
    """``--config`` and ``--concurrency``, shared by every factory command."""
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


def report_errors(command: Callable[[], int]) -> int:
    """Run a factory command; a configuration or factory error is one line on stderr and status 2."""
    try:
        return command()
    except (FactoryError, ValueError) as exc:
        print(f"convhub factory: error: {exc}", file=sys.stderr)
        return 2


def main(args: argparse.Namespace) -> int:
    """Dispatch target for ``factory run`` / ``factory workers``; returns the exit status."""
    command = getattr(args, "factory_command", "run")
    setup_logging(getattr(args, "verbose", False))
    return report_errors(lambda: _main(args, command))


def _main(args: argparse.Namespace, command: str) -> int:
    cfg = config_from_args(args)
    cfg.validate(need_server=command == "run")
    converter = build_converter(cfg)
    if command == "workers":
        print(json.dumps([worker_dict(w) for w in converter.workers()], indent=2))
        return 0

    def proxy_factory() -> xmlrpc.client.ServerProxy:
        return make_proxy(cfg.server, cfg.name, cfg.secret, cfg.http_timeout)

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
            heartbeat_seconds=cfg.heartbeat_seconds,
            once=getattr(args, "once", False),
        )
        return runner.run()
    finally:
        converter.close()


def setup_logging(verbose: bool) -> None:
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
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(standalone())
