"""core.paths: root's defaults, a user's own (rootless), and what a real user who is not root gets today.

The engine-free tests change the effective uid only in core.paths' view (os.geteuid
patched). The user tests run the installed `cnirun` with a clean environment as real
users (tests/_users.py makes and removes them).
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from _users import REPO, User, users  # noqa: F401 (users: the fixture)
from cnirun.core import paths
from cnirun.core.errors import ConfigError


# -- engine-free: the defaults -------------------------------------------------------
def test_root_keeps_the_host_wide_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    env: dict[str, str] = {"HOME": "/root", "XDG_RUNTIME_DIR": "/run/user/0"}
    assert paths.state_dir(env) == "/run/cnirun"
    assert paths.cni_lock(env) == "/run/cnirun/cni.lock"
    assert paths.hook_log(env) == "/var/log/cnirun/hooks.log"
    assert paths.cache_dir(env) == "/var/lib/cni"
    assert paths.netconf_path(env) == "/etc/cni/net.d"
    assert paths.host_local_data_dir(env) == "/var/lib/cni/networks"
    explicit = {"CNIRUN_STATE_DIR": "/s", "CNIRUN_LOCK_FILE": "/l", "CNIRUN_HOOK_LOG": "/h", "CNI_CACHE_DIR": "/c",
                "NETCONFPATH": "/n"}
    assert (paths.state_dir(explicit), paths.cni_lock(explicit), paths.hook_log(explicit), paths.cache_dir(explicit),
            paths.netconf_path(explicit)) == ("/s", "/l", "/h", "/c", "/n")


def test_a_user_gets_defaults_of_their_own(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The runtime dir must be the caller's own: the test's tmp dir stands in for /run/user/UID.
    monkeypatch.setattr(paths, "rootless", lambda: True)
    rt = tmp_path / "rt"
    rt.mkdir(mode=0o700)
    env = {"HOME": str(tmp_path / "home"), "XDG_RUNTIME_DIR": str(rt)}
    assert paths.state_dir(env) == f"{rt}/cnirun"
    assert paths.cni_lock(env) == f"{rt}/cnirun/cni.lock"
    assert paths.hook_log(env) == f"{rt}/cnirun/hooks.log"
    assert paths.cache_dir(env) == f"{rt}/cnirun/cni"
    assert paths.host_local_data_dir(env) == f"{rt}/cnirun/ipam"
    assert paths.netconf_path(env) == f"{tmp_path}/home/.config/cni/net.d"
    assert paths.netconf_path({**env, "XDG_CONFIG_HOME": "/cfg"}) == "/cfg/cni/net.d"
    assert paths.netconf_path({**env, "XDG_CONFIG_HOME": "relative"}) == f"{tmp_path}/home/.config/cni/net.d"
    assert paths.netconf_path({**env, "NETCONFPATH": "/mine"}) == "/mine"


@pytest.mark.parametrize("runtime_dir, says", [
    ("", "XDG_RUNTIME_DIR is not set"),
    ("/nonexistent/rt", "No such file or directory"),
    ("relative/dir", "is not a directory of yours"),
    ("SHARED", "is not a directory of yours"),
    ("OTHERS", "is not a directory of yours"),
])
def test_a_user_without_a_runtime_dir_of_their_own_is_told_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                    runtime_dir: str, says: str) -> None:
    monkeypatch.setattr(paths, "rootless", lambda: True)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    if runtime_dir == "SHARED":
        runtime_dir = str(shared)
    elif runtime_dir == "OTHERS":
        runtime_dir = str(tmp_path)
        monkeypatch.setattr(os, "geteuid", lambda: 4242)  # tmp_path is root's
    elif runtime_dir == "relative/dir":
        (tmp_path / "relative" / "dir").mkdir(parents=True)
        monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as e:
        paths.state_dir({"XDG_RUNTIME_DIR": runtime_dir, "HOME": str(tmp_path)})
    msg = str(e.value)
    assert says in msg and "install -d -m 0700" in msg and "export XDG_RUNTIME_DIR=" in msg and "\n" not in msg, msg


# -- real users (tests/_users.py) ----------------------------------------------------
def _root_view() -> dict[str, object]:
    """What a user's cnirun must never change: root's networks, caches, state, bridges and rules."""
    def listing(d: str) -> list[str]:
        return sorted(str(p) for p in Path(d).rglob("*")) if Path(d).exists() else []

    return {
        "/etc/cni/net.d": listing("/etc/cni/net.d"),
        "/var/lib/cni": listing("/var/lib/cni"),
        "links": subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout.count("\n"),
        "iptables": subprocess.run(["iptables-save"], capture_output=True, text=True).stdout.count("\n-A "),
    }


def test_a_user_runs_the_installed_cnirun(users: tuple[User, User]) -> None:
    """The venv's interpreter is one every user can run (scripts/setup.sh repoints it), and a user's
    cnirun names their own network directory."""
    user, _ = users
    p = user.cnirun("version")
    assert p.returncode == 0, p.stderr
    assert f"Network configs: {user.home}/.config/cni/net.d" in p.stdout, p.stdout
    assert "Permission denied" not in p.stderr


def test_a_users_networks_are_their_own(users: tuple[User, User]) -> None:
    one, two = users
    before = _root_view()
    for user, subnet in ((one, "10.251.1.0/24"), (two, "10.251.2.0/24")):
        p = user.cnirun("network", "create", "same", "--subnet", subnet)
        assert p.returncode == 0, p.stderr
    p = one.cnirun("network", "create", "mine")
    assert p.returncode == 0, p.stderr
    try:
        ls_one, ls_two = one.cnirun("network", "ls"), two.cnirun("network", "ls")
        assert ls_one.returncode == 0 and ls_two.returncode == 0, ls_one.stderr + ls_two.stderr
        rows_one = {line.split()[0]: line.split() for line in ls_one.stdout.splitlines()[1:]}
        rows_two = {line.split()[0]: line.split() for line in ls_two.stdout.splitlines()[1:]}
        assert {"same", "mine"} <= rows_one.keys() and "same" in rows_two and "mine" not in rows_two
        assert rows_one["same"][3] == "10.251.1.0/24" and rows_two["same"][3] == "10.251.2.0/24"
        shipped = str(REPO / "netconf")
        for rows, user in ((rows_one, one), (rows_two, two)):
            files = [r[-1] for r in rows.values()]
            assert all(f.startswith(f"{user.home}/.config/cni/net.d/") or f.startswith(shipped) for f in files), files
        conf = (one.home / ".config/cni/net.d/same.conflist").read_text()
        assert f'"dataDir": "{one.runtime_dir}/cnirun/ipam"' in conf, conf
        assert (one.home / ".config/cni/net.d/same.conflist").stat().st_uid == one.uid
        # Another user's network by name: not there for them.
        p = two.cnirun("network", "inspect", "mine")
        assert p.returncode != 0 and "mine" in p.stderr and p.stderr.count("\n") == 1, p.stderr
    finally:
        rm_one = one.cnirun("network", "rm", "same", "mine")
        left_two = {line.split()[0] for line in two.cnirun("network", "ls").stdout.splitlines()[1:]}
        rm_two = two.cnirun("network", "rm", "same")
    assert rm_one.returncode == 0 and rm_two.returncode == 0, rm_one.stderr + rm_two.stderr
    assert "same" in left_two, left_two  # one user's rm is not another's
    assert not list((one.home / ".config/cni/net.d").glob("*.conflist"))
    assert not list((two.home / ".config/cni/net.d").glob("*.conflist"))
    assert _root_view() == before
    p = one.cnirun("gc")
    assert p.returncode == 0, p.stderr


def test_what_needs_root_or_a_rootless_host_is_refused_in_one_line_before_anything_happens(
        users: tuple[User, User]) -> None:
    """What changes the host's engines or overlay needs root; the commands on a user's containers, on a
    host that lacks what rootless networking needs (these users have no subordinate ids), name the first
    missing thing. Each in one line, before any image is looked up (rootless Podman would try a registry),
    changing nothing."""
    user, _ = users
    before = _root_view()
    theirs = sorted(user.runtime_dir.rglob("*")) + sorted(user.home.rglob("*"))
    for args in (("install", "docker-runtime"), ("overlay", "status"), ("uninstall", "docker-runtime"),
                 ("hook", "createRuntime"), ("install", "--help")):
        p = user.cnirun(*args)
        assert p.returncode == 1, (args, p.returncode, p.stderr)
        assert p.stderr.count("\n") == 1 and "needs root" in p.stderr and "docs/rootless.md" in p.stderr, (
            args, p.stderr)
        assert p.stdout == "", (args, p.stdout)
    # What works on a user's containers goes into their namespaces, which this host cannot make for them.
    inside = {("--rm", "busybox", "true"): 125, ("--engine", "podman", "-d", "busybox"): 125, ("run", "busybox"): 125,
              ("busybox",): 125, ("busybox", "--help"): 125, ("-e", "--help", "busybox", "true"): 125,
              ("--", "--help"): 125, ("exec", "--", "true"): 1, ("compose", "up"): 1,
              ("network", "connect", "n", "c"): 1, ("network", "--", "reload"): 1, ("port", "add", "c", "8080:80"): 1,
              ("update", "c"): 1}
    for args, code in inside.items():
        p = user.cnirun(*args)
        assert p.returncode == code, (args, p.returncode, p.stderr)
        assert p.stderr.startswith("cnirun: rootless networking: /etc/subuid gives") and p.stderr.count("\n") == 1, (
            args, p.stderr)
        assert p.stdout == "", (args, p.stdout)
    p = user.cnirun("--engine", "docker", "busybox", "true")
    assert p.returncode == 125 and "rootless Podman, not docker" in p.stderr and p.stderr.count("\n") == 1, p.stderr
    assert sorted(user.runtime_dir.rglob("*")) + sorted(user.home.rglob("*")) == theirs
    for args in (("--help",), ("run", "--help"), ("ps",), ("network", "ls"), ("gc",), ("exec", "--help"),
                 ("network", "connect", "--help")):
        p = user.cnirun(*args)
        assert p.returncode == 0, (args, p.stderr)
    assert _root_view() == before


def test_a_user_without_a_session_is_told_how_to_make_one(users: tuple[User, User]) -> None:
    user, _ = users
    env = user.env()
    del env["XDG_RUNTIME_DIR"]
    for args in (("network", "ls"), ("network", "rm", "x"), ("ps",), ("inspect", "x"), ("gc", "--dry-run"),
                 ("busybox",)):
        p = user.cnirun(*args, env=env)
        assert p.returncode in (1, 125) and p.stderr.count("\n") == 1, (args, p.stderr)
        assert f"install -d -m 0700 -o {user.name} /run/user/{user.uid}" in p.stderr, (args, p.stderr)
    afile = user.runtime_dir / "afile"
    afile.write_text("")
    os.chown(afile, user.uid, user.gid)
    for value in (str(afile), str(user.runtime_dir) + "\nx"):
        p = user.cnirun("ps", env={**env, "XDG_RUNTIME_DIR": value})
        assert p.returncode == 1 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, (value, p.stderr)
    afile.unlink()
    p = user.cnirun("network", "create", "x", env={**env, "XDG_RUNTIME_DIR": "/tmp"})
    assert p.returncode == 1 and "is not a directory of yours" in p.stderr and p.stderr.count("\n") == 1, p.stderr
    assert not (user.home / ".config/cni/net.d/x.conflist").exists()

