"""`--pull missing|always|never` (issue 14) on the real engines, without any registry:
never and missing with a present image, the error path with a registry on 127.0.0.1 that
refuses connections, and docker's progress display on a terminal.

Address plan of issue 14's tests: 10.192.0.0/16, bridges cnf14*, networks and containers t14-*.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import World, needs_docker, needs_plugins, needs_podman, needs_root
from test_cli_output import make_world14

from cnirun.engines.docker_pull import PullDisplay, split_image
from cnirun.engines.dockerapi import image_path
from cnirun.engines.images import ImageMissing, ensure_image

REFUSED = "127.0.0.1:1/t14-nope:latest"  # port 1 on loopback: connection refused at once


@pytest.fixture(params=["docker", "podman"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    if request.param == "docker":
        request.getfixturevalue("docker_ok")
    else:
        request.getfixturevalue("podman_ok")
    w = make_world14(tmp_path)
    w.env["CNIRUN_ENGINE"] = request.param
    yield w
    w.finish()


@pytest.fixture
def docker_ok() -> None:
    if needs_docker.mark.args[0]:
        pytest.skip(needs_docker.mark.kwargs["reason"])


@pytest.fixture
def podman_ok() -> None:
    if needs_podman.mark.args[0]:
        pytest.skip(needs_podman.mark.kwargs["reason"])


pytestmark = [needs_root, needs_plugins]


def _states(w: World) -> list[str]:
    d = w.state_dir / "containers"
    return [p.name for p in d.iterdir() if not p.name.startswith(".")] if d.is_dir() else []


def test_never_and_missing_with_a_present_image(world: World) -> None:
    for policy in ("never", "missing"):
        p = world.cnirun("--rm", "--pull", policy, "busybox", "sh", "-c", "ip -o -4 addr show eth0", timeout=90)
        assert p.returncode == 0, p.stderr
        assert f"10.192.{world.n}." in p.stdout
        assert "Unable to find image" not in p.stderr and "pull" not in p.stderr.lower(), p.stderr
    world.assert_clean(within=10.0)


@pytest.mark.parametrize("policy", ["missing", "always"])
def test_unreachable_registry_fails_the_run_before_anything_is_made(world: World, policy: str) -> None:
    p = world.cnirun("--rm", "--pull", policy, REFUSED, "true", timeout=90)
    assert p.returncode == 125, p.stderr
    lines = p.stderr.splitlines()
    if policy == "missing":
        assert lines[0] == f"Unable to find image '{REFUSED}' locally"
        lines = lines[1:]
    assert len(lines) == 1 and lines[0].startswith("cnirun: ") and "connection refused" in lines[0], p.stderr
    assert "Traceback" not in p.stderr
    assert _states(world) == []
    world.assert_clean()


def test_never_refuses_an_absent_image(world: World) -> None:
    p = world.cnirun("--rm", "--pull", "never", REFUSED, "true", timeout=90)
    assert p.returncode == 125
    assert p.stderr.splitlines() == [
        f"cnirun: Unable to find image '{REFUSED}' locally, and --pull never: pull or load it first "
        f"({world.env['CNIRUN_ENGINE']} pull {REFUSED}), or use --pull missing"]
    assert _states(world) == []
    world.assert_clean()


def test_bad_policy_is_a_usage_error(tmp_path: Path) -> None:
    w = make_world14(tmp_path)
    try:
        p = w.cnirun("--rm", "--pull=sometimes", "busybox", "true")
        assert p.returncode == 125 and p.stderr == "cnirun: invalid --pull 'sometimes': expected missing, always or never\n"
    finally:
        w.finish()


# -- unit: references and docker's progress display --------------------------------------------
def test_split_image_and_path() -> None:
    assert split_image("busybox") == ("busybox", "latest")
    assert split_image("busybox:1.36") == ("busybox", "1.36")
    assert split_image("127.0.0.1:5000/a/b") == ("127.0.0.1:5000/a/b", "latest")
    assert split_image("127.0.0.1:5000/a/b:v1") == ("127.0.0.1:5000/a/b", "v1")
    assert split_image("busybox@sha256:" + "0" * 64) == ("busybox@sha256:" + "0" * 64, "")
    assert image_path("127.0.0.1:1/a b:x") == "127.0.0.1:1/a%20b:x"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


class _FakeClient:
    def __init__(self, present: bool) -> None:
        self.present, self.pulled = present, []

    def has_image(self, image: str) -> bool:
        return self.present

    def pull(self, image: str, progress: Any) -> None:
        self.pulled.append(image)
        show = PullDisplay(progress)
        for msg in ({"status": "Pulling from library/t14", "id": "latest"},
                    {"status": "Pulling fs layer", "id": "aaa"}, {"status": "Pulling fs layer", "id": "bbb"},
                    {"status": "Downloading", "progress": "[=>   ] 1kB/4kB", "id": "aaa"},
                    {"status": "Pull complete", "id": "aaa"},
                    {"status": "Status: Downloaded newer image for t14:latest"}):
            show(msg)


def test_policies_and_progress_on_a_terminal_only() -> None:
    tty, pipe = _Tty(), io.StringIO()
    c = _FakeClient(present=True)
    ensure_image("docker", "t14", "missing", client=c, progress=tty)
    ensure_image("docker", "t14", "never", client=c, progress=tty)
    assert c.pulled == [] and tty.getvalue() == ""
    ensure_image("docker", "t14", "always", client=c, progress=pipe)
    assert c.pulled == ["t14"] and pipe.getvalue() == ""  # not a terminal: quiet
    absent = _FakeClient(present=False)
    with pytest.raises(ImageMissing):
        ensure_image("docker", "t14", "never", client=absent, progress=tty)
    ensure_image("docker", "t14", "missing", client=absent, progress=tty)
    out = tty.getvalue()
    assert out.startswith("Unable to find image 't14' locally\nlatest: Pulling from library/t14\naaa: Pulling fs layer\n")
    assert "\x1b[2A\r\x1b[2Kaaa: Downloading [=>   ] 1kB/4kB\r\x1b[2B" in out  # redrawn in place, as docker
    assert out.endswith("Status: Downloaded newer image for t14:latest\n")
    with pytest.raises(Exception, match="invalid --pull 'sometimes'"):
        ensure_image("docker", "t14", "sometimes", client=absent, progress=tty)


def test_podman_store_answers_present_images_without_podman(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Podman.has_image reads containers/storage's image list first (a podman start costs ~30 ms of every
    run): a yes only for the names podman certainly looks up; anything else goes to `podman image exists`."""
    import json

    from cnirun.engines.podman import stored_image

    if not needs_root.mark.args[0]:  # root's store on this machine, as Podman itself sees it
        assert stored_image("busybox") is True  # setup builds it offline as localhost/busybox:latest
    root = tmp_path / "storage"
    (root / "overlay-images").mkdir(parents=True)
    (root / "overlay-images" / "images.json").write_text(json.dumps([
        {"id": "a" * 64, "names": ["localhost/web:latest", "docker.io/library/db:15"]},
        {"id": "b" * 64, "names": ["quay.io/org/tool:1"]},
    ]))
    conf = tmp_path / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{root}"  # where images live\n')
    monkeypatch.setenv("CONTAINERS_STORAGE_CONF", str(conf))
    for present in ("web", "web:latest", "localhost/web", "db:15", "docker.io/library/db:15", "quay.io/org/tool:1"):
        assert stored_image(present) is (os.geteuid() == 0), present
    for absent in ("db", "tool:1", "quay.io/org/tool", "web@sha256:" + "a" * 64, "", "we b"):
        assert stored_image(absent) is False, absent
    (root / "overlay-images" / "images.json").write_text("{not json")
    assert stored_image("web") is False  # unreadable: podman decides
