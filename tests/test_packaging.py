"""The package builds without a setuptools warning and ships what the library reads at run time."""

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import nin_keras

REPO = Path(__file__).resolve().parents[1]
setuptools = pytest.importorskip("setuptools")


def _copy_sources(to: Path) -> None:
    """The files a wheel build reads; HDF5 weights are left out (the build treats them like the JSON)."""
    for name in ("pyproject.toml", "LICENSE", "README.md"):
        shutil.copy2(REPO / name, to / name)
    skip = shutil.ignore_patterns("__pycache__", "*.h5", "runs", "zoo", "export")
    shutil.copytree(REPO / "nin_keras", to / "nin_keras", ignore=skip)  # zoo/export: worktree links
    for folder in ("zoo", "export"):
        shutil.copytree(REPO / folder, to / folder, ignore=skip)


def _build(hook: str, source: Path, dist: Path) -> Path:
    """Run a PEP 517 hook of setuptools (what ``pip install`` runs) and assert it warns about nothing."""
    build = ("import sys, setuptools.build_meta as backend\n"
             f"print(backend.{hook}(sys.argv[1]))\n")
    # -W always: no warning is swallowed as already shown.
    done = subprocess.run([sys.executable, "-W", "always", "-c", build, str(dist)], cwd=source,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout + done.stderr
    # A Python warning ("...py:82: SetuptoolsDeprecationWarning: ...") or distutils' "warning: ...";
    # not distutils' "byte-compiling is disabled" note (it follows PYTHONDONTWRITEBYTECODE), nor
    # build_editable's "InformationOnly: Editable installation" note (any package-dir map gets it).
    warning = re.compile(r"\w*Warning: |^\s*warning: ")
    warnings = [line for line in log.splitlines() if warning.search(line) and "byte-compil" not in line]
    assert warnings == [], "\n".join(warnings)
    return dist / done.stdout.strip().splitlines()[-1]


@pytest.mark.skipif(tuple(map(int, setuptools.__version__.split(".")[:2])) < (77, 0),
                    reason="SPDX license metadata needs setuptools >= 77 (the dev extra installs it)")
def test_clean_build_and_the_wheel_ships_license_recipes_and_weights(tmp_path):
    source, dist = tmp_path / "source", tmp_path / "dist"
    source.mkdir()
    dist.mkdir()
    _copy_sources(source)
    _build("build_editable", source, dist)  # pip install -e .
    wheel = _build("build_wheel", source, dist)  # pip install .
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"nin_keras-{nin_keras.__version__}.dist-info"
        metadata = archive.read(f"{info}/METADATA").decode()
    assert f"Version: {nin_keras.__version__}" in metadata.splitlines()  # one version source
    assert "License-Expression: BSD-3-Clause" in metadata.splitlines()
    assert f"{info}/licenses/LICENSE" in names
    recipes = {p.name for p in (REPO / "zoo" / "recipes").glob("*.json")}
    assert recipes and {f"nin_keras/zoo/recipes/{name}" for name in recipes} <= names
    metadata_files = {f"nin_keras/zoo/weights/{p.parent.name}/metadata.json"
                      for p in (REPO / "zoo" / "weights").glob("*/metadata.json")}
    assert metadata_files and metadata_files <= names and "nin_keras/zoo/weights/index.json" in names
    assert "nin_keras/zoo/README.md" in names and "nin_keras/export/exporter.py" in names
    # The web export's page ships with the library (its runtime comes from npm at export time).
    assert {f"nin_keras/export/web_page/{p.name}" for p in (REPO / "export" / "web_page").iterdir()} <= names


def _setup_calls(tmp_path: Path, *args: str) -> list[str]:
    """Run scripts/setup.sh in a copy of the repository whose venv is current, with apt-get and
    npm replaced by programs that only record their arguments; return what was called."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / "web").mkdir()
    for name in ("setup.sh", "venv.sh"):
        shutil.copy2(REPO / "scripts" / name, repo / "scripts" / name)
    shutil.copy2(REPO / "pyproject.toml", repo / "pyproject.toml")
    shutil.copy2(REPO / "web" / "package.json", repo / "web" / "package.json")
    (repo / ".venv" / "bin").mkdir(parents=True)
    (repo / ".venv" / "bin" / "python").symlink_to(sys.executable)
    digest = subprocess.run(["sha256sum", "pyproject.toml"], cwd=repo, capture_output=True, text=True).stdout.split()[0]
    (repo / ".venv" / ".install-stamp").write_text(f"pyproject.toml sha256 {digest}\n")  # set up with --test
    calls = tmp_path / "calls"
    shims = tmp_path / "bin"
    shims.mkdir()
    for tool in ("apt-get", "npm"):
        (shims / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\n')
        (shims / tool).chmod(0o755)
    env = {"PATH": f"{shims}:/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(["bash", "scripts/setup.sh", *args], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert all(line.startswith("setup: ") for line in done.stdout.splitlines()), done.stdout
    return calls.read_text().splitlines() if calls.exists() else []


def test_the_quick_start_installs_no_browser_or_web_runtime(tmp_path):
    # Before: the quick start ran `npm ci` and (as root) apt-get install chromium chromium-driver.
    assert _setup_calls(tmp_path) == []
    assert any(call.startswith("npm ci") for call in _setup_calls(tmp_path / "test", "--test"))
    readme = (REPO / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in quick_start.splitlines()] == [
        "bash scripts/quickstart.sh", "bash scripts/test.sh"]
    assert "bash scripts/setup.sh\n" in (REPO / "scripts" / "quickstart.sh").read_text()
    assert "bash scripts/setup.sh --test\n" in (REPO / "scripts" / "test.sh").read_text()
