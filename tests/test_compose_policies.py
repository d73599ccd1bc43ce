"""compose services' firewall policies: `x-cni: {ingress_allow: [...], egress_allow: [...]}` (issue 25).

The parser (cnirun.compose.x_cni) checks every value with network.policies at
load time and hands the strings to the service's RunRequest; `compose config`
shows them. The end-to-end tests run a project whose services name each other
in their policies, with real containers, real plugins and real traffic.

Address plan: the World's own network 10.235.N.0/24 (N < 100), the projects'
networks CNIRUN_SUBNET_POOL 10.235.(128+N).0/24; projects t35-N-xxxx.
"""
from __future__ import annotations

import json
import random
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import CNIRUN_BIN, needs_docker, needs_plugins, needs_podman, needs_root

from cnirun.compose.project import load_project
from cnirun.compose.render import render
from cnirun.compose.request import run_request
from cnirun.netstore.located import ComposeError
from cnirun.network.policies import MAX_RULES, parse_allow

FOUR_SERVICES = """\
services:
  web:
    image: busybox
    x-cni:
      egress_allow: db:5432
  db:
    image: busybox
    x-cni:
      ingress_allow: [web:5432, "host:53/udp", "[fd00::/64]:80"]
      ingress_rate: 10mbit
  worker:
    image: busybox
    x-cni: {egress_allow: [queue], ingress_allow: nobody}
  queue:
    image: busybox
    x-cni: {ingress_allow: [none]}
"""


def _load(tmp: Path, text: str) -> Any:
    f = tmp / "compose.yaml"
    f.write_text(text)
    return load_project([f], "t35unit", environ={})


def _refusal(tmp: Path, text: str) -> str:
    with pytest.raises(ComposeError) as e:
        _load(tmp, text)
    return str(e.value)


def test_allow_lists_reach_the_run_request_as_written(tmp_path: Path) -> None:
    """Lists, a single string (one value, as compose takes dns:), nobody and none reach each service's
    RunRequest as written; a service without x-cni gets [] (no policy); rates still parse beside them."""
    proj = _load(tmp_path, FOUR_SERVICES + "  plain:\n    image: busybox\n")
    reqs = {s.name: run_request(proj, s, "docker") for s in proj.services}
    assert (reqs["web"].ingress_allow, reqs["web"].egress_allow) == ([], ["db:5432"])
    assert reqs["db"].ingress_allow == ["web:5432", "host:53/udp", "[fd00::/64]:80"]
    assert reqs["db"].egress_allow == [] and reqs["db"].ingress_rate == "10mbit"
    assert (reqs["worker"].ingress_allow, reqs["worker"].egress_allow) == (["nobody"], ["queue"])
    assert reqs["queue"].ingress_allow == ["none"]
    assert (reqs["plain"].ingress_allow, reqs["plain"].egress_allow) == ([], [])
    # A peer named after a service is that service's DNS name on every network of the project: every replica.
    assert reqs["db"].aliases[0] == "db" and reqs["web"].aliases[0] == "web"
    assert parse_allow(reqs["db"].ingress_allow)[0] == {"peer": {"name": "web"},
                                                        "ports": [{"protocol": "tcp", "port": 5432}]}


def test_compose_config_shows_the_policies(tmp_path: Path) -> None:
    """`compose config` (yaml and json) shows each service's x-cni: its rates and allow lists; a service
    without them shows none."""
    (tmp_path / "compose.yaml").write_text(FOUR_SERVICES + "  plain:\n    image: busybox\n")
    p = subprocess.run([CNIRUN_BIN, "compose", "-p", "t35cfg", "config", "--format", "json"], capture_output=True,
                       text=True, cwd=tmp_path, timeout=60)
    assert p.returncode == 0, p.stderr
    services = json.loads(p.stdout)["services"]
    assert services["db"]["x-cni"] == {"ingress_rate": "10mbit",
                                       "ingress_allow": ["web:5432", "host:53/udp", "[fd00::/64]:80"]}
    assert services["worker"]["x-cni"] == {"ingress_allow": ["nobody"], "egress_allow": ["queue"]}
    assert services["web"]["x-cni"] == {"egress_allow": ["db:5432"]} and "x-cni" not in services["plain"]
    shown = yaml.safe_load(render(_load(tmp_path, FOUR_SERVICES)))
    assert shown["services"]["queue"]["x-cni"] == {"ingress_allow": ["none"]}


def test_an_override_file_replaces_a_list(tmp_path: Path) -> None:
    """A later -f file's allow list replaces the earlier one's (never concatenated: an override can narrow
    a policy); a key it does not name is kept; `none` in it removes the policy the base file set."""
    base = tmp_path / "compose.yaml"
    base.write_text("services:\n  db:\n    image: busybox\n    x-cni:\n      ingress_allow: [web:5432, host]\n"
                    "      egress_allow: [queue]\n")
    over = tmp_path / "override.yaml"
    over.write_text("services:\n  db:\n    x-cni:\n      ingress_allow: [web:5432]\n")
    (svc,) = load_project([base, over], "t35merge", environ={}).services
    assert (svc.ingress_allow, svc.egress_allow) == (["web:5432"], ["queue"])
    over.write_text("services:\n  db:\n    x-cni: {egress_allow: none}\n")
    (svc,) = load_project([base, over], "t35merge", environ={}).services
    assert (svc.ingress_allow, svc.egress_allow) == (["web:5432", "host"], ["none"])
    assert parse_allow(svc.egress_allow) is None


BAD = [
    ("ingress_allow: [web, 'db:99999']", "compose.yaml:5: services.web.x-cni.ingress_allow[1]: invalid peer "
                                         "'db:99999': '99999' is not a port"),
    ("ingress_allow: []", "services.web.x-cni.ingress_allow: an empty list: write nobody"),
    ("ingress_allow: [web, none]", "services.web.x-cni.ingress_allow: 'none' removes the policy and stands alone"),
    ("egress_allow: [nobody, db]", "services.web.x-cni.egress_allow: 'nobody' allows no peer and stands alone"),
    ("ingress_allow: {db: 5432}", "services.web.x-cni.ingress_allow: expected a list of PEER[:PORTS]"),
    ("ingress_allow: true", "services.web.x-cni.ingress_allow: expected a list of PEER[:PORTS]"),
    ("ingress_allow: [[db]]", "services.web.x-cni.ingress_allow[0]: expected PEER[:PORTS]"),
    ("egress_allow: [null]", "services.web.x-cni.egress_allow[0]: expected PEER[:PORTS]"),
    ("ingress_allow: [wéb]", "services.web.x-cni.ingress_allow[0]: invalid peer 'wéb': 'wéb' is not a container"),
    ("egress_allow: ['db:5432/icmp']", "egress_allow[0]: invalid peer 'db:5432/icmp': unknown protocol 'icmp'"),
    ("egress_allow: [':80']", "egress_allow[0]: invalid peer ':80': no peer before the ports"),
    ("egress_allow: [10.0.0.1/8]", "egress_allow[0]: invalid peer '10.0.0.1/8': 10.0.0.1/8 has bits set"),
    ("egress_allow: 'net:'", "services.web.x-cni.egress_allow: invalid peer 'net:': '' is not a network name"),
    ("egress_allow: 'db:5432 web'", "egress_allow: invalid peer 'db:5432 web': '5432 web' is not a port"),
    ("egress_allow: [1234]", "egress_allow[0]: invalid peer '1234': '1234' is not an address or CIDR"),
    ("egress_allow: ['db:']", "egress_allow[0]: invalid peer 'db:': nothing after ':'"),
    ("allow: [db]", "services.web.x-cni.allow: unknown key: expected one of egress_allow, egress_rate, "
                    "ingress_allow, ingress_rate"),
    (f"ingress_allow: [{', '.join(['db'] * (MAX_RULES + 1))}]",
     f"services.web.x-cni.ingress_allow: more than {MAX_RULES} peers"),
]


@pytest.mark.parametrize("line, expected", BAD, ids=[b[0][:40] for b in BAD])
def test_bad_values_name_their_place_in_the_file(tmp_path: Path, line: str, expected: str) -> None:
    """A malformed peer, port or protocol, a wrong type, an empty list, none/nobody beside peers, too many
    peers or an unknown key: one line naming the file, line and key path of the bad value."""
    msg = _refusal(tmp_path, f"services:\n  web:\n    image: busybox\n    x-cni:\n      {line}\n")
    assert expected in msg and "\n" not in msg, msg
    assert msg.startswith(str(tmp_path / "compose.yaml")), msg


def _junk(rnd: random.Random, depth: int = 0) -> Any:
    """A value of any YAML type: wrong types, unicode, control and huge strings, nested junk, long lists."""
    strings = ["db", "db:5432", "web:80,443,53/udp", "net:backend:80", "[fd00::/64]:80", "host", "none", "nobody",
               "ünïcödé", "db:５４３２", "ｄｂ", "db\u200b", "\u202edb", "db:1-0", "db:0", "db:65536", "db:80/", "::",
               "[::1]", "[::1]:", "10.0.0.0/33", "-db", "db-", "a" * 254, "x" * 5000, "db:" + "1," * 40, "db\n",
               "db\x00", "\t", " ", "", "db:80/udp/tcp", "net:", "net:../etc", "NONE", " none ", "0x10", "1e3",
               "db:８０", "𝕕𝕓", "db:80-" + "9" * 30, "[" * 100, "]:80", "db::80", "db:80:90"]
    kind = rnd.randrange(9 if depth < 3 else 6)
    if kind < 3:
        return rnd.choice(strings)
    if kind == 3:
        return rnd.choice([0, -1, 5432, 10 ** 30, 1.5, float("inf"), True, False, None])
    if kind == 4:
        # any code point but surrogates (a YAML file cannot hold them: PyYAML writes an escape it cannot read)
        return "".join(chr(c) for c in (rnd.randrange(1, 0x2FFFF) for _ in range(rnd.randrange(1, 40)))
                       if not 0xD800 <= c < 0xE000)
    if kind == 5:
        return rnd.choice(strings) + ":" + str(rnd.randrange(-5, 70000))
    if kind == 6:
        return {rnd.choice(["db", "a", "peer", "ports"]): _junk(rnd, depth + 1) for _ in range(rnd.randrange(3))}
    size = rnd.choice([0, 1, 2, 5] + ([MAX_RULES, MAX_RULES + 1, 10_000] if depth == 0 else []))
    if size > 100:
        return [rnd.choice(strings[:20]) for _ in range(size)]
    return [_junk(rnd, depth + 1) for _ in range(size)]


def test_fuzz_allow_lists_one_line_never_a_traceback(tmp_path: Path) -> None:
    """600 seeded x-cni values (wrong types, unicode, control characters, huge strings and lists, nested
    junk, as YAML and as the mapping under x-cni): each loads with every value a string the policy parser
    takes, or is refused with one located line of bounded length; never another exception; the whole
    run is bounded in time."""
    rnd = random.Random(25)
    started, accepted, refused = time.monotonic(), 0, 0
    for i in range(600):
        x_cni: Any = {rnd.choice(["ingress_allow", "egress_allow"]): _junk(rnd)}
        if i % 7 == 0:
            x_cni["egress_allow" if "ingress_allow" in x_cni else "ingress_allow"] = _junk(rnd)
        if i % 50 == 0:
            x_cni = _junk(rnd)  # x-cni itself of any type
        doc = {"services": {"web": {"image": "busybox", "x-cni": x_cni}}}
        text = yaml.safe_dump(doc, allow_unicode=rnd.random() < 0.5)
        try:
            proj = _load(tmp_path, text)
        except ComposeError as e:
            msg = str(e)
            assert "\n" not in msg and len(msg) < 600 and "services.web.x-cni" in msg, (text[:300], msg)
            refused += 1
            continue
        accepted += 1
        (svc,) = proj.services
        for values in (svc.ingress_allow, svc.egress_allow):
            assert all(isinstance(v, str) for v in values)
            if values:
                parse_allow(values)  # the run's own parser takes what the file's took
    assert accepted > 30 and refused > 300, (accepted, refused)
    assert time.monotonic() - started < 60


def test_bad_policy_through_the_cli_is_one_line_and_makes_nothing(tmp_path: Path) -> None:
    """`compose up -d` and `compose config` of a file with a bad peer: exit 1 (compose's bad-file code),
    one `cnirun: ` line with the file's line and key path, no traceback, no network file written."""
    (tmp_path / "compose.yaml").write_text(
        "services:\n  web:\n    image: busybox\n  db:\n    image: busybox\n    x-cni:\n      ingress_allow:\n"
        "        - web:5432\n        - \"web:5432/icmp\"\n")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "NETCONFPATH": str(tmp_path / "net.d"),
           "CNI_CACHE_DIR": str(tmp_path / "cache"), "CNIRUN_STATE_DIR": str(tmp_path / "state"),
           "CNIRUN_SUBNET_POOL": "10.235.127.0/24", "CNIRUN_ENGINE": "docker"}
    for args in (["config"], ["up", "-d", "--pull", "never"]):
        p = subprocess.run([CNIRUN_BIN, "compose", "-p", "t35cli", *args], capture_output=True, text=True,
                           cwd=tmp_path, env=env, timeout=60)
        assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
        assert p.stderr == (f"cnirun: {tmp_path / 'compose.yaml'}:9: services.db.x-cni.ingress_allow[1]: invalid peer "
                            "'web:5432/icmp': unknown protocol 'icmp': write tcp, udp or sctp, e.g. 53/udp\n")
    assert not (tmp_path / "net.d").exists() or not list((tmp_path / "net.d").iterdir())


# -- end to end: services naming each other, real traffic -------------------------------------------
# db answers on 5432 and 5433, web and queue on 80 (busybox nc); worker and web only sleep besides.
PROJECT = """\
services:
  web:
    image: busybox
    init: true
    command: [sh, -c, "nc -ll -p 80 -e echo hi"]
  db:
    image: busybox
    init: true
    command: [sh, -c, "nc -ll -p 5432 -e echo hi & nc -ll -p 5433 -e echo hi & wait"]
    x-cni:
      ingress_allow: [web:5432]
  worker:
    image: busybox
    init: true
    command: [sleep, "3600"]
    x-cni:
      egress_allow: queue
  queue:
    image: busybox
    init: true
    command: [sh, -c, "nc -ll -p 80 -e echo hi"]
"""


class ComposeWorld:
    """A World (its state, cache, IPAM and NETCONFPATH) with a compose project t35-N-xxxx whose networks come
    from 10.235.(128+N).0/24; the project's default network is checked and removed like the World's."""

    def __init__(self, w: Any, tmp: Path) -> None:
        import secrets

        from conftest import Net
        from cnirun.netstore.networks import auto_bridge_name

        assert w.n < 100
        self.w, self.engine = w, w.engine
        self.name = f"t35-{w.n}-{secrets.token_hex(2)}"
        self.file = tmp / "compose.yaml"
        self.file.write_text(PROJECT)
        self.env = dict(w.env, CNIRUN_SUBNET_POOL=f"10.235.{128 + w.n}.0/24", CNIRUN_IPAM_DATA_DIR=str(w.data_dir),
                        CNIRUN_ENGINE=self.engine)
        self.env.pop("COMPOSE_PROFILES", None)
        net = f"{self.name}_default"
        w.watch(Net(net, auto_bridge_name(net), f"10.235.{128 + w.n}.0/24"))

    def compose(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CNIRUN_BIN, "compose", "-f", str(self.file), "-p", self.name, *args], env=self.env,
                              capture_output=True, text=True, timeout=300, cwd=self.file.parent)

    def c(self, service: str, n: int = 1) -> str:
        return f"{self.name}-{service}-{n}"

    def reach(self, client: str, peer: str, port: int) -> str:
        from test_live_policies import reach

        return reach(self.engine, client, peer, port)

    def wait_reach(self, client: str, peer: str, port: int, want: str) -> str:
        from test_live_policies import wait_reach

        return wait_reach(self.engine, client, peer, port, want, within=20)

    def allowed_in(self, container: str) -> set[str]:
        """The addresses in `container`'s ingress set of peers with ports (address . protocol . port)."""
        from test_network_rates import in_netns, pid_of

        p = in_netns(pid_of(container, self.engine), "nft", "-j", "list", "set", "inet", "cnirun_eth0", "in_svc4")
        assert p.returncode == 0, p.stderr
        elems = [o["set"].get("elem", []) for o in json.loads(p.stdout)["nftables"] if "set" in o][0]
        return {str(e["concat"][0]) if isinstance(e, dict) else str(e) for e in elems}


def _services_naming_each_other(w: Any, tmp: Path) -> None:
    from _wait import wait_for
    from test_network_rates import eth0, pid_of

    cw = ComposeWorld(w, tmp)
    try:
        up = cw.compose("up", "-d")
        assert up.returncode == 0, up.stderr
        web, db, worker, queue = (cw.c(s) for s in ("web", "db", "worker", "queue"))
        # db: only web, only on 5432 (names resolve through the project's resolver)
        assert cw.wait_reach(web, "db", 5432, "hi") == "hi"
        assert cw.reach(web, "db", 5433) == "refused"
        assert cw.reach(queue, "db", 5432) == "refused"
        assert cw.reach(worker, "db", 5432) == "refused"
        # worker: out only to queue, by name (its resolver stays reachable under the egress policy)
        assert cw.wait_reach(worker, "queue", 80, "hi") == "hi"
        assert cw.reach(worker, "web", 80) == "refused"
        # services without a policy: everyone in, everywhere out
        assert cw.wait_reach(queue, "web", 80, "hi") == "hi" and cw.reach(db, "queue", 80) == "hi"
        p = w.cnirun("inspect", db, "--format", "{{.Policy}}")
        assert p.returncode == 0 and p.stdout.strip() == "ingress from web:5432; egress unrestricted", \
            (p.stdout, p.stderr)
        # a replica added to web is in db's set within a second of `up` returning, and reaches db:5432
        assert cw.allowed_in(db) == {eth0(pid_of(web, cw.engine))[0]}
        up = cw.compose("up", "-d", "--scale", "web=2")
        assert up.returncode == 0, up.stderr
        assert wait_for(lambda: len(cw.allowed_in(db)) == 2, 1.0, step=0.05), cw.allowed_in(db)
        web2 = cw.c("web", 2)
        assert eth0(pid_of(web2, cw.engine))[0] in cw.allowed_in(db)
        assert cw.wait_reach(web2, "db", 5432, "hi") == "hi"
        assert cw.reach(web2, "db", 5433) == "refused"
    finally:
        down = cw.compose("down")
    assert down.returncode == 0, down.stderr
    w.assert_clean(within=15)
    assert not list((w.state_dir / "policies").glob("*"))
    assert not list(Path(w.env["NETCONFPATH"]).glob(f"{cw.name}*"))


def _world(tmp_path: Path, engine: str = "") -> Any:
    from conftest import _make_world

    return _make_world(tmp_path, 235, "compose policies", net="t35-{n}", bridge="c235x{n}",
                       subnet="10.235.{n}.0/24", engine=engine, name_prefix="t35-{n}-")


@pytest.mark.docker
@needs_root
@needs_plugins
@needs_docker
def test_docker_services_naming_each_other(tmp_path: Path) -> None:
    """Docker (compose's sandbox mode): db allows ingress only from web on 5432 (web's other port, the other
    services refused), worker may open connections only to queue (by name: DNS keeps working), the others
    are unrestricted; `inspect` shows db's policy; `up --scale web=2` puts the new replica in db's set within
    1 s of up returning and it reaches db:5432; `down` leaves nothing (World's leak check, policy records,
    network files)."""
    w = _world(tmp_path)
    try:
        _services_naming_each_other(w, tmp_path)
    finally:
        w.finish()


@pytest.mark.podman
@needs_root
@needs_plugins
@needs_podman
def test_podman_services_naming_each_other(tmp_path: Path) -> None:
    """The same project on Podman: the same traffic allowed and refused, the replica covered within 1 s,
    nothing left after `down`."""
    w = _world(tmp_path, "podman")
    try:
        _services_naming_each_other(w, tmp_path)
    finally:
        w.finish()
