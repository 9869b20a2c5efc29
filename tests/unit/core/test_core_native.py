"""The compiled request path (``orcarouter.native``): loaded only while it matches its sources."""

from __future__ import annotations

import ast
import dataclasses
import enum
import hashlib
import importlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import types
from pathlib import Path
from typing import Any

import pytest

import orcarouter
from orcarouter import native
from orcarouter.native import FORMAT, CompiledModules, NativeUnavailable, activate, check
from tests.support.scripts import compiled_modules, load_script

SUFFIX = str(sysconfig.get_config_var("EXT_SUFFIX"))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _build(directory: Path, package: Path, sources: dict[str, str], **overrides: Any) -> Path:
    """A manifest in ``directory`` for ``sources`` (module: source file under ``package``), with
    an (empty) extension file for each, as ``scripts/build_native.py`` lays them out."""
    directory.mkdir(parents=True, exist_ok=True)
    modules = {}
    for module, source in sources.items():
        extension = module.replace(".", "/") + SUFFIX
        (directory / extension).parent.mkdir(parents=True, exist_ok=True)
        (directory / extension).write_bytes(b"")
        modules[module] = {
            "extension": extension,
            "source": source,
            "sha256": _digest(package / source),
        }
    (directory / ("runtime__mypyc" + SUFFIX)).write_bytes(b"")
    manifest = {
        "format": FORMAT,
        "fingerprint": "f",
        "interpreter": SUFFIX,
        "runtime": {"module": "runtime__mypyc", "extension": "runtime__mypyc" + SUFFIX},
        "modules": modules,
    } | overrides
    path = directory / "manifest.json"
    path.write_text(json.dumps(manifest))
    return path


@pytest.fixture
def package(tmp_path: Path) -> Path:
    root = tmp_path / "src" / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "fast.py").write_text("X = 1\n")
    (root / "sub" / "hot.py").write_text("Y = 2\n")
    return root


SOURCES = {"pkg.fast": "fast.py", "pkg.sub.hot": "sub/hot.py"}


def test_a_build_that_matches_its_sources_names_every_extension(
    tmp_path: Path, package: Path
) -> None:
    manifest = _build(tmp_path / "native", package, SOURCES)
    files, reason = check(manifest, package)
    assert reason == ""
    assert files == {
        "runtime__mypyc": tmp_path / "native" / ("runtime__mypyc" + SUFFIX),
        "pkg.fast": tmp_path / "native" / ("pkg/fast" + SUFFIX),
        "pkg.sub.hot": tmp_path / "native" / ("pkg/sub/hot" + SUFFIX),
    }


def test_one_edited_source_leaves_the_whole_build_unused(tmp_path: Path, package: Path) -> None:
    manifest = _build(tmp_path / "native", package, SOURCES)
    (package / "sub" / "hot.py").write_text("Y = 3\n")
    assert check(manifest, package) == ({}, "pkg/sub/hot.py changed since the build")
    (package / "sub" / "hot.py").unlink()
    assert check(manifest, package) == ({}, "pkg/sub/hot.py changed since the build")


def test_a_build_for_another_interpreter_is_not_used(tmp_path: Path, package: Path) -> None:
    manifest = _build(tmp_path / "native", package, SOURCES, interpreter=".cpython-39-x.so")
    files, reason = check(manifest, package)
    assert files == {} and reason == "the build is for .cpython-39-x.so, not this interpreter"


def test_a_missing_extension_leaves_the_build_unused(tmp_path: Path, package: Path) -> None:
    manifest = _build(tmp_path / "native", package, SOURCES)
    (tmp_path / "native" / ("runtime__mypyc" + SUFFIX)).unlink()
    files, reason = check(manifest, package)
    assert files == {} and reason.endswith(f"runtime__mypyc{SUFFIX} is missing")


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[]",
        b'{"format": 1}',
        b'{"format": 2}',
        b'{"format": 1, "interpreter": "%s", "runtime": {}}' % SUFFIX.encode(),
        b'{"format": 1, "interpreter": "%s", "runtime": {"module": "r", "extension": "r"},'
        b' "modules": {"m": {"source": "x"}}}' % SUFFIX.encode(),
    ],
)
def test_an_unreadable_manifest_leaves_the_build_unused(
    tmp_path: Path, package: Path, content: bytes
) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_bytes(content)
    files, reason = check(manifest, package)
    assert files == {}
    assert str(manifest) in reason


def _finders() -> list[object]:
    return [finder for finder in sys.meta_path if isinstance(finder, CompiledModules)]


def test_off_runs_from_source_whatever_is_built(tmp_path: Path) -> None:
    before = _finders()
    status = activate({"ORCAROUTER_NATIVE": "0", "ORCAROUTER_NATIVE_DIR": str(tmp_path)})
    assert not status.active
    assert status.describe() == "running from source: ORCAROUTER_NATIVE is off"
    assert _finders() == before


def test_without_a_build_the_gateway_runs_from_source_quietly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = _finders()
    status = activate({"ORCAROUTER_NATIVE_DIR": str(tmp_path / "none")})
    assert not status.active and status.reason == f"no compiled build at {tmp_path / 'none'}"
    assert _finders() == before
    assert caplog.records == []


def test_require_refuses_to_start_from_source(tmp_path: Path) -> None:
    with pytest.raises(NativeUnavailable, match="make install"):
        activate({"ORCAROUTER_NATIVE": "require", "ORCAROUTER_NATIVE_DIR": str(tmp_path)})
    _build(tmp_path, native.PACKAGE, {"orcarouter.native": "native.py"}, interpreter="x")
    with pytest.raises(NativeUnavailable, match="not this interpreter"):
        activate({"ORCAROUTER_NATIVE": "require", "ORCAROUTER_NATIVE_DIR": str(tmp_path)})


def test_a_stale_build_is_named_in_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manifest = _build(tmp_path, native.PACKAGE, {"orcarouter.native": "native.py"})
    content = json.loads(manifest.read_text())
    content["modules"]["orcarouter.native"]["sha256"] = "0" * 64
    manifest.write_text(json.dumps(content))
    before = _finders()
    with caplog.at_level(logging.WARNING, logger="orcarouter.native"):
        status = activate({"ORCAROUTER_NATIVE_DIR": str(tmp_path)})
    assert not status.active and status.reason == "orcarouter/native.py changed since the build"
    assert _finders() == before
    assert [r.getMessage() for r in caplog.records] == [
        "compiled modules not used, orcarouter/native.py changed since the build;"
        " `make install` rebuilds them"
    ]


def test_a_matching_build_is_found_first(tmp_path: Path) -> None:
    # A module name no one imports, with a real source of the package behind it.
    _build(tmp_path, native.PACKAGE, {"orcarouter.compiled_probe": "native.py"})
    status = activate({"ORCAROUTER_NATIVE": "require", "ORCAROUTER_NATIVE_DIR": str(tmp_path)})
    finder = sys.meta_path[0]
    try:
        assert status.modules == ("orcarouter.compiled_probe",)
        assert status.describe() == f"1 module compiled with mypyc, from {tmp_path}"
        assert isinstance(finder, CompiledModules)
        spec = finder.find_spec("orcarouter.compiled_probe", None)
        assert spec is not None and spec.origin == str(
            tmp_path / ("orcarouter/compiled_probe" + SUFFIX)
        )
        assert isinstance(spec.loader, importlib.machinery.ExtensionFileLoader)
        assert finder.find_spec("orcarouter.settings", None) is None
    finally:
        sys.meta_path.remove(finder)


# --- the real build ---------------------------------------------------------------------------

compiled = pytest.mark.skipif(
    not orcarouter.NATIVE.active, reason=f"the tests run {orcarouter.NATIVE.describe()}"
)


def test_make_test_runs_the_compiled_build() -> None:
    if os.environ.get("ORCAROUTER_NATIVE") != "require":
        pytest.skip("ORCAROUTER_NATIVE is not require: the tests may run from source")
    assert orcarouter.NATIVE.active
    for name in orcarouter.NATIVE.modules:
        module = importlib.import_module(name)
        assert module.__file__ is not None
        assert Path(module.__file__).is_relative_to(orcarouter.NATIVE.directory), name
        assert module.__file__.endswith(SUFFIX)


@compiled
@pytest.mark.parametrize("name", orcarouter.NATIVE.modules)
def test_compiled_classes_keep_their_class_constants(name: str) -> None:
    # mypyc turns a class body's assignments into per-instance defaults (read through
    # instances) on its own classes, and once dropped them on a subclass of an interpreted
    # class: an error's ``code`` came out as its base's.
    module = importlib.import_module(name)
    assert module.__file__ is not None
    source = native.PACKAGE / Path(*name.split(".")[1:]).with_suffix(".py")
    for node in ast.parse(source.read_text()).body:
        if not isinstance(node, ast.ClassDef):
            continue
        cls = getattr(module, node.name)
        for statement in node.body:
            if not (
                isinstance(statement, ast.Assign | ast.AnnAssign)
                and isinstance(statement.value, ast.Constant)
            ):
                continue
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            for target in targets:
                assert isinstance(target, ast.Name)
                value = cls.__dict__.get(target.id, getattr(cls, target.id))
                if isinstance(value, types.GetSetDescriptorType | types.MemberDescriptorType):
                    continue  # a compiled class's attribute, with its default per instance
                if isinstance(value, enum.Enum):
                    value = value.value
                assert value == statement.value.value, f"{name}.{node.name}.{target.id}"


def _compiled_sources() -> list[Path]:
    """The sources ``scripts/build_native.py`` compiles."""
    return [native.PACKAGE / f"{name}.py" for name in compiled_modules()]


def _module_of(source: Path) -> str:
    return "orcarouter." + ".".join(source.relative_to(native.PACKAGE).with_suffix("").parts)


def _handlers(function: ast.AST) -> dict[str, list[str]]:
    """Per name an ``except ... as name`` of ``function`` binds, the handlers' exception types
    in source order."""
    bound: dict[str, list[str]] = {}
    for node in ast.walk(function):
        if isinstance(node, ast.ExceptHandler) and node.name and node.type is not None:
            bound.setdefault(node.name, []).append(ast.unparse(node.type))
    return bound


def _classes(expression: str, namespace: dict[str, Any]) -> tuple[type, ...]:
    caught = eval(expression, namespace)  # noqa: S307 (a handler's type, from our own source)
    return caught if isinstance(caught, tuple) else (caught,)


def test_no_compiled_function_binds_one_name_to_unrelated_exceptions() -> None:
    # mypyc types an ``except ... as name`` variable by its first handler; a later handler
    # binding the same name to another class raises TypeError when it catches: a 500 for what
    # should be the client's 400 (too many image URLs, a request that cannot be read). A later
    # handler of subclasses of the first one's classes is safe.
    shared = []
    for source in _compiled_sources():
        module = importlib.import_module(_module_of(source))
        for node in ast.walk(ast.parse(source.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for name, kinds in _handlers(node).items():
                first = _classes(kinds[0], vars(module))
                for later in kinds[1:]:
                    if not all(issubclass(c, first) for c in _classes(later, vars(module))):
                        shared.append(f"{source.name}:{node.lineno} {node.name}: {name} {kinds}")
    assert shared == []


@compiled
def test_interpreted_subclasses_never_shadow_a_compiled_attribute() -> None:
    # Compiled code reads a compiled class's attributes from their native slots; a subclass
    # made by the interpreter that declares one again (a slotted dataclass repeating the
    # base's fields) stores it elsewhere, and compiled code then finds the attribute unset.
    importlib.import_module("orcarouter.app")  # every subclass the gateway defines
    seen = 0
    for name in orcarouter.NATIVE.modules:
        module = importlib.import_module(name)
        for base in vars(module).values():
            if not (isinstance(base, type) and base.__module__ == name):
                continue
            native = {
                attr
                for attr, value in vars(base).items()
                if isinstance(value, types.GetSetDescriptorType | types.MemberDescriptorType)
            }
            subclasses: list[type] = base.__subclasses__()
            for sub in subclasses:
                if sub.__module__ in orcarouter.NATIVE.modules:
                    continue
                seen += 1
                shadowing = native & set(vars(sub))
                assert not shadowing, f"{sub.__module__}.{sub.__name__}: {sorted(shadowing)}"
    assert seen  # the Gemini observer, at least


def _run(code: str, directory: Path, setting: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"ORCAROUTER_NATIVE": setting, "ORCAROUTER_NATIVE_DIR": str(directory)}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )


PROBE = "import orcarouter, orcarouter.api.server as s; print(s.__file__)"


@compiled
def test_an_edited_source_is_run_from_source_never_from_a_stale_build(tmp_path: Path) -> None:
    build = tmp_path / "native"
    shutil.copytree(orcarouter.NATIVE.directory, build)
    loaded = _run(PROBE, build, "require")
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == str(build / ("orcarouter/api/server" + SUFFIX))

    manifest = json.loads((build / "manifest.json").read_text())
    manifest["modules"]["orcarouter.api.server"]["sha256"] = "0" * 64  # as if edited
    (build / "manifest.json").write_text(json.dumps(manifest))
    stale = _run(PROBE, build, "auto")
    assert stale.returncode == 0, stale.stderr
    assert stale.stdout.strip() == str(native.PACKAGE / "api" / "server.py")
    assert "orcarouter/api/server.py changed since the build" in stale.stderr
    refused = _run(PROBE, build, "require")
    assert refused.returncode != 0
    assert "NativeUnavailable" in refused.stderr and "make install" in refused.stderr


@compiled
def test_compiled_dataclasses_are_built_by_compiled_code() -> None:
    # mypyc leaves the methods ``dataclasses`` generates interpreted (a frozen one's __init__
    # took about 11,500 instructions to build one ``Usage``); the build writes each __init__
    # out in the copy it compiles (scripts/dataclass_inits.py), and names those it cannot.
    inits = load_script("dataclass_inits")
    sources = {_module_of(source): source.read_text() for source in _compiled_sources()}
    _, notes = inits.written_out(sources)
    left = {note.split(":")[0] for note in notes}
    interpreted, checked = set(), 0
    for name in sources:
        module = importlib.import_module(name)
        for cls in vars(module).values():
            if not (isinstance(cls, type) and cls.__module__ == name):
                continue
            if dataclasses.is_dataclass(cls):
                checked += 1
                if isinstance(cls.__init__, types.FunctionType):
                    interpreted.add(f"{name}.{cls.__name__}")
    assert checked > 90
    assert interpreted == left
