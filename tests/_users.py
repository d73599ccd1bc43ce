"""Real users who are not root, for the tests of what such a user gets (rootless).

The module-scoped fixture `users` creates two users without subordinate ids,
each with a home under a /tmp dir every user may enter and a runtime dir
/run/user/UID as a login session makes it, and removes them, their processes
and their files afterwards: /etc/passwd, /etc/subuid and /etc/subgid end as
they were. A user left by a killed run (same name) is removed first.
"""
from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

import _parallel as parallel

REPO = Path(__file__).resolve().parent.parent
CNIRUN = REPO / ".venv" / "bin" / "cnirun"


class User:
    def __init__(self, name: str, home: Path) -> None:
        self.name, self.home = name, home
        pw = pwd.getpwnam(name)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        self.runtime_dir = Path(f"/run/user/{self.uid}")

    def env(self, **extra: str) -> dict[str, str]:
        return {"HOME": str(self.home), "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8",
                "XDG_RUNTIME_DIR": str(self.runtime_dir), **extra}

    def cnirun(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        e = self.env() if env is None else env
        return subprocess.run(["runuser", "-u", self.name, "--", "env", "-i", *(f"{k}={v}" for k, v in e.items()),
                               str(CNIRUN), *args], capture_output=True, text=True, timeout=60, cwd="/")


def _remove_user(name: str) -> None:
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        return
    subprocess.run(["pkill", "-KILL", "-U", str(pw.pw_uid)], capture_output=True)
    subprocess.run(["userdel", "-f", name], capture_output=True, check=True)
    shutil.rmtree(f"/run/user/{pw.pw_uid}", ignore_errors=True)


@pytest.fixture(scope="module")
def users() -> Iterator[tuple[User, User]]:
    """Two users who are not root, each with a runtime dir of their own (as a login session makes)."""
    if shutil.which("useradd") is None:
        pytest.fail("useradd is missing (Debian's passwd package)")
    if not os.access(CNIRUN, os.X_OK):
        pytest.fail(f"{CNIRUN} is missing: run scripts/setup.sh venv")
    saved = {f: Path(f).read_bytes() for f in ("/etc/subuid", "/etc/subgid") if Path(f).exists()}
    base = Path(tempfile.mkdtemp(prefix="cnt-users-"))  # pytest's own tmp dirs are root's only
    base.chmod(0o755)
    worker = parallel.worker() or 0
    made: list[User] = []
    opened: list[tuple[Path, int]] = []
    try:
        # A user needs to reach the checkout's .venv: directories above it that others may not enter are
        # opened to them (o+x) for the test and put back after.
        for d in [*reversed(CNIRUN.parents)]:
            mode = stat.S_IMODE(d.stat().st_mode)
            if not mode & 0o001:
                opened.append((d, mode))
                d.chmod(mode | 0o001)
        for n in (1, 2):
            name = f"cnirun-t{worker}u{n}"
            _remove_user(name)  # one a killed earlier run left
            home = base / name
            subprocess.run(["useradd", "-m", "-d", str(home), "-s", "/bin/sh", "-K", "SUB_UID_COUNT=0",
                            "-K", "SUB_GID_COUNT=0", name], check=True, capture_output=True)
            user = User(name, home)
            made.append(user)
            user.runtime_dir.parent.mkdir(mode=0o755, exist_ok=True)
            user.runtime_dir.mkdir(mode=0o700)
            os.chown(user.runtime_dir, user.uid, user.gid)
        yield made[0], made[1]
    finally:
        for user in made:
            _remove_user(user.name)
        for d, mode in opened:
            d.chmod(mode)
        for f, data in saved.items():
            if Path(f).read_bytes() != data:
                Path(f).write_bytes(data)
        shutil.rmtree(base, ignore_errors=True)
