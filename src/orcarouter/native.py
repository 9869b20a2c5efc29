"""The compiled request path: mypyc builds of its modules, used only while they match the sources.

``scripts/build_native.py`` (run by ``make install``) compiles the modules on the request path
into ``build/native``, outside the source tree, and writes a manifest naming, for each module,
its extension file and the SHA-256 of the source it was compiled from. :func:`activate` runs when
the package is imported, before any of those modules: if the build was made for this interpreter
and every recorded source still has its hash, a finder placed first on ``sys.meta_path`` loads
the modules from their extension files. If a single source differs, none is used (compiled
modules call each other directly, so a mix would run stale code), the gateway runs from source
and a warning says why.

``ORCAROUTER_NATIVE`` chooses: unset or ``auto`` uses a build that matches, ``0`` (or ``off``)
runs from source, ``require`` raises :class:`NativeUnavailable` on import unless the build is
used (``make test`` and ``make run`` set it). ``ORCAROUTER_NATIVE_DIR`` names the build
directory; by default ``build/native`` of the checkout the package is imported from.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import logging
import os
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Any

PACKAGE = Path(__file__).resolve().parent
DEFAULT_DIR = PACKAGE.parents[1] / "build" / "native"
FORMAT = 1
OFF = frozenset({"0", "off", "false", "no"})

logger = logging.getLogger(__name__)


class NativeUnavailable(RuntimeError):
    """``ORCAROUTER_NATIVE=require`` and the compiled modules cannot be used."""


@dataclass(frozen=True, slots=True)
class NativeStatus:
    """What :func:`activate` decided: the modules loaded compiled, or why none are."""

    modules: tuple[str, ...]
    directory: Path
    reason: str  # why the build is not used; empty when it is

    @property
    def active(self) -> bool:
        return bool(self.modules)

    def describe(self) -> str:
        if self.active:
            count = len(self.modules)
            return f"{count} module{'s' * (count != 1)} compiled with mypyc, from {self.directory}"
        return f"running from source: {self.reason}"


class CompiledModules(importlib.abc.MetaPathFinder):
    """Finds the listed modules as extension files, ahead of the path's own finders."""

    def __init__(self, files: Mapping[str, Path]) -> None:
        self._files = dict(files)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        file = self._files.get(fullname)
        if file is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(file))
        return importlib.util.spec_from_file_location(fullname, file, loader=loader)


def activate(environ: Mapping[str, str] = os.environ) -> NativeStatus:
    """Put the compiled modules in front of their sources if the build matches them."""
    setting = environ.get("ORCAROUTER_NATIVE", "auto").strip().lower()
    directory = Path(environ.get("ORCAROUTER_NATIVE_DIR") or DEFAULT_DIR)
    if setting in OFF:
        return NativeStatus((), directory, "ORCAROUTER_NATIVE is off")
    manifest_path = directory / "manifest.json"
    if not manifest_path.is_file():
        status = NativeStatus((), directory, f"no compiled build at {directory}")
    else:
        files, reason = check(manifest_path, PACKAGE)
        if files:
            sys.meta_path.insert(0, CompiledModules(files))
            modules = tuple(sorted(name for name in files if name.startswith("orcarouter.")))
            return NativeStatus(modules, directory, "")
        status = NativeStatus((), directory, reason)
        if setting != "require":
            logger.warning("compiled modules not used, %s; `make install` rebuilds them", reason)
    if setting == "require":
        raise NativeUnavailable(
            f"ORCAROUTER_NATIVE=require, but {status.reason}: run `make install` to build"
            " the compiled modules, or set ORCAROUTER_NATIVE=0 to run from source"
        )
    return status


def check(manifest_path: Path, package: Path) -> tuple[dict[str, Path], str]:
    """The extension file of every module (and the shared runtime), or why the build is unusable."""
    directory = manifest_path.parent
    try:
        manifest: Any = json.loads(manifest_path.read_bytes())
        if manifest["format"] != FORMAT:
            return {}, f"{manifest_path} has format {manifest['format']!r}, not {FORMAT}"
        if manifest["interpreter"] != sysconfig.get_config_var("EXT_SUFFIX"):
            return {}, f"the build is for {manifest['interpreter']}, not this interpreter"
        runtime = manifest["runtime"]
        files = {str(runtime["module"]): directory / str(runtime["extension"])}
        for name, entry in manifest["modules"].items():
            source = package / str(entry["source"])
            if _sha256(source) != entry["sha256"]:
                return {}, f"{source.relative_to(package.parent)} changed since the build"
            files[str(name)] = directory / str(entry["extension"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return {}, f"{manifest_path} cannot be read ({type(exc).__name__}: {exc})"
    missing = [str(file) for file in files.values() if not file.is_file()]
    if missing:
        return {}, f"{missing[0]} is missing"
    return files, ""


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None
