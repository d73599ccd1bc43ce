"""Draw `make bench`'s ratios as an SVG bar chart: one bar per measurement, its target and 1.0x marked.

Not a bench (`make bench` skips files starting with '_' and calls this at the end):
    python bench/_plot.py RESULTS.jsonl OUT.svg [TITLE]
Each line of RESULTS is one ratio _common.ratio() recorded: value / peer, both measured
in the same run. A bar is green when it meets its target, red when it does not, grey
when it has none. Standard library only.
"""
from __future__ import annotations

import json
import sys
from html import escape

ROW, LABEL_W, BAR_W, PAD = 26, 430, 420, 12


def load(path: str) -> list[dict]:
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                float(r["ratio"])
                str(r["what"])
            except (ValueError, KeyError, TypeError) as e:
                raise SystemExit(f"_plot: {path} line {n} is not a recorded ratio ({e}): remove it or rerun make bench")
            rows.append(r)
    return rows


def svg(rows: list[dict], title: str) -> str:
    finite = [r["ratio"] for r in rows if r["ratio"] != float("inf")] + [r["target"] or 0 for r in rows] + [1.0]
    top = max(finite) * 1.1
    scale = BAR_W / top
    height = PAD * 2 + 40 + ROW * len(rows) + 30
    width = LABEL_W + BAR_W + 110
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{PAD}" y="{PAD + 14}" font-size="15" font-weight="bold">{escape(title)}</text>',
           f'<text x="{PAD}" y="{PAD + 32}" fill="#555">ratio to the peer measured in the same run '
           f'(lower is faster); | = target, dashed = 1.0x</text>']
    y0 = PAD + 44
    x0 = LABEL_W
    for i, r in enumerate(rows):
        y = y0 + i * ROW
        ratio, target = r["ratio"], r.get("target")
        colour = "#999" if target is None else ("#3a3" if ratio <= target else "#c33")
        w = BAR_W if ratio == float("inf") else max(1.0, ratio * scale)
        label = f'{r.get("bench", "")}: {r["what"]}'
        out.append(f'<text x="{x0 - 6}" y="{y + 15}" text-anchor="end">{escape(label[:70])}</text>')
        out.append(f'<rect x="{x0}" y="{y + 4}" width="{w:.1f}" height="{ROW - 8}" fill="{colour}"/>')
        out.append(f'<text x="{x0 + w + 4:.1f}" y="{y + 15}">{ratio:.2f}x</text>')
        if target is not None:
            tx = x0 + target * scale
            out.append(f'<line x1="{tx:.1f}" y1="{y + 1}" x2="{tx:.1f}" y2="{y + ROW - 1}" stroke="black" stroke-width="2"/>')
    one = x0 + scale
    out.append(f'<line x1="{one:.1f}" y1="{y0}" x2="{one:.1f}" y2="{y0 + ROW * len(rows)}" stroke="#333" '
               f'stroke-dasharray="4 3"/>')
    out.append(f'<text x="{one - 10:.1f}" y="{y0 + ROW * len(rows) + 16}">1.0x</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        sys.stderr.write("usage: python bench/_plot.py RESULTS.jsonl OUT.svg [TITLE]\n")
        return 2
    try:
        rows = load(argv[0])
    except OSError as e:
        sys.stderr.write(f"_plot: cannot read {argv[0]}: {e.strerror}: run make bench first\n")
        return 1
    if not rows:
        sys.stderr.write(f"_plot: {argv[0]} records no ratio: nothing to draw\n")
        return 1
    when = rows[-1].get("at", "")
    title = argv[2] if len(argv) == 3 else f"cnirun make bench, {when}"
    with open(argv[1], "w") as f:
        f.write(svg(rows, title))
    print(f"_plot: {len(rows)} ratios drawn in {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
