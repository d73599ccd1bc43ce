"""Rootless (issue #27): a user's `cnirun --rm --net NET busybox true` with rootless Podman  vs  the same
user's `podman run --rm --network PNET busybox true` on Podman's own network backend (netavark here),
interleaved, medians of BENCH_RUNS (default 12). Target: <= 1.1x.

The user is made for the bench as the test suite makes its own (tests/_users.py: subordinate ids,
/dev/net/tun opened as Debian ships it, busybox loaded into their storage) and removed at the end with
everything of theirs. cnirun's DEL runs in the background after a --rm run returns: before each timed
command the bench waits, untimed, until the user's result cache is empty again. The first run, which
builds the user's rootless netns, is timed apart.
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _common import ratio  # noqa: E402
from _users import CNIRUN, _made_users  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "12"))
NET, SUBNET, PNET, PSUBNET = "rlbench", "10.251.60.0/24", "rlbench-podman", "10.251.61.0/24"


def _timed(user, *argv: str) -> float:  # noqa: ANN001
    t = time.perf_counter()
    p = user.run(*argv, timeout=120)
    took = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {p.returncode}: {p.stderr.strip()}")
    return took


def _settle(user) -> None:  # noqa: ANN001
    results = user.runtime_dir / "cnirun" / "cni" / "results"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and results.exists() and any(results.iterdir()):
        time.sleep(0.02)


def main() -> int:
    with _made_users(["cnirun-bench-r"], rootless=True) as (user,):
        for argv in ((str(CNIRUN), "network", "create", NET, "--subnet", SUBNET),
                     ("podman", "network", "create", "--subnet", PSUBNET, PNET)):
            _timed(user, *argv)
        first = _timed(user, str(CNIRUN), "--rm", "--net", NET, "busybox", "true")
        _timed(user, "podman", "run", "--rm", "--network", PNET, "busybox", "true")  # warm-up
        ours, theirs = [], []
        for _ in range(RUNS):
            _settle(user)
            ours.append(_timed(user, str(CNIRUN), "--rm", "--net", NET, "busybox", "true"))
            _settle(user)
            theirs.append(_timed(user, "podman", "run", "--rm", "--network", PNET, "busybox", "true"))
        _settle(user)
        _timed(user, str(CNIRUN), "gc")
    mine, peer = statistics.median(ours), statistics.median(theirs)
    r = ratio("rootless", "cnirun --rm busybox true as a user (rootless Podman)", mine, peer, 1.1,
              "rootless podman run --rm --network NET (netavark)")
    print(f"first run (builds the rootless netns): {first * 1000:.0f} ms")
    print(f"cnirun rootless run:  {mine * 1000:.0f} ms (median of {RUNS})")
    print(f"podman rootless run:  {peer * 1000:.0f} ms (its own network backend)")
    print(f"ratio: {r:.2f}x (target <= 1.1x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
