"""`cnirun [run] [OPTIONS] IMAGE [COMMAND [ARG...]]`: the docker-run style parser.

Hand-written, not typer: docker-run's grammar (options stop at the image,
`-it`, `-eK=V`, `--name=x`) does not fit click, and this is the hot path, so
it must not pay typer's import. Parsing turns argv into a RunRequest;
cnirun.run does the rest.
"""
from __future__ import annotations

import sys

from ..engines.spec import RunSpec
from ..run.request import RunRequest

TYPE_CHECKING = False  # start-up cost: see cnirun.core
if TYPE_CHECKING:
    from typing import Any, Callable

USAGE = """\
Usage: cnirun [run] [OPTIONS] IMAGE [COMMAND [ARG...]]

Run a Docker or Podman container attached to CNI networks. The networks are
up before the container's first instruction and torn down (CNI DEL) however
the container ends. Exit status: the container's; 125 when cnirun fails;
126/127 when the command cannot be run.

CNI options:
      --net, --network NAME   attach network NAME (repeatable or comma list:
                              eth0, eth1, ...; default: the default network)
  -p, --publish [IP:]HOST:CONTAINER[/PROTO]
                              publish a port (portmap plugin)
      --ip IP                 static address on the first network
      --ip NET=IP             static address on network NET (repeatable)
      --ip6 IP6, --ip6 NET=IP6
                              static IPv6 address on a dual-stack network
      --mac, --mac-address MAC
                              MAC address of the first interface
      --ingress-rate RATE[:BURST], --egress-rate RATE[:BURST]
                              limit traffic into / out of the container,
                              e.g. 10mbit or 10mbit:64kb (bandwidth plugin;
                              change it live with `cnirun update`)
      --ingress-allow PEER[:PORTS], --egress-allow PEER[:PORTS]
                              firewall policy (repeatable): only these peers
                              may open connections to / from the container;
                              PEER: a container or alias name, net:NETWORK,
                              a CIDR or host; PORTS: 80, 8000-8100/udp, ...;
                              nobody: no peer (cnirun-policy plugin; change it
                              live with `cnirun update`)
      --network-alias NAME    another DNS name of the container on the networks
                              of this run (repeatable; see "Names (DNS)")
      --dns IP                nameserver for /etc/resolv.conf (repeatable;
                              default: the network's resolver)
      --dns-search DOMAIN     search domain (repeatable)
  -f, --file FILE             compose-style networks file (its networks win)
      --engine docker|podman  container engine (env CNIRUN_ENGINE; default docker)
      --mode sandbox|hook     Docker mechanism: a helper container holding the
                              netns, or the cnirun OCI runtime hook (default:
                              hook when `cnirun install docker-runtime` was run)
      --pull missing|always|never
                              pull the image when missing (default), always,
                              or never (the engine's own pull, as docker run)
      --debug                 trace each phase and its duration on stderr
                              (as CNIRUN_TRACE=1; see "Concurrency and tracing")

Container options (as docker run):
      --rm                    remove the container when it exits
  -d, --detach                run in the background, print the container ID
  -i, --interactive           keep stdin open
  -t, --tty                   allocate a terminal
  -e, --env KEY[=VALUE]       set an environment variable (repeatable)
      --env-file FILE         read variables from FILE
  -v, --volume SRC:DST[:OPTS] bind mount or volume (repeatable)
  -w, --workdir DIR           working directory
  -u, --user USER[:GROUP]     user to run as
      --name NAME             container name
      --entrypoint CMD        override the image's entrypoint
  -h, --hostname NAME         hostname (also in /etc/hosts)
  -l, --label KEY=VALUE       container label (repeatable)
      --init                  run an init inside the container
      --privileged, --read-only, --cap-add CAP, --cap-drop CAP, --tmpfs PATH,
      -m/--memory SIZE, --cpus N, --stop-signal SIG, --stop-timeout N,
      --add-host NAME:IP, --device DEV, --security-opt OPT, --shm-size SIZE,
      --pids-limit N, --group-add GROUP, --ulimit NAME=SOFT[:HARD],
      --sysctl KEY=VALUE, --expose PORT, --platform OS/ARCH,
      --log-driver DRIVER, --log-opt KEY=VALUE
      --runtime NAME          the engine's OCI runtime for the container (with
                              Docker, in sandbox mode: hook mode is cnirun's runtime)
      --restart no|always|unless-stopped|on-failure[:N]
                              restart policy (with -d); the container comes
                              back on its CNI networks after each restart
      --help                  show this help

Examples:
  cnirun --rm busybox ip addr
  cnirun run -d --name web --network mynet -p 8080:80 nginx
  cnirun --rm --pull never --network a,b busybox ip -br addr
"""

# Flags that take a value: canonical name for each spelling.
_VALUE_FLAGS = {
    "-e": "env", "--env": "env", "--env-file": "env_file",
    "-v": "volume", "--volume": "volume", "-w": "workdir", "--workdir": "workdir",
    "-u": "user", "--user": "user", "--name": "name", "--entrypoint": "entrypoint",
    "-h": "hostname", "--hostname": "hostname", "-l": "label", "--label": "label",
    "--label-file": "label_file",
    "--cap-add": "cap_add", "--cap-drop": "cap_drop", "--tmpfs": "tmpfs",
    "-m": "memory", "--memory": "memory", "--cpus": "cpus", "--restart": "restart",
    "--stop-signal": "stop_signal", "--stop-timeout": "stop_timeout", "--add-host": "add_host",
    "--device": "device", "--security-opt": "security_opt", "--shm-size": "shm_size",
    "--pids-limit": "pids_limit", "--group-add": "group_add", "--ulimit": "ulimit", "--sysctl": "sysctl",
    "--expose": "expose", "--platform": "platform", "--log-driver": "log_driver", "--log-opt": "log_opt",
    "--runtime": "runtime",
    "--net": "network", "--network": "network", "-p": "publish", "--publish": "publish",
    "--ip": "ip", "--ip6": "ip6", "--mac": "mac", "--mac-address": "mac", "--dns": "dns", "--dns-search": "dns_search",
    "--engine": "engine", "--mode": "mode", "-f": "file", "--file": "file", "--pull": "pull",
    "--ingress-rate": "ingress_rate", "--egress-rate": "egress_rate", "--network-alias": "network_alias",
    "--ingress-allow": "ingress_allow", "--egress-allow": "egress_allow",
}
_BOOL_FLAGS = {
    "--rm": "rm", "-d": "detach", "--detach": "detach", "-i": "interactive", "--interactive": "interactive",
    "-t": "tty", "--tty": "tty", "--init": "init", "--privileged": "privileged", "--read-only": "read_only",
    "--help": "help", "--debug": "debug",
}
_SHORT_BOOLS = {"d", "i", "t"}


class UsageError(Exception):
    pass


def _next_value(args: list[str], i: int, flag: str) -> str:
    """The value of the option at args[i] given as the next argument (`-e K=V`, `--name x`)."""
    if i + 1 >= len(args):
        raise UsageError(f"option {flag} needs a value: see cnirun run --help")
    return args[i + 1]


def _split(args: list[str]) -> tuple[dict[str, list[str]], set[str], list[str]]:
    """argv -> (value options, bool options, [IMAGE, COMMAND...])."""
    values: dict[str, list[str]] = {}
    bools: set[str] = set()
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            i += 1
            break
        if not a.startswith("-") or a == "-":
            break
        if a.startswith("--"):
            flag, eq, inline = a.partition("=")
            if flag in _BOOL_FLAGS:
                if eq and inline.lower() not in ("true", "false", "1", "0"):
                    raise UsageError(f"invalid value {inline!r} for {flag}: expected true or false")
                if not eq or inline.lower() in ("true", "1"):
                    bools.add(_BOOL_FLAGS[flag])
                i += 1
                continue
            if flag not in _VALUE_FLAGS:
                raise UsageError(f"unknown option {flag}: see cnirun run --help")
            if eq:
                val = inline
            else:
                val = _next_value(args, i, flag)
                i += 1
            values.setdefault(_VALUE_FLAGS[flag], []).append(val)
            i += 1
            continue
        # Short options, possibly combined (-it, -dit) and possibly with a glued value (-eK=V, -p80:80).
        j = 1
        while j < len(a):
            c = a[j]
            if c in _SHORT_BOOLS:
                bools.add(_BOOL_FLAGS["-" + c])
                j += 1
                continue
            flag = "-" + c
            if flag not in _VALUE_FLAGS:
                raise UsageError(f"unknown option {flag}: see cnirun run --help")
            rest = a[j + 1 :]
            if rest:
                val = rest[1:] if rest.startswith("=") else rest
            else:
                val = _next_value(args, i, flag)
                i += 1
            values.setdefault(_VALUE_FLAGS[flag], []).append(val)
            break
        i += 1
    return values, bools, args[i:]


# docker run reads env and label files with Go's bufio.Scanner, whose lines
# are capped at 64 KiB ("token too long", exit 125); cnirun refuses the same
# files up front instead of handing the engine what it would refuse.
MAX_KV_LINE = 64 * 1024


def _read_kv_file(path: str, what: str) -> list[str]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise UsageError(f"cannot read {what} {path}: {e.strerror}") from None
    lines = data.splitlines()
    for n, ln in enumerate(lines, 1):
        if len(ln) > MAX_KV_LINE:
            raise UsageError(
                f"{what} {path}: line {n} is {len(ln)} bytes, over the 64 KiB docker run accepts "
                "(token too long): pass large values through a mounted file instead"
            )
    try:
        text = [ln.decode() for ln in lines]
    except UnicodeDecodeError:
        raise UsageError(f"{what} {path} is not UTF-8 text: convert it or pass the values with -e") from None
    return [ln.strip() for ln in text if ln.strip() and not ln.strip().startswith("#")]


def _last(values: dict[str, list[str]], key: str, default: str = "") -> str:
    return values.get(key, [default])[-1]


def _int(text: str, flag: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"invalid {flag} {text!r}: expected a whole number") from None


def _static_ips(given: list[str], flag: str, metavar: str) -> tuple[str, dict[str, str]]:
    """--ip/--ip6 values: (the bare address for the first network, NETWORK=ADDR ones by network).

    Every address is checked here, so that a bad one is named in the message
    as the user gave it, whatever the network part says."""
    from ..core.errors import ArgumentError
    from ..network.options import parse_ip, parse_ip6

    v6 = metavar == "IP6"
    usage = f"expected {metavar} or NETWORK={metavar}, e.g. " + ("fd00:89::10" if v6 else "10.77.0.10")
    bare = ""
    by_network: dict[str, str] = {}
    for v in given:
        net, eq, addr = v.partition("=")
        if not eq:
            net, addr = "", v
        elif not net or not addr:
            raise UsageError(f"invalid {flag} {v!r}: {usage}")
        try:
            (parse_ip6 if v6 else parse_ip)(addr)
        except ArgumentError:
            what = f"{addr!r} is not" if eq else "not"
            raise UsageError(f"invalid {flag} {v!r}: {what} an {'IPv6' if v6 else 'IP'} address a container can "
                             f"use ({usage})") from None
        if eq:
            by_network[net] = addr
        else:
            bare = addr
    return bare, by_network


def parse(args: list[str]) -> RunRequest | None:
    """None means --help was asked for."""
    values, bools, rest = _split(args)
    if "help" in bools:
        return None
    if "debug" in bools:
        from ..core import trace

        trace.enable()
    if not rest:
        raise UsageError("missing IMAGE: cnirun [run] [OPTIONS] IMAGE [COMMAND [ARG...]] (see --help)")
    checked = _checked_container_options(values, bools)
    networks = _networks(values)
    return _request(values, _spec(rest, values, bools, checked), networks)


def _checked_container_options(values: dict[str, list[str]], bools: set[str]) -> dict[str, Any]:
    """The container options that need more than a copy, checked: RunSpec field -> value."""
    env: list[str] = []
    for f in values.get("env_file", []):
        env += _read_kv_file(f, "env file")
    env += values.get("env", [])
    checked: dict[str, Any] = {"env": env, "labels": _labels(values), "cpus": _cpus(values),
                               "restart": _restart(values, bools), "ulimits": values.get("ulimit", [])}
    for u in checked["ulimits"]:
        from ..engines.spec import parse_ulimit

        _checked(parse_ulimit, u)
    checked["sysctls"] = _pairs(values, "sysctl", "--sysctl")
    checked["log_opts"] = _pairs(values, "log_opt", "--log-opt")
    return checked


def _checked(check: Callable[[str], object], value: str) -> None:
    """check(value); its ValueError as a UsageError."""
    try:
        check(value)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _labels(values: dict[str, list[str]]) -> dict[str, str]:
    """--label-file's and --label's KEY=VALUE items (cnirun.* refused: cnirun's own labels)."""
    labels: dict[str, str] = {}
    items = [item for f in values.get("label_file", []) for item in _read_kv_file(f, "label file")]
    for item in items + values.get("label", []):
        k, _, v = item.partition("=")
        if not k:
            raise UsageError(f"invalid label {item!r}: expected KEY=VALUE")
        if k.startswith("cnirun."):
            raise UsageError(f"label {k!r} is reserved for cnirun: pick a key outside cnirun.*")
        labels[k] = v
    return labels


def _cpus(values: dict[str, list[str]]) -> float | None:
    if "cpus" not in values:
        return None
    try:
        return float(_last(values, "cpus"))
    except ValueError:
        raise UsageError(f"invalid --cpus {_last(values, 'cpus')!r}: expected a number like 1.5") from None


def _restart(values: dict[str, list[str]], bools: set[str]) -> str:
    """--restart, checked; only with -d and without --rm."""
    restart = _last(values, "restart")
    if not restart:
        return restart
    from ..engines.spec import parse_restart

    _checked(parse_restart, restart)
    # A foreground run tears its networks down when the container first
    # exits; a detached one keeps them while the container exists, so
    # the engine's restarts come back on them.
    if restart != "no" and "detach" not in bools:
        raise UsageError(f"--restart {restart} needs -d: a foreground run ends (and detaches its "
                         "networks) when the container first exits")
    if restart != "no" and "rm" in bools:
        raise UsageError("conflicting options: --restart and --rm")
    return restart


def _pairs(values: dict[str, list[str]], key: str, flag: str) -> dict[str, str]:
    """KEY=VALUE items of a repeatable option (--sysctl, --log-opt)."""
    out: dict[str, str] = {}
    for item in values.get(key, []):
        k, eq, v = item.partition("=")
        if not k or not eq:
            raise UsageError(f"invalid {flag} {item!r}: expected KEY=VALUE")
        out[k] = v
    return out


def _networks(values: dict[str, list[str]]) -> list[str]:
    """--network's names in order (comma lists split); engine networks refused."""
    networks: list[str] = []
    for n in values.get("network", []):
        names = [x.strip() for x in n.split(",")]
        if not all(names):
            raise UsageError(f"invalid --network {n!r}: an empty network name; give NAME[,NAME...], or leave "
                             "--network out for the default network")
        networks += names
    for n in networks:
        if n in ("host", "none", "bridge") or n.startswith(("container:", "ns:")):
            raise UsageError(
                f"--network {n} is an engine network: use docker/podman run for it; cnirun attaches CNI networks"
            )
    return networks


def _spec(rest: list[str], values: dict[str, list[str]], bools: set[str], checked: dict[str, Any]) -> RunSpec:
    """The container as docker run's options describe it (`checked`: _checked_container_options)."""
    return RunSpec(
        image=rest[0],
        command=rest[1:],
        entrypoint=values["entrypoint"][-1] if "entrypoint" in values else None,
        volumes=values.get("volume", []),
        workdir=_last(values, "workdir"),
        user=_last(values, "user"),
        name=_last(values, "name"),
        hostname=_last(values, "hostname"),
        init="init" in bools,
        tty="tty" in bools,
        interactive="interactive" in bools,  # with -d too: docker allows -di (stdin kept for a later attach)
        detach="detach" in bools,
        remove="rm" in bools,
        privileged="privileged" in bools,
        read_only="read_only" in bools,
        cap_add=values.get("cap_add", []),
        cap_drop=values.get("cap_drop", []),
        tmpfs=values.get("tmpfs", []),
        memory=_last(values, "memory"),
        stop_signal=_last(values, "stop_signal"),
        stop_timeout=_int(_last(values, "stop_timeout"), "--stop-timeout") if "stop_timeout" in values else None,
        add_hosts=values.get("add_host", []),
        devices=values.get("device", []),
        security_opt=values.get("security_opt", []),
        shm_size=_last(values, "shm_size"),
        pids_limit=_int(_last(values, "pids_limit"), "--pids-limit") if "pids_limit" in values else None,
        group_add=values.get("group_add", []),
        expose=values.get("expose", []),
        platform=_last(values, "platform"),
        runtime=_last(values, "runtime"),
        log_driver=_last(values, "log_driver"),
        **checked,
    )


def _request(values: dict[str, list[str]], spec: RunSpec, networks: list[str]) -> RunRequest:
    """The run: the container and cnirun's own options (networks, addresses, mode, pull)."""
    ip, network_ips = _static_ips(values.get("ip", []), "--ip", "IP")
    ip6, network_ips6 = _static_ips(values.get("ip6", []), "--ip6", "IP6")
    mode = _last(values, "mode")
    if mode and mode not in ("sandbox", "hook"):
        raise UsageError(f"invalid --mode {mode!r}: expected sandbox or hook")
    pull = _last(values, "pull", "missing")
    if pull not in ("missing", "always", "never"):
        raise UsageError(f"invalid --pull {pull!r}: expected missing, always or never")
    return RunRequest(
        spec=spec,
        networks=networks,
        publish=values.get("publish", []),
        ip=ip,
        network_ips=network_ips,
        mac=_last(values, "mac"),
        dns=values.get("dns", []),
        dns_search=values.get("dns_search", []),
        engine=_last(values, "engine"),
        mode=mode,
        file=_last(values, "file"),
        pull=pull,
        ingress_rate=_last(values, "ingress_rate"),
        egress_rate=_last(values, "egress_rate"),
        ip6=ip6,
        network_ips6=network_ips6,
        aliases=values.get("network_alias", []),
        ingress_allow=values.get("ingress_allow", []),
        egress_allow=values.get("egress_allow", []),
    )


def near_command(word: str, commands: frozenset[str] | set[str]) -> str:
    """The command `word` looks like a typing slip of (one letter off, or two for a word of 7 or
    more), or ''; only bare lowercase words of 4 letters or more, never a registry path or a tag."""
    if len(word) < 4 or not word.isascii() or not all(c.islower() or c == "-" for c in word):
        return ""
    best, best_d = "", 3 if len(word) >= 7 else 2
    for cmd in sorted(commands):
        if abs(len(cmd) - len(word)) < best_d:
            d = _edit_distance(word, cmd, best_d)
            if d < best_d:
                best, best_d = cmd, d
    return best


def _edit_distance(a: str, b: str, limit: int) -> int:
    """Levenshtein distance with transpositions, or `limit` when it is at least that."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) >= limit:
            return limit
        prev2, prev = prev, cur
    return min(prev[-1], limit)


def _refuse_a_misspelled_command(req: RunRequest, commands: frozenset[str] | set[str]) -> None:
    """`cnirun nework ls` is a slip for `network`, not a request to pull an image named nework:
    an IMAGE that is one or two letters off a command runs only when the engine has it already."""
    image = req.spec.image
    near = near_command(image, commands)  # cnirun's own commands: exact engine verbs never get here
    if not near:
        return
    from ..core.errors import EngineError
    from ..engines import engine_name, quick

    try:
        if quick(engine_name(req.engine or None)).has_image(image):
            return
    except EngineError:
        pass
    raise UsageError(f"{image!r} is not a cnirun command (did you mean {near!r}?), and no image of that name "
                     f"is here to run: to pull and run an image named {image}: cnirun run {image}")


def run_main(args: list[str], not_images: frozenset[str] | set[str] = frozenset(),
             slips_of: frozenset[str] | set[str] = frozenset()) -> int:
    """`cnirun run`; `not_images`: words refused as the IMAGE (`cnirun [OPTIONS] IMAGE` without `run`),
    `slips_of`: commands whose typing slips are refused as the IMAGE unless the engine has that image."""
    from ..core import trace

    t0 = trace.now()
    try:
        req = parse(args)
        if req is not None and req.spec.image in not_images:
            image = req.spec.image
            raise UsageError(f"{image!r} is a command, not an image: cnirun's global options (--debug, --context "
                             f"NAME, --engine NAME) go before a command, and an image named {image} runs with "
                             f"`cnirun run [OPTIONS] {image}`")
        if req is not None and slips_of:
            _refuse_a_misspelled_command(req, slips_of)
    except UsageError as e:
        sys.stderr.write(f"cnirun: {e}\n")
        return 125
    if trace.ON:
        trace.startup()
        trace.event("argv parse", trace.now() - t0)
    if req is None:
        sys.stdout.write(USAGE)
        return 0
    from ..run import run

    outcome = run(req)
    for line in outcome.warnings:
        sys.stderr.write(f"cnirun: teardown: {line}\n")
    if outcome.error:
        sys.stderr.write(f"cnirun: {outcome.error}\n")
    elif outcome.detached and outcome.code == 0:
        sys.stdout.write(outcome.container + "\n")  # as docker run -d
    sys.stdout.flush()
    return outcome.code


__all__ = ["run_main", "parse", "RunRequest", "UsageError", "USAGE"]
