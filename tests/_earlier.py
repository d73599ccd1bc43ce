"""cnirun as an earlier install had it: a copy of the package at a commit of this checkout's history, to run
what that code started (keepers, watchers, resolvers) and see the current code take over from it."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BEFORE_PACKAGES = "84d31cd"  # the last commit with cnirun's modules flat, and keepers and watchers without a generation


def earlier_cnirun(tmp_path: Path, commit: str) -> Path:
    """A copy of the cnirun package as it was at `commit`, to run as an earlier install would."""
    tree = tmp_path / f"cnirun-{commit}"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "cnirun"], capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"cnirun at {commit} is not in this checkout's history: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree
