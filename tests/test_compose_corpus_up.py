"""Every corpus file (tests/compose_corpus) brought up and down, as adapted copies, on Docker and on Podman.

The adapted copy keeps the file as written except what must not escape the
test: its published ports become 127.0.0.1 ports of this module's range,
container_name:s, fixed volume names and the external network/volume get
the project's prefix. A second -f file then gives every service a tag of
the offline busybox as its image (build: services are built, FROM busybox),
to services written for another image an entrypoint that serves their
published TCP ports with busybox httpd and stays up, a healthcheck busybox
can pass, and each network a bridge of the test's name.

What is checked: `up -d` succeeds; every service runs (a busybox one-shot
with no restart policy may have exited 0); each container has one address
per network, the pinned ipv4_address, inside the network's ip_range or
subnet; every service resolves every peer it shares a network with, by
service name and alias, to that peer's addresses; each published TCP port
answers on 127.0.0.1; `down -v` leaves no container, volume, network,
bridge, attachment or IP reservation, and the test's image tags are gone.

Address plan: the files' own subnets (10.241.x), CNIRUN_SUBNET_POOL 10.249.0.0/16 for the rest; projects
and bridges c26l<hex>; host ports 19950-19974 on Docker, 19975-19999 on Podman.
"""
from __future__ import annotations

import ipaddress
import json
import secrets
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from _wait import wait_for
from conftest import CNIRUN_BIN, _reservations
from conftest import needs_docker, needs_plugins, needs_podman, needs_root
from test_compose_corpus import ALL, CORPUS, Proj, fetch_local

from cnirun.netstore import hostnet

BUSYBOX = ("busybox", "busybox:latest")
POOL = "10.249.0.0/16"
# Files that publish ports, in corpus order: each owns 3 host ports of its engine's range.
PORTED = [c for c in ALL if "ports:" in (CORPUS / c / "compose.yaml").read_text()]
PORT_BASE = {"docker": 19950, "podman": 19975}
# Files that do not come up on either engine, and why (cnirun's bug: the test fails when it is fixed).
BROKEN: dict[str, str] = {}
# Variants of a file with one key dropped: the rest of a BROKEN file still brought up.
WITHOUT_IP_RANGE = "pihole-without-ip_range"
CASES = [pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=BROKEN[c])) if c in BROKEN else c
         for c in ALL] + [WITHOUT_IP_RANGE]
# What a service written for another image runs instead: httpd on each published TCP port, then stays up
# (sh is PID 1 without init: it exits on TERM/INT itself, so a stop does not wait for the grace period).
# ($$: the override file is interpolated like any compose file.)
KEEPALIVE = "trap 'exit 0' TERM INT; for p in {ports}; do httpd -p $$p -h /; done; sleep 600 & wait"


def _parse_port(entry: Any) -> dict[str, Any]:
    """A ports: entry of `config` output (short or long syntax) as target/published/protocol."""
    if isinstance(entry, dict):
        return {"target": int(entry["target"]), "published": entry.get("published"),
                "protocol": entry.get("protocol", "tcp")}
    spec, _, proto = str(entry).partition("/")
    parts = spec.split(":")
    return {"target": int(parts[-1]), "published": int(parts[-2]) if len(parts) > 1 else None,
            "protocol": proto or "tcp"}


class Adapted(Proj):
    """An adapted copy of a corpus file run through cnirun on one engine."""

    def __init__(self, tmp: Path, case: str, engine: str) -> None:
        corpus = case.split("-")[0]
        super().__init__(tmp, corpus)
        self.drop_ip_range = case == WITHOUT_IP_RANGE
        self.engine, self.corpus, self.tmp = engine, corpus, tmp
        self.name = "c26l" + secrets.token_hex(3)
        self.env.update(CNIRUN_ENGINE=engine, CNIRUN_SUBNET_POOL=POOL)
        self.tags: list[str] = []
        self.bridges: list[str] = []
        self.external_nets: list[str] = []
        self.external_vols: list[str] = []
        self.fixed_vols: list[str] = []
        self.ports: dict[int, int] = {}  # published as written -> the test's host port
        self.keepalive: set[str] = set()  # the services given KEEPALIVE

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.engine, *args], capture_output=True, text=True, timeout=timeout)

    def sh(self, container: str, cmd: str) -> subprocess.CompletedProcess[str]:
        return self.run("exec", container, "sh", "-c", cmd)

    def _ps(self, *filters: str) -> list[str]:
        args = [a for f in (f"com.docker.compose.project={self.name}", *filters) for a in ("--filter", f"label={f}")]
        return sorted(self.run("ps", "-a", "--format", "{{.Names}}", *args).stdout.split())

    def containers(self) -> list[str]:
        return self._ps()

    def of(self, service: str) -> list[str]:
        return self._ps(f"com.docker.compose.service={service}")

    def volumes(self) -> list[str]:
        listed = self.run("volume", "ls", "-q").stdout.split()
        mine = self.run("volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={self.name}")
        return sorted(set(mine.stdout.split()) | {v for v in listed if v in self.fixed_vols})

    def images(self) -> list[str]:
        out = self.run("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
        return [i for i in out if i.rpartition("/")[2].startswith(self.name)]

    # -- the adapted copy ----------------------------------------------------------------------------
    def adapt(self) -> dict[str, Any]:
        """Rewrite the copy and write the override file; the project as `config` shows it."""
        model = yaml.safe_load(self.cnirun("config").stdout)
        path = self.dir / "compose.yaml"
        raw = yaml.safe_load(path.read_text())
        self._rewrite_ports(model, raw)
        self._rename(raw)
        self._clamp_ulimits(raw)
        for net in (raw.get("networks") or {}).values():
            for pool in ((net or {}).get("ipam") or {}).get("config", []) if self.drop_ip_range else []:
                pool.pop("ip_range", None)
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        model = yaml.safe_load(self.cnirun("config").stdout)
        override = self.dir / "c26l-override.yaml"
        override.write_text(yaml.safe_dump(self._override(model), sort_keys=False))
        self.files += ["-f", str(override)]
        return yaml.safe_load(self.cnirun("config").stdout)

    def _rewrite_ports(self, model: dict[str, Any], raw: dict[str, Any]) -> None:
        base = PORT_BASE[self.engine] + 3 * (PORTED.index(self.corpus) if self.corpus in PORTED else 0)
        for key, svc in model["services"].items():
            if not svc.get("ports"):
                continue
            entries = []
            for port in map(_parse_port, svc["ports"]):
                if port["published"] is not None:
                    port["published"] = self.ports.setdefault(int(port["published"]), base + len(self.ports))
                entries.append({**port, "host_ip": "127.0.0.1"})
            raw["services"][key]["ports"] = entries
        assert len(self.ports) <= 3, self.ports

    def _clamp_ulimits(self, raw: dict[str, Any]) -> None:
        """ulimits above what the engine may set here are lowered to it (runc fails to raise them): this
        host's hard limits; Podman's conmon runs with nproc 32768, and Podman given any ulimit sets nofile
        and nproc to its own maxima unless told, so it is told."""
        import resource

        def hard(name: str) -> int:
            limit = resource.getrlimit(getattr(resource, f"RLIMIT_{name.upper()}"))[1]
            return min(limit, 32768) if self.engine == "podman" and name == "nproc" else limit

        for svc in raw["services"].values():
            if self.engine == "podman" and svc.get("ulimits"):
                svc["ulimits"] = {"nofile": hard("nofile"), "nproc": hard("nproc"), **svc["ulimits"]}
            for name, value in (svc.get("ulimits") or {}).items():
                most = hard(name)
                if most == resource.RLIM_INFINITY:
                    continue
                limits = value if isinstance(value, dict) else {"soft": value, "hard": value}
                svc["ulimits"][name] = {k: most if int(v) < 0 or int(v) > most else int(v) for k, v in limits.items()}

    def _rename(self, raw: dict[str, Any]) -> None:
        """container_name:s, fixed volume names and external objects get the project's prefix."""
        for key, svc in raw["services"].items():
            if "container_name" in svc:
                svc["container_name"] = f"{self.name}-{key}-cn"
        for key, vol in (raw.get("volumes") or {}).items():
            if vol and vol.get("external"):
                vol["name"] = f"{self.name}-{key}"
                self.external_vols.append(vol["name"])
                assert self.run("volume", "create", vol["name"]).returncode == 0
            elif vol and vol.get("name"):
                vol["name"] = f"{self.name}-{key}"
                self.fixed_vols.append(vol["name"])
        for key, net in (raw.get("networks") or {}).items():
            if net and net.get("external"):
                net["name"] = f"{self.name}-{key}"
                bridge = f"{self.name}x{len(self.external_nets)}"
                made = subprocess.run([CNIRUN_BIN, "network", "create", net["name"], "-o",
                                       f"com.docker.network.bridge.name={bridge}"],
                                      capture_output=True, text=True, env=self.env, timeout=60)
                assert made.returncode == 0, made.stderr
                self.external_nets.append(net["name"])
                self.bridges.append(bridge)

    def _override(self, model: dict[str, Any]) -> dict[str, Any]:
        images: dict[str, str] = {}
        services: dict[str, Any] = {}
        for key, svc in model["services"].items():
            over: dict[str, Any] = {}
            if svc.get("build"):
                over["image"] = f"{self.name}-{key}:t"
            else:
                if svc["image"] not in images:
                    images[svc["image"]] = f"{self.name}-img{len(images)}:t"
                    assert self.run("tag", "busybox:latest", images[svc["image"]]).returncode == 0
                    self.tags.append(images[svc["image"]])
                over["image"] = images[svc["image"]]
            if self.replaced(svc):
                self.keepalive.add(key)
                tcp = [str(p["target"]) for p in map(_parse_port, svc.get("ports") or []) if p["protocol"] == "tcp"]
                over["entrypoint"] = ["sh", "-c", KEEPALIVE.format(ports=" ".join(tcp))]
                if svc.get("healthcheck") and not svc["healthcheck"].get("disable"):
                    over["healthcheck"] = {"test": ["CMD", "true"], "interval": "1s", "timeout": "5s",
                                           "retries": 3, "start_period": "0s"}
            services[key] = over
        networks = {}
        for key, net in (model.get("networks") or {}).items():
            if not net.get("external"):
                self.bridges.append(f"{self.name}{len(self.bridges)}")
                networks[key] = {"driver_opts": {"com.docker.network.bridge.name": self.bridges[-1]}}
        return {"services": services, "networks": networks} if networks else {"services": services}

    @staticmethod
    def replaced(svc: dict[str, Any]) -> bool:
        """The service runs the keep-alive: it was written for another image, or publishes ports it does
        not serve."""
        written_for_busybox = svc.get("build") or svc.get("image") in BUSYBOX
        return not written_for_busybox or bool(svc.get("ports") and "httpd" not in str(svc.get("command")))

    # -- what is checked once up ----------------------------------------------------------------------
    def subnets(self) -> dict[str, ipaddress.IPv4Network]:
        """Each network's IPv4 subnet, from its conflist."""
        out = {}
        for f in self.netconf.glob("*.conflist"):
            conf = json.loads(f.read_text())
            for plugin in conf["plugins"]:
                for rng in (plugin.get("ipam") or {}).get("ranges", []):
                    net = ipaddress.ip_network(rng[0]["subnet"])
                    if net.version == 4:
                        out[conf["name"]] = net
        return out

    def addresses(self, container: str) -> list[ipaddress.IPv4Address]:
        out = self.sh(container, "ip -4 -o addr show").stdout
        return [ipaddress.ip_address(line.split()[3].split("/")[0]) for line in out.splitlines()
                if line.split()[1] != "lo"]

    def resolves(self, container: str, name: str) -> set[str]:
        out = self.sh(container, f"nslookup {name}").stdout
        return {line.split()[1] for line in out.split("Name:", 1)[-1].splitlines()
                if line.startswith("Address: ") and "#" not in line}

    def assert_clean(self, keys: list[str]) -> None:
        assert self.containers() == [] and self.volumes() == []
        results = self.cache / "results"
        assert not results.exists() or list(results.iterdir()) == []
        left = [f.name for f in self.netconf.glob("*") if not any(n in f.name for n in self.external_nets)]
        assert left == [], left
        for bridge in self.bridges[len(self.external_nets):]:
            assert not hostnet.link_exists(bridge), bridge
        ipam = self.tmp / "ipam"
        for net in (ipam.iterdir() if ipam.exists() else []):
            assert _reservations(ipam, net.name) == [], net.name

    def release(self) -> None:
        """Remove what the test made besides the project: external network and volume, image tags, builds."""
        for net in self.external_nets:
            subprocess.run([CNIRUN_BIN, "network", "rm", net], capture_output=True, env=self.env, timeout=60)
        for vol in self.external_vols + self.fixed_vols:
            self.run("volume", "rm", "-f", vol)
        for image in self.images():
            self.run("rmi", "-f", image)

    def assert_released(self) -> None:
        assert self.images() == [] and self.volumes() == []
        assert list(self.netconf.glob("*")) == []
        for bridge in self.bridges:
            assert not hostnet.link_exists(bridge), bridge


def _nets(svc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The service's networks (compose key -> its settings there); none with a network_mode."""
    if svc.get("network_mode"):
        return {}
    return {k: v or {} for k, v in (svc.get("networks") or {"default": None}).items()}


def _state(p: Adapted, container: str) -> list[str]:
    return p.run("inspect", "-f", "{{.State.Running}} {{.State.ExitCode}}", container).stdout.split()


def _check_running(p: Adapted, model: dict[str, Any]) -> dict[str, list[str]]:
    """Every service has its containers running (a busybox one-shot with no restart policy: exited 0);
    the running ones of each service that keeps running."""
    running = {}
    for key, svc in model["services"].items():
        names = p.of(key)
        assert len(names) == int(svc.get("scale", 1)), (key, names)
        one_shot = key not in p.keepalive and svc.get("restart", "no") == "no"
        for name in names:
            done = wait_for(lambda: _state(p, name)[:1] == ["true"] or (one_shot and _state(p, name) == ["false", "0"]),
                            20, step=0.3)
            assert done, (name, _state(p, name), p.run("logs", name).stderr[-500:])
        running[key] = [] if one_shot else names
    return running


def _check_addresses(p: Adapted, model: dict[str, Any], running: dict[str, list[str]],
                     raw: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    """One address per network, the pinned one, inside the ip_range the file gives or the subnet (the
    pool's when the file gives none); (service, network key) -> its containers' addresses there."""
    subnets = p.subnets()
    found: dict[tuple[str, str], set[str]] = {}
    for key, names in running.items():
        nets = _nets(model["services"][key])
        for name in names:
            addrs = p.addresses(name)
            assert len(addrs) == len(nets), (name, addrs, nets)
            for net_key, settings in nets.items():
                subnet = subnets[model["networks"][net_key]["name"]]
                mine = [a for a in addrs if a in subnet]
                assert len(mine) == 1, (name, net_key, addrs, subnet)
                ipam = ((raw.get("networks") or {}).get(net_key) or {}).get("ipam", {}).get("config", [{}])[0]
                if settings.get("ipv4_address"):
                    assert str(mine[0]) == settings["ipv4_address"], (name, mine)
                elif ipam.get("ip_range"):
                    assert mine[0] in ipaddress.ip_network(ipam["ip_range"]), (name, mine)
                elif not ipam.get("subnet"):
                    assert subnet.subnet_of(ipaddress.ip_network(POOL)), subnet
                found.setdefault((key, net_key), set()).add(str(mine[0]))
    return found


def _check_names(p: Adapted, model: dict[str, Any], running: dict[str, list[str]],
                 ips: dict[tuple[str, str], set[str]]) -> int:
    """Each running service without dns: resolves each peer on a shared network, by name (all its replicas
    there) and by its aliases; the number of lookups made."""
    looked = 0
    for a, names in running.items():
        if model["services"][a].get("dns"):
            continue  # its resolv.conf has the servers dns: gives, not the networks' resolvers (docs/cli.md)
        a_nets = set(_nets(model["services"][a]))
        for b, peers in running.items():
            shared = a_nets & set(_nets(model["services"][b])) if names and peers and a != b else set()
            if not shared:
                continue
            expected = set().union(*(ips[(b, n)] for n in shared))
            assert p.resolves(names[0], b) == expected, (a, b, expected)
            for net_key in shared:
                # a dotted alias is answered only with x-cni dns_outside_names (cnirun.dns.netconf)
                for alias in [a for a in _nets(model["services"][b])[net_key].get("aliases") or [] if "." not in a]:
                    assert ips[(b, net_key)] <= p.resolves(names[0], alias), (a, alias)
            looked += 1
    return looked


def _check_ports(p: Adapted, model: dict[str, Any]) -> None:
    """Each published TCP port answers on 127.0.0.1 (httpd: a page or an HTTP error)."""
    for svc in model["services"].values():
        for port in map(_parse_port, svc.get("ports") or []):
            if port["protocol"] == "tcp":
                host = int(port["published"])
                assert wait_for(lambda: not fetch_local(host).startswith("failed"), 15, step=0.3), \
                    (host, fetch_local(host))


@pytest.fixture
def adapted(tmp_path: Path) -> Iterator[object]:
    made: list[Adapted] = []

    def factory(corpus: str, engine: str) -> Adapted:
        made.append(Adapted(tmp_path / f"p{len(made)}", corpus, engine))
        return made[-1]

    yield factory
    for p in made:
        if p.containers() or p.volumes() or any(p.netconf.glob("*.conflist")):
            p.cnirun("down", "-v", "--remove-orphans", ok=False, timeout=300)
        p.release()


ENGINES = [pytest.param("docker", marks=[needs_docker, pytest.mark.docker]),
           pytest.param("podman", marks=[needs_podman, pytest.mark.podman])]


@needs_root
@needs_plugins
@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", CASES)
def test_corpus_file_up_and_down(adapted: object, case: str, engine: str) -> None:
    """The adapted copy of the corpus file comes up on the engine: every service running, on its networks
    with the addresses the file pins, resolving its peers by name and alias, its published TCP ports
    answering on 127.0.0.1; down -v then leaves nothing (module docstring)."""
    p = adapted(case, engine)  # type: ignore[operator]
    model = p.adapt()
    raw = yaml.safe_load((p.dir / "compose.yaml").read_text())
    up = p.cnirun("up", "-d", timeout=300)
    assert "Traceback" not in up.stderr
    running = _check_running(p, model)
    ips = _check_addresses(p, model, running, raw)
    _check_names(p, model, running, ips)
    _check_ports(p, model)
    down = p.cnirun("down", "-v", timeout=300)
    assert "Traceback" not in down.stderr
    p.assert_clean(list(model.get("networks") or {}))
    p.release()
    p.assert_released()
