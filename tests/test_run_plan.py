"""runner.plan and the Docker mode choice, without an engine: every check before anything is made.

The plugins are cnirun's noop (found through a private CNI_PATH); plan's
root check is bypassed, nothing here needs it. The port lock is checked for
what it serialises. End-to-end runs are in test_run_docker*.py and
test_run_podman.py.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cnirun.cli.run import parse
from cnirun.core.errors import ArgumentError
from cnirun.run import docker_mode



class FakeCNI:
    def __init__(self, tmp: Path) -> None:
        self.netconf_path = str(tmp / "net.d")
        from cnirun.cni.invoke import plugin_dirs

        self.plugin_dirs = plugin_dirs("/usr/lib/cni")  # as a CNI() built from CNI_PATH has them
        self.cache_dir = str(tmp / "cache")
        self.lock_file = str(tmp / "cni.lock")


def _settings(cni: FakeCNI, **over: str) -> dict[str, Any]:
    env = {"NETCONFPATH": cni.netconf_path, "CNI_PATH": "/usr/lib/cni", "CNI_CACHE_DIR": cni.cache_dir}
    env.update(over)
    return {"env": env}


def test_mode_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hook mode only where the installed runtime would attach exactly this run; --mode hook says why not."""
    cni = FakeCNI(tmp_path)
    monkeypatch.setattr(docker_mode, "installed_settings", lambda: None)
    assert docker_mode.hook_unfit("", cni, [], []) == "the cnirun runtime is not installed"
    with pytest.raises(ArgumentError, match="cnirun install docker-runtime"):
        docker_mode.hook_unfit("hook", cni, [], [])

    monkeypatch.setattr(docker_mode, "installed_settings", lambda: _settings(cni))
    assert docker_mode.hook_unfit("", cni, [], []) == ""
    assert docker_mode.hook_unfit("sandbox", cni, [], []) == "--mode sandbox"
    # Networks from -f: invisible to the hook.
    assert "filenet" in docker_mode.hook_unfit("", cni, [], ["filenet"])
    with pytest.raises(ArgumentError, match="filenet.*-f"):
        docker_mode.hook_unfit("hook", cni, [], ["filenet"])
    # dockerd refused the runtime at create: auto falls back, --mode hook says so.
    assert "reloaded" not in docker_mode.hook_unfit("", cni, [], [], runtime_unknown="unknown runtime cnirun")
    assert "unknown runtime cnirun" in docker_mode.hook_unfit("", cni, [], [], runtime_unknown="unknown runtime cnirun")
    with pytest.raises(ArgumentError, match="does not know the cnirun runtime"):
        docker_mode.hook_unfit("hook", cni, [], [], runtime_unknown="unknown runtime cnirun")

    # The runtime recorded another environment: auto falls back, --mode hook says what differs.
    monkeypatch.setattr(docker_mode, "installed_settings", lambda: _settings(cni, NETCONFPATH="/elsewhere"))
    assert "/elsewhere" in docker_mode.hook_unfit("", cni, [], [])
    with pytest.raises(ArgumentError) as e:
        docker_mode.hook_unfit("hook", cni, [], [])
    assert "NETCONFPATH" in str(e.value) and "/elsewhere" in str(e.value) and "install docker-runtime" in str(e.value)
    assert "\n" not in str(e.value)
    monkeypatch.setattr(docker_mode, "installed_settings", lambda: _settings(cni, CNI_CACHE_DIR="/var/lib/cni"))
    with pytest.raises(ArgumentError, match="CNI_CACHE_DIR"):
        docker_mode.hook_unfit("hook", cni, [], [])


class _ImageClient:
    """The run's Docker client as decide() uses it: the image's config, counted."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config, self.asked = config, 0

    def image_config(self, image: str) -> dict[str, Any]:
        self.asked += 1
        return self.config


def _decide(argv: list[str], cni: FakeCNI, client: _ImageClient) -> docker_mode.DockerMode:
    from cnirun.run.plan import Plan

    req = parse(argv)
    assert req is not None
    p = Plan(req=req, cni=cni, networks=[], netspec=None, options=[])
    return docker_mode.decide(p, lambda: client)  # type: ignore[arg-type,return-value]


def test_decide_is_the_one_answer_with_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """decide(): hook, single or helper with the reason; the image is asked for only when it decides."""
    cni = FakeCNI(tmp_path)
    monkeypatch.delenv("CNIRUN_SANDBOX", raising=False)
    image = _ImageClient({"Cmd": ["sh"], "Env": ["PATH=/bin"]})
    monkeypatch.setattr(docker_mode, "installed_settings", lambda: _settings(cni))
    mode = _decide(["busybox"], cni, image)
    assert (mode.kind, image.asked) == ("hook", 0) and "installed" in mode.why
    monkeypatch.setattr(docker_mode, "installed_settings", lambda: None)
    mode = _decide(["busybox"], cni, image)
    assert (mode.kind, mode.image_config, image.asked) == ("single", image.config, 1)
    assert mode.why == "the cnirun runtime is not installed"
    mode = _decide(["-d", "busybox"], cni, image)
    assert (mode.kind, image.asked) == ("helper", 1) and "detached" in mode.why
    mode = _decide(["-e", "a.b=1", "busybox"], cni, image)
    assert (mode.kind, image.asked) == ("helper", 2) and "'a.b'" in mode.why
    assert _decide(["busybox"], cni, _ImageClient({})).kind == "helper"  # no command at all: dockerd says so
    monkeypatch.setenv("CNIRUN_SANDBOX", "helper")
    assert (_decide(["busybox"], cni, image).kind, image.asked) == ("helper", 2)
    monkeypatch.setenv("CNIRUN_SANDBOX", "single")
    assert _decide(["busybox"], cni, image).kind == "single"
    with pytest.raises(ArgumentError, match="CNIRUN_SANDBOX=single cannot carry out this run: a detached"):
        _decide(["-d", "busybox"], cni, image)


def test_a_runtime_of_its_own_is_attached_from_outside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--runtime X: dockerd gets HostConfig.Runtime X, podman `--runtime X` before its verb; with the cnirun
    runtime installed the run takes sandbox mode (hook mode is the cnirun runtime), with a helper container
    unless X is runc (the single hold is a busybox shell and a FIFO a VM or Wasm runtime may not run), and
    --mode hook with it is one line naming both ways out."""
    from cnirun.engines.podman_run import run_argv
    from cnirun.engines.spec import create_config

    cni = FakeCNI(tmp_path)
    monkeypatch.delenv("CNIRUN_SANDBOX", raising=False)
    monkeypatch.setattr(docker_mode, "installed_settings", lambda: _settings(cni))
    image = _ImageClient({"Cmd": ["sh"], "Env": ["PATH=/bin"]})
    req = parse(["--runtime", "runc", "busybox", "true"])
    assert req is not None and req.spec.runtime == "runc"
    assert create_config(req.spec, "none", {}, [])["HostConfig"]["Runtime"] == "runc"
    assert "Runtime" not in create_config(parse(["busybox"]).spec, "none", {}, [])["HostConfig"]  # type: ignore[union-attr]
    argv = run_argv(req.spec, "/run/netns/x", {}, [], "", "")
    assert argv[argv.index("--runtime") + 1] == "runc" and argv.index("--runtime") < argv.index("run")
    mode = _decide(["--runtime", "runc", "busybox", "true"], cni, image)
    assert (mode.kind, image.asked) == ("single", 1) and "runtime 'runc'" in mode.why  # runc holds as the default
    mode = _decide(["--runtime", "kata", "busybox", "true"], cni, image)
    assert (mode.kind, image.asked) == ("helper", 1) and "runtime 'kata'" in mode.why
    assert _decide(["--runtime=cnirun", "busybox"], cni, image).kind == "hook"  # the cnirun runtime itself
    with pytest.raises(ArgumentError) as e:
        _decide(["--mode", "hook", "--runtime", "kata", "busybox"], cni, image)
    assert "not 'kata'" in str(e.value) and "drop --mode hook" in str(e.value) and "\n" not in str(e.value)


def test_unset_recorded_env_means_the_defaults(tmp_path: Path) -> None:
    rec = docker_mode.recorded_env({})
    assert rec["NETCONFPATH"] == "/etc/cni/net.d" and rec["CNI_CACHE_DIR"] == "/var/lib/cni"


def test_port_lock_serialises(tmp_path: Path) -> None:
    from cnirun.network.portlock import PortLock

    cni = FakeCNI(tmp_path)
    first = PortLock.acquire(cni)
    with pytest.raises(ArgumentError, match="port lock"):
        PortLock.acquire(cni, wait=0.1)
    first.release()
    PortLock.acquire(cni, wait=0.1).release()


def test_static_ips_on_several_networks_travel_as_one_label() -> None:
    """`--ip NET=IP` on a later network no longer forces sandbox mode: the label carries every network's IP."""
    from cnirun.network.options import ContainerNetworkSpec

    spec = ContainerNetworkSpec(["a", "b"], [], ips={"a": "10.1.0.5", "b": "10.2.0.5"})
    labels = spec.to_labels()
    assert labels["cnirun.ip"] == "a=10.1.0.5,b=10.2.0.5"
    assert ContainerNetworkSpec.from_labels(labels) == spec
    first_only = ContainerNetworkSpec(["a", "b"], [], ips={"a": "10.1.0.5"})
    assert first_only.to_labels()["cnirun.ip"] == "10.1.0.5"
    assert ContainerNetworkSpec.from_labels(first_only.to_labels()) == first_only
    with pytest.raises(ArgumentError, match="two static IPs"):
        ContainerNetworkSpec.from_labels({"cnirun.networks": "a", "cnirun.ip": "a=10.1.0.5,a=10.1.0.6"})
    with pytest.raises(ArgumentError, match="invalid IP address"):
        ContainerNetworkSpec.from_labels({"cnirun.networks": "a", "cnirun.ip": "a;x=10.1.0.5"})


# -- runner.plan: everything checked before anything is made -------------------------------------
def _plan_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cnirun.plugins import install_plugin_script

    (tmp_path / "net.d").mkdir()
    (tmp_path / "bin").mkdir()
    install_plugin_script(tmp_path / "bin", "noop", "cnirun.plugins.noop")
    for name, caps in (("pa", {"ips": True, "portMappings": True}), ("pb", {})):
        (tmp_path / "net.d" / f"{name}.conflist").write_text(json.dumps({
            "cniVersion": "1.0.0", "name": name,
            "plugins": [{"type": "noop", "capabilities": caps,
                         "ipam": {"type": "host-local", "ranges": [[{"subnet": f"10.{180 + len(caps)}.0.0/24"}]]}}],
        }))
    monkeypatch.setenv("NETCONFPATH", str(tmp_path / "net.d"))
    monkeypatch.setenv("CNI_PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("CNI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr("os.geteuid", lambda: 0)  # plan refuses non-root; nothing here needs it


def test_plan_builds_the_netspec_and_options_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cnirun.run.plan import plan

    _plan_env(tmp_path, monkeypatch)
    req = parse(["--net", "pa,pb", "--ip", "10.182.0.5", "--ip", "pb=10.180.0.6", "-p", "127.0.0.1:18777:80",
                 "--mac", "02:00:00:00:00:09", "busybox"])
    assert req is not None
    p = plan(req)
    try:
        assert p.netspec.networks == ["pa", "pb"] and p.ips == {"pa": "10.182.0.5", "pb": "10.180.0.6"}
        assert [str(m) for m in p.ports] == ["127.0.0.1:18777:80/tcp"]
        assert p.options[0].capability_args["ips"] == ["10.182.0.5"]
        assert p.options[0].capability_args["portMappings"][0]["hostPort"] == 18777
        assert ("IP", "10.180.0.6") in p.options[1].args and ("MAC", "02:00:00:00:00:09") in p.options[0].args
        assert p.netspec.to_labels()["cnirun.ip"] == "pa=10.182.0.5,pb=10.180.0.6"
    finally:
        p.release_ports()


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--net", "pb", "-p", "18778:80", "busybox"], "portmap"),
        (["--net", "pa", "--ip", "pb=10.180.0.6", "busybox"], "does not join"),
        (["--net", "pa", "--ip", "10.9.9.9", "busybox"], "outside network pa"),
        (["--net", "pa,pa", "busybox"], "listed twice"),
        (["--net", "nosuch", "busybox"], "no net configuration"),
        (["--net", "pa", "--hostname", "bad_name", "busybox"], "RFC 1123"),
    ],
)
def test_plan_refuses_bad_runs_before_anything_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], words: str
) -> None:
    from cnirun.core.errors import CNIError
    from cnirun.run.plan import plan

    _plan_env(tmp_path, monkeypatch)
    req = parse(argv)
    assert req is not None
    with pytest.raises(CNIError, match=words):
        plan(req)
    assert not (tmp_path / "cache").exists()  # not even the cache dir
