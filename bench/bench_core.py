#!/usr/bin/env python3
"""Speed of the CNI runtime core against its peers, measured in the same run.

1. `cnirun cni add` + `cnirun cni del` of a bridge + host-local + portmap +
   firewall + tuning chain (two whole processes, wall time), against the
   physical floor: the same plugin binaries executed with the same stdin
   (prevResult chaining, reverse DEL), timed around the plugin executions
   alone (the driver that starts them is not counted: it would share our
   costs). Target: at most 1.25x (issue #13), through the launcher `make setup`
   leaves and through a `pip install` made as a user makes it: cnirun's wheel
   (built offline from this checkout) into a fresh `python -m venv` (pip and
   setuptools in it, site and their .pth files run at every start). Also
   `cnirun cni del` with nothing cached, alone.
2. In-process API overhead per plugin call: CNI.add + CNI.delete of a
   one-plugin chain whose plugin is a trivial shell script, against raw
   subprocess calls of that script with the same stdin. Target: <= 3 ms.
3. Importing the core: `python -X importtime -c 'import cnirun.cni.runtime'`
   (cumulative time of cnirun.cni.runtime). Target: <= 30 ms, and none of docker,
   typer, click, pyroute2, yaml on that path.
4. Start-up of the processes cnirun is made of, beyond `python -S -c pass`
   (from / with PYTHONPATH=the repo, so no editable-install hooks): what the
   `cnirun cni` launcher imports, the `cnirun run` argv path, the OCI hook
   module and the shim module; and `cnirun cni` (its usage) through the pip
   install's launcher against make setup's.

Medians of N runs (default 15; env BENCH_RUNS). Needs root (netns, bridge).
Uses 10.121.30.0/24, bridge cnt2bench, netns t2-bench-*, all removed at the end.
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

from _common import ratio

REPO = Path(__file__).resolve().parent.parent
PY = str(REPO / ".venv" / "bin" / "python")
CNIRUN = str(REPO / ".venv" / "bin" / "cnirun")
RUNS = int(os.environ.get("BENCH_RUNS", "15"))
PLUGIN_DIR = "/usr/lib/cni"

# The peer of `cnirun cni add/del`: exactly what any runtime must do to run a
# chain (find binaries, set env, inject name/cniVersion/prevResult/runtimeConfig),
# without cnirun. argv: add|del CONFLIST NETNS CONTAINERID STATEFILE
DRIVER = r'''
import json, os, subprocess, sys
cmd, conflist, netns, cid, state = sys.argv[1:6]
lst = json.load(open(conflist))
env = dict(os.environ, CNI_COMMAND=cmd.upper(), CNI_CONTAINERID=cid, CNI_NETNS=netns,
           CNI_IFNAME="eth0", CNI_ARGS="", CNI_PATH="/usr/lib/cni")
plugins = lst["plugins"]
prev = None if cmd == "add" else json.load(open(state))
import time
spent = 0.0
for p in (plugins if cmd == "add" else reversed(plugins)):
    conf = dict(p, name=lst["name"], cniVersion=lst["cniVersion"])
    if prev is not None:
        conf["prevResult"] = prev
    data = json.dumps(conf).encode()
    t0 = time.perf_counter()
    out = subprocess.run(["/usr/lib/cni/" + p["type"]], input=data, env=env, capture_output=True)
    spent += time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(out.stdout.decode() + out.stderr.decode())
    if cmd == "add":
        prev = json.loads(out.stdout)
if cmd == "add":
    json.dump(prev, open(state, "w"))
else:
    os.unlink(state)
print(spent)  # seconds spent in the plugin executions alone
'''

TRIVIAL_PLUGIN = """#!/bin/sh
# a trivial CNI plugin: reads its stdin, answers ADD with an empty 1.0.0 result
cat >/dev/null
case "$CNI_COMMAND" in
  ADD) echo '{"cniVersion":"1.0.0"}' ;;
  VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["1.0.0"]}' ;;
esac
"""


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def run(argv: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv)} failed: {proc.stderr.decode()}{proc.stdout.decode()}")
    return dt


def plugin_seconds(argv: list[str]) -> float:
    """Run the driver; the seconds it spent in plugin executions alone (what it prints)."""
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv)} failed: {proc.stderr}{proc.stdout}")
    return float(proc.stdout.strip().splitlines()[-1])


def pip_install(tmp: Path) -> str:
    """cnirun's wheel, built offline from a copy of this checkout, installed as a user would: `python -m venv`,
    then its pip, no index. The path of its cnirun launcher."""
    src = tmp / "src"
    src.mkdir()
    for name in ("cnirun", "bin", "netconf", "hooks", "pyproject.toml", "README.md"):  # what the build reads
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, symlinks=True)
        else:
            shutil.copy2(REPO / name, src / name)
    quiet = ["-q", "--disable-pip-version-check", "--no-input", "--no-index", "--no-deps"]
    subprocess.run([PY, "-m", "pip", "wheel", *quiet, "--no-build-isolation", "-w", str(tmp / "dist"), str(src)],
                   check=True)
    venv = tmp / "venv"
    subprocess.run([PY, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", *quiet, *map(str, (tmp / "dist").glob("cnirun-*.whl"))],
                   check=True)
    return str(venv / "bin" / "cnirun")


def bench_cli(tmp: Path, pip_cnirun: str) -> tuple[float, float, float, float]:
    netconf = tmp / "net.d"
    netconf.mkdir()
    ipam = tmp / "ipam"
    conf = {
        "cniVersion": "1.0.0",
        "name": "t2-bench",
        "plugins": [
            {"type": "bridge", "bridge": "cnt2bench", "isGateway": True, "ipMasq": True, "hairpinMode": True,
             "ipam": {"type": "host-local", "dataDir": str(ipam),
                      "ranges": [[{"subnet": "10.121.30.0/24", "gateway": "10.121.30.1"}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "firewall"},
            {"type": "tuning"},
        ],
    }
    conflist = netconf / "t2-bench.conflist"
    conflist.write_text(json.dumps(conf))
    env = dict(os.environ, NETCONFPATH=str(netconf), CNI_PATH=PLUGIN_DIR, CNI_CACHE_DIR=str(tmp / "cache"),
               CNIRUN_LOCK_FILE=str(tmp / "lock"))
    ns = f"t2-bench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    path = f"/run/netns/{ns}"
    cnirun_t: list[float] = []
    pip_t: list[float] = []
    direct_t: list[float] = []
    empty_del_t: list[float] = []
    try:
        for i in range(RUNS + 1):  # the first round warms caches and creates the bridge
            launchers = [(CNIRUN, cnirun_t), (pip_cnirun, pip_t)]
            for launcher, samples in launchers if i % 2 else launchers[::-1]:  # neither always first
                t = run([launcher, "cni", "add", "t2-bench", path], env) + run([launcher, "cni", "del", "t2-bench",
                                                                                 path], env)
                if i:
                    samples.append(t)
            state = str(tmp / "state.json")
            d = plugin_seconds([PY, "-c", DRIVER, "add", str(conflist), path, "bench-direct", state]) + plugin_seconds(
                [PY, "-c", DRIVER, "del", str(conflist), path, "bench-direct", state])
            e = run([CNIRUN, "cni", "del", "t2-bench", path], env)  # nothing cached any more
            if i:
                direct_t.append(d)
                empty_del_t.append(e)
    finally:
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
        subprocess.run(["ip", "link", "delete", "cnt2bench"], capture_output=True)
    return median_ms(cnirun_t), median_ms(pip_t), median_ms(direct_t), median_ms(empty_del_t)


def bench_api(tmp: Path) -> tuple[float, float]:
    sys.path.insert(0, str(REPO))
    from cnirun.cni.runtime import CNI
    from cnirun.cni.runtime_conf import RuntimeConf

    bindir = tmp / "bin"
    bindir.mkdir()
    plugin = bindir / "trivial"
    plugin.write_text(TRIVIAL_PLUGIN)
    plugin.chmod(0o755)
    netconf = tmp / "api.d"
    netconf.mkdir()
    (netconf / "t.conflist").write_text(json.dumps({"cniVersion": "1.0.0", "name": "t2-api",
                                                    "plugins": [{"type": "trivial"}]}))
    nsfile = tmp / "ns"
    nsfile.write_text("")
    cni = CNI(plugin_path=[str(bindir)], netconf_path=str(netconf), cache_dir=str(tmp / "apicache"),
              lock_file=str(tmp / "apilock"))
    net = cni.network("t2-api")
    stdin_add = json.dumps({"type": "trivial", "name": "t2-api", "cniVersion": "1.0.0"}).encode()
    stdin_del = json.dumps({"type": "trivial", "name": "t2-api", "cniVersion": "1.0.0",
                            "prevResult": {"cniVersion": "1.0.0"}}).encode()
    api_t: list[float] = []
    raw_t: list[float] = []
    for i in range(RUNS * 2 + 1):
        rt = RuntimeConf("bench", netns=str(nsfile))
        t0 = time.perf_counter()
        cni.add(net, rt)
        cni.delete(net, rt)
        t1 = time.perf_counter()
        for cmd, data in (("ADD", stdin_add), ("DEL", stdin_del)):
            env = dict(os.environ, CNI_COMMAND=cmd, CNI_CONTAINERID="bench", CNI_NETNS=str(nsfile),
                       CNI_IFNAME="eth0", CNI_ARGS="", CNI_PATH=str(bindir))
            subprocess.run([str(plugin)], input=data, env=env, capture_output=True, check=True)
        t2 = time.perf_counter()
        if i:
            api_t.append(t1 - t0)
            raw_t.append(t2 - t1)
    return median_ms(api_t), median_ms(raw_t)


def bench_import() -> tuple[float, list[str]]:
    samples: list[float] = []
    heavy: set[str] = set()
    for _ in range(RUNS):
        proc = subprocess.run([PY, "-X", "importtime", "-c", "import cnirun.cni.runtime"], capture_output=True, text=True,
                              cwd=str(REPO))
        for line in proc.stderr.splitlines():
            if not line.startswith("import time:"):
                continue
            _self, cumulative, name = (x.strip() for x in line[len("import time:"):].split("|"))
            if name.split(".")[0] in ("docker", "typer", "click", "pyroute2", "yaml", "pydantic"):
                heavy.add(name)
            if name == "cnirun.cni.runtime":
                samples.append(int(cumulative) / 1e6)
    return median_ms(samples), sorted(heavy)


STARTUP = {
    "cnirun cni (launcher, cni_cmd, runtime, result)":
        "from cnirun.cli.main import main; import cnirun.cli.cni_cmd, cnirun.cni.runtime, cnirun.cni.result",
    "cnirun run argv path": "from cnirun.cli.main import main; import cnirun.cli.run",
    "hook (cnirun.oci.hook)": "import cnirun.oci.hook",
    "shim (cnirun.oci.shim)": "import cnirun.oci.shim",
}


def bench_startup(pip_cnirun: str) -> tuple[dict[str, float], float, float]:
    """Median ms beyond a bare `python -S -c pass`, per STARTUP entry; median ms of `cnirun cni` (its usage)
    through make setup's launcher and the pip install's (interleaved rounds)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    argvs = {name: [PY, "-S", "-c", code] for name, code in [("bare", "pass"), *STARTUP.items()]}
    launchers = {"setup": [CNIRUN, "cni"], "pip": [pip_cnirun, "cni"]}
    samples: dict[str, list[float]] = {k: [] for k in [*argvs, *launchers]}
    for _ in range(RUNS * 2):
        for name, argv in argvs.items():
            t0 = time.perf_counter()
            subprocess.run(argv, env=env, cwd="/", check=True)
            samples[name].append(time.perf_counter() - t0)
        for name, argv in launchers.items():  # the usage: exit 2
            t0 = time.perf_counter()
            subprocess.run(argv, cwd="/", stdout=subprocess.DEVNULL)
            samples[name].append(time.perf_counter() - t0)
    bare = median_ms(samples["bare"])
    return ({"bare": bare, **{k: median_ms(samples[k]) - bare for k in STARTUP}}, median_ms(samples["setup"]),
            median_ms(samples["pip"]))


def main() -> int:
    if os.geteuid() != 0:
        print("bench_core: needs root (network namespaces, bridges); skipped")
        return 0
    if not os.path.exists(os.path.join(PLUGIN_DIR, "bridge")):
        print("bench_core: containernetworking-plugins missing; skipped")
        return 0
    with tempfile.TemporaryDirectory(prefix="cnirun-bench-") as d:
        tmp = Path(d)
        pip_cnirun = pip_install(tmp)
        cli, pip_cli, direct, empty_del = bench_cli(tmp, pip_cnirun)
        api, raw = bench_api(tmp)
        imp, heavy = bench_import()
        startup, setup_start, pip_start = bench_startup(pip_cnirun)
    per_call = (api - raw) / 2
    setup_ratio = ratio("core", "cni add+del (make setup's launcher)", cli, direct, 1.25, "plugin execs alone")
    pip_ratio = ratio("core", "cni add+del (pip install's launcher)", pip_cli, direct, 1.25, "plugin execs alone")
    rows = [
        ("cni add+del, bridge chain (5 plugins)", f"{cli:.1f} ms", f"plugin execs alone {direct:.1f} ms",
         f"{setup_ratio:.2f}x", "<= 1.25x", setup_ratio <= 1.25),
        ("  the same, cnirun from a pip install", f"{pip_cli:.1f} ms", f"plugin execs alone {direct:.1f} ms",
         f"{pip_ratio:.2f}x", "<= 1.25x", pip_ratio <= 1.25),
        ("cni del with nothing cached", f"{empty_del:.1f} ms", f"plugin execs alone {direct / 2:.1f} ms (half)",
         "", "-", True),
        ("API add+delete, trivial plugin", f"{api:.2f} ms", f"raw subprocess {raw:.2f} ms",
         f"+{per_call:.2f} ms/call", "<= 3 ms/call", per_call <= 3.0),
        ("import cnirun.cni.runtime", f"{imp:.1f} ms", "heavy: " + (", ".join(heavy) or "none"), "", "<= 30 ms",
         imp <= 30.0 and not heavy),
    ]
    rows += [(f"start-up: {name}", f"+{ms:.1f} ms", f"python -S -c pass {startup['bare']:.1f} ms", "", "-", True)
             for name, ms in startup.items() if name != "bare"]
    rows.append(("start-up: cnirun cni, pip install's launcher", f"{pip_start:.1f} ms",
                 f"make setup's {setup_start:.1f} ms", f"+{pip_start - setup_start:.1f} ms", "<= +4 ms",
                 pip_start - setup_start <= 4.0))
    print(f"bench_core: medians of {RUNS} runs")
    widths = [max(len(str(r[i])) for r in rows) for i in range(5)]
    for r in rows:
        cells = [str(r[i]).ljust(widths[i]) for i in range(5)]
        print("  " + "  ".join(cells) + "  " + ("ok" if r[5] else "MISSED"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
