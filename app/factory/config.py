"""Factory configuration: an INI file (optional) overridden by command-line flags and environment.

[factory]                 ; all optional here when given as flags
server = https://convhub.example.org
name = factory-1
secret_file = /etc/convhub/factory.secret   ; or secret = ..., or env CONVHUB_FACTORY_SECRET
concurrency = 2
timeout = 120             ; seconds per conversion
restart_every = 200       ; restart a LibreOffice instance after this many conversions (0 = never)
lease = 300               ; lease length assumed when the server sends no leaseExpires
http_timeout = 60
workdir = /var/lib/convhub-factory

[libreoffice]
enabled = auto            ; auto: serve LibreOffice when soffice and python3-uno are found
soffice = soffice
python = /usr/bin/python3 ; the interpreter that can `import uno`
png_dpi = 96
startup_timeout = 60
application_prefix = LibreOffice
; version = 7.4           ; default: major.minor of `soffice --version`

[abiword]                 ; the built-in AbiWord backend (odt -> pdf with page ranges, png, odf)
enabled = auto            ; auto: when `abiword` is installed and no [command:...] section is configured

[gnumeric]                ; the built-in Gnumeric backend (ods, by ssconvert), same rules as [abiword]
enabled = auto

[command:abiword]         ; any number of generic command workers, see converters.CommandConverter
application = AbiWord
version_command = abiword --version
doctypes = odt
formats = pdf, odf
command = abiword --to={ext} -o {output} {input}
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .converters import (
    DEFAULT_PNG_DPI,
    DEFAULT_TIMEOUT,
    FORMATS,
    CommandConverter,
    CompositeConverter,
    Converter,
    LibreOfficeConverter,
    abiword_converter,
    gnumeric_converter,
    libreoffice_version,
    uno_available,
)
from .errors import ConfigError
from .office import DEFAULT_UNO_PYTHON, OfficePool

SECRET_ENV = "CONVHUB_FACTORY_SECRET"


@dataclass
class CommandSection:
    name: str
    options: dict[str, str]


@dataclass
class FactoryConfig:
    server: str = ""
    name: str = ""
    secret: str = ""
    concurrency: int = 1
    timeout: float = DEFAULT_TIMEOUT
    restart_every: int = 200
    lease_seconds: float = 300.0
    heartbeat_seconds: float = 30.0  # longest wait between two extends: a cancellation is seen this soon
    http_timeout: float = 60.0
    workdir: str | None = None
    libreoffice: str = "auto"  # auto | yes | no
    soffice: str = "soffice"
    uno_python: str = DEFAULT_UNO_PYTHON
    png_dpi: int = DEFAULT_PNG_DPI
    startup_timeout: float = 60.0
    application_prefix: str = "LibreOffice"
    libreoffice_version: str | None = None
    abiword: str = "auto"  # auto | yes | no
    gnumeric: str = "auto"  # auto | yes | no
    commands: list[CommandSection] = field(default_factory=list)

    def validate(self, *, need_server: bool = True) -> None:
        missing = [k for k in ("server", "name", "secret") if need_server and not getattr(self, k)]
        if missing:
            hint = {"secret": f"--secret or {SECRET_ENV}"}
            raise ConfigError("missing " + ", ".join(hint.get(k, "--" + k) for k in missing))
        if self.concurrency < 1:
            raise ConfigError("concurrency must be at least 1")
        if self.timeout <= 0:
            raise ConfigError("timeout must be positive")
        if self.restart_every < 0:
            raise ConfigError("restart_every must be 0 (never) or more")
        if self.libreoffice not in ("auto", "yes", "no"):
            raise ConfigError("[libreoffice] enabled must be auto, yes or no")
        for section in ("abiword", "gnumeric"):
            if getattr(self, section) not in ("auto", "yes", "no"):
                raise ConfigError(f"[{section}] enabled must be auto, yes or no")


def _bool_word(value: str) -> str:
    v = value.strip().lower()
    if v in ("1", "yes", "true", "on"):
        return "yes"
    if v in ("0", "no", "false", "off"):
        return "no"
    return v


def load_config(path: str | os.PathLike[str] | None = None) -> FactoryConfig:
    """Read an INI file into a FactoryConfig (defaults when path is None); secrets from env too."""
    cfg = FactoryConfig()
    if path is not None:
        parser = configparser.ConfigParser(interpolation=None)  # commands may contain '%'
        try:
            with open(path, encoding="utf-8") as fh:
                parser.read_file(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
        except configparser.Error as exc:
            raise ConfigError(f"{path}: {str(exc).splitlines()[0]}") from None
        try:
            _apply(cfg, parser, Path(path))
        except ValueError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    if not cfg.secret and os.environ.get(SECRET_ENV):
        cfg.secret = os.environ[SECRET_ENV]
    return cfg


def _apply(cfg: FactoryConfig, parser: configparser.ConfigParser, path: Path) -> None:
    known = {"factory", "libreoffice", "abiword", "gnumeric"}
    for section in parser.sections():
        if section not in known and not section.startswith("command:"):
            raise ValueError(f"unknown section [{section}]")
    if parser.has_section("factory"):
        f = parser["factory"]
        cfg.server = f.get("server", cfg.server)
        cfg.name = f.get("name", cfg.name)
        cfg.secret = f.get("secret", cfg.secret)
        if f.get("secret_file"):
            secret_file = Path(f["secret_file"])
            if not secret_file.is_absolute():
                secret_file = path.parent / secret_file
            try:
                cfg.secret = secret_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"cannot read secret_file {secret_file}: {exc.strerror}") from None
        cfg.concurrency = f.getint("concurrency", cfg.concurrency)
        cfg.timeout = f.getfloat("timeout", cfg.timeout)
        cfg.restart_every = f.getint("restart_every", cfg.restart_every)
        cfg.lease_seconds = f.getfloat("lease", cfg.lease_seconds)
        cfg.heartbeat_seconds = f.getfloat("heartbeat", cfg.heartbeat_seconds)
        cfg.http_timeout = f.getfloat("http_timeout", cfg.http_timeout)
        cfg.workdir = f.get("workdir", cfg.workdir)
    if parser.has_section("libreoffice"):
        lo = parser["libreoffice"]
        cfg.libreoffice = _bool_word(lo.get("enabled", cfg.libreoffice))
        cfg.soffice = lo.get("soffice", cfg.soffice)
        cfg.uno_python = lo.get("python", cfg.uno_python)
        cfg.png_dpi = lo.getint("png_dpi", cfg.png_dpi)
        cfg.startup_timeout = lo.getfloat("startup_timeout", cfg.startup_timeout)
        cfg.application_prefix = lo.get("application_prefix", cfg.application_prefix)
        cfg.libreoffice_version = lo.get("version", cfg.libreoffice_version)
    for builtin in ("abiword", "gnumeric"):
        if parser.has_section(builtin):
            unknown = sorted(set(parser[builtin]) - {"enabled"})
            if unknown:
                raise ValueError(f"[{builtin}] unknown option(s): {', '.join(unknown)}")
            setattr(cfg, builtin, _bool_word(parser[builtin].get("enabled", "auto")))
    for section in parser.sections():
        if section.startswith("command:"):
            name = section.split(":", 1)[1].strip()
            if not name:
                raise ValueError("[command:] needs a name")
            cfg.commands.append(CommandSection(name, dict(parser[section])))


def _split_list(value: str) -> list[str]:
    return [v.strip().lower() for v in re.split(r"[,\s]+", value) if v.strip()]


def command_converter(section: CommandSection, cfg: FactoryConfig) -> CommandConverter:
    opts = dict(section.options)
    where = f"[command:{section.name}]"
    allowed = {
        "application",
        "version",
        "version_command",
        "version_regex",
        "doctypes",
        "formats",
        "default_format",
        "command",
        "output",
        "timeout",
        "page_ranges",
    } | {f"command_{f}" for f in FORMATS}
    unknown = sorted(set(opts) - allowed)
    if unknown:
        raise ConfigError(f"{where} unknown option(s): {', '.join(unknown)}")
    for key in ("application", "doctypes", "formats"):
        if not opts.get(key):
            raise ConfigError(f"{where} needs {key}")
    if not opts.get("command") and not all(opts.get(f"command_{f}") for f in _split_list(opts["formats"])):
        raise ConfigError(f"{where} needs command (or command_<format> for every format)")
    version = opts.get("version") or _probe_version(
        where, opts.get("version_command", ""), opts.get("version_regex", r"(\d+\.\d+)")
    )
    try:
        timeout = float(opts.get("timeout", cfg.timeout))
    except ValueError:
        raise ConfigError(f"{where} timeout is not a number") from None
    formats = _split_list(opts["formats"])
    return CommandConverter(
        section.name,
        application=opts["application"],
        version=version,
        doctypes=_split_list(opts["doctypes"]),
        formats=formats,
        command=opts.get("command", ""),
        format_commands={f: opts[f"command_{f}"] for f in FORMATS if opts.get(f"command_{f}")},
        output=opts.get("output", "{output}"),
        timeout=timeout,
        page_ranges=_bool_word(opts.get("page_ranges", "no")) == "yes",
        default_format=opts.get("default_format", formats[0] if formats else "pdf").strip().lower(),
        workdir=cfg.workdir,
    )


def _probe_version(where: str, command: str, pattern: str) -> str:
    if not command:
        raise ConfigError(f"{where} needs version or version_command")
    try:
        proc = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise ConfigError(f"{where} version_command failed: {exc}") from None
    m = re.search(pattern, proc.stdout + "\n" + proc.stderr)
    if not m:
        raise ConfigError(f"{where} version_command printed no version matching {pattern!r}")
    return m.group(1) if m.groups() else m.group(0)


def build_converter(cfg: FactoryConfig) -> CompositeConverter:
    """Every backend the configuration asks for; LibreOffice when enabled (or auto and installed)."""
    backends: list[Converter] = []
    if cfg.workdir:
        Path(cfg.workdir).mkdir(parents=True, exist_ok=True)
    if cfg.libreoffice != "no":
        version = cfg.libreoffice_version or libreoffice_version(cfg.soffice)
        problem = None
        if version is None:
            problem = f"LibreOffice not found ({cfg.soffice} --version failed)"
        elif not uno_available(cfg.uno_python):
            problem = f"{cfg.uno_python} cannot import uno (install python3-uno)"
        if problem is None:
            pool = OfficePool(
                cfg.concurrency,
                workdir=cfg.workdir,
                soffice=cfg.soffice,
                python=cfg.uno_python,
                restart_every=cfg.restart_every,
                startup_timeout=cfg.startup_timeout,
            )
            backends.append(
                LibreOfficeConverter(
                    pool,
                    version=version,
                    application_prefix=cfg.application_prefix,
                    timeout=cfg.timeout,
                    png_dpi=cfg.png_dpi,
                )
            )
        elif cfg.libreoffice == "yes":
            raise ConfigError(problem + "; run scripts/install-libreoffice.sh")
    for name, make, tool in (("abiword", abiword_converter, "abiword"), ("gnumeric", gnumeric_converter, "ssconvert")):
        wanted = getattr(cfg, name)
        # auto: a configuration that lists its own [command:...] workers is taken as complete.
        if wanted == "no" or (wanted == "auto" and cfg.commands):
            continue
        backend = make(timeout=cfg.timeout, png_dpi=cfg.png_dpi, workdir=cfg.workdir)
        if backend is not None:
            backends.append(backend)
        elif wanted == "yes":
            raise ConfigError(f"[{name}] enabled = yes but {tool} is not installed (apt-get install {name})")
    for section in cfg.commands:
        backends.append(command_converter(section, cfg))
    if not backends:
        raise ConfigError("no workers: LibreOffice is not installed and no [command:...] is configured")
    return CompositeConverter(backends)
