"""docs/compose-keys.md against the parser (cnirun.compose.service_keys, services): every compose-spec
service key, on a minimal file using it, is taken, warned about and ignored, or refused as the table says.

Engine-free: the files are only loaded (load_project), nothing is run.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from cnirun.compose.project import load_project
from cnirun.compose.service_keys import SERVICE_IGNORED, SERVICE_KEYS, SERVICE_REFUSED
from cnirun.netstore.located import ComposeError

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "compose-keys.md"
ROW = re.compile(r"^\| `([a-z_]+)` \| (supported|warned, ignored|refused) \| (.*) \|$")

# One value of every service key of the compose specification (schema/compose-spec.json of
# compose-spec/compose-spec at 170098b, 2026-06-23): the keys are the spec's, the values valid
# for it. {dir} is the test's directory; a value naming `other` gets a second service `other`.
SAMPLES = {
    "annotations": "{a: b}", "attach": "false", "blkio_config": "{weight: 300}", "build": ".",
    "cap_add": "[NET_ADMIN]", "cap_drop": "[ALL]", "cgroup": "host", "cgroup_parent": "c26d",
    "command": "sleep 1", "configs": "[c1]", "container_name": "c26dkeys-x", "cpu_count": "2",
    "cpu_percent": "50", "cpu_period": "100000", "cpu_quota": "50000", "cpu_rt_period": "1000",
    "cpu_rt_runtime": "100", "cpu_shares": "512", "cpus": "0.5", "cpuset": '"0"',
    "credential_spec": "{file: spec.json}", "depends_on": "[other]", "deploy": "{resources: {limits: {cpus: '0.5'}}}",
    "develop": "{watch: [{path: ., action: sync, target: /app}]}", "device_cgroup_rules": '["c 1:3 mr"]',
    "devices": '["/dev/null:/dev/c26dnull"]', "dns": "[10.244.0.1]", "dns_opt": "[use-vc]",
    "dns_search": "[example.org]", "domainname": "example.org", "entrypoint": "[sh, -c]",
    "env_file": "{dir}/a.env", "environment": "{A: '1'}", "expose": '["80"]', "extends": "{service: other}",
    "external_links": "[c26dext]", "extra_hosts": '["h:10.244.0.9"]', "gpus": "all", "group_add": "[audio]",
    "healthcheck": "{test: [CMD, 'true'], interval: 5s}", "hostname": "h", "image": "busybox", "init": "true",
    "ipc": "host", "isolation": "default", "label_file": "{dir}/labels", "labels": "{a: b}", "links": "[other]",
    "logging": "{driver: json-file}", "mac_address": '"02:42:ac:11:00:02"', "mem_limit": "64m",
    "mem_reservation": "32m", "mem_swappiness": "0", "memswap_limit": "1g", "models": "[m]",
    "network_mode": "host", "networks": "[default]", "oom_kill_disable": "true", "oom_score_adj": "100",
    "pid": "host", "pids_limit": "100", "platform": "linux/amd64", "ports": '["127.0.0.1:19850:80"]',
    "post_start": "[{command: 'true'}]", "pre_stop": "[{command: 'true'}]", "privileged": "true",
    "profiles": "[p]", "provider": "{type: c26d}", "pull_policy": "never", "pull_refresh_after": "1h",
    "read_only": "true", "restart": "always", "runtime": "runc", "scale": "2", "secrets": "[s1]",
    "security_opt": '["no-new-privileges:true"]', "shm_size": "64m", "stdin_open": "true",
    "stop_grace_period": "5s", "stop_signal": "SIGTERM", "storage_opt": "{size: 1G}",
    "sysctls": "{net.ipv4.ip_forward: '1'}", "tmpfs": "[/run]", "tty": "true",
    "ulimits": "{nofile: {soft: 1024, hard: 2048}}", "use_api_socket": "true", "user": '"1000"',
    "userns_mode": "host", "uts": "host", "volumes": '["/tmp:/mnt"]', "volumes_from": "[other]",
    "working_dir": "/tmp",
}


def table() -> dict[str, tuple[str, str]]:
    """The page's table: key -> (what cnirun does, the reason or how)."""
    rows = [ROW.match(line) for line in PAGE.read_text().splitlines() if line.startswith("| `")]
    assert all(rows), [line for line, m in zip(PAGE.read_text().splitlines(), rows) if not m]
    out = {m.group(1): (m.group(2), m.group(3)) for m in rows if m}
    assert len(out) == len(rows), "a key has two rows"
    return out


def test_the_table_lists_every_spec_key_as_the_parser_knows_it() -> None:
    """One row per key of the spec, and no other; supported and ignored keys are the parser's known keys,
    refused ones its refusals; a warned or refused key's reason is the one the parser prints."""
    rows = table()
    assert sorted(rows) == sorted(SAMPLES)
    assert SERVICE_KEYS | SERVICE_REFUSED.keys() == rows.keys() and not SERVICE_KEYS & SERVICE_REFUSED.keys()
    for key, (what, why) in rows.items():
        expected = {"refused": SERVICE_REFUSED, "warned, ignored": SERVICE_IGNORED}.get(what)
        if expected is not None:
            assert expected.get(key) == why, key
        else:
            assert key not in SERVICE_IGNORED and key not in SERVICE_REFUSED, key


@pytest.mark.parametrize("key", sorted(SAMPLES))
def test_the_parser_does_what_the_table_says(key: str, tmp_path: Path) -> None:
    """A minimal file with the key: supported loads with no warning about it, warned loads with one
    warning naming it and the table's reason, refused is one error naming it and the reason."""
    what, why = table()[key]
    (tmp_path / "a.env").write_text("A=1\n")
    (tmp_path / "labels").write_text("a=b\n")
    (tmp_path / "secret").write_text("s\n")
    value = SAMPLES[key].replace("{dir}", str(tmp_path))
    service = "    image: busybox\n" if key != "image" else ""
    other = "  other:\n    image: busybox\n" if "other" in value else ""
    text = (f"services:\n  s:\n{service}    {key}: {value}\n{other}"
            f"secrets:\n  s1: {{file: {tmp_path}/secret}}\nconfigs:\n  c1: {{file: {tmp_path}/secret}}\n")
    (tmp_path / "compose.yaml").write_text(text)
    where = f"services.s.{key}: "
    if what == "refused":
        with pytest.raises(ComposeError) as e:
            load_project(tmp_path / "compose.yaml", "c26dkeys", environ={})
        assert str(e.value).endswith(f"{where}not supported by cnirun: {why}") and "\n" not in str(e.value)
        return
    project = load_project(tmp_path / "compose.yaml", "c26dkeys", environ={})
    about = [w for w in project.warnings if where in w]
    if what == "supported":
        assert about == [], text
    else:
        assert len(about) == 1 and about[0].endswith(where + why), (text, project.warnings)


def test_runtime_reaches_the_run_request(tmp_path: Path) -> None:
    """runtime: is the service's container's runtime, in the RunRequest compose runs it with."""
    from cnirun.compose.request import run_request

    (tmp_path / "compose.yaml").write_text("services:\n  s:\n    image: busybox\n    runtime: runc\n"
                                           "  t:\n    image: busybox\n")
    project = load_project(tmp_path / "compose.yaml", "c26dkeys", environ={})
    requests = {svc.name: run_request(project, svc, "docker") for svc in project.services}
    assert requests["s"].spec.runtime == "runc" and requests["t"].spec.runtime == ""
