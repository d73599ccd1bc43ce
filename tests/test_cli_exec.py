"""`cnirun exec` killed at any moment, then `cnirun gc`: nothing left behind.

exec is a run like `cnirun run`'s (a state dir, the netns named in it before
it is made, ADD's intent record, its command's pid and start time), so gc
tears it down through the same path: the netns, cache entry, reservation,
veth, rules and the name that keeps the network's resolver running, and the
plugin of an ADD cut short. While the command still runs, gc leaves it alone.

Address plan: 10.210.N.0/24, networks ta-N, bridges ctaN (N: octet 210's counter).
"""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from _chaos import chain_with_slow_noop
from conftest import World, _make_world, needs_plugins, needs_root, world_fixture
from test_dns import assert_no_resolver, resolvers_of, wait_for

pytestmark = [needs_root, needs_plugins]

world = world_fixture(_make_world, 210, "exec", net="ta-{n}", bridge="cta{n}", subnet="10.210.{n}.0/24")


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _plugin_adds(w: World) -> list[int]:
    """Pids of the World's noop plugin running an ADD (chain_with_slow_noop's, by its script path)."""
    script = str(w.tmp / "plugins" / "noop").encode()
    out = []
    for pid in (int(n) for n in os.listdir("/proc") if n.isdigit()):
        try:
            if script in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") and \
                    b"CNI_COMMAND=ADD" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                out.append(pid)
        except OSError:
            continue
    return out


def _environ(pid: int) -> dict[str, str]:
    pairs = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    return dict(p.split("=", 1) for p in pairs if "=" in p)


def _one_gc_frees_everything(w: World, netns: str) -> None:
    """`cnirun gc` tears the killed exec's run down: its netns and everything the World checks go."""
    gc = w.cnirun("gc")
    assert gc.returncode == 0 and "tore down run" in gc.stdout, gc.stdout + gc.stderr
    assert not os.path.exists(netns)
    w.assert_clean()
    assert_no_resolver(w)


def _stop(proc: subprocess.Popen[str], pids: list[int]) -> None:
    """The end of a test, whatever it found: the exec and the processes it left are gone."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for pid in pids:
        _kill(pid)


def test_sigkill_while_the_command_runs_then_gc_frees_everything_once_it_ended(world: World) -> None:
    """gc leaves a live exec alone, and a killed exec whose command still runs; once the command has
    ended, one gc removes the netns, cache entry, reservation, veth, rules and the network's resolver."""
    w = world
    proc = w.popen("exec", "--net", w.net, "--", "sh", "-c", "echo $$; ip netns identify; exec sleep 60",
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    command = 0
    try:
        assert proc.stdout is not None
        command = int(proc.stdout.readline())  # sh's pid, which execs sleep: the command's process
        netns = "/run/netns/" + proc.stdout.readline().strip()
        assert wait_for(lambda: len(resolvers_of(w)) == 1, 30), "the network's resolver never started"
        assert os.path.exists(netns)
        gc = w.cnirun("gc")
        assert gc.returncode == 0 and gc.stdout.strip() == "nothing to collect", gc.stdout + gc.stderr
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert _alive(command)
        gc = w.cnirun("gc")
        assert gc.returncode == 0 and gc.stdout.strip() == "nothing to collect", gc.stdout + gc.stderr
        assert w.leftovers() != [], "gc tore down an exec whose command still runs"
        assert _alive(command) and len(resolvers_of(w)) == 1
        _kill(command)
        assert wait_for(lambda: not _alive(command), 10)
        _one_gc_frees_everything(w, netns)
    finally:
        _stop(proc, [command] if command else [])


def test_sigkill_during_a_slow_add_then_gc_leaves_nothing_and_kills_the_plugin(world: World) -> None:
    """exec SIGKILLed while its ADD's plugin runs: one gc DELs the cut-short ADD, kills the plugin
    still running it and removes the netns and the run's state."""
    w = world
    chain_with_slow_noop(w, 60.0)
    proc = w.popen("exec", "--", "true", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    plugins: list[int] = []
    try:
        assert wait_for(lambda: bool(_plugin_adds(w)), 30), "the slow plugin never started"
        plugins = _plugin_adds(w)
        netns = _environ(plugins[0])["CNI_NETNS"]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert all(_alive(p) for p in plugins)
        _one_gc_frees_everything(w, netns)
        assert wait_for(lambda: not any(_alive(p) for p in plugins), 5), "the cut-short ADD's plugin still runs"
        assert _plugin_adds(w) == []
    finally:
        _stop(proc, plugins)


def test_a_state_dir_that_cannot_be_made_is_one_line_and_nothing_runs(world: World) -> None:
    """exec records its run before it makes anything: a state dir it cannot make is one line, 125,
    before the netns or any attachment exists."""
    w = world
    marker = w.tmp / "ran"
    w.env["CNIRUN_STATE_DIR"] = "/proc/ta-no-such-dir"
    p = w.cnirun("exec", "--", "touch", str(marker))
    assert p.returncode == 125, p.stderr
    assert p.stderr.startswith("cnirun: cannot make the run's state dir in /proc/ta-no-such-dir/containers")
    assert len(p.stderr.splitlines()) == 1 and "Traceback" not in p.stderr
    assert not marker.exists()
    w.env["CNIRUN_STATE_DIR"] = str(w.state_dir)
