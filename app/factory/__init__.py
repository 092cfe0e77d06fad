"""Reference factory: a pull-style conversion worker speaking convhub's XML-RPC (standard library only).

Public API::

    from app.factory import (WorkerSpec, Converter, LibreOfficeConverter, CommandConverter,
                             CompositeConverter, OfficePool, FactoryRunner, make_proxy,
                             load_config, build_converter, ConversionError, ConversionTimeout,
                             JobHandler, LeasedJob, LeaseClient, Extension, XmlRpcLeaseClient)

The factory core (``JobHandler`` + ``Heartbeat`` over the ``LeaseClient`` port) serves the pull
factory here and the push factory in ``tasks/factory_worker.py``.
"""

from .backoff import Backoff
from .config import FactoryConfig, build_converter, load_config
from .converters import (
    CommandConverter,
    CompositeConverter,
    Converter,
    LibreOfficeConverter,
    WorkerSpec,
    libreoffice_version,
    parse_job,
    worker_dict,
)
from .errors import (
    ConfigError,
    ConversionCancelled,
    ConversionError,
    ConversionTimeout,
    FactoryError,
    FatalServerError,
)
from .handler import ABANDONED, FAILED, FINISHED, JobHandler, LeasedJob
from .heartbeat import Heartbeat, heartbeat_interval
from .lease import (
    Extension,
    LeaseClient,
    LeaseClientError,
    LeaseLost,
    ResultRefused,
    ResultTooLarge,
    ServerUnavailable,
)
from .office import OfficeInstance, OfficePool
from .runner import FactoryRunner
from .xmlrpc_client import make_proxy
from .xmlrpc_lease import XmlRpcLeaseClient

__all__ = [
    "ABANDONED",
    "FAILED",
    "FINISHED",
    "Backoff",
    "CommandConverter",
    "CompositeConverter",
    "ConfigError",
    "ConversionCancelled",
    "ConversionError",
    "ConversionTimeout",
    "Converter",
    "Extension",
    "FactoryConfig",
    "FactoryError",
    "FactoryRunner",
    "FatalServerError",
    "Heartbeat",
    "JobHandler",
    "LeaseClient",
    "LeaseClientError",
    "LeaseLost",
    "LeasedJob",
    "LibreOfficeConverter",
    "OfficeInstance",
    "OfficePool",
    "ResultRefused",
    "ResultTooLarge",
    "ServerUnavailable",
    "WorkerSpec",
    "XmlRpcLeaseClient",
    "build_converter",
    "heartbeat_interval",
    "libreoffice_version",
    "load_config",
    "make_proxy",
    "parse_job",
    "worker_dict",
]
