"""spyne 2.14 compatibility shims: import it quietly and make its vendored six behave on 3.11.

Every other module of the package imports spyne's names from here, so the shims always run first.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

# spyne 2.14 (its last release) imports `cgi` and vendors a six whose meta-path importer predates
# PEP 451: both warn at import time, which a `-W error` run (our pytest setting) turns into errors.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ImportWarning)
    warnings.simplefilter("ignore", DeprecationWarning)
    from spyne import (
        Application,
        Boolean,
        ByteArray,
        ComplexModel,
        DateTime,
        Double,
        Fault,
        Integer,
        Long,
        ServiceBase,
        Unicode,
        rpc,
    )
    from spyne.error import ValidationError
    from spyne.interface._base import InterfaceDocuments
    from spyne.interface.wsdl import Wsdl11
    from spyne.protocol.soap import Soap11
    from spyne.server.wsgi import WsgiApplication

__all__ = [
    "Application",
    "Boolean",
    "ByteArray",
    "ComplexModel",
    "DateTime",
    "Double",
    "Fault",
    "InterfaceDocuments",
    "Integer",
    "Long",
    "ServiceBase",
    "Soap11",
    "Unicode",
    "ValidationError",
    "WsgiApplication",
    "Wsdl11",
    "rpc",
]


def _modernise_six_importer() -> None:
    """Give spyne's vendored six importer the PEP 451 methods six 1.16 has.

    Without them, every later import that misses (e.g. prometheus_client's optional `import snappy`)
    makes Python 3.11 warn "_SixMetaPathImporter.find_spec() not found" from whatever imports next.
    """
    import importlib.util
    import types

    for finder in sys.meta_path:
        if type(finder).__name__ != "_SixMetaPathImporter" or hasattr(finder, "find_spec"):
            continue

        def find_spec(self: Any, fullname: str, path: Any = None, target: Any = None) -> Any:
            return importlib.util.spec_from_loader(fullname, self) if fullname in self.known_modules else None

        def create_module(self: Any, spec: Any) -> Any:
            return self.load_module(spec.name)

        def exec_module(self: Any, module: Any) -> None:
            return None

        finder.find_spec = types.MethodType(find_spec, finder)  # type: ignore[method-assign]
        finder.create_module = types.MethodType(create_module, finder)  # type: ignore[attr-defined]
        finder.exec_module = types.MethodType(exec_module, finder)  # type: ignore[attr-defined]


_modernise_six_importer()
