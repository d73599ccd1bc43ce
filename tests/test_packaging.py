"""cnirun as pip installs it, offline, into fresh venvs: a wheel, and an editable checkout.

Both get cnirun's own launcher (bin/cnirun, pyproject.toml's script-files) as cnirun, cnirun-hook and
cnirun-shim: it does not import re (pip's console-script wrapper does, ~7 ms a start), the editable one is
a plain .pth path (not setuptools' import-hook finder), and scripts/setup.sh's lean_launchers only adds -S
to its first line. The wheel's launcher starts within a few ms of the one `make setup` leaves.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
NAMES = ("cnirun", "cnirun-hook", "cnirun-shim")
SOURCES = ("cnirun", "bin", "netconf", "hooks", "pyproject.toml", "README.md")  # what the build reads

pytestmark = pytest.mark.slow


def _run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=300, **kw)
    assert p.returncode == 0, f"{argv}: {p.stderr[-2000:]}{p.stdout[-2000:]}"
    return p


def _source_copy(dst: Path) -> Path:
    """The sources a build reads, copied: a build writes build/ and *.egg-info next to them."""
    for name in SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dst / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, dst / name)
    return dst


def _venv_with(path: Path, wheel: Path) -> Path:
    """A fresh venv (no pip, no site packages) with `wheel` installed by this venv's pip, offline."""
    _run([PY, "-m", "venv", "--without-pip", str(path)])
    _run([PY, "-m", "pip", "--python", str(path / "bin" / "python"), "install", "--no-index", "--no-deps",
          "--disable-pip-version-check", "--no-input", str(wheel)])
    return path


def _lean_launchers(venv: Path) -> None:
    """scripts/setup.sh's lean_launchers, run as it is written there, on `venv`."""
    script = (f"source <(sed -n '/^lean_launchers() {{/,/^}}/p' {REPO / 'scripts' / 'setup.sh'})\n"
              f"VENV={venv}; ENTRY_POINTS=({' '.join(NAMES)}); lean_launchers")
    _run(["bash", "-euo", "pipefail", "-c", script])


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cnirun's wheel, built offline (`pip wheel --no-build-isolation`), installed into a fresh venv."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = _source_copy(tmp / "src")
    _run([PY, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--disable-pip-version-check",
          "-w", str(tmp / "dist"), str(src)])
    return _venv_with(tmp / "venv", next((tmp / "dist").glob("cnirun-*.whl")))


@pytest.fixture(scope="module")
def editable_venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """`pip install -e` of a copy of the checkout into a fresh venv, as pip does it: setuptools' build_editable
    (default mode), its wheel installed; then make setup's lean_launchers. (venv, checkout)."""
    tmp = tmp_path_factory.mktemp("editable")
    src = _source_copy(tmp / "src")
    dist = tmp / "dist"
    dist.mkdir()
    _run([PY, "-c", "import sys; from setuptools import build_meta; print(build_meta.build_editable(sys.argv[1]))",
          str(dist)], cwd=src)
    venv = _venv_with(tmp / "venv", next(dist.glob("cnirun-*.whl")))
    _run([PY, "-m", "compileall", "-q", str(src / "cnirun")])  # pip compiles what it installs, not a checkout
    _lean_launchers(venv)
    return venv, src


def _imports(argv: list[str], env: dict[str, str] | None = None, rc: int = 0) -> tuple[list[str], str]:
    """The modules `argv` imports (-X importtime's names) and its stdout; it exits with `rc`."""
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd="/",
                       env={**os.environ, **(env or {}), "PYTHONPROFILEIMPORTTIME": "1"})
    assert p.returncode == rc, f"{argv}: exit {p.returncode}: {p.stderr[-1500:]}"
    names = [ln.rsplit("|", 1)[1].strip() for ln in p.stderr.splitlines() if ln.startswith("import time:")]
    return names, p.stdout


def _check_commands(bindir: Path, tmp: Path) -> list[list[str]]:
    """Run each command of `bindir` (the name picks the entry point); the imports of each."""
    shim_conf = tmp / "shim.json"
    shim_conf.write_text(json.dumps({"runc": "/bin/echo"}))  # the shim ends by exec'ing "runc"
    cni, out = _imports([str(bindir / "cnirun"), "cni"], rc=2)
    assert "cnirun.cli.cni_cmd" in cni and "a drop-in for cnitool" in out
    hook, _ = _imports([str(bindir / "cnirun-hook")], rc=2)
    assert "cnirun.oci.hook" in hook and "cnirun.cli.main" not in hook
    shim, out = _imports([str(bindir / "cnirun-shim"), "state", "c1"], env={"CNIRUN_SHIM_CONFIG": str(shim_conf)})
    assert "cnirun.oci.shim" in shim and out == "state c1\n"
    return [cni, hook, shim]


def test_wheel_install_commands_run_without_re(wheel_venv: Path, tmp_path: Path) -> None:
    """pip gives the wheel's three commands its interpreter on their first line; each runs its own entry point
    and none imports re; `cnirun version` reports the installed package and its plugin launchers."""
    bindir = wheel_venv / "bin"
    for name in NAMES:
        text = (bindir / name).read_text()
        assert text.startswith(f"#!{bindir / 'python'}\n") and "import re\n" not in text, text[:200]
    for imported in _check_commands(bindir, tmp_path):
        assert "re" not in imported and "site" in imported, imported
    p = _run([str(bindir / "cnirun"), "version", "--format", "json"], cwd="/")
    info = json.loads(p.stdout)["cnirun"]
    purelib = next((wheel_venv / "lib").glob("python3.*/site-packages"))
    assert info["version"] == "0.1.0" and str(purelib / "cnirun" / "plugins" / "bin") in info["pluginDirs"]


def test_editable_install_is_a_path_and_setup_starts_it_without_site(editable_venv: tuple[Path, Path],
                                                                     tmp_path: Path) -> None:
    """A default `pip install -e` is a .pth line naming the checkout (no import-hook finder); after setup.sh's
    lean_launchers (run twice: the second changes nothing) the commands start with -S, import neither site
    nor re, and find cnirun in the checkout and its metadata in the venv."""
    venv, src = editable_venv
    purelib = next((venv / "lib").glob("python3.*/site-packages"))
    assert not list(purelib.glob("__editable__*finder*")), list(purelib.iterdir())
    assert [p.read_text().strip() for p in purelib.glob("__editable__*.pth")] == [str(src)]
    before = {name: (venv / "bin" / name).read_text() for name in NAMES}
    _lean_launchers(venv)
    for name, text in before.items():
        assert text.startswith(f"#!{venv / 'bin' / 'python'} -S\n"), text[:200]
        assert (venv / "bin" / name).read_text() == text and os.access(venv / "bin" / name, os.X_OK)
    for imported in _check_commands(venv / "bin", tmp_path):
        assert "re" not in imported and "site" not in imported, imported
    info = json.loads(_run([str(venv / "bin" / "cnirun"), "version", "--format", "json"], cwd="/").stdout)
    assert info["cnirun"]["version"] == "0.1.0"
    assert str(src / "cnirun" / "plugins" / "bin") in info["cnirun"]["pluginDirs"]


@pytest.mark.alone
def test_wheel_launcher_starts_within_a_few_ms_of_setups(wheel_venv: Path,
                                                        editable_venv: tuple[Path, Path]) -> None:
    """`cnirun cni` through the wheel's launcher (site and the venv's .pth files run) against the launcher
    make setup leaves (-S), interleaved in the same run: medians within 4 ms (pip's wrapper was ~7 ms more)."""
    argvs = {"wheel": [str(wheel_venv / "bin" / "cnirun"), "cni"],
             "setup": [str(editable_venv[0] / "bin" / "cnirun"), "cni"]}
    samples: dict[str, list[float]] = {k: [] for k in argvs}
    for _ in range(25):
        for k, argv in argvs.items():
            t0 = time.perf_counter()
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
            samples[k].append(time.perf_counter() - t0)
    wheel, setup = (statistics.median(samples[k]) * 1000 for k in ("wheel", "setup"))
    assert wheel <= setup + 4.0, f"wheel launcher {wheel:.1f} ms, make setup's {setup:.1f} ms"
