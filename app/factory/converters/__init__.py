"""Converters: turn one job (the ``jobs.poll`` struct) into ``(format, bytes)``.

Independent of the poll loop, so a push-style (Celery) factory calls the same objects:

    conv = LibreOfficeConverter(OfficePool(2))
    conv.workers()                   # -> [WorkerSpec("LibreOffice Writer", "7.4", {"odt"}, ...), ...]
    fmt, data = conv.convert(job, deadline_seconds=120)   # raises ConversionError / ConversionTimeout

| module | what |
|---|---|
| ``base.py`` | the ``Converter`` interface; ``WorkerSpec``, ``DOCTYPES``, ``FORMATS`` from app.domain |
| ``job.py`` | a poll struct read and checked (``parse_job``, page range, document bytes, ``check_odf``) |
| ``libreoffice.py`` | ``LibreOfficeConverter`` over warm soffice instances; ``libreoffice_version`` |
| ``desktop.py`` | AbiWord and Gnumeric (``abiword_converter``, ``gnumeric_converter``); ``major_minor`` |
| ``command.py`` | ``run_command`` and the generic ``CommandConverter`` |
| ``composite.py`` | ``CompositeConverter``: routes by (application, version) |
"""

from .base import (
    DEFAULT_FORMAT,
    DEFAULT_TIMEOUT,
    DOCTYPES,
    FORMATS,
    Converter,
    WorkerSpec,
    worker_dict,
    worker_spec,
)
from .command import CommandConverter, run_command
from .composite import CompositeConverter
from .desktop import DesktopConverter, abiword_converter, gnumeric_converter, major_minor, tool_version
from .job import ODF_MIMETYPES, Job, check_odf, parse_job
from .libreoffice import (
    DEFAULT_PNG_DPI,
    LibreOfficeConverter,
    libreoffice_version,
    parse_libreoffice_version,
    uno_available,
)

__all__ = [
    "DEFAULT_FORMAT",
    "DEFAULT_PNG_DPI",
    "DEFAULT_TIMEOUT",
    "DOCTYPES",
    "FORMATS",
    "ODF_MIMETYPES",
    "CommandConverter",
    "CompositeConverter",
    "Converter",
    "DesktopConverter",
    "Job",
    "LibreOfficeConverter",
    "WorkerSpec",
    "abiword_converter",
    "check_odf",
    "gnumeric_converter",
    "libreoffice_version",
    "major_minor",
    "parse_job",
    "parse_libreoffice_version",
    "run_command",
    "tool_version",
    "uno_available",
    "worker_dict",
    "worker_spec",
]
