"""`cnirun compose logs` on real engines (cnirun.compose.logs): compose's prefixes and options, through
each engine's own filters.

Address plan and harness: test_compose_commands's (here 10.243.64.0/18, projects c26cxxxxxx).
"""
from __future__ import annotations

import re
import subprocess
import threading
from datetime import datetime, timezone

import pytest

from _wait import wait_for
from conftest import CNIRUN_BIN, needs_plugins, needs_root
from test_compose_commands import Proj, engine_proj  # noqa: F401 - the fixture

from cnirun.compose.logs import log_time, parse_tail
from cnirun.compose.messages import ComposeFailed

pytestmark = [needs_root, needs_plugins]
SUBNET_POOL = "10.243.64.0/18"

TWO_TALKERS = """
services:
  talker:
    image: busybox
    init: true
    command: ["sh", "-c", "echo early; sleep 2; echo late; exec sleep 3600"]
  waiter:
    image: busybox
    init: true
    command: ["sh", "-c", "echo ready; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo after-go"]
  rep:
    image: busybox
    init: true
    deploy: {replicas: 2}
    command: ["sh", "-c", "echo replica; exec sleep 3600"]
"""
STAMPED = re.compile(r"^(\S+)  \| (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)) (\w+)$")


def test_log_time_and_tail_values() -> None:
    """--since/--until read as docker's CLI reads them (durations before now, Unix times, RFC 3339 with a zone,
    a fraction, or local time); --tail is a number or all; anything else is one line naming the forms."""
    now = 1_800_000_000.0
    assert log_time("10m", now) == now - 600 and log_time("1h30m", now) == now - 5400
    assert log_time("1700000000") == 1_700_000_000.0 and log_time("1700000000.25") == 1_700_000_000.25
    assert log_time("2026-12-07T21:30:00Z") == 1_796_679_000.0
    assert log_time("2026-12-07T22:30:00+01:00") == 1_796_679_000.0
    assert log_time("2026-12-07T21:30:00.123456789Z") == pytest.approx(1_796_679_000.123456)
    assert log_time("2026-12-07T21:30:00") == datetime(2026, 12, 7, 21, 30).timestamp()  # local time
    for bad in ("yesterday", "10 minutes", "-10m", ""):
        with pytest.raises(ComposeFailed, match="RFC 3339"):
            log_time(bad, now)
    assert parse_tail("all") is None and parse_tail("0") == 0 and parse_tail("20") == 20
    for bad in ("-1", "ten", "1e3"):
        with pytest.raises(ComposeFailed, match="--tail"):
            parse_tail(bad)


def _lines(proj: Proj, *args: str) -> list[str]:
    return proj.cnirun("logs", *args).stdout.splitlines()


def test_logs_options_on_the_engine(engine_proj: Proj) -> None:
    """Prefixes as compose v2 (`name  | line`, padded to the longest name), per-service arguments, --index,
    --tail, -t, --since/--until (RFC 3339, Unix time, durations), --no-log-prefix, --no-color, and -f following
    a container until it ends; down leaves nothing."""
    proj = engine_proj
    proj.write(TWO_TALKERS)
    proj.cnirun("up", "-d")
    talker, waiter = proj.c("talker"), proj.c("waiter")
    assert wait_for(lambda: f"{talker}  | late" in _lines(proj, "talker"), 30)
    assert _lines(proj, "talker") == [f"{talker}  | early", f"{talker}  | late"]
    both = _lines(proj, "--no-color", "talker", "waiter")
    assert f"{waiter}  | ready" in both and f"{talker}  | early" in both and len(both) == 3, both
    assert wait_for(lambda: len(_lines(proj, "rep")) == 2, 30)
    assert _lines(proj, "--index", "2", "rep") == [f"{proj.c('rep', 2)}  | replica"]
    padded = proj.c("rep").ljust(len(talker))
    assert f"{padded}  | replica" in _lines(proj, "--index", "1", "rep", "talker")
    assert _lines(proj, "--tail", "1", "talker") == [f"{talker}  | late"]
    assert _lines(proj, "-n", "0", "talker") == []
    assert _lines(proj, "--no-log-prefix", "talker") == ["early", "late"]

    stamped = [STAMPED.match(line) for line in _lines(proj, "-t", "talker")]
    assert all(stamped) and [m[3] for m in stamped if m] == ["early", "late"], stamped
    early, late = (datetime.fromisoformat(m[2]).timestamp() for m in stamped if m)
    assert late - early >= 1.5
    middle = (early + late) / 2
    rfc3339 = datetime.fromtimestamp(middle, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert _lines(proj, "--since", rfc3339, "talker") == [f"{talker}  | late"]
    assert _lines(proj, "--until", f"{middle:.6f}", "talker") == [f"{talker}  | early"]
    assert _lines(proj, "--since", "10m", "talker") == [f"{talker}  | early", f"{talker}  | late"]
    assert _lines(proj, "--until", "10m", "talker") == []
    bad = proj.cnirun("logs", "--since", "yesterday", ok=False)
    assert bad.returncode != 0 and bad.stderr.startswith("cnirun: invalid time 'yesterday'"), bad.stderr

    follow = subprocess.Popen([CNIRUN_BIN, "compose", "-f", str(proj.file), "-p", proj.name, "logs", "-f",
                               "waiter"], stdout=subprocess.PIPE, text=True, env=proj.env)
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(follow.stdout or []), daemon=True)
    reader.start()
    try:
        assert wait_for(lambda: f"{waiter}  | ready\n" in seen, 30), seen
        subprocess.run([proj.cli, "exec", waiter, "touch", "/tmp/go"], check=True, timeout=30)
        assert follow.wait(timeout=30) == 0  # the container ended: so did -f
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
    reader.join(5)
    assert seen == [f"{waiter}  | ready\n", f"{waiter}  | after-go\n"]
    proj.cnirun("down", "-v")
    proj.assert_clean()

