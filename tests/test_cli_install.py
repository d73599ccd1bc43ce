"""`cnirun install hooks|docker-runtime --dir DIR`: a directory that anyone but root controls is refused.

An engine runs what is in a hooks.d directory and the runtime launcher as
root: a --dir others can write, or one in a directory others can write or
own (where it could be replaced), is one line and nothing written; --force
installs anyway with one WARNING line. Directories are made under pytest's
root-only tmp_path; their owners are uid/gid 64217 (no such user needed).
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Callable

import pytest

from conftest import CNIRUN, REPO, needs_root

pytestmark = [needs_root]
OTHER = 64217  # a uid and gid that is not root


def _env(tmp_path: Path) -> dict[str, str]:
    """A safe environment to record (system PATH, private netconf and cache): only --dir is in question."""
    (tmp_path / "net.d").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CNI", "NETCONFPATH"))}
    env.update(PATH="/usr/sbin:/usr/bin:/sbin:/bin", NETCONFPATH=str(tmp_path / "net.d"), CNI_PATH="/usr/lib/cni",
               CNI_CACHE_DIR=str(tmp_path / "cache"), CNIRUN_STATE_DIR=str(tmp_path / "state"), PYTHONPATH=str(REPO))
    return env


def _world_writable(d: Path) -> Path:
    d.mkdir()
    d.chmod(0o777)
    return d


def _group_writable(d: Path) -> Path:
    d.mkdir()
    os.chown(d, 0, OTHER)
    d.chmod(0o775)
    return d


def _not_roots(d: Path) -> Path:
    d.mkdir()
    os.chown(d, OTHER, OTHER)
    d.chmod(0o755)
    return d


def _in_a_writable_parent(d: Path) -> Path:
    _world_writable(d.parent / "open")
    (d.parent / "open" / "hooks.d").mkdir()
    return d.parent / "open" / "hooks.d"


def _in_a_parent_not_roots(d: Path) -> Path:
    _not_roots(d.parent / "theirs")
    (d.parent / "theirs" / "hooks.d").mkdir()
    return d.parent / "theirs" / "hooks.d"


def _to_be_made_in_a_sticky_dir(d: Path) -> Path:
    sticky = _world_writable(d.parent / "sticky")
    sticky.chmod(0o1777)  # as /tmp: whoever makes hooks.d there first owns it
    return sticky / "hooks.d"


def _a_link_of_another_user(d: Path) -> Path:
    """A root-only directory named through a symlink its owner (not root) could point elsewhere later."""
    (d.parent / "real").mkdir()
    (d.parent / "link").symlink_to(d.parent / "real")
    os.lchown(d.parent / "link", OTHER, OTHER)
    return d.parent / "link"


def _a_link_in_a_writable_dir(d: Path) -> Path:
    """root's symlink to a root-only directory, in a directory anyone may change (not sticky)."""
    (d.parent / "real").mkdir()
    _world_writable(d.parent / "open")
    (d.parent / "open" / "link").symlink_to(d.parent / "real")
    return d.parent / "open" / "link"


CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "a link of another user": (_a_link_of_another_user, f"link is a symbolic link of uid {OTHER}, not root's"),
    "a link in a writable dir": (_a_link_in_a_writable_dir, "link is a symbolic link in a directory others can change"),
    "world-writable": (_world_writable, "is writable by users other than root (mode 777)"),
    "group-writable": (_group_writable, "is writable by users other than root (mode 775)"),
    "not root's": (_not_roots, f"belongs to uid {OTHER}, not root"),
    "writable parent": (_in_a_writable_parent, "open is writable by users other than root (mode 777)"),
    "parent not root's": (_in_a_parent_not_roots, f"theirs belongs to uid {OTHER}, not root"),
    "to be made in /tmp-like": (_to_be_made_in_a_sticky_dir, "sticky is writable by users other than root"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_install_hooks_refuses_a_dir_others_control(tmp_path: Path, case: str) -> None:
    """One line naming the directory and why, exit 1, nothing written; --force installs with a WARNING line."""
    make, why = CASES[case]
    d = make(_base(tmp_path) / "hooks.d")
    env = _env(tmp_path)
    before = _tree(tmp_path / "d")
    p = subprocess.run([*CNIRUN, "install", "hooks", "--dir", str(d)], env=env, capture_output=True, text=True,
                       timeout=60, cwd=REPO)
    assert p.returncode == 1 and p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.startswith(f"cnirun: unsafe environment for a root hook: --dir {d}: ") and why in p.stderr, \
        p.stderr
    assert _tree(tmp_path / "d") == before  # nothing written, no directory made
    forced = subprocess.run([*CNIRUN, "install", "hooks", "--dir", str(d), "--force"], env=env, capture_output=True,
                            text=True, timeout=60, cwd=REPO)
    assert forced.returncode == 0, forced.stderr
    assert forced.stderr.startswith(f"cnirun: WARNING: installed anyway (--force): --dir {d}: ") and \
        forced.stderr.count("\n") == 1, forced.stderr
    hook = json.loads((d / "cnirun-attach.json").read_text())
    assert hook["hook"]["path"]
    un = subprocess.run([*CNIRUN, "uninstall", "hooks", "--dir", str(d)], env=env, capture_output=True, text=True,
                        timeout=60, cwd=REPO)
    assert un.returncode == 0 and not (d / "cnirun-attach.json").exists(), un.stderr


def test_install_docker_runtime_refuses_a_world_writable_dir(tmp_path: Path) -> None:
    """The runtime launcher dockerd runs as root: a world-writable --dir is refused before daemon.json is read."""
    d = _world_writable(_base(tmp_path) / "runtime")
    daemon_json = tmp_path / "daemon.json"
    p = subprocess.run([*CNIRUN, "install", "docker-runtime", "--dir", str(d), "--daemon-json", str(daemon_json)],
                       env=_env(tmp_path), capture_output=True, text=True, timeout=60, cwd=REPO)
    assert p.returncode == 1 and p.stderr.count("\n") == 1, p.stderr
    assert f"--dir {d}: {d} is writable by users other than root (mode 777)" in p.stderr
    assert list(d.iterdir()) == [] and not daemon_json.exists()


def test_install_hooks_into_a_root_only_dir_is_quiet(tmp_path: Path) -> None:
    """The control case: a root-owned 0755 --dir (made by install, under root-only parents) gets no warning."""
    d = _base(tmp_path) / "new" / "hooks.d"
    env = _env(tmp_path)
    p = subprocess.run([*CNIRUN, "install", "hooks", "--dir", str(d)], env=env, capture_output=True, text=True,
                       timeout=60, cwd=REPO)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert subprocess.run([*CNIRUN, "uninstall", "hooks", "--dir", str(d)], env=env, capture_output=True,
                          timeout=60, cwd=REPO).returncode == 0
    assert not (_base(tmp_path) / "new").exists()


def _base(tmp_path: Path) -> Path:
    """tmp_path/d, root's and 0755 (pytest's tmp dirs are root-only: no parent above is in question)."""
    d = tmp_path / "d"
    d.mkdir(mode=0o755, exist_ok=True)
    return d


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))
