"""Shared fixtures for the `cnirun run` tests: real dockerd, podman and plugins.

Each test gets its own NETCONFPATH, CNI_CACHE_DIR, CNIRUN_STATE_DIR (so its
own watcher), and a bridge network with a unique name, bridge and /24 whose
host-local dataDir is in tmp. `world.assert_clean()` checks that nothing of
the test is left on the host; `world.finish()` ends it. Subnets of
docker_world and podman_world: 10.131.N.0/24 (Docker tests) and
10.132.N.0/24 (Podman tests), N from a per-octet counter. A test file with
its own address plan makes its Worlds with `_make_world(..., net=, bridge=,
subnet=)` and its fixtures with `world_fixture`.

Test files are named after what they cover: tests/test_<package>_<module>.py
covers cnirun/<package>/<module>.py (test_cni_cache, test_oci_hook, ...),
tests/test_<package>.py a package as a whole (test_dns, test_netstore,
test_compose), and a few suites cut across packages by design: test_chaos,
test_scale, test_security, test_ipv6, test_docs, test_layers,
test_old_installs, test_interop_libcni, test_upstream_walkthrough.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import pytest

import _parallel as parallel
from _host import changes_since, host_state
from _wait import wait_for

REPO = Path(__file__).resolve().parent.parent
# The CLI as a module of this interpreter, and the installed launcher as a user runs it: the one definition of each.
CNIRUN = [sys.executable, "-m", "cnirun.cli.main"]
CNIRUN_BIN = str(REPO / ".venv" / "bin" / "cnirun")
PLUGIN_DIR = "/usr/lib/cni"


def _have(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


# The one set of requirement markers: every test module imports these from here.
HAVE_DOCKER = shutil.which("docker") is not None and _have(["docker", "image", "inspect", "busybox"])
HAVE_PODMAN = shutil.which("podman") is not None and _have(["podman", "image", "exists", "busybox"])
HAVE_PLUGINS = os.path.isfile(os.path.join(PLUGIN_DIR, "bridge"))
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (netns, bridges, iptables)")
needs_docker = pytest.mark.skipif(not HAVE_DOCKER, reason="dockerd with a busybox image not available")
needs_podman = pytest.mark.skipif(not HAVE_PODMAN, reason="podman with a busybox image not available")
needs_plugins = pytest.mark.skipif(not HAVE_PLUGINS, reason="containernetworking-plugins not in /usr/lib/cni")


@dataclass
class Net:
    """A network of a World besides its own: its leak check and its removal at the end."""

    name: str
    bridge: str
    subnet: str  # IPv4: rules with its a.b.c. prefix are the network's
    subnet6: str = ""  # IPv6 (a /48 or /64 ending in ::): its rules are looked for in ip6tables too
    created: bool = False  # made by `cnirun network create`: `cnirun network rm` at the end


def _prefix(subnet: str) -> str:
    """What a rule of `subnet`'s addresses contains: `10.1.2.` of 10.1.2.0/24, `fd96:4:` of fd96:4::/48."""
    return subnet.split("::")[0] + ":" if ":" in subnet else subnet.rsplit(".", 1)[0] + "."


def _reservations(data_dir: Path, net: str) -> list[str]:
    """host-local's reserved addresses of `net` (its dir also holds a lock and last_reserved_ip.N)."""
    ipam = data_dir / net
    if not ipam.is_dir():
        return []
    return [p.name for p in ipam.iterdir() if p.name != "lock" and not p.name.startswith("last_reserved")]


def _netns_of_other_worlds(w: "World", names: set[str]) -> set[str]:
    """Those of the cnirun-RUNID netns `names` whose run state is in another World's state dir: that World's
    to check, not w's.

    A run names its netns after its ID once its state dir exists. Worlds live
    under a parallel run's worker basetemps (TMP/state) or, in other pytest
    sessions on the host, under pytest's default basetemps.
    """
    roots = [f"{os.environ[parallel.SHARED_ENV]}/w*"] if os.environ.get(parallel.SHARED_ENV) else []
    roots.append(f"{tempfile.gettempdir()}/pytest-of-*/pytest-*")
    others = set()
    for name in names:
        run_id = name[len("cnirun-"):]
        for root in roots:
            # At any depth: HookWorld, CoreEnv and a few tests keep their state a level or two further down.
            paths = glob.glob(f"{root}/**/state/containers/{run_id}*", recursive=True) + \
                glob.glob(f"{root}/**/state/containers/.tmp-{run_id}*", recursive=True)
            if any(not Path(p).is_relative_to(w.state_dir) for p in paths):
                others.add(name)
    return others


def _veths(bridge: str) -> str:
    p = subprocess.run(["ip", "-br", "link", "show", "master", bridge], capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else ""


@dataclass
class World:
    """One test's private CNI world and the means to check it left nothing.

    Made by `_make_world`, which names the World's network, bridge and subnet
    after the file's address plan. `others` are the test's further networks
    (add_network), checked and removed like the World's own; `name_prefix`
    names the test's containers, removed at the end before the leak check;
    `gone` are paths (devices a plugin makes) that must not exist at the end.
    """

    tmp: Path
    n: int
    net: str
    bridge: str
    subnet: str
    env: dict[str, str] = field(default_factory=dict)
    netns_before: set[str] = field(default_factory=set)
    others: list[Net] = field(default_factory=list)
    name_prefix: str = ""
    gone: list[Path] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.tmp / "ipam"

    @property
    def cache_dir(self) -> Path:
        return self.tmp / "cache"

    @property
    def state_dir(self) -> Path:
        return self.tmp / "state"

    @property
    def engine(self) -> str:
        """The engine the World's runs use: docker unless CNIRUN_ENGINE says otherwise."""
        return self.env.get("CNIRUN_ENGINE") or "docker"

    @property
    def second(self) -> str:
        """The name of the first network add_network made."""
        return self.others[0].name

    def subnet_of(self, net: str) -> str:
        return self.subnet if net == self.net else next(o.subnet for o in self.others if o.name == net)

    def chain(self, name: str, bridge: str, subnet: str, extra: list[dict[str, Any]] | None = None,
              routes: bool = True, hairpin: bool = True) -> Path:
        """Write the conflist `name`: bridge (+ host-local in the World's dataDir), portmap, firewall, `extra`."""
        ipam: dict[str, Any] = {"type": "host-local", "dataDir": str(self.data_dir), "ranges": [[{"subnet": subnet}]]}
        if routes:
            ipam["routes"] = [{"dst": "0.0.0.0/0"}]
        bridge_plugin: dict[str, Any] = {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": True}
        if hairpin:
            bridge_plugin["hairpinMode"] = True
        bridge_plugin.update(capabilities={"ips": True}, ipam=ipam)
        net = {
            "cniVersion": "1.0.0",
            "name": name,
            "plugins": [
                bridge_plugin,
                {"type": "portmap", "capabilities": {"portMappings": True}},
                {"type": "firewall"},
                *(extra or []),
            ],
        }
        path = Path(self.env["NETCONFPATH"]) / f"{name}.conflist"
        path.write_text(json.dumps(net))
        return path

    def conflist(self, extra: list[dict[str, Any]] | None = None, name: str | None = None) -> Path:
        """The World's own network (or one named `name` on its bridge and subnet), `extra` plugins last."""
        return self.chain(name or self.net, self.bridge, self.subnet, extra)

    def add_network(self, name: str, bridge: str, subnet: str, extra: list[dict[str, Any]] | None = None,
                    routes: bool = True, hairpin: bool = True) -> Net:
        """A further network of the test, on its own bridge: checked by leftovers(), its bridge removed at the end."""
        self.chain(name, bridge, subnet, extra, routes=routes, hairpin=hairpin)
        return self.watch(Net(name, bridge, subnet))

    def watch(self, net: Net) -> Net:
        """Check and remove `net` (one the test makes otherwise, e.g. with `cnirun network create`) like the World's."""
        self.others.append(net)
        return net

    def cnirun(self, *args: str, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CNIRUN, *args], env=self.env, capture_output=True, text=True, timeout=timeout, cwd=REPO, **kw
        )

    def popen(self, *args: str, **kw: Any) -> subprocess.Popen[str]:
        return subprocess.Popen([*CNIRUN, *args], env=self.env, text=True, cwd=REPO, **kw)

    # -- leftovers ----------------------------------------------------------------
    def leftovers(self) -> list[str]:
        out: list[str] = []
        nets = [Net(self.net, self.bridge, self.subnet), *self.others]
        for net in nets:
            veths = _veths(net.bridge)
            if veths:
                out.append(f"veths on {net.bridge}: {veths}")
            ips = _reservations(self.data_dir, net.name)
            if ips:
                out.append(f"IP reservations on {net.name}: {ips}")
        results = self.cache_dir / "results"
        if results.is_dir() and list(results.iterdir()):
            out.append(f"cache files: {[p.name for p in results.iterdir()]}")
        names = [f'name: \\"{net.name}' for net in nets]
        v4 = [_prefix(net.subnet) for net in nets]
        v6 = [_prefix(net.subnet6) for net in nets if net.subnet6]
        for tool, prefixes in (("iptables-save", v4), ("ip6tables-save", v6)):
            if not prefixes:
                continue
            rules = subprocess.run([tool], capture_output=True, text=True).stdout
            mine = [ln for ln in rules.splitlines() if any(x in ln for x in names + prefixes)]
            if mine:
                out.append(f"{tool} rules: {mine[:3]}")
        label = f"label=cnirun.state={self.state_dir / 'containers'}"
        for engine, ok in (("docker", HAVE_DOCKER), ("podman", HAVE_PODMAN)):
            if ok:
                ids = subprocess.run([engine, "ps", "-aq", "--filter", label], capture_output=True, text=True).stdout
                if ids.strip():
                    out.append(f"{engine} containers: {ids.split()}")
        states = self.state_dir / "containers"
        if states.is_dir():
            runs = [p.name for p in states.iterdir() if not p.name.startswith(".")]
            if runs:
                out.append(f"run state dirs: {runs}")
        pins = self.state_dir / "netns"
        if pins.is_dir() and list(pins.iterdir()):
            out.append(f"netns pins: {[p.name for p in pins.iterdir()]}")
        gates = self.state_dir / "starting"
        if gates.is_dir() and list(gates.iterdir()):
            out.append(f"start gates: {[p.name for p in gates.iterdir()]}")
        netns_now = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
        new = {n for n in netns_now - self.netns_before if n.startswith("cnirun-")}
        new -= _netns_of_other_worlds(self, new)
        if os.environ.get(parallel.SHARED_ENV):
            # Beside other workers a new cnirun-RUNID netns may be theirs, between their state dir and their
            # netns going: tests/run_parallel.py compares the host's netns before and after all workers instead.
            new = set()
        if new:
            out.append(f"netns: {sorted(new)}")
        out += [f"{path} still exists" for path in self.gone if path.exists()]
        return out

    def assert_clean(self, within: float = 0.0) -> None:
        """Nothing of the World left, at once or within `within` seconds (teardowns finish in the background)."""
        if wait_for(lambda: not self.leftovers(), within, step=0.25):
            return
        left = self.leftovers()
        assert not left, "left behind: " + "; ".join(left)

    def finish(self) -> None:
        """The end of every World: its containers a failed test left removed, the leak check, then its
        watcher, networks and bridges gone whatever the check found."""
        if self.name_prefix:
            left = subprocess.run([self.engine, "ps", "-aq", "--filter", f"name={self.name_prefix}"],
                                  capture_output=True, text=True).stdout.split()
            if left:
                subprocess.run([self.engine, "rm", "-f", *left], capture_output=True)
        try:
            self.assert_clean(within=10.0)
        finally:
            self.stop_watcher()
            removed = [net for net in self.others if net.created]
            rms = [self.cnirun("network", "rm", net.name) for net in removed]
            bridges = [self.bridge, *(net.bridge for net in self.others)]
            for bridge in bridges:
                subprocess.run(["ip", "link", "del", bridge], capture_output=True)
            for rm in rms:
                assert rm.returncode == 0 or "no net configuration" in rm.stderr, rm.stderr
            for net in removed:
                assert subprocess.run(["ip", "link", "show", net.bridge], capture_output=True).returncode != 0

    # -- steps the Docker and Podman tests share ------------------------------------
    def fail_adds_with_noop(self) -> None:
        """Chain the recording noop plugin into the network, failing every ADD with code 11 "boom"."""
        self.chain_noop({"commands": {"ADD": {"reportError": "boom", "reportErrorCode": 11}}})

    def chain_noop(self, behaviour: dict[str, Any]) -> Path:
        """Chain the recording noop plugin last into the network, doing what `behaviour` (its debug file,
        cnirun.plugins.noop) says; the debug file's path (its calls are logged in PATH.log)."""
        from cnirun.plugins import install_plugin_script

        plugdir = self.tmp / "plugins"
        plugdir.mkdir()
        install_plugin_script(plugdir, "noop", "cnirun.plugins.noop")
        debug = self.tmp / "noop.json"
        debug.write_text(json.dumps(behaviour))
        self.conflist(extra=[{"type": "noop", "debugFile": str(debug)}])
        self.env["CNI_PATH"] = f"{plugdir}:{PLUGIN_DIR}"
        return debug

    def wait_for_cache_file(self, timeout: float = 15.0) -> None:
        """Until a run has written its result cache file (its network is up), at most `timeout` seconds."""
        wait_for(lambda: list((self.cache_dir / "results").glob("*")), timeout)

    def stop_watcher(self, wait: float = 0.0) -> None:
        """SIGKILL the World's watcher; `wait`: seconds to give a just-spawned one to write its pid."""
        pidfile = self.state_dir / "containers" / ".watcher.pid"
        wait_for(pidfile.exists, wait)
        try:
            pid = int(pidfile.read_text())
            os.killpg(pid, signal.SIGKILL)  # supervisor and worker share its session/group
        except (OSError, ValueError):
            pass


def run_with_a_terminal(argv: list[str], env: dict[str, str], cwd: Any, timeout: float = 120) -> tuple[Any, str]:
    """Run argv with stderr on a pty (a terminal) and stdout on a pipe: (the process, what the terminal got)."""
    import pty

    master, slave = pty.openpty()
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env, cwd=cwd,
                           timeout=timeout)
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child side is closed and everything was read
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
    return p, out.decode()


def first_address(text: str) -> str:
    """The first CIDR address (`10.1.2.3/24`) in `ip addr` output."""
    for word in text.split():
        if "/" in word and word[0].isdigit():
            return word
    raise AssertionError(f"no address in {text!r}")


def links(engine: str | list[str], container: str, ifnames: tuple[str, ...] = ("eth0",)) -> list[list[str]]:
    """[addresses/prefix (IPv4, IPv6 other than link-local)..., MAC] of each of a running container's `ifnames`.

    `engine`: docker or podman, or its command line as a list (podman --hooks-dir DIR).
    """
    cmd = [engine] if isinstance(engine, str) else engine
    out = []
    for ifname in ifnames:
        p = subprocess.run([*cmd, "exec", container, "sh", "-c",
                            f"ip -o addr show {ifname}; cat /sys/class/net/{ifname}/address"],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        words = p.stdout.split()
        out.append([words[i + 1] for i, w in enumerate(words) if w in ("inet", "inet6") and
                    not words[i + 1].startswith("fe80:")] + [words[-1]])
    return out


def restarts_keep_links(engine: str | list[str], container: str, ifnames: tuple[str, ...] = ("eth0", "eth1")) -> list[list[str]]:
    """6 `restart`s, then a `stop` and a `start`: the addresses and MACs of `ifnames` are the same after each; returns them."""
    cmd = [engine] if isinstance(engine, str) else engine
    first = links(cmd, container, ifnames)
    for args in [("restart", "-t", "0")] * 6 + [("stop", "-t", "0"), ("start",)]:
        p = subprocess.run([*cmd, *args, container], capture_output=True, text=True, timeout=90)
        assert p.returncode == 0, p.stderr
        if args[0] != "stop":
            assert links(cmd, container, ifnames) == first, f"after {args[0]}"
    return first


DAEMON_JSON = "/etc/docker/daemon.json"


def daemon_json_bytes() -> bytes | None:
    """/etc/docker/daemon.json as it is now (None: there is none)."""
    try:
        return Path(DAEMON_JSON).read_bytes()
    except FileNotFoundError:
        return None


def docker_runtimes() -> dict[str, Any]:
    out = subprocess.run(["docker", "info", "--format", "{{json .Runtimes}}"], capture_output=True, text=True).stdout
    return json.loads(out or "{}")


@contextmanager
def installed_docker_runtime(env: dict[str, str], runtime_dir: Path, name_prefix: str = "") -> Iterator[None]:
    """The cnirun runtime installed in dockerd with `env`, its launcher in `runtime_dir`, for the block.

    Skips when a `cnirun` runtime is already registered (a real installation
    is not ours to replace). At the end, containers named `name_prefix*` a
    failed test left are removed (uninstall refuses while they use the
    runtime), the runtime is uninstalled, its dir is gone and daemon.json
    must be byte for byte what it was.
    """
    from cnirun.oci.install import docker_runtime

    if docker_runtime.registered_path(DAEMON_JSON):
        pytest.skip("a cnirun runtime is already registered in /etc/docker/daemon.json")
    before = daemon_json_bytes()
    inst = subprocess.run([*CNIRUN, "install", "docker-runtime", "--dir", str(runtime_dir)],
                          env=env, capture_output=True, text=True, timeout=90, cwd=REPO)
    try:
        assert inst.returncode == 0, inst.stderr
        assert "cnirun" in docker_runtimes()
        yield
    finally:
        left = subprocess.run(["docker", "ps", "-aq", "--filter", f"name={name_prefix}"], capture_output=True,
                              text=True).stdout.split() if name_prefix else []
        if left:
            subprocess.run(["docker", "rm", "-f", *left], capture_output=True)
        un = subprocess.run([*CNIRUN, "uninstall", "docker-runtime", "--dir", str(runtime_dir)],
                            env=env, capture_output=True, text=True, timeout=90, cwd=REPO)
        assert un.returncode == 0, un.stderr
        assert daemon_json_bytes() == before
        assert "cnirun" not in docker_runtimes()
        assert not runtime_dir.exists()


def docker_runtime_installed(w: World, name_prefix: str) -> Any:
    """installed_docker_runtime with the World's environment (and its hook log in its tmp dir)."""
    w.env["CNIRUN_HOOK_LOG"] = str(w.tmp / "hooks.log")
    return installed_docker_runtime(w.env, w.tmp / "runtime", name_prefix)


W = TypeVar("W", bound=World)


def _make_world(tmp_path: Path, octet: int, module: str = "", *, net: str = "t3-{octet}-{n}",
                bridge: str = "cnr{octet}x{n}", subnet: str = "10.{octet}.{n}.0/24", n: int | None = None,
                engine: str = "", extra: list[dict[str, Any]] | None = None, name_prefix: str = "",
                cls: type[W] = World) -> W:
    """The one way to make a World: private dirs, environment and its network, written as a conflist.

    `octet` picks the file's counter (N: next of it, unless `n` is given); `net`,
    `bridge`, `subnet` and `name_prefix` are templates of {octet} and {n} after
    the file's address plan; `extra` plugins end the network's chain; `engine`
    sets CNIRUN_ENGINE; `cls` is a World subclass with a file's own names.
    `module` only says, for the reader, what the World is for.
    """
    if n is None:
        n = parallel.next_n(str(octet))
    names = {"octet": octet, "n": n}
    w = cls(tmp=tmp_path, n=n, net=net.format(**names), bridge=bridge.format(**names),
            subnet=subnet.format(**names), name_prefix=name_prefix.format(**names))
    netconf = tmp_path / "net.d"
    netconf.mkdir()
    for d in (w.cache_dir, w.state_dir, w.data_dir):
        d.mkdir()
    env = dict(os.environ)
    env.update(
        NETCONFPATH=str(netconf), CNI_CACHE_DIR=str(w.cache_dir), CNIRUN_STATE_DIR=str(w.state_dir),
        CNI_PATH=PLUGIN_DIR, CNIRUN_DEFAULT_NETWORK=w.net, CNIRUN_WATCHER_IDLE="5", PYTHONPATH=str(REPO),
    )
    env.pop("CNIRUN_ENGINE", None)
    if engine:
        env["CNIRUN_ENGINE"] = engine
    w.env = env
    w.netns_before = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    w.conflist(extra)
    return w


def _finish(w: World) -> None:
    """w.finish(), under the name bench/ and older test files call."""
    w.finish()


def world_fixture(make: Callable[..., World], *args: Any, **kw: Any) -> Any:
    """A fixture of the World `make(tmp_path, *args, **kw)`, finished after the test.

    pytest names it after the module-level name it is bound to: `dworld = world_fixture(...)`.
    """

    def world(tmp_path: Path) -> Iterator[World]:
        w = make(tmp_path, *args, **kw)
        yield w
        w.finish()

    # A World with a fixed number (its network, bridge and subnet the same every time) is shared by the
    # tests that use it: a parallel run keeps them in one worker, one after the other (_parallel.unit_of).
    world.fixed_resources = "n" in kw
    return pytest.fixture(world)


docker_world = world_fixture(_make_world, 131, "docker")
podman_world = world_fixture(_make_world, 132, "podman", engine="podman")


# -- the whole session leaves the host as it found it -------------------------------
@pytest.fixture(scope="session", autouse=True)
def host_left_as_found() -> Any:
    """The session leaves the host as it found it (tests/_host.py says what is compared).

    A worker of tests/run_parallel.py skips it: the runner compares once
    around all its workers, since a worker's view would include the others'.
    """
    if parallel.worker() is not None:
        yield
        return
    before = host_state()
    yield
    changed = changes_since(before)
    assert not changed, f"the test session left the host changed: {changed}"


# -- markers from what a test uses, and a parallel run's worker loop ------------------
@pytest.hookimpl(tryfirst=True)  # before the tmp_path plugin reads the option
def pytest_configure(config: pytest.Config) -> None:
    """A session's own --basetemp unless one is given: pytest's default, /tmp/pytest-of-USER/pytest-N, keeps
    the three newest sessions' dirs and deletes the others, those of sessions still running included."""
    if config.option.basetemp is None:
        config.option.basetemp = tempfile.mkdtemp(prefix="pytest-cnirun-")
        config._cnirun_own_basetemp = config.option.basetemp  # type: ignore[attr-defined]


def pytest_unconfigure(config: pytest.Config) -> None:
    """The session's own basetemp goes when every test passed (a failure's files stay for a look)."""
    own = getattr(config, "_cnirun_own_basetemp", None)
    session = getattr(config, "_cnirun_session", None)
    if own and session is not None and session.testsfailed == 0 and session.exitstatus in (0, 5):
        shutil.rmtree(own, ignore_errors=True)


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config._cnirun_session = session  # type: ignore[attr-defined]


@pytest.hookimpl(tryfirst=True)  # before -m selects by them
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    parallel.mark(items)


def pytest_collection_finish(session: pytest.Session) -> None:
    parallel.write_plan(session.items)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> Any:
    return parallel.run_claimed(session)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: Any) -> Any:
    """CNIRUN_TEST_CPU_LOG=FILE: a JSON line per test with its wall time and the CPU the whole machine
    spent meanwhile (the daemons' included, from /proc/stat): where the suite's time goes."""
    log = os.environ.get("CNIRUN_TEST_CPU_LOG")
    if not log:
        yield
        return
    start_wall, start_cpu = time.monotonic(), _machine_cpu()
    yield
    line = {"test": item.nodeid, "wall": round(time.monotonic() - start_wall, 3),
            "cpu": round(_machine_cpu() - start_cpu, 3)}
    with open(log, "a") as f:
        f.write(json.dumps(line) + "\n")


def _machine_cpu() -> float:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    parallel.record(report)
