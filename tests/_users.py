"""Real users who are not root, for the tests of what such a user gets (rootless).

The module-scoped fixture `users` creates two users without subordinate ids,
`rootless_user` one whose containers can have networks (subordinate ids,
/dev/net/tun opened to users as Debian ships it, busybox loaded into their
Podman storage). Each has a home under a /tmp dir every user may enter and a
runtime dir /run/user/UID as a login session makes it. Afterwards their
processes, files and the users themselves are removed, and /etc/passwd,
/etc/subuid, /etc/subgid and /dev/net/tun's mode end as they were. A user
left by a killed run (same name) is removed first.
"""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

import _parallel as parallel

REPO = Path(__file__).resolve().parent.parent
CNIRUN = REPO / ".venv" / "bin" / "cnirun"
TUN = "/dev/net/tun"
IMAGE = "localhost/busybox:latest"  # scripts/setup.sh builds it offline into root's Podman


class User:
    def __init__(self, name: str, home: Path) -> None:
        self.name, self.home = name, home
        pw = pwd.getpwnam(name)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        self.runtime_dir = Path(f"/run/user/{self.uid}")

    def env(self, **extra: str) -> dict[str, str]:
        return {"HOME": str(self.home), "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8",
                "XDG_RUNTIME_DIR": str(self.runtime_dir), **extra}

    def cnirun(self, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.run(str(CNIRUN), *args, env=env, timeout=timeout)

    def run(self, *argv: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*argv, env=env), capture_output=True, text=True, timeout=timeout, cwd="/")

    def argv(self, *argv: str, env: dict[str, str] | None = None) -> list[str]:
        """`argv` run as this user, in a clean environment (`env`, default their session's)."""
        e = self.env() if env is None else env
        return ["runuser", "-u", self.name, "--", "env", "-i", *(f"{k}={v}" for k, v in e.items()), *argv]


def _remove_user(name: str) -> None:
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        return
    uids = {pw.pw_uid} | _subordinate_uids(name)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        alive = _processes_of(uids)
        if not alive:
            break
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.05)
    subprocess.run(["userdel", "-f", name], capture_output=True, check=True)
    shutil.rmtree(f"/run/user/{pw.pw_uid}", ignore_errors=True)


def _subordinate_uids(name: str) -> set[int]:
    out: set[int] = set()
    try:
        lines = Path("/etc/subuid").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split(":")
        if len(parts) == 3 and parts[0] == name and parts[1].isdigit() and parts[2].isdigit():
            out |= set(range(int(parts[1]), int(parts[1]) + int(parts[2])))
    return out


def _processes_of(uids: set[int]) -> list[int]:
    """Live (not zombie) processes whose real uid is one of `uids`."""
    out: list[int] = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields.get("Uid", "-1 0").split()[0]) in uids and not fields.get("State", "").strip().startswith("Z"):
            out.append(int(pid))
    return out


@contextmanager
def _made_users(names: list[str], rootless: bool) -> Iterator[list[User]]:
    """Users of these names; `rootless`: with subordinate ids, /dev/net/tun they can open and busybox in
    their Podman storage (what their containers need). Everything is undone afterwards."""
    if shutil.which("useradd") is None:
        pytest.fail("useradd is missing (Debian's passwd package)")
    if not os.access(CNIRUN, os.X_OK):
        pytest.fail(f"{CNIRUN} is missing: run scripts/setup.sh venv")
    saved = {f: Path(f).read_bytes() for f in ("/etc/subuid", "/etc/subgid") if Path(f).exists()}
    base = Path(tempfile.mkdtemp(prefix="cnt-users-"))  # pytest's own tmp dirs are root's only
    base.chmod(0o755)
    made: list[User] = []
    opened: list[tuple[Path, int]] = []
    tun_mode = stat.S_IMODE(os.stat(TUN).st_mode) if os.path.exists(TUN) else None
    run_user = Path("/run/user")
    had_run_user = run_user.exists()
    try:
        # A user needs to reach the checkout's .venv: directories above it that others may not enter are
        # opened to them (o+x) for the test and put back after.
        for d in [*reversed(CNIRUN.parents)]:
            mode = stat.S_IMODE(d.stat().st_mode)
            if not mode & 0o001:
                opened.append((d, mode))
                d.chmod(mode | 0o001)
        if rootless and tun_mode is not None and tun_mode & 0o006 != 0o006:
            os.chmod(TUN, tun_mode | 0o666)  # as Debian ships it; put back after
        if rootless:
            image = base / "busybox.tar"
            subprocess.run(["podman", "save", "-o", str(image), IMAGE], check=True, capture_output=True, timeout=120)
            image.chmod(0o644)
        for name in names:
            _remove_user(name)  # one a killed earlier run left
            home = base / name
            ids = [] if rootless else ["-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0"]
            subprocess.run(["useradd", "-m", "-d", str(home), "-s", "/bin/sh", *ids, name], check=True,
                           capture_output=True)
            user = User(name, home)
            made.append(user)
            user.runtime_dir.parent.mkdir(mode=0o755, exist_ok=True)
            user.runtime_dir.mkdir(mode=0o700)
            os.chown(user.runtime_dir, user.uid, user.gid)
            if rootless:
                p = user.run("podman", "load", "-i", str(image), timeout=120)
                assert p.returncode == 0, p.stderr
        yield made
    finally:
        for user in made:
            _remove_user(user.name)
        for d, mode in opened:
            d.chmod(mode)
        if tun_mode is not None and stat.S_IMODE(os.stat(TUN).st_mode) != tun_mode:
            os.chmod(TUN, tun_mode)
        for f, data in saved.items():
            if Path(f).read_bytes() != data:
                Path(f).write_bytes(data)
        shutil.rmtree(base, ignore_errors=True)
        if not had_run_user:
            try:
                run_user.rmdir()  # made for the test users (no login session made it)
            except OSError:
                pass


@pytest.fixture(scope="module")
def users() -> Iterator[tuple[User, User]]:
    """Two users who are not root, each with a runtime dir of their own (as a login session makes)."""
    worker = parallel.worker() or 0
    with _made_users([f"cnirun-t{worker}u1", f"cnirun-t{worker}u2"], rootless=False) as made:
        yield made[0], made[1]


@pytest.fixture(scope="module")
def rootless_user() -> Iterator[User]:
    """A user whose containers can have networks: subordinate ids, /dev/net/tun, busybox in their storage."""
    worker = parallel.worker() or 0
    with _made_users([f"cnirun-t{worker}r1"], rootless=True) as made:
        yield made[0]
