"""The all-in-one's own factory: `convhub serve --factory auto|on|off` runs the reference factory
(app.factory) as one more supervised child, registered for what this machine can convert.

    workers = detect("auto")                 # None: no factory (off, or auto and no LibreOffice)
    secret = load_or_create_secret(data_dir) # generated once, kept 0600 in the data directory
    register(rt, NAME, secret, workers)      # idempotent: secret and worker list brought up to date

The worker list is what the factory itself would serve with no configuration file (LibreOffice
Writer, Calc, Impress at `soffice --version`'s major.minor; AbiWord and Gnumeric when installed),
so what is registered and what the child converts are one and the same.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Any

from app.domain.credentials import generate_secret
from app.domain.matching import DOCTYPES, FORMATS, WorkerSpec

NAME = "local"
SECRET_FILE = "local-factory.secret"
MODES = ("auto", "on", "off")
INSTALL_HINT = (
    "install LibreOffice and poppler with `sudo sh scripts/install-libreoffice.sh` "
    "(Debian: libreoffice-writer-nogui libreoffice-calc-nogui libreoffice-impress-nogui python3-uno poppler-utils)"
)


class LocalFactoryError(Exception):
    """A one-line reason the local factory cannot run (`--factory on`)."""


def missing_tools(soffice: str = "soffice", uno_python: str | None = None) -> str | None:
    """Why the LibreOffice backend cannot run here, or None when it can."""
    from app.factory.converters import libreoffice_version, uno_available
    from app.factory.office import DEFAULT_UNO_PYTHON

    if libreoffice_version(soffice) is None:
        return "LibreOffice is not installed (soffice --version failed)"
    python = uno_python or DEFAULT_UNO_PYTHON
    if not uno_available(python):
        return f"{python} cannot import uno (python3-uno is missing)"
    for tool in ("pdftoppm", "pdfinfo"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (poppler-utils is missing)"
    return None


def detect(mode: str) -> list[WorkerSpec] | None:
    """The workers the local factory serves, or None when it does not run (off; auto without
    LibreOffice). `on` without LibreOffice raises LocalFactoryError."""
    if mode not in MODES:
        raise LocalFactoryError(f"--factory must be one of {', '.join(MODES)}")
    if mode == "off":
        return None
    problem = missing_tools()
    if problem is not None:
        if mode == "on":
            raise LocalFactoryError(f"--factory on: {problem}; {INSTALL_HINT}")
        return None
    from app.factory.config import FactoryConfig, build_converter
    from app.factory.errors import FactoryError

    try:
        converter = build_converter(FactoryConfig(libreoffice="yes"))  # builds no process until start()
    except FactoryError as exc:
        if mode == "on":
            raise LocalFactoryError(f"--factory on: {exc}") from None
        return None
    try:
        return converter.workers()
    finally:
        converter.close()


def load_or_create_secret(data_dir: Path) -> str:
    """The local factory's secret: read from <data_dir>/local-factory.secret, or generated and
    written there once (created 0600; a file others can read is tightened to 0600)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            path.chmod(0o600)
        secret = path.read_text(encoding="utf-8").strip()
        if not secret:
            raise LocalFactoryError(f"{path} is empty; delete it and a new secret is generated") from None
        return secret
    secret = generate_secret()
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(secret + "\n")
    return secret


def register(rt: Any, name: str, secret: str, workers: list[WorkerSpec]) -> bool:
    """Register (or update) the factory in the runtime's database and declare its queues."""
    from app.services import admin

    with rt.db.session() as s:
        changed = admin.ensure_factory(s, rt.now(), name, secret, workers)
    declare = getattr(rt.mirror, "declare", None)
    if declare is not None:
        try:
            declare([w.pair for w in workers])
        except Exception:  # the queues are declared again at the first publish
            pass
    return changed


def server_url(host: str, port: int) -> str:
    """Where the local factory reaches the web server (a wildcard bind is reached on loopback)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host in ("::", "[::]"):
        host = "[::1]"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def describe(workers: list[WorkerSpec]) -> list[str]:
    """One banner line per target: "LibreOffice Writer 7.4: odt -> pdf, png, odf"."""
    return [
        f"{w.application} {w.version}: "
        + ", ".join(d for d in DOCTYPES if d in w.doctypes)
        + " -> "
        + ", ".join(f for f in FORMATS if f in w.formats)
        for w in sorted(workers, key=lambda w: (w.application, w.version))
    ]
