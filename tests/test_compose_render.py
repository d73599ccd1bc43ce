"""`compose config` (cnirun/compose/render.py): its output is a compose file cnirun reads back to the same
project, and reading it back prints the same text (a fixed point), for every file of tests/compose_corpus;
what it says means what `docker compose config` says for the same file (compose-spec's normalisation).

Engine-free: load_project and render in the process, plus `cnirun compose config` for the command line;
one Docker test brings a project up from config's output and down from the original file. Project names
c26a*, CNIRUN_SUBNET_POOL 10.241.0.0/16 (every address in the files is in it), no host port.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import CNIRUN_BIN, needs_plugins, needs_root
from test_compose_corpus import make  # noqa: F401 - the corpus projects' fixture, cleanup included

from cnirun.compose.project import Project, load_project
from cnirun.compose.render import normalized, render

CORPUS = Path(__file__).resolve().parent / "compose_corpus"
ALL = sorted(p.name for p in CORPUS.iterdir() if (p / "compose.yaml").exists())


def _meaning(project: Project) -> dict[str, Any]:
    """What a project runs: every service setting (the engine's volume names included), the networks, volumes,
    secrets and configs as `up` uses them; not where in a file each came from."""
    services = {}
    for svc in project.services:
        fields = {k: v for k, v in vars(svc).items() if k not in ("raw", "path", "mounts")}
        fields["mounts"] = (svc.mounts.volumes, svc.mounts.files)
        services[svc.name] = fields
    networks = {k: {f: getattr(n, f) for f in vars(n) if f not in ("doc", "path", "pools")}
                | {"pools": [(p.subnet, p.ip_range, p.gateway, p.aux) for p in n.pools]}
                for k, n in project.networks.items()}
    return {"name": project.name, "services": services,
            "networks": networks, "volumes": project.volumes, "secrets": project.secrets,
            "configs": project.configs}


def _load(path: Path, name: str = "c26arender") -> Project:
    return load_project([path], name, environ={})


def _round_trip(first: Path, name: str = "c26arender") -> tuple[Project, str, Project, str]:
    """The project of `first` and its config text; the project of that text (written beside `first`, where
    its .env is) and its config text."""
    p1 = _load(first, name)
    text1 = render(p1)
    out = first.parent / "config-out.yaml"
    out.write_text(text1)
    p2 = _load(out, name)
    return p1, text1, p2, render(p2)


def _write(tmp: Path, text: str) -> Path:
    f = tmp / "compose.yaml"
    f.write_text(text)
    return f


@pytest.mark.parametrize("corpus", ALL)
def test_config_is_a_fixed_point_for_the_corpus(tmp_path: Path, corpus: str) -> None:
    """Every corpus file: config's output (yaml, and json) is read back to the same project, and prints the
    same text again; cnirun warns about nothing in it."""
    assert len(ALL) >= 15
    shutil.copytree(CORPUS / corpus, tmp_path / corpus)
    p1, text1, p2, text2 = _round_trip(tmp_path / corpus / "compose.yaml")
    assert text2 == text1
    assert _meaning(p2) == _meaning(p1)
    assert p2.warnings == [] and p2.inactive == []
    as_json = tmp_path / corpus / "config-out.json"
    as_json.write_text(render(p1, "json"))
    p3 = _load(as_json)
    assert render(p3) == text1 and _meaning(p3) == _meaning(p1)


def test_config_on_the_command_line_is_a_fixed_point(tmp_path: Path) -> None:
    """`cnirun compose -f F config` output fed to `cnirun compose -f OUT config` prints the same text (yaml
    and json), for the corpus file that uses the most keys."""
    shutil.copytree(CORPUS / "flaskdb", tmp_path / "flaskdb")

    def config(path: Path, *args: str) -> str:
        p = subprocess.run([CNIRUN_BIN, "compose", "-f", str(path), "config", *args], capture_output=True,
                           text=True, timeout=60, cwd=tmp_path)
        assert p.returncode == 0 and p.stderr == "", p.stderr
        return p.stdout

    first = config(tmp_path / "flaskdb" / "compose.yaml")
    out = tmp_path / "flaskdb" / "out.yaml"
    out.write_text(first)
    assert config(out) == first
    out.write_text(config(tmp_path / "flaskdb" / "compose.yaml", "--format", "json"))
    assert config(out) == first
    assert yaml.safe_load(first)["name"] == "flaskdb"


def test_service_volumes_name_the_top_level_key(tmp_path: Path) -> None:
    """A service's named volume is printed by its top-level key, short or long syntax, and the top-level entry
    keeps that key with `name:` the engine's name (compose v2's config); read back, the containers mount the
    same engine volumes."""
    f = _write(tmp_path, """\
services:
  db:
    image: busybox
    volumes:
      - data:/var/lib/db
      - {type: volume, source: cache, target: /cache, volume: {nocopy: true}}
      - named:/named:ro
      - /anon
volumes:
  data: {}
  cache: {x-backup: daily}
  named: {name: c26a-shared}
""")
    p1, text1, p2, text2 = _round_trip(f)
    shown = yaml.safe_load(text1)
    assert shown["services"]["db"]["volumes"] == ["data:/var/lib/db", "cache:/cache:nocopy", "named:/named:ro",
                                                  "/anon"]
    assert shown["volumes"] == {"data": {"name": "c26arender_data"},
                                "cache": {"name": "c26arender_cache", "x-backup": "daily"},
                                "named": {"name": "c26a-shared"}}
    assert p2.service("db").volumes == p1.service("db").volumes == [
        "c26arender_data:/var/lib/db", "c26arender_cache:/cache:nocopy", "c26a-shared:/named:ro", "/anon"]
    assert text2 == text1


def test_limits_are_printed_in_the_spec_form_they_were_given(tmp_path: Path) -> None:
    """deploy.resources limits and reservations stay under deploy.resources (never a non-spec `memory:`);
    mem_limit, mem_reservation, cpus and pids_limit stay service keys; read back, the same limits."""
    f = _write(tmp_path, """\
services:
  a:
    image: busybox
    deploy:
      resources:
        limits: {memory: 512M, cpus: '0.50', pids: 100}
        reservations: {memory: 128M}
  b:
    image: busybox
    mem_limit: 1g
    mem_reservation: 256m
    cpus: 2
    pids_limit: 50
""")
    p1, text1, p2, text2 = _round_trip(f)
    a, b = (yaml.safe_load(text1)["services"][n] for n in ("a", "b"))
    assert a["deploy"] == {"resources": {"limits": {"memory": "512m", "cpus": 0.5, "pids": 100},
                                         "reservations": {"memory": "128m"}}}
    assert not {"memory", "mem_limit", "cpus", "pids_limit"} & set(a)
    assert (b["mem_limit"], b["mem_reservation"], b["cpus"], b["pids_limit"]) == ("1g", "256m", 2.0, 50)
    assert "deploy" not in b and "memory" not in b
    for name in ("a", "b"):
        s1, s2 = p1.service(name), p2.service(name)
        assert (s2.memory, s2.memory_reservation, s2.cpus, s2.pids_limit) == \
               (s1.memory, s1.memory_reservation, s1.cpus, s1.pids_limit)
    assert text2 == text1


def test_a_dollar_is_written_twice(tmp_path: Path) -> None:
    """Every `$` in a value is printed `$$` (yaml and json): reading the output interpolates it back to the
    one `$` the container gets, in environment, command, labels, healthcheck and a config's content."""
    f = _write(tmp_path, """\
services:
  a:
    image: busybox
    command: ["sh", "-c", "echo $${HOME} $$1"]
    environment: {PRICE: "$$5", RAW: "a$$b$$$$c"}
    labels: {cost: "$$0"}
    healthcheck: {test: "test $$(id -u) = 0"}
    configs: [motd]
configs:
  motd: {content: "pay $$5"}
""")
    p1, text1, p2, text2 = _round_trip(f)
    a = yaml.safe_load(text1)["services"]["a"]
    assert a["environment"] == {"PRICE": "$$5", "RAW": "a$$b$$$$c"}
    assert a["command"] == ["sh", "-c", "echo $${HOME} $$1"] and a["labels"] == {"cost": "$$0"}
    assert a["healthcheck"]["test"] == ["CMD-SHELL", "test $$(id -u) = 0"]
    assert yaml.safe_load(text1)["configs"]["motd"]["content"] == "pay $$5"
    s = p2.service("a")
    assert s.environment == {"PRICE": "$5", "RAW": "a$b$$c"} and s.command == ["sh", "-c", "echo ${HOME} $1"]
    assert s.labels == {"cost": "$0"} and p2.configs["motd"].value == "pay $5"
    assert json.loads(render(p1, "json"))["services"]["a"]["environment"]["PRICE"] == "$$5"
    assert text2 == text1


def test_ipam_config_is_printed(tmp_path: Path) -> None:
    """A network's ipam.config (subnet, ip_range, gateway, aux_addresses) is printed beside the services'
    ipv4_address, with its driver_opts, labels and internal; read back, the same pools and options."""
    f = _write(tmp_path, """\
services:
  dns:
    image: busybox
    networks:
      dns_net: {ipv4_address: 10.241.250.3, aliases: [resolver]}
networks:
  dns_net:
    internal: true
    labels: [purpose=dns]
    driver_opts: {com.docker.network.driver.mtu: 1400, com.docker.network.bridge.name: c26a-br0}
    ipam:
      config:
        - subnet: 10.241.250.0/24
          ip_range: 10.241.250.128/25
          gateway: 10.241.250.1
          aux_addresses: {router: 10.241.250.2}
    x-cni: {dns: false}
""")
    p1, text1, p2, text2 = _round_trip(f)
    net = yaml.safe_load(text1)["networks"]["dns_net"]
    assert net["ipam"] == {"config": [{"subnet": "10.241.250.0/24", "ip_range": "10.241.250.128/25",
                                       "gateway": "10.241.250.1", "aux_addresses": {"router": "10.241.250.2"}}]}
    assert net["internal"] is True and net["labels"] == {"purpose": "dns"} and net["x-cni"] == {"dns": False}
    assert net["driver_opts"] == {"com.docker.network.driver.mtu": "1400",
                                  "com.docker.network.bridge.name": "c26a-br0"}
    assert yaml.safe_load(text1)["services"]["dns"]["networks"] == {
        "dns_net": {"aliases": ["resolver"], "ipv4_address": "10.241.250.3"}}
    assert _meaning(p2)["networks"] == _meaning(p1)["networks"]
    assert str(p2.networks["dns_net"].pools[0].subnet) == "10.241.250.0/24" and p2.networks["dns_net"].mtu == 1400
    assert text2 == text1


def test_keys_that_did_not_read_back(tmp_path: Path) -> None:
    """logging, ulimits, secrets and configs (file, environment:, content:, uid/gid/mode), a healthcheck's
    start_interval, long-syntax ports with mode/name/app_protocol, sub-second durations and x- keys
    (a YAML date among them, in JSON too): each printed in the compose-spec form cnirun reads back to the same
    settings; a secret taken from a variable is printed as that variable's name, never its value."""
    (tmp_path / "pw.txt").write_text("pw\n")
    (tmp_path / ".env").write_text("C26A_TOKEN=tok-secret-value\n")
    f = _write(tmp_path, """\
x-common: &common {tier: back}
x-released: 2024-01-01
services:
  a:
    image: busybox
    logging: {driver: json-file, options: {max-size: 10m}}
    ulimits: {nproc: 65535, nofile: {soft: 1024, hard: 2048}}
    secrets: [pw, {source: token, target: tok}, {source: pw, target: owned, uid: "1000", gid: "1001", mode: 0440}]
    configs: [{source: motd, target: /etc/motd}, {source: motd, target: /etc/motd7, uid: 7}]
    ports: ["127.0.0.1:19901:81", {target: 80, published: 19900, host_ip: 127.0.0.1, mode: host, name: web,
                                   app_protocol: http}]
    healthcheck: {test: ["CMD", "true"], interval: 10us, timeout: 1m30s, start_period: 1h, start_interval: 2s}
    stop_grace_period: 1500ms
    x-tags: *common
secrets:
  pw: {file: ./pw.txt}
  token: {environment: C26A_TOKEN}
configs:
  motd: {content: hello, name: greeting}
""")
    p1, text1, p2, text2 = _round_trip(f)
    shown = yaml.safe_load(text1)
    a = shown["services"]["a"]
    assert a["logging"] == {"driver": "json-file", "options": {"max-size": "10m"}}
    assert a["ulimits"] == {"nproc": 65535, "nofile": {"soft": 1024, "hard": 2048}}
    assert a["secrets"] == [{"source": "pw", "target": "/run/secrets/pw"},
                            {"source": "token", "target": "/run/secrets/tok"},
                            {"source": "pw", "target": "/run/secrets/owned", "uid": "1000", "gid": "1001",
                             "mode": "0440"}]
    assert a["configs"] == [{"source": "motd", "target": "/etc/motd"},
                            {"source": "motd", "target": "/etc/motd7", "uid": "7", "gid": "0", "mode": "0444"}]
    assert len(a.get("volumes", [])) == 0
    assert a["ports"] == ["127.0.0.1:19901:81", {"target": 80, "published": "19900", "host_ip": "127.0.0.1",
                                                 "mode": "host", "name": "web", "app_protocol": "http"}]
    assert a["healthcheck"] == {"test": ["CMD", "true"], "interval": "10us", "timeout": "1m30s",
                                "start_period": "1h0m0s", "start_interval": "2s"}
    assert a["stop_grace_period"] == "1.5s" and a["x-tags"] == {"tier": "back"}
    assert shown["secrets"]["token"] == {"name": "c26arender_token", "environment": "C26A_TOKEN"}
    assert shown["configs"]["motd"] == {"name": "greeting", "content": "hello"}
    assert shown["x-common"] == {"tier": "back"} and "tok-secret-value" not in text1
    s1, s2 = p1.service("a"), p2.service("a")
    assert (s2.log_driver, s2.log_opts, s2.ulimits, s2.healthcheck, s2.stop_grace_period, s2.volumes) == \
           (s1.log_driver, s1.log_opts, s1.ulimits, s1.healthcheck, s1.stop_grace_period, s1.volumes)
    assert s2.ports == s1.ports == ["127.0.0.1:19901:81", "127.0.0.1:19900:80"]
    assert [(c.file, c.uid, c.gid, c.mode) for c in s2.mounts.copies] == \
           [(c.file, c.uid, c.gid, c.mode) for c in s1.mounts.copies] == \
           [(c.file, 1000, 1001, 0o440) for c in s1.mounts.copies[:1]] + [(s1.mounts.copies[1].file, 7, 0, 0o444)]
    assert p2.secrets["token"].value == "tok-secret-value"
    assert json.loads(render(p1, "json"))["x-released"] == "2024-01-01"  # a YAML date in JSON: its text
    assert text2 == text1


# `docker compose config` (v2) for MEANING_FILE, as compose-spec normalises it: long syntax for ports and
# volumes, depends_on with its condition, environment as a mapping, networks by key with `name:`.
MEANING_FILE = """\
services:
  web:
    build: ./web
    command: python app.py --port 8000
    environment: [MODE=prod, EMPTY=]
    ports: ["127.0.0.1:19450:8000", {target: 53, published: 19453, protocol: udp, host_ip: 127.0.0.1}]
    volumes: [./conf:/etc/conf:ro, data:/data]
    depends_on: {db: {condition: service_healthy}}
    networks: [front, back]
  db:
    image: mariadb:10-focal
    environment: {MYSQL_DATABASE: example}
    healthcheck: {test: mysqladmin ping, interval: 90s}
    networks:
      back: {aliases: [database]}
networks:
  front: {}
  back:
    ipam: {config: [{subnet: 10.241.252.0/24}]}
volumes:
  data: {}
"""
DOCKER_COMPOSE_CONFIG = """\
name: c26arender
services:
  db:
    environment:
      MYSQL_DATABASE: example
    healthcheck:
      test: [CMD-SHELL, mysqladmin ping]
      interval: 1m30s
    image: mariadb:10-focal
    networks:
      back:
        aliases: [database]
  web:
    build:
      context: TMP/web
      dockerfile: Dockerfile
    command: [python, app.py, --port, "8000"]
    depends_on:
      db:
        condition: service_healthy
        required: true
    environment:
      EMPTY: ""
      MODE: prod
    image: c26arender-web
    networks:
      back: null
      front: null
    ports:
      - {mode: ingress, host_ip: 127.0.0.1, target: 8000, published: "19450", protocol: tcp}
      - {mode: ingress, host_ip: 127.0.0.1, target: 53, published: "19453", protocol: udp}
    volumes:
      - {type: bind, source: TMP/conf, target: /etc/conf, read_only: true, bind: {create_host_path: true}}
      - {type: volume, source: data, target: /data, volume: {}}
networks:
  back:
    name: c26arender_back
    ipam:
      config:
        - subnet: 10.241.252.0/24
  front:
    name: c26arender_front
volumes:
  data:
    name: c26arender_data
"""


def _port(p: Any) -> tuple[str, str, str, str]:
    """(host_ip, published, target, protocol) of a port in either syntax."""
    if isinstance(p, dict):
        return (p.get("host_ip", ""), str(p.get("published", "")), str(p["target"]), p.get("protocol", "tcp"))
    spec, _, proto = p.partition("/")
    parts = spec.split(":")
    return (parts[-3] if len(parts) > 2 else "", parts[-2], parts[-1], proto or "tcp")


def _volume(v: Any) -> tuple[str, str, str, bool]:
    """(type, source, target, read_only) of a service volume in either syntax."""
    if isinstance(v, dict):
        return (v["type"], v.get("source", ""), v["target"], bool(v.get("read_only")))
    src, _, rest = v.partition(":")
    target, _, opts = rest.partition(":")
    return ("bind" if src.startswith("/") else "volume", src, target, "ro" in opts.split(","))


def _spec_meaning(config: dict[str, Any]) -> dict[str, Any]:
    """What a config output says about services, images, ports, volumes, env and networks, syntax aside."""
    services = {}
    for name, s in config["services"].items():
        services[name] = {
            "image": s["image"], "build": (s.get("build") or {}).get("context"), "command": s.get("command"),
            "environment": {k: v or "" for k, v in (s.get("environment") or {}).items()},
            "ports": sorted(_port(p) for p in s.get("ports") or []),
            "volumes": sorted(_volume(v) for v in s.get("volumes") or []),
            "networks": {k: (v or {}).get("aliases") for k, v in (s.get("networks") or {}).items()},
            "depends_on": {k: v["condition"] for k, v in (s.get("depends_on") or {}).items()},
            "healthcheck": s.get("healthcheck")}
    return {"name": config["name"], "services": services, "networks": config["networks"],
            "volumes": config["volumes"]}


def test_normalised_meaning_matches_docker_compose_config(tmp_path: Path) -> None:
    """What config prints means what `docker compose config` prints for the same file (services, images,
    ports, volumes, environment, networks, dependencies, healthchecks), only cnirun keeps the short syntax."""
    (tmp_path / "web").mkdir()
    (tmp_path / "conf").mkdir()
    ours = normalized(_load(_write(tmp_path, MEANING_FILE)))
    theirs = yaml.safe_load(DOCKER_COMPOSE_CONFIG.replace("TMP", str(tmp_path)))
    assert _spec_meaning(ours) == _spec_meaning(theirs)
    assert list(ours["services"]) == sorted(ours["services"])


@needs_root
@needs_plugins
@pytest.mark.docker
@pytest.mark.slow
def test_up_from_config_output_is_the_same_project(make: Any) -> None:
    """`up -d` from config's output gives what the original file asks for - the ipam subnet, range and pinned
    address, the named volume (compose's volume label: its key), the secret, `$` in the environment, the
    memory limit - and `down -v` with the original file then leaves nothing: both files are one project."""
    import secrets

    p = make("roundtrip")
    p.name = "c26a" + secrets.token_hex(3)
    p.env["CNIRUN_SUBNET_POOL"] = "10.241.0.0/16"
    (p.dir / "config.yaml").write_text(p.cnirun("config").stdout)
    original, p.files = p.files, ["-f", str(p.dir / "config.yaml")]
    p.cnirun("up", "-d")
    app, peer = f"{p.name}-app-1", f"{p.name}-peer-1"
    assert "inet 10.241.26.200/24" in p.sh(app, "ip -4 addr show eth0").stdout
    peer_ip = p.sh(peer, "ip -4 -o addr show eth0").stdout.split()[3]
    assert peer_ip.startswith("10.241.26.") and int(peer_ip.split(".")[3].split("/")[0]) >= 128
    assert p.sh(app, "echo $PRICE; cat /run/secrets/token").stdout == "$5\ntok-26\n"
    assert "1 packets received" in p.sh(peer, "ping -c1 -W2 appalias").stdout
    memory = subprocess.run(["docker", "inspect", "-f", "{{.HostConfig.Memory}}", app], capture_output=True,
                            text=True).stdout.strip()
    assert memory == str(64 * 1024 * 1024)
    assert p.volumes() == [f"{p.name}_data"]
    label = subprocess.run(["docker", "volume", "inspect", "-f", '{{index .Labels "com.docker.compose.volume"}}',
                            f"{p.name}_data"], capture_output=True, text=True).stdout.strip()
    assert label == "data"
    p.files = original
    p.cnirun("down", "-v")
    p.assert_clean(["pinned"])
