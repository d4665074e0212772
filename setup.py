"""The two build steps pyproject.toml cannot state (everything else is declared there).

1. The web export's runtime goes into the wheel. ``nin_keras.export.web`` copies ONNX Runtime Web
   (the npm package ``onnxruntime-web`` pinned in ``web/package.json``) into every web export. It
   is 29 MB, almost all of it one WebAssembly binary, so it is not kept in git: ``scripts/setup.sh
   --test`` installs it into ``web/node_modules``, and building the wheel copies the few files the
   page loads into ``nin_keras/export/web_runtime/``, in the same layout as ``web/`` (the pin, the
   package's ``package.json``, its ``dist/`` files), so ``web.find_runtime`` checks the packaged
   copy exactly as it checks the checkout's. The sdist carries the same files, so a wheel built
   from it has them too. Without them (no ``npm ci``, or another version installed) the wheel is
   built without a runtime and its web export refuses, saying why.
2. The editable install is quiet: the package-dir map of ``zoo/`` and ``export/`` makes setuptools
   install through an import hook and emit an ``InformationOnly`` note about folders in the working
   directory named like the package, which pip shows as a ``BuildBackendWarning``. No such folder
   exists here (``nin_keras/`` is the package itself), so the note is filtered out.
"""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
import sys
import warnings
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist
from setuptools.warnings import InformationOnly

warnings.filterwarnings("ignore", message="Editable installation", category=InformationOnly)

HERE = Path(__file__).resolve().parent
PACKAGE = "onnxruntime-web"
#: Where the runtime goes in the wheel (``nin_keras.export.web.PACKAGED_RUNTIME``).
WHEEL_FOLDER = Path("nin_keras", "export", "web_runtime")


def _runtime_files() -> list[str]:
    """``RUNTIME_FILES`` of ``export/web.py``, read rather than imported (a build has no Keras)."""
    for node in ast.parse((HERE / "export" / "web.py").read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "RUNTIME_FILES" for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise RuntimeError("export/web.py defines no RUNTIME_FILES")


def runtime_sources(web: Path = HERE / "web") -> tuple[dict[str, Path], str | None]:
    """``{path relative to web/: file}`` of the runtime the wheel ships, or ``({}, why not)``."""
    module = Path("node_modules", PACKAGE)
    try:
        pinned = json.loads((web / "package.json").read_text())["dependencies"][PACKAGE]
        installed = json.loads((web / module / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return {}, f"{PACKAGE} is not installed in {web / 'node_modules'} ({type(err).__name__})"
    if installed != pinned:
        return {}, f"{web / module} is version {installed}, web/package.json pins {pinned}"
    names = [Path("package.json"), module / "package.json", *(module / "dist" / n for n in _runtime_files())]
    missing = [str(name) for name in names if not (web / name).is_file()]
    if missing:
        return {}, f"{web} lacks {', '.join(missing)}"
    return {name.as_posix(): web / name for name in names}, None


def _provenance(files: dict[str, Path], web: Path) -> str:
    """PROVENANCE.txt: what the folder holds, its version, licence and where npm got it."""
    info = json.loads(files[f"node_modules/{PACKAGE}/package.json"].read_text())
    try:
        locked = json.loads((web / "package-lock.json").read_text())["packages"][f"node_modules/{PACKAGE}"]
    except (OSError, ValueError, KeyError):
        locked = {}
    lines = [f"{PACKAGE} {info['version']}, licence {info.get('license')} (Copyright (c) Microsoft Corporation;",
             "the MIT text is in the ort/LICENSE.txt of every web export).",
             f"Copied unchanged from the npm package at wheel-build time (setup.py), npm integrity "
             f"{locked.get('integrity', 'unknown')}.", "", "sha256 of each file:"]
    lines += [f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {name}" for name, path in sorted(files.items())]
    return "\n".join(lines) + "\n"


def copy_runtime(to: Path, web: Path = HERE / "web") -> str | None:
    """Copy the runtime into the folder ``to`` (layout of ``web/``); return why not, or None."""
    files, why = runtime_sources(web)
    if why is not None:
        return why
    for name, source in files.items():
        (to / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, to / name)
    (to / "PROVENANCE.txt").write_text(_provenance(files, web))
    return None


class BuildPyWithRuntime(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # the editable install reads the checkout's web/ directly
            return
        target = Path(self.build_lib) / WHEEL_FOLDER
        shutil.rmtree(target, ignore_errors=True)  # a previous in-place build's copy must not linger
        why = copy_runtime(target)
        if why is not None:
            print(f"nin-keras: this build ships no web runtime ({why}); its web export will refuse. "
                  "scripts/setup.sh --test installs it.", file=sys.stderr)


class SdistWithRuntime(sdist):
    def make_release_tree(self, base_dir, files) -> None:
        super().make_release_tree(base_dir, files)
        web = Path(base_dir) / "web"
        web.mkdir(exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            if (HERE / "web" / name).is_file():
                shutil.copyfile(HERE / "web" / name, web / name)
        copy_runtime(web)  # without it the sdist, like the wheel, has no runtime


setup(cmdclass={"build_py": BuildPyWithRuntime, "sdist": SdistWithRuntime})
