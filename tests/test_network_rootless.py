"""network.rootless: what a host lacks for a user's containers' networks, each in one line naming its fix."""
from __future__ import annotations

import json
import os
import pwd
import stat
import subprocess
from pathlib import Path

import pytest

from _users import CNIRUN, User, users  # noqa: F401 (users: the fixture)
from cnirun.network import rootless


@pytest.fixture
def host(tmp_path: Path) -> dict[str, str]:
    """A host that has everything, in files: the test takes one thing away at a time."""
    rt = tmp_path / "rt"
    rt.mkdir(mode=0o700)
    tun = tmp_path / "tun"
    tun.write_bytes(b"")
    (tmp_path / "sys" / "user").mkdir(parents=True)
    (tmp_path / "sys" / "kernel").mkdir()
    (tmp_path / "sys" / "user" / "max_user_namespaces").write_text("96370\n")
    (tmp_path / "sys" / "kernel" / "unprivileged_userns_clone").write_text("1\n")
    name = pwd.getpwuid(os.geteuid()).pw_name
    for f in ("subuid", "subgid"):
        (tmp_path / f).write_text(f"someone:100000:65536\n{name}:165536:65536\n")
    return {"rt": str(rt), "tun": str(tun), "subuid": str(tmp_path / "subuid"), "subgid": str(tmp_path / "subgid"),
            "sys": str(tmp_path / "sys"), "name": name}


def _problems(h: dict[str, str], **env: str) -> list[str]:
    return rootless.problems({"XDG_RUNTIME_DIR": h["rt"], "PATH": os.environ["PATH"], **env}, tun=h["tun"],
                             subuid=h["subuid"], subgid=h["subgid"], proc_sys=h["sys"])


def test_a_host_with_everything_lacks_nothing(host: dict[str, str]) -> None:
    assert _problems(host) == []


def test_each_missing_prerequisite_is_one_line_naming_its_fix(host: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    Path(host["subuid"]).write_text(f"{host['name']}:100000:1000\n")  # too few
    Path(host["subgid"]).write_text(f"x\n:::\n{host['name']}:abc:65536\n{host['name']}:1:-5\n")  # none usable
    os.unlink(host["tun"])
    Path(host["sys"], "user", "max_user_namespaces").write_text("0\n")
    Path(host["sys"], "kernel", "unprivileged_userns_clone").write_text("0\n")
    monkeypatch.setattr(rootless, "PROGRAMS", (("cnirun-no-such-program", "pkg-a"), ("podman", "podman")))
    found = _problems(host, XDG_RUNTIME_DIR="")
    assert len(found) == 7, found
    expected = ["XDG_RUNTIME_DIR is not set", "usermod --add-subuids 100000-165535",
                "usermod --add-subgids 100000-165535", f"cannot open {host['tun']} (missing",
                "sysctl -w user.max_user_namespaces=", "sysctl -w kernel.unprivileged_userns_clone=1",
                "cnirun-no-such-program not found (fix, as root: apt-get install pkg-a)"]
    for line, want in zip(found, expected):
        assert want in line and "\n" not in line, (want, line)


def test_subordinate_ranges_are_summed_by_name_or_uid(tmp_path: Path) -> None:
    f = tmp_path / "subuid"
    f.write_text("alice:100000:30000\n1000:200000:40000\nbob:300000:65536\n# comment\nalice:1:0\n")
    assert rootless.subordinate_range(str(f), "alice", 1000) == 70000
    assert rootless.subordinate_range(str(f), "carol", 1001) == 0
    assert rootless.subordinate_range(str(tmp_path / "none"), "alice", 1000) == 0
    f.write_bytes(b"\xff\xfe:1:2\n" + b"a" * 2_000_000)  # garbage and huge: bounded, no error
    assert rootless.subordinate_range(str(f), "alice", 1000) == 0


def test_a_user_sees_what_this_host_lacks_in_version(users: tuple[User, User]) -> None:
    """`cnirun version` as a user: their state dir and this host's missing prerequisites, as the host
    really is (the test users have no subordinate ids; /dev/net/tun is as the host has it)."""
    user, _ = users
    p = user.cnirun("version", "--format", "json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)["rootless"]
    assert r["user"] == user.name and r["stateDir"] == f"{user.runtime_dir}/cnirun"
    lacks = r["hostLacks"]
    assert any("/etc/subuid gives " + user.name in x for x in lacks), lacks
    tun_mode = stat.S_IMODE(os.stat("/dev/net/tun").st_mode)
    assert any(x.startswith("cannot open /dev/net/tun") for x in lacks) == ((tun_mode & 0o006) != 0o006), lacks
    text = user.cnirun("version")
    assert text.returncode == 0 and f"Rootless (user {user.name}):" in text.stdout, text.stdout
    assert " Host lacks:      " in text.stdout
    root = subprocess.run([str(CNIRUN), "version", "--format", "json"], capture_output=True, text=True, timeout=60)
    assert root.returncode == 0 and "rootless" not in json.loads(root.stdout)
