"""The compiled modules' constants are ``Final``.

Compiled code reads a module-level name that is not ``Final`` through the module's dict (about
130 instructions a read; the Anthropic raw-text path did it six times per streamed event), a
``Final`` one from a C static (bench/profiles/README.md, round 20). This keeps a new constant
from slipping back to the slow read.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.support.scripts import compiled_modules

PACKAGE = Path(__file__).resolve().parents[3] / "src" / "orcarouter"
CONSTANT = re.compile(r"^_?[A-Z][A-Z0-9_]+$")
# Tests patch these on the module (a C static would not see the patch); they are read once per
# connection or per stream, not per event.
PATCHED = {("api/server", "LINGER"), ("api/server", "LINGER_MAX"), ("api/server", "BODY_TIMEOUT")}
PATCHED |= {("providers/openai_compat", "_DELTA")}
COMPILED = compiled_modules()


def constants_not_final(source: str) -> list[str]:
    """Top-level names spelled as constants and bound once, whose binding is not ``Final``."""
    tree = ast.parse(source)
    bound: dict[str, int] = {}
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            targets = [node.target]
        for target in targets:
            for name in ast.walk(target):
                if isinstance(name, ast.Name):
                    bound[name.id] = bound.get(name.id, 0) + 1
    found = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, annotation = node.targets[0], None
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, annotation = node.target, node.annotation
        else:
            continue
        if not isinstance(target, ast.Name) or not CONSTANT.match(target.id):
            continue
        if bound.get(target.id) != 1 or _is_type_variable(node.value):
            continue
        if annotation is None or "Final" not in ast.unparse(annotation):
            found.append(target.id)
    return found


def _is_type_variable(value: ast.expr | None) -> bool:
    return (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Name)
        and value.func.id in ("TypeVar", "ParamSpec", "NewType")
    )


@pytest.mark.parametrize("module", COMPILED)
def test_a_compiled_modules_constants_are_final(module: str) -> None:
    source = (PACKAGE / f"{module}.py").read_text()
    missing = [name for name in constants_not_final(source) if (module, name) not in PATCHED]
    assert missing == [], f"{module}: make these Final (or say why not): {missing}"


def test_the_check_finds_a_plain_constant_and_passes_the_others() -> None:
    source = (
        "from typing import Final, TypeVar\n"
        "LIMIT = 5\n"
        "TABLE: dict[str, int] = {}\n"
        "DONE: Final = 1\n"
        "TYPED: Final[int] = 2\n"
        "T = TypeVar('T')\n"
        "COUNT = 0\n"
        "COUNT += 1\n"
        "lower = 3\n"
    )
    assert constants_not_final(source) == ["LIMIT", "TABLE"]
