"""Chaos, at length: 200 runs SIGKILLed at random moments, plus killed hooks and watchers.

Not a speed benchmark: the reliability counterpart of tests/test_chaos.py,
with the same scenarios (tests/_chaos.py) and more of them. Each scenario
ends with `cnirun gc` and a check that nothing is left: reservations, veths,
cache files, iptables rules, helper/workload containers, netns, run state.
BENCH_CHAOS_N (default 200) is the number of killed runs, split over Docker
sandbox mode, Docker hook mode and Podman; BENCH_CHAOS_SEED picks the moments.

Subnets 10.135.N.0/24, bridges cnr135xN (Worlds of tests/conftest.py).
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO)]

from _chaos import Chaos, chain_with_slow_noop, report_lines  # noqa: E402
from conftest import HAVE_PODMAN, _finish, _make_world, docker_runtime_installed  # noqa: E402

N = int(os.environ.get("BENCH_CHAOS_N", "200"))
SEED = int(os.environ.get("BENCH_CHAOS_SEED", str(int(time.time()))))


def scenario(title: str, engine_octet: int, body) -> bool:  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory(prefix="cnirun-chaos-") as tmp:
        w = _make_world(Path(tmp), engine_octet, "chaos")
        if engine_octet == 136:
            w.env["CNIRUN_ENGINE"] = "podman"
        t0 = time.monotonic()
        ok = True
        try:
            c = Chaos(w, SEED)
            body(c, w)
            c.assert_clean()
            for line in report_lines(c.report):
                print(f"  {line}")
        except AssertionError as e:
            ok = False
            print(f"  LEAK or failure: {str(e)[:2000]}")
        finally:
            try:
                _finish(w)
            except AssertionError as e:
                ok = False
                print(f"  left after the scenario: {str(e)[:2000]}")
        print(f"{title}: {'clean' if ok else 'NOT CLEAN'} ({time.monotonic() - t0:.0f} s)")
        return ok


def main() -> int:
    if os.geteuid() != 0:
        print("bench_chaos: needs root")
        return 1
    print(f"chaos: {N} killed runs, seed {SEED}")
    per = max(1, N // 3)
    results = [
        scenario(f"SIGKILL of {per} sandbox-mode runs", 135, lambda c, w: c.kill_runs(per, "docker", "sandbox")),
    ]

    def hook(c: Chaos, w) -> None:  # type: ignore[no-untyped-def]
        chain_with_slow_noop(w, 0.5)
        with docker_runtime_installed(w, f"{w.bridge}-chaos-"):
            c.kill_runs(per, "docker", "hook")
            c.kill_hooks(max(1, N // 10), slow_plugin_s=0.5)
            c.assert_clean()

    results.append(scenario(f"SIGKILL of {per} hook-mode runs and {max(1, N // 10)} hooks", 135, hook))
    if HAVE_PODMAN:
        rest = N - 2 * per
        results.append(scenario(f"SIGKILL of {rest} podman runs", 136, lambda c, w: c.kill_runs(rest, "podman")))
    results.append(scenario(f"SIGKILL of the watcher, {max(1, N // 10)} times", 135,
                            lambda c, w: c.kill_watcher(max(1, N // 10))))
    print(f"chaos: {sum(results)} of {len(results)} scenarios left nothing behind")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
