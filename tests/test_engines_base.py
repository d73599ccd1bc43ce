"""engines.base: every engine and client implements its protocols, member by member, with their signatures.

As libcni asserts `var _ CNI = &CNIConfig{}` at compile time: the Docker SDK
engine, the run path's lean Docker client, Podman and the tests' FakeEngine
are checked against Engine, FullEngine and DockerClient (and both clients'
attach streams against AttachStream) here, without an engine; the lean
client's own Engine verbs are then checked against dockerd.
"""
from __future__ import annotations

import inspect
import secrets
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from cnirun.engines import base
from cnirun.engines.base import AttachStream, DockerClient, Engine, FullEngine
from cnirun.engines.attach import Hijacked, SDKAttach
from cnirun.engines.docker import Docker
from cnirun.engines.dockerapi import LeanDocker
from cnirun.engines.podman import Podman
from conftest import REPO, needs_docker

from _fakes import FakeEngine

PROTOCOLS = (Engine, FullEngine, DockerClient, AttachStream)
IMPLEMENTATIONS = [
    (Engine, Docker), (Engine, LeanDocker), (Engine, Podman), (Engine, FakeEngine),
    (FullEngine, Docker), (FullEngine, Podman),
    (DockerClient, Docker), (DockerClient, LeanDocker),
    (AttachStream, SDKAttach), (AttachStream, Hijacked),
]


def _members(proto: type) -> tuple[dict[str, Any], dict[str, str]]:
    """The protocol's methods (its own and its protocol bases') and its data members (name -> annotation)."""
    methods: dict[str, Any] = {}
    data: dict[str, str] = {}
    for klass in reversed([k for k in proto.__mro__ if k in PROTOCOLS]):
        methods.update({k: v for k, v in vars(klass).items() if isinstance(v, types.FunctionType)})
        data.update(vars(klass).get("__annotations__", {}))
    return methods, data


def _required(fn: Any) -> bool:
    """A member the protocol leaves to its implementations (its body only raises NotImplementedError)."""
    return fn.__code__.co_names == ("NotImplementedError",)


def _owner(impl: type, name: str) -> type:
    return next(k for k in impl.__mro__ if name in vars(k))


def _returns_match(proto: type, impl: type, want: Any, got: Any) -> bool:
    """Return annotations: the same, or narrower where the protocol says Any or names itself (clone)."""
    return got == want or want == "Any" or (want == proto.__name__ and got == impl.__name__)


@pytest.mark.parametrize("proto,impl", IMPLEMENTATIONS, ids=lambda c: c.__name__)
def test_implementation_has_every_member_with_its_signature(proto: type, impl: type) -> None:
    """Each required method is implemented outside the protocols, each inherited default stays the protocol's,
    and every parameter (name, kind, default, annotation) and return annotation matches the protocol's."""
    methods, data = _members(proto)
    assert methods
    for name, fn in methods.items():
        assert hasattr(impl, name), f"{impl.__name__} lacks {proto.__name__}.{name}"
        if _required(fn):
            assert _owner(impl, name) not in PROTOCOLS, f"{impl.__name__}.{name} is not implemented"
        want, got = inspect.signature(fn), inspect.signature(getattr(impl, name))
        assert [(p.name, p.kind, p.default, p.annotation) for p in got.parameters.values()] == \
            [(p.name, p.kind, p.default, p.annotation) for p in want.parameters.values()], \
            f"{impl.__name__}.{name}{got} differs from {proto.__name__}.{name}{want}"
        assert _returns_match(proto, impl, want.return_annotation, got.return_annotation), \
            f"{impl.__name__}.{name} returns {got.return_annotation}, not {want.return_annotation}"
    for name, annotation in data.items():
        value = getattr(impl, name, None)
        assert value is not None and type(value).__name__ == annotation, f"{impl.__name__}.{name}: {value!r}"


def test_the_protocols_are_typing_protocols_to_a_type_checker() -> None:
    """With TYPE_CHECKING true (as a type checker reads the module), each protocol is a typing.Protocol
    whose members are the run-time classes' own."""
    source = Path(base.__file__).read_text().replace("TYPE_CHECKING = False", "TYPE_CHECKING = True", 1)
    module = types.ModuleType("cnirun.engines._base_as_checked")
    module.__package__ = "cnirun.engines"
    exec(compile(source, base.__file__, "exec"), module.__dict__)
    for proto in PROTOCOLS:
        checked = getattr(module, proto.__name__)
        assert getattr(checked, "_is_protocol", False), proto.__name__
        assert set(checked.__protocol_attrs__ if hasattr(checked, "__protocol_attrs__") else
                   _protocol_attrs(checked)) == set(_members(proto)[0]) | set(_members(proto)[1])


def _protocol_attrs(proto: Any) -> set[str]:
    import typing

    return set(typing._get_protocol_attrs(proto))  # type: ignore[attr-defined]


def test_engine_modules_import_no_typing() -> None:
    """The protocols are plain classes at run time: the run path's engine modules load no typing."""
    code = ("import sys; import cnirun.engines, cnirun.engines.base, cnirun.engines.docker, cnirun.engines.dockerapi, "
            "cnirun.engines.podman, cnirun.engines.images; print('typing' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert p.stdout.strip() == "False"


def test_what_differs_between_engines_is_decided_in_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Which engine a message names, which engines' runs join a netns cnirun made, and unknown names refused."""
    from cnirun import engines
    from cnirun.core.errors import EngineError

    for value, named in (("", "docker"), ("podman", "podman"), (" Podman ", "podman"), ("rkt", "docker")):
        monkeypatch.setenv("CNIRUN_ENGINE", value)
        assert engines.named_engine() == named
    assert (engines.joins_netns_path("podman"), engines.joins_netns_path("docker")) == (True, False)
    with pytest.raises(EngineError, match="unknown engine 'rkt'"):
        engines.joins_netns_path("rkt")
    with pytest.raises(EngineError, match="unknown engine 'rkt'"):
        engines.quick("rkt")


@needs_docker
def test_lean_client_answers_the_engine_verbs_as_the_sdk_does() -> None:
    """LeanDocker's state, containers(label), lookup, stop, kill and remove against dockerd, beside the SDK's."""
    from cnirun.engines.dockerapi import unix_socket_path

    sock = unix_socket_path()
    if not sock:
        pytest.skip("DOCKER_HOST is not a unix socket")
    lean, sdk = LeanDocker(sock), Docker()
    label = f"t24d.test={secrets.token_hex(4)}"
    name = f"t24d-lean-{secrets.token_hex(3)}"
    cid = subprocess.run(["docker", "run", "-d", "--name", name, "--label", label, "--network", "none", "busybox",
                          "sleep", "300"], capture_output=True, text=True, check=True).stdout.strip()
    try:
        assert lean.state(cid) == sdk.state(cid) == "running" and lean.is_live(cid) and lean.exists(name)
        assert lean.containers(label) == sdk.containers(label)
        assert [(c.id, c.name, c.state, c.labels.get("t24d.test")) for c in lean.containers(label)] == \
            [(cid, name, "running", label.split("=")[1])]
        assert cid in {c.id for c in lean.containers()}
        found = lean.lookup(name)
        assert found is not None and found.id == cid and found.pid > 0
        lean.stop(cid, timeout=1)
        assert lean.state(cid) == "exited" and not lean.is_running(cid)
        lean.kill(cid)  # not running: nothing to signal, no error
        lean.remove(cid)
        assert lean.state(cid) is None and not lean.exists(cid) and lean.containers(label) == []
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
