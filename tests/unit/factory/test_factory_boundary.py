"""The reference factory is its own program: it imports only itself, app.domain and the standard
library (import-linter forbids the server's packages; this checks the allow-list side)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import app.factory

FACTORY = Path(app.factory.__file__).parent
# Run by the system python (python3-uno), never imported by convhub: it may import uno.
SYSTEM_PYTHON_ONLY = {"uno_bridge.py"}


def absolute_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def allowed(module: str) -> bool:
    top = module.split(".")[0]
    if top == "app":
        return module.startswith(("app.domain", "app.factory"))
    return top in sys.stdlib_module_names or top == "__future__"


def test_every_factory_module_imports_only_itself_the_domain_and_the_standard_library():
    modules = sorted(p for p in FACTORY.rglob("*.py") if p.name not in SYSTEM_PYTHON_ONLY)
    assert len(modules) > 10  # the package was found, with its subpackages
    offending = {
        str(p.relative_to(FACTORY)): sorted(m for m in absolute_imports(p) if not allowed(m)) for p in modules
    }
    assert {k: v for k, v in offending.items() if v} == {}


def test_the_check_sees_a_forbidden_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import json\nfrom app.services import jobs\nfrom .x import y\nimport celery.app\n")
    assert sorted(m for m in absolute_imports(bad) if not allowed(m)) == ["app.services", "celery.app"]
