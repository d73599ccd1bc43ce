"""bench/_plot.py and bench/_common.ratio: the ratios `make bench` records are drawn, one bar each, judged by their target."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PLOT = str(REPO / "bench" / "_plot.py")


def _bars(svg: Path) -> list[tuple[str, float]]:
    ns = "{http://www.w3.org/2000/svg}"
    rects = [r for r in ET.parse(svg).getroot().iter(ns + "rect") if r.get("fill") != "white"]
    return [(r.get("fill"), float(r.get("width"))) for r in rects]


def test_recorded_ratios_are_drawn_one_bar_each(tmp_path: Path) -> None:
    results = tmp_path / "r.jsonl"
    env = {**os.environ, "BENCH_RESULTS": str(results)}
    code = ("import sys; sys.path.insert(0, 'bench'); from _common import ratio; "
            "print(ratio('run', 'fast', 1.0, 2.0, 1.0, 'peer'), ratio('run', 'slow', 3.0, 2.0, 1.2), "
            "ratio('hook', 'untargeted', 1.5, 1.0))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0.5", "1.5", "1.5"]
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [(r["what"], r["target"]) for r in rows] == [("fast", 1.0), ("slow", 1.2), ("untargeted", None)]
    svg = tmp_path / "out.svg"
    p = subprocess.run([sys.executable, PLOT, str(results), str(svg)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    bars = _bars(svg)
    assert [colour for colour, _ in bars] == ["#3a3", "#c33", "#999"]  # met, missed, no target
    assert abs(bars[1][1] - 3 * bars[0][1]) < 0.5  # widths proportional to the ratios (0.5x, 1.5x)
    assert "1.50x" in svg.read_text()


def test_bad_results_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"what": "x"}\n')
    for args in ([str(bad), str(tmp_path / "o.svg")], [str(tmp_path / "missing.jsonl"), str(tmp_path / "o.svg")], []):
        p = subprocess.run([sys.executable, PLOT, *args], capture_output=True, text=True)
        assert p.returncode != 0
        assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr, p.stderr
    assert not (tmp_path / "o.svg").exists()
