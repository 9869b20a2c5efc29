"""The project's scripts (``scripts/*.py``), which are no package, imported for tests."""

from __future__ import annotations

import ast
import importlib.util
import sys
import types
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def load_script(name: str) -> types.ModuleType:
    """``scripts/<name>.py`` as the module ``name`` (registered: ``dataclasses`` look a class's
    module up in ``sys.modules``)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def compiled_modules() -> list[str]:
    """The modules ``scripts/build_native.py`` compiles (``api/server``, …), read from its
    ``COMPILED`` list without importing it (it imports the build's tools)."""
    for node in ast.parse((SCRIPTS / "build_native.py").read_text()).body:
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "COMPILED":
            return list(ast.literal_eval(node.value))
    raise AssertionError("scripts/build_native.py has no COMPILED list")
