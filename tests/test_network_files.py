"""cnirun.network.files: the one writer of a container's /etc/hosts and /etc/resolv.conf, and its checks.

Engine-free. A bind-mounted file must keep its inode; no symlink in the part
of a path a container controls may be followed; a FIFO must not hang the writer.
The engine's own files are covered in test_security.py, the files' contents in
test_runner_*.py and test_dns.py.
"""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import pytest

from cnirun.network import files

OURS = "10.223.9.1"  # a resolver address as cnirun would have written it


def test_rewrite_keeps_the_inode_and_cuts_a_longer_old_text(tmp_path: Path) -> None:
    """The new text replaces the old in the same inode (a bind mount sees it), nothing of the old one left."""
    f = tmp_path / "hosts"
    f.write_text("x" * 1000 + "\n")
    inode = f.stat().st_ino
    assert files.rewrite_in_place(f, "short\n")
    assert f.read_text() == "short\n" and f.stat().st_ino == inode
    assert not files.rewrite_in_place(f, lambda text: text)  # unchanged: not written
    assert files.rewrite_in_place(f, lambda text: text.upper()) and f.read_text() == "SHORT\n"


def test_files_are_created_0644_only_when_asked(tmp_path: Path) -> None:
    """write_hosts and touch create 0644 files (the engines' mode); a plain rewrite of a missing file fails."""
    os.umask(old := os.umask(0))
    try:
        files.write_hosts(tmp_path / "hosts", [("10.223.0.5", ["web"])])
        files.touch(tmp_path / "resolv.conf")
    finally:
        os.umask(old)
    for name in ("hosts", "resolv.conf"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644
    assert (tmp_path / "hosts").read_text().endswith("10.223.0.5\tweb\n")
    with pytest.raises(FileNotFoundError):
        files.rewrite_in_place(tmp_path / "missing", "x\n")


def test_a_symlink_or_a_fifo_is_never_written(tmp_path: Path) -> None:
    """The file itself a symlink: refused (the target unchanged); a FIFO: refused at once, not waited on."""
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    link = tmp_path / "hosts"
    link.symlink_to(victim)
    with pytest.raises(OSError):
        files.write_hosts(link, [("10.223.0.5", ["web"])])
    files.forget_addresses([link], {"keep"})
    assert victim.read_text() == "keep\n"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(files.Refused, match="not a regular file"):
        files.rewrite_in_place(fifo, lambda text: text + "x\n")


def test_no_symlink_below_the_trusted_directory_is_followed(tmp_path: Path) -> None:
    """With `beneath`, a directory on the way that is a symlink (here to the victim's) is refused."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "resolv.conf").write_text(f"nameserver {OURS}\n")
    root = tmp_path / "root"
    root.mkdir()
    (root / "etc").symlink_to(victim)
    with pytest.raises(OSError):
        files.rewrite_in_place(str(root / "etc/resolv.conf"), "nameserver 10.223.9.2\n", beneath=str(root))
    with pytest.raises(files.Refused):
        files.rewrite_in_place(str(root / "../victim/resolv.conf"), "x\n", beneath=str(root))
    assert (victim / "resolv.conf").read_text() == f"nameserver {OURS}\n"


@pytest.fixture
def chrooted(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A live process whose root is tmp_path/root: /proc/<pid>/root is that directory, as for a container."""
    if os.geteuid() != 0:
        pytest.skip("chroot needs root")
    root = tmp_path / "root"
    root.mkdir()
    code = "import os, sys; os.chroot(sys.argv[1]); os.chdir('/'); print('in', flush=True); sys.stdin.read()"
    proc = subprocess.Popen([sys.executable, "-c", code, str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "in\n"
        yield proc.pid, root
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)


def _follow_dns(pid: int, tmp_path: Path) -> None:
    """`network connect`'s resolv.conf step for a container with this pid on no network with DNS now."""
    from cnirun.cni.runtime import CNI
    from cnirun.live.verbs import _follow_dns as follow

    cache = tmp_path / "cache"
    cache.mkdir(exist_ok=True)
    t = SimpleNamespace(container=SimpleNamespace(pid=pid), cni=CNI(cache_dir=str(cache)), cni_id="t24c-none")
    follow(t, {OURS})  # type: ignore[arg-type]


def test_connect_rewrites_the_containers_resolv_conf_in_place(chrooted: tuple[int, Path], tmp_path: Path) -> None:
    """Through /proc/<pid>/root: cnirun's nameserver line gives way to the host's (no network with DNS left)."""
    pid, root = chrooted
    (root / "etc").mkdir()
    conf = root / "etc/resolv.conf"
    conf.write_text(f"nameserver {OURS}\noptions ndots:0\n")
    inode = conf.stat().st_ino
    _follow_dns(pid, tmp_path)
    want = "".join(f"nameserver {n}\n" for n in files.host_dns().nameservers) + "options ndots:0\n"
    assert conf.read_text() == want and conf.stat().st_ino == inode


def test_connect_follows_no_symlink_of_the_container(chrooted: tuple[int, Path], tmp_path: Path) -> None:
    """A container whose /etc is an absolute symlink would lead the write into the host's tree: left alone."""
    pid, root = chrooted
    victim = tmp_path / "host-dir"
    victim.mkdir()
    (victim / "resolv.conf").write_text(f"nameserver {OURS}\n")
    (root / "etc").symlink_to(victim)  # absolute: through /proc/<pid>/root it resolves against the host's root
    _follow_dns(pid, tmp_path)
    assert (victim / "resolv.conf").read_text() == f"nameserver {OURS}\n"
