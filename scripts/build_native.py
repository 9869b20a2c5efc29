"""Compile the request path's modules with mypyc into ``build/native``, outside the source tree.

``make install`` runs this after the venv is synced; ``make run`` and ``make test`` therefore run
the compiled path. ``orcarouter.native`` loads an extension module only while its source still
has the hash the build recorded, so an edited ``.py`` is never shadowed by a stale build: the
gateway runs from source until this script builds again.

The build is skipped when its fingerprint (every source under ``src/orcarouter``, since the types
of imported modules shape the compiled code; this script; mypy's version; the interpreter) is the
one recorded in the manifest. It builds into a fresh directory and swaps it in whole, so a failed
build leaves the previous one (or none) in place.

    python scripts/build_native.py [--out build/native] [--force]

``ORCAROUTER_NATIVE=0`` in the environment skips the build (and the loading).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import sysconfig
import time
from pathlib import Path

import dataclass_inits

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "orcarouter"

# The modules on the request path, by the profile (bench/profiles/README.md rounds 16 and 18: the
# translations and the canonical types they build, the upstream client, routers and fan-out).
COMPILED = (
    "api/asgi",
    "api/auth",
    "api/inference",
    "api/relay",
    "api/server",
    "wire/sse",
    "translate/codecs",
    "translate/common",
    "translate/usage",
    "routing/decision",
    "routing/health",
    "routing/needs",
    "routing/resolve",
    "routing/select",
    "routing/strategies",
    "metering/journal",
    "metering/pricing",
    "metering/stats",
    "metering/usage",
    "providers/anthropic",
    "providers/base",
    "providers/exchange",
    "providers/openai_compat",
    "accounts/access",
    "accounts/keys",
    "accounts/rate_limits",
    "accounts/shared_rate_limits",  # its lease extends rate_limits' Lease
    "routing/candidates",
    "transport/client",  # its async generator is transport/chunks (mypyc has none yet)
    "translate/openai_chat/messages",
    "translate/openai_chat/ordering",
    "translate/openai_chat/parts",
    "translate/openai_chat/requests",
    "translate/openai_chat/responses",
    "translate/openai_chat/stream_decode",
    "translate/openai_chat/stream_encode",
    "translate/anthropic_messages/blocks",
    "translate/anthropic_messages/messages",
    "translate/anthropic_messages/options",
    "translate/anthropic_messages/requests",
    "translate/anthropic_messages/responses",
    "translate/anthropic_messages/stream_decode",
    "translate/anthropic_messages/stream_encode",
    "translate/anthropic_messages/thinking",
    "translate/gemini/config",
    "translate/gemini/contents",
    "translate/gemini/fields",
    "translate/gemini/grounding",
    "translate/gemini/parts",
    "translate/gemini/requests",
    "translate/gemini/responses",
    "translate/gemini/schema",
    "translate/gemini/stream_decode",
    "translate/gemini/stream_encode",
    "translate/gemini/tools",
    "translate/reasoning",
    "translate/signatures",
    "translate/stop_reasons",
    "canonical/content",
    "canonical/conversation",
    "canonical/response",
    "canonical/stream",
    "routing/routers",
    "api/fanout",
    "catalog/model",  # prices and model facts read on every request (tiers, price_at, get)
    "store/ids",  # the request id and the record's time
)
GROUP = "orcarouter_native"  # the shared library's name: orcarouter_native__mypyc
MANIFEST = "manifest.json"
FORMAT = 1


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fingerprint() -> str:
    """What the build depends on: all sources, this script, mypy and the interpreter."""
    import mypy.version

    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(f"{path.relative_to(PACKAGE)}\0{sha256(path)}\n".encode())
    for script in (Path(__file__), Path(dataclass_inits.__file__)):
        digest.update(sha256(script.resolve()).encode())
    digest.update(f"{mypy.version.__version__}\0{sys.version}\0{interpreter_tag()}".encode())
    return digest.hexdigest()


def interpreter_tag() -> str:
    """The extension suffix names the interpreter an extension module loads into."""
    return str(sysconfig.get_config_var("EXT_SUFFIX"))


def recorded_fingerprint(out: Path) -> str | None:
    try:
        manifest = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    value = manifest.get("fingerprint") if isinstance(manifest, dict) else None
    return value if isinstance(value, str) else None


def copy_sources(work: Path) -> list[Path]:
    """The package and the project's mypy settings copied under ``work``, the compiled modules'
    dataclasses given written-out ``__init__`` methods (``dataclass_inits``); returns the
    compiled modules' copies, at the same paths relative to ``work`` as the sources' to the
    project, so compiled code's tracebacks name the project's files."""
    copy = work / PACKAGE.relative_to(ROOT)
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", work / "pyproject.toml")
    modules = {"orcarouter." + name.replace("/", "."): copy / f"{name}.py" for name in COMPILED}
    written, notes = dataclass_inits.written_out(
        {module: path.read_text() for module, path in modules.items()}
    )
    for module, path in modules.items():
        path.write_text(written[module])
    for note in notes:
        print(f"build_native: the dataclass {note}; its __init__ stays interpreted")
    return list(modules.values())


def build(out: Path) -> None:
    """Compile into a fresh directory beside ``out``, write its manifest, then swap it in."""
    from mypyc.build import mypycify
    from setuptools import Distribution

    work = out.parent / (out.name + "-work")
    staging = out.parent / (out.name + "-new")
    shutil.rmtree(staging, ignore_errors=True)
    sources = [PACKAGE / f"{name}.py" for name in COMPILED]
    # Taken before compiling: a source edited during the build must leave the build stale.
    hashes, built_from = [sha256(path) for path in sources], fingerprint()
    copied = copy_sources(work)
    os.chdir(work)  # mypy reads the project's [tool.mypy] from the pyproject.toml copied here
    extensions = mypycify(
        [str(path.relative_to(work)) for path in copied],
        opt_level="3",
        group_name=GROUP,
        target_dir=str(work),
    )
    dist = Distribution({"name": "orcarouter-native", "ext_modules": extensions})
    command = dist.get_command_obj("build_ext")
    command.build_lib = str(staging)
    command.build_temp = str(work / "temp")
    command.parallel = os.cpu_count() or 1
    dist.run_command("build_ext")

    modules = {}
    for digest, name in zip(hashes, COMPILED, strict=True):
        module = "orcarouter." + name.replace("/", ".")
        extension = f"orcarouter/{name}{interpreter_tag()}"
        if not (staging / extension).is_file():
            raise SystemExit(f"build_native: {extension} was not built")
        modules[module] = {
            "extension": extension,
            "source": f"{name}.py",
            "sha256": digest,
        }
    runtime = f"{GROUP}__mypyc"
    if not (staging / (runtime + interpreter_tag())).is_file():
        raise SystemExit(f"build_native: the shared library {runtime} was not built")
    manifest = {
        "format": FORMAT,
        "fingerprint": built_from,
        "interpreter": interpreter_tag(),
        "runtime": {"module": runtime, "extension": runtime + interpreter_tag()},
        "modules": modules,
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    retired = out.parent / (out.name + "-old")
    shutil.rmtree(retired, ignore_errors=True)
    if out.exists():
        out.rename(retired)
    staging.rename(out)
    shutil.rmtree(retired, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "native")
    parser.add_argument("--force", action="store_true", help="build even if up to date")
    args = parser.parse_args()
    out: Path = args.out.resolve()
    if os.environ.get("ORCAROUTER_NATIVE", "").strip().lower() in {"0", "off", "false", "no"}:
        print("build_native: ORCAROUTER_NATIVE is off; not building")
        return
    if not args.force and recorded_fingerprint(out) == fingerprint():
        print(f"build_native: {out} is up to date")
        return
    started = time.monotonic()
    out.parent.mkdir(parents=True, exist_ok=True)
    build(out)
    took = time.monotonic() - started
    print(f"build_native: {len(COMPILED)} modules compiled into {out} in {took:.0f} s")


if __name__ == "__main__":
    main()
