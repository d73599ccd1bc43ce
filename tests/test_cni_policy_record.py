"""cnirun.cni.policy_record: which cnirun-policy calls cnirun's runtime answers without running the plugin.

Engine-free, no root: the answers are computed from the call alone (the plugin with real traffic, and the
runtime running no process for it: tests/test_plugins_policy.py).
"""
from __future__ import annotations

import json
from pathlib import Path

from conftest import REPO

from cnirun.cni.policy_record import answer_without_running, record_path

OWN = str(REPO / "cnirun" / "plugins" / "bin" / "cnirun-policy")
PREV = {"cniVersion": "1.0.0", "ips": [{"address": "10.233.0.2/24", "gateway": "10.233.0.1"}]}
CONF = {"cniVersion": "1.0.0", "name": "t33-rec", "type": "cnirun-policy", "prevResult": PREV}


def test_without_a_policy_cnirun_answers_for_its_own_plugin(tmp_path: Path) -> None:
    """ADD: the prevResult; CHECK: nothing; DEL: nothing unless the attachment's record exists (then the
    plugin runs: it removes what the record names). Any other command: the plugin runs."""
    env = {"CNIRUN_STATE_DIR": str(tmp_path)}
    assert json.loads(answer_without_running(OWN, "ADD", "c1", "eth0", CONF, env) or b"") == PREV
    assert answer_without_running(OWN, "CHECK", "c1", "eth0", CONF, env) == b""
    assert answer_without_running(OWN, "DEL", "c1", "eth0", CONF, env) == b""
    record = Path(record_path("t33-rec", "c1", "eth0", env))
    assert record == tmp_path / "policies" / "t33-rec-c1-eth0"
    record.parent.mkdir()
    record.write_text("{}")
    assert answer_without_running(OWN, "DEL", "c1", "eth0", CONF, env) is None
    assert answer_without_running(OWN, "DEL", "c2", "eth0", CONF, env) == b""
    assert answer_without_running(OWN, "GC", "", "", CONF, env) is None


def test_the_plugin_runs_with_a_policy_for_another_plugin_and_where_it_would_convert(tmp_path: Path) -> None:
    """A firewallPolicy in runtimeConfig, a program of that type that is not cnirun's launcher, no prevResult
    (the plugin's error) or one in another version (the plugin converts it): the plugin runs."""
    env = {"CNIRUN_STATE_DIR": str(tmp_path)}
    with_policy = {**CONF, "runtimeConfig": {"firewallPolicy": {"ingress": []}}}
    for command in ("ADD", "CHECK", "DEL"):
        assert answer_without_running(OWN, command, "c1", "eth0", with_policy, env) is None
    empty = {**CONF, "runtimeConfig": {"firewallPolicy": {}, "portMappings": []}}
    assert answer_without_running(OWN, "ADD", "c1", "eth0", empty, env) is not None  # {}: no policy
    other = tmp_path / "cnirun-policy"
    other.write_text("#!/bin/sh\necho '{}'\n")
    for command in ("ADD", "CHECK", "DEL"):
        assert answer_without_running(str(other), command, "c1", "eth0", CONF, env) is None
    no_prev = {k: v for k, v in CONF.items() if k != "prevResult"}
    assert answer_without_running(OWN, "ADD", "c1", "eth0", no_prev, env) is None
    assert answer_without_running(OWN, "CHECK", "c1", "eth0", no_prev, env) is None
    old = {**CONF, "prevResult": {**PREV, "cniVersion": "0.4.0"}}
    assert answer_without_running(OWN, "ADD", "c1", "eth0", old, env) is None
