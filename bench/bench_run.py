"""Benchmark `cnirun run` against its peers, measured in the same run.

Medians of N runs (default 10, env BENCH_N); the commands of each group run
interleaved (one of each per round), so a busy machine slows them alike:
  cnirun --rm busybox true            vs  docker run --rm --network none busybox true
    (sandbox mode with one container, the default without daemon config: target <= 2.0x;
    the helper-container sandbox, CNIRUN_SANDBOX=helper: <= 3.0x; and hook mode,
    target <= 1.6x: the bench installs the cnirun runtime with its own environment
    and restores daemon.json byte for byte)
  cnirun --rm busybox true            vs  a naive docker-run.sh in shell (sandbox + plugins
                                          run by hand, DEL without prevResult)
    (target: the one-container sandbox >= 1.6x faster, the hook path >= 1.3x faster)
  cnirun --engine podman --rm busybox true
                                      vs  podman --network-backend cni run (same plugins) (target <= 0.95x)
                                      vs  podman run --rm busybox true (netavark)
  20 concurrent cnirun --rm busybox true vs 20 concurrent docker run --rm busybox true (wall time, successes)
It also counts the iptables rules the naive script leaks (cnirun must leak none).
Before each timed command the bench waits, untimed, until no cnirun process is
left (quiet): a run's DEL goes on in the background after it returned, and
its CPU must not land in the next command's time, the peer's or cnirun's.
BENCH_SKIP=hook,podman,concurrent leaves those parts out (a quick sanity run of
the sandbox rows that does not touch daemon.json).
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import CNIRUN, DAEMON_JSON, PLUGINS, chain, concurrent, install_runtime, ratio, read_or_none, \
    skipped, uninstall_runtime

N = int(os.environ.get("BENCH_N", "10"))
SKIP = skipped()


# The upstream docker-run.sh approach, written naively in shell: a sandbox
# container, every plugin of the chain run by hand (prevResult spliced in with
# sed), the workload joined with --net=container:, and a DEL that, like
# exec-plugins.sh, passes no prevResult.
NAIVE = r"""#!/bin/sh
set -e
contid=$(docker run -d --net=none busybox sleep 1000000)
pid=$(docker inspect -f '{{ .State.Pid }}' "$contid")
netns=/proc/$pid/ns/net
export CNI_CONTAINERID=$contid CNI_NETNS=$netns CNI_IFNAME=eth0 CNI_PATH=%(plugins)s
cleanup() {
  for i in 3 2 1 0; do
    CNI_COMMAND=DEL "$CNI_PATH/$(cat %(dir)s/type$i)" < %(dir)s/plugin$i.json >/dev/null 2>&1 || true
  done
  docker rm -f "$contid" >/dev/null
}
trap cleanup EXIT
prev=""
for i in 0 1 2 3; do
  if [ -z "$prev" ]; then conf=$(cat %(dir)s/plugin$i.json)
  else conf=$(sed "s|}\$|, \"prevResult\": $prev}|" %(dir)s/plugin$i.json); fi
  prev=$(printf '%%s' "$conf" | CNI_COMMAND=ADD "$CNI_PATH/$(cat %(dir)s/type$i)" | tr -d '\n')
done
echo "$prev" | grep -o '"address":"[^"]*"' | head -1 > %(dir)s/last-address
docker run --rm --net=container:"$contid" "$@"
"""


def timed(argv: list[str], env: dict | None = None) -> tuple[float, int]:
    """Seconds and exit status of one run; argv may start with NAME=VALUE words (added to the environment)."""
    while argv and "=" in argv[0] and not argv[0].startswith("/"):
        key, _, value = argv[0].partition("=")
        env, argv = {**(env or os.environ), key: value}, argv[1:]
    t = time.perf_counter()
    rc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env).returncode
    return time.perf_counter() - t, rc


def _cnirun_pids() -> set[str]:
    """The processes named cnirun* (the front end, the runtime's worker and DEL, a background teardown)."""
    out = set()
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().startswith("cnirun"):
                    out.add(pid)
        except OSError:
            continue
    return out


RESIDENT = _cnirun_pids() | {str(os.getpid())}  # what ran before the bench (a watcher): never waited for


def quiet(limit: float = 10.0) -> None:
    """Wait (untimed) until no cnirun process of the last run is left: a run's DEL goes on in the background
    after it returned (the one-container sandbox, hook mode's runtime, Podman), and its CPU must not land
    in the next command's time, the peer's or cnirun's."""
    deadline = time.monotonic() + limit
    while _cnirun_pids() - RESIDENT and time.monotonic() < deadline:
        time.sleep(0.005)


def median_of(argv: list[str], env: dict | None = None, n: int = N) -> tuple[float, int]:
    timed(argv, env)  # warm-up (page cache, image layers)
    times, failures = [], 0
    for _ in range(n):
        quiet()
        dt, rc = timed(argv, env)
        times.append(dt)
        failures += rc != 0
    return statistics.median(times), failures


def interleaved(cmds: dict[str, list[str]], n: int = N) -> dict[str, tuple[float, int]]:
    """name -> (median seconds, failures), one run of every command per round after a warm-up round."""
    for argv in cmds.values():
        timed(argv)
    times: dict[str, list[float]] = {k: [] for k in cmds}
    failures = dict.fromkeys(cmds, 0)
    for _ in range(n):
        for name, argv in cmds.items():
            quiet()
            dt, rc = timed(argv)
            times[name].append(dt)
            failures[name] += rc != 0
    return {k: (statistics.median(v), failures[k]) for k, v in times.items()}


def iptables_lines(needle: str) -> int:
    out = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    return sum(needle in ln for ln in out.splitlines())


def main() -> int:
    if os.geteuid() != 0:
        print("bench_run: needs root (skipped)")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="cnirun-bench-"))
    rows: list[tuple[str, str, float, float, str]] = []
    try:
        # --- Docker ------------------------------------------------------------------
        naive_dir = tmp / "naive"
        naive_dir.mkdir()
        net = chain("cnrbench-naive", "cnrbench0", "10.139.0.0/24", str(tmp / "ipam"))
        for i, p in enumerate(net["plugins"]):
            conf = dict(p, name=net["name"], cniVersion=net["cniVersion"])
            (naive_dir / f"plugin{i}.json").write_text(json.dumps(conf))
            (naive_dir / f"type{i}").write_text(p["type"])
        script = naive_dir / "docker-run.sh"
        script.write_text(NAIVE % {"dir": naive_dir, "plugins": PLUGINS})
        script.chmod(0o755)
        cmds = {
            "none": ["docker", "run", "--rm", "--network", "none", "busybox", "true"],
            "sandbox": [CNIRUN, "--rm", "--mode", "sandbox", "busybox", "true"],
            "helper": ["CNIRUN_SANDBOX=helper", CNIRUN, "--rm", "--mode", "sandbox", "busybox", "true"],
            "naive": ["sh", str(script), "busybox", "true"],
        }
        daemon_before = read_or_none(DAEMON_JSON)
        runtime_dir = tmp / "runtime"
        hooked = "hook" not in SKIP and install_runtime(runtime_dir, None, "bench_run")
        rules_before = iptables_lines("10.139.0.")
        try:
            if hooked:
                cmds["hook"] = [CNIRUN, "--rm", "--mode", "hook", "busybox", "true"]
                cmds["runtime"] = ["docker", "run", "--rm", "--runtime", "cnirun", "--network", "none", "--label",
                                   "cnirun.networks=cnirun", "busybox", "true"]
            res = interleaved(cmds)
        finally:
            if hooked:
                uninstall_runtime(runtime_dir, None, daemon_before, "bench_run")
        leaked = iptables_lines("10.139.0.") - rules_before
        docker_none, f1 = res["none"]
        cn, f2 = res["sandbox"]
        naive, f3 = res["naive"]
        helper, f_helper = res["helper"]
        rows.append(("cnirun --rm busybox true (sandbox)", "docker run --rm --network none", cn, docker_none,
                     "<= 2.0x"))
        rows.append(("cnirun (sandbox, CNIRUN_SANDBOX=helper)", "docker run --rm --network none", helper,
                     docker_none, "<= 3.0x"))
        if hooked:
            rows.append(("cnirun --rm busybox true (hook)", "docker run --rm --network none", res["hook"][0],
                         docker_none, "<= 1.6x"))
            rows.append(("docker run --runtime cnirun", "docker run --rm --network none", res["runtime"][0],
                         docker_none, "<= 1.6x"))
        rows.append(("naive docker-run.sh", "cnirun (sandbox)", naive, cn, ">= 1.6x"))
        rows.append(("naive docker-run.sh", "cnirun (sandbox, helper)", naive, helper, "-"))
        if hooked:
            rows.append(("naive docker-run.sh", "cnirun (hook)", naive, res["hook"][0], ">= 1.3x"))

        # --- Podman -------------------------------------------------------------------
        pod_rows = []
        if shutil.which("podman") and "podman" not in SKIP:
            cni_dir = tmp / "podman-cni"
            cni_dir.mkdir()
            (cni_dir / "cnrbench-podman.conflist").write_text(
                json.dumps(chain("cnrbench-podman", "cnrbench1", "10.138.0.0/24", str(tmp / "ipam2"))))
            pres = interleaved({
                "cni": ["podman", "--network-backend", "cni", "--cni-config-dir", str(cni_dir), "run",
                        "--rm", "--network", "cnrbench-podman", "busybox", "true"],
                "default": ["podman", "run", "--rm", "busybox", "true"],
                "cnirun": [CNIRUN, "--engine", "podman", "--rm", "busybox", "true"],
            })
            (peer_cni, f4), (peer_default, f5), (cnp, f6) = pres["cni"], pres["default"], pres["cnirun"]
            pod_rows = [
                ("cnirun --engine podman", "podman --network-backend cni", cnp, peer_cni, "<= 0.95x"),
                ("cnirun --engine podman", "podman run (netavark)", cnp, peer_default, "-"),
            ]
        rows += pod_rows

        # --- 20 at once -----------------------------------------------------------------
        if "concurrent" not in SKIP:
            conc_cn, ok_cn, _ = concurrent([CNIRUN, "--rm", "--mode", "sandbox", "busybox", "true"], 20)
            conc_d, ok_d, _ = concurrent(["docker", "run", "--rm", "busybox", "true"], 20)
            rows.append((f"20 x cnirun ({ok_cn}/20 ok)", f"20 x docker run bridge ({ok_d}/20 ok)", conc_cn, conc_d,
                         "-"))

        print(f"\nbench_run: medians of {N} runs (s)")
        print(f"{'measured':<36} {'peer':<34} {'time':>7} {'peer':>7} {'ratio':>7}  target")
        for name, peer, a, b, target in rows:
            print(f"{name:<36} {peer:<34} {a:7.3f} {b:7.3f} {a / b:6.2f}x  {target}")
            if target.startswith(">="):  # the peer is the faster one: plot peer / measured against 1 / target
                ratio("run", f"{peer} vs {name}", b, a, 1 / float(target[2:].strip(" x")), name)
            else:
                ratio("run", name, a, b, float(target[2:].strip(" x")) if target.startswith("<=") else None, peer)
        print(f"failures: docker-none {f1}, cnirun {f2}, cnirun helper {f_helper}, naive {f3}"
              + (f", hook {res['hook'][1]}, runtime {res['runtime'][1]}" if hooked else "")
              + (f", podman: cni {f4}, default {f5}, cnirun {f6}" if pod_rows else ""))
        print(f"naive docker-run.sh leaked {leaked} iptables rules over {N + 1} runs "
              f"(DEL without prevResult); cnirun leaked {iptables_lines('cnirun-bench')} ")
    finally:
        # Remove what the naive script leaked: its rules name its bridge's subnet.
        subprocess.run(["ip", "link", "del", "cnrbench0"], capture_output=True)
        subprocess.run(["ip", "link", "del", "cnrbench1"], capture_output=True)
        _flush_naive_rules("10.139.0.")
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _flush_naive_rules(needle: str) -> None:
    for table in ("filter", "nat"):
        out = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True).stdout
        for ln in out.splitlines():
            if ln.startswith("-A ") and needle in ln:
                import shlex

                subprocess.run(["iptables", "-t", table, "-D", *shlex.split(ln)[1:]], capture_output=True)


if __name__ == "__main__":
    sys.exit(main())
