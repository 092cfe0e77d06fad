"""Reference factory: a pull-style conversion worker speaking convhub's XML-RPC (standard library only).

Public API::

    from app.factory import (WorkerSpec, Converter, LibreOfficeConverter, CommandConverter,
                             CompositeConverter, OfficePool, FactoryRunner, make_proxy,
                             load_config, build_converter, ConversionError, ConversionTimeout)
"""

from .config import FactoryConfig, build_converter, load_config
from .converters import (
    CommandConverter,
    CompositeConverter,
    Converter,
    LibreOfficeConverter,
    WorkerSpec,
    libreoffice_version,
    parse_job,
)
from .errors import (
    ConfigError,
    ConversionCancelled,
    ConversionError,
    ConversionTimeout,
    FactoryError,
    FatalServerError,
)
from .office import OfficeInstance, OfficePool
from .runner import Backoff, FactoryRunner, Heartbeat, heartbeat_interval, make_proxy

__all__ = [
    "Backoff",
    "CommandConverter",
    "CompositeConverter",
    "ConfigError",
    "ConversionCancelled",
    "ConversionError",
    "ConversionTimeout",
    "Converter",
    "FactoryConfig",
    "FactoryError",
    "FactoryRunner",
    "FatalServerError",
    "Heartbeat",
    "LibreOfficeConverter",
    "OfficeInstance",
    "OfficePool",
    "WorkerSpec",
    "build_converter",
    "heartbeat_interval",
    "libreoffice_version",
    "load_config",
    "make_proxy",
    "parse_job",
]
