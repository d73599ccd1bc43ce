"""Every compose-spec service key and what cnirun does with it: taken, warned about and ignored, or refused.

SERVICE_KEYS are the keys a service may have (services.parse_service honours
each with Docker Compose v2's meaning, or warns for SERVICE_IGNORED's);
SERVICE_REFUSED are the spec's other keys, refused with their reason.
Ignoring is kept for keys whose absence leaves the container as the file
means it on one Linux host (Windows-only settings, links that service names
already give); a key that would change what the container can see or use
is refused rather than dropped. docs/compose-keys.md is this table for
readers; tests/test_compose_service_keys.py holds the two to each other.
"""
from __future__ import annotations

SERVICE_KEYS = frozenset({
    "image", "build", "command", "entrypoint", "environment", "env_file", "ports", "expose", "networks",
    "network_mode", "hostname", "domainname", "depends_on", "restart", "labels", "container_name", "working_dir",
    "user", "init", "privileged", "read_only", "cap_add", "cap_drop", "extra_hosts", "volumes", "tmpfs",
    "stop_signal", "stop_grace_period", "tty", "stdin_open", "healthcheck", "secrets", "configs", "platform",
    "sysctls", "ulimits", "devices", "deploy", "scale", "logging", "profiles", "pull_policy", "dns",
    "dns_search", "mac_address", "links", "external_links", "mem_limit", "mem_reservation", "cpus",
    "cpu_shares", "pids_limit", "shm_size", "security_opt", "group_add", "extends", "develop",
    "annotations", "attach", "runtime", "cpu_count", "cpu_percent", "credential_spec", "isolation",
    "pull_refresh_after",
})
# Accepted, not honoured: one warning each (the reason says what happens instead).
_WINDOWS = "Windows containers only: ignored on Linux"
SERVICE_IGNORED = {
    "links": "services reach each other by service name on shared networks; link aliases are not created",
    "external_links": "not supported by cnirun",
    "develop": "compose watch is not supported",
    "annotations": "OCI annotations are not passed on",
    "attach": "every service's output is shown",
    "domainname": "not supported by cnirun",
    "cpu_count": _WINDOWS,
    "cpu_percent": _WINDOWS,
    "credential_spec": _WINDOWS,
    "isolation": _WINDOWS,
    "pull_refresh_after": "the image is pulled as pull_policy says",
}
# The compose spec's other service keys: the engine option each sets is not one cnirun's runner passes on.
_ENGINE = "cnirun does not pass {} to the engine"
SERVICE_REFUSED = {
    "blkio_config": _ENGINE.format("block I/O weights and limits"),
    "cgroup": _ENGINE.format("the cgroup namespace mode"),
    "cgroup_parent": _ENGINE.format("a parent cgroup"),
    "cpu_period": _ENGINE.format("CFS periods") + ": use cpus",
    "cpu_quota": _ENGINE.format("CFS quotas") + ": use cpus",
    "cpu_rt_period": _ENGINE.format("real-time CPU periods"),
    "cpu_rt_runtime": _ENGINE.format("real-time CPU time"),
    "cpuset": _ENGINE.format("CPU pinning"),
    "device_cgroup_rules": _ENGINE.format("device cgroup rules") + ": use devices",
    "dns_opt": "cnirun writes the container's resolv.conf with nameservers and search domains only",
    "gpus": _ENGINE.format("GPU requests") + ": use devices",
    "ipc": _ENGINE.format("IPC namespace modes"),
    "label_file": "labels are read from labels: only",
    "mem_swappiness": _ENGINE.format("swappiness"),
    "memswap_limit": _ENGINE.format("swap limits"),
    "models": "AI models are served by Docker Model Runner through docker compose",
    "oom_kill_disable": _ENGINE.format("OOM killer settings"),
    "oom_score_adj": _ENGINE.format("OOM score adjustments"),
    "pid": _ENGINE.format("PID namespace modes"),
    "post_start": "lifecycle hooks are not run: the service would start without what they set up",
    "pre_stop": "lifecycle hooks are not run: the service would stop without what they do",
    "provider": "a provider service is run by a docker compose plugin, not as a container",
    "storage_opt": _ENGINE.format("storage driver options"),
    "use_api_socket": "cnirun does not hand the engine's API socket and credentials to a container: "
                      "mount the socket under volumes: if that is meant",
    "userns_mode": _ENGINE.format("user namespace modes"),
    "uts": _ENGINE.format("UTS namespace modes"),
    "volumes_from": _ENGINE.format("another container's volumes") + ": name the volumes under volumes:",
}
