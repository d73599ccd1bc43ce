"""Stand-ins for the tests of teardown and the watcher: a recording engine, a detached run in state."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from cnirun.network import lifecycle
from cnirun.engines.base import Container, ContainerNet, Engine
from cnirun.engines.spec import RunSpec
from cnirun.state.runs import RunMeta, RunState
from cnirun.run.caches import cni_env

from _core_fixtures import CoreEnv


class FakeEngine(Engine):
    """Containers by ID -> state; records every verb."""

    name = "fake"

    def __init__(self, containers: dict[str, str] | None = None) -> None:
        self.containers_state = dict(containers or {})
        self.calls: list[tuple[str, str]] = []
        self.followed: list[str] = []

    def state(self, cid: str) -> str | None:
        return self.containers_state.get(cid)

    def containers(self, label: str = "") -> list[Container]:
        """Unlabelled containers: none has `label`."""
        return [] if label else [Container(cid, cid, "", {}, s) for cid, s in self.containers_state.items()]

    def stop(self, cid: str, timeout: int = 10) -> None:
        self.calls.append(("stop", cid))
        if cid in self.containers_state:
            self.containers_state[cid] = "exited"

    def kill(self, cid: str, sig: str = "KILL") -> None:
        self.calls.append(("kill", cid))

    def remove(self, cid: str, volumes: bool = True, keep: frozenset[str] = frozenset()) -> None:
        self.calls.append(("remove", cid))
        self.containers_state.pop(cid, None)

    def start(self, cid: str) -> None:
        self.calls.append(("start", cid))
        self.containers_state[cid] = "running"

    def netns_of(self, cid: str) -> str:
        raise AssertionError("not used here")

    def lookup(self, ref: str) -> ContainerNet | None:
        state = self.containers_state.get(ref)
        return None if state is None else ContainerNet(ref, ref, state, 0, "none", {})

    def create_workload(self, spec: RunSpec, network_mode: str, labels: dict[str, str], extra_binds: list[str],
                        runtime: str | None = None, auto_remove: bool = False, hostname: str | None = None,
                        dns: list[str] | None = None, dns_search: list[str] | None = None) -> str:
        raise AssertionError("not used here")

    def has_image(self, image: str) -> bool:
        raise AssertionError("not used here")

    def pull(self, image: str, progress: Any = None) -> None:
        raise AssertionError("not used here")

    def follow(self, cid: str, run_id: str, notify: Callable[[str], None]) -> None:
        self.followed.append(run_id)


@pytest.fixture
def run(core: CoreEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[RunState, RunMeta, Any]:
    """A detached run in state: one noop attachment, container 'w1', helper 'h1'."""
    monkeypatch.setenv("CNIRUN_STATE_DIR", str(tmp_path / "state"))
    core.debug("n", reportResult={"cniVersion": "1.0.0", "ips": [{"address": "10.9.0.5/24"}]})
    core.conflist("n", [core.noop_plugin("n")])
    cni = core.cni()
    st = RunState.create()
    meta = RunMeta(id=st.id, engine="fake", workload="w1", sandbox="h1", networks=["n"], detached=True,
                   remove=True, cni_env=cni_env(cni), phase="running")
    st.write_meta(meta)
    lifecycle.attach(cni, [cni.network("n")], st.id, str(core.netns_file))
    return st, meta, cni
