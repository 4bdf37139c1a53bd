#!/usr/bin/env python3
"""Draws a benchmark result (the JSON bench/drive.py writes) as an SVG: median requests per
second of the service and each baseline, and their p50/p90/p99 latencies, one bar group per
target, with every round's value as a dot so the spread shows.

With the compress scenario's bytes per answer, a third panel shows them per coding. A
result counted in another unit than the request (the pageview scenario's "page view")
is charted per that unit, with panels of its CPU and body bytes per page view.

Usage: chart.py RESULT.json OUT.svg
"""

import json
import sys
from html import escape

WIDTH, PANEL_HEIGHT, LEFT, TOP, GAP = 860, 260, 80, 50, 70
COLORS = {"service": "#1f77b4", "bare": "#7f7f7f", "nginx": "#2ca02c", "pgbench": "#d62728",
          "instance direct": "#1f77b4", "nginx compressing": "#ff7f0e",
          "nginx passing through": "#2ca02c", "identity": "#7f7f7f", "direct": "#1f77b4",
          "3+2N": "#ff7f0e", "page": "#1f77b4"}
LATENCIES = [("p50_ms", 0.35), ("p90_ms", 0.65), ("p99_ms", 1.0)]


def color(target):
    return COLORS.get(target.split("/")[0], "#9467bd")


def nice_max(value):
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1) if value >= 1 else 0.1
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def panel(out, title, y0, targets, values, dots, unit, bar_opacity=None):
    """One bar chart: `values[target]` is a list of (label, value, opacity) bars."""
    height = PANEL_HEIGHT
    plot_width = WIDTH - LEFT - 30
    top = max([v for bars in values.values() for _, v, _ in bars] +
              [d for ds in dots.values() for d in ds] + [0])
    scale_max = nice_max(top)
    out.append(f'<text x="{LEFT}" y="{y0 - 12}" font-size="14" font-weight="bold">'
               f'{escape(title)}</text>')
    for i in range(5):
        value = scale_max * i / 4
        y = y0 + height - height * i / 4
        out.append(f'<line x1="{LEFT}" x2="{LEFT + plot_width}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'stroke="#ddd"/>')
        label = f"{value:,.0f}" if scale_max >= 10 else f"{value:.2f}"
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="11" '
                   f'text-anchor="end">{label}</text>')
    out.append(f'<text x="14" y="{y0 + height / 2}" font-size="11" '
               f'transform="rotate(-90 14 {y0 + height / 2})" text-anchor="middle">'
               f'{escape(unit)}</text>')
    group = plot_width / max(len(targets), 1)
    for index, target in enumerate(targets):
        bars = values[target]
        bar_width = group * 0.7 / max(len(bars), 1)
        x0 = LEFT + index * group + group * 0.15
        for b, (label, value, opacity) in enumerate(bars):
            h = height * value / scale_max
            x = x0 + b * bar_width
            out.append(f'<rect x="{x:.1f}" y="{y0 + height - h:.1f}" width="{bar_width - 2:.1f}" '
                       f'height="{h:.1f}" fill="{color(target)}" fill-opacity="{opacity}">'
                       f'<title>{escape(target)} {label}: {value:,.3f} {escape(unit)}</title></rect>')
            text = f"{value:,.0f}" if value >= 100 else f"{value:.2f}"
            out.append(f'<text x="{x + bar_width / 2 - 1:.1f}" y="{y0 + height - h - 4:.1f}" '
                       f'font-size="10" text-anchor="middle">{text}</text>')
            if len(bars) > 1:
                out.append(f'<text x="{x + bar_width / 2 - 1:.1f}" y="{y0 + height + 26}" '
                           f'font-size="9" text-anchor="middle">{label}</text>')
        for d in dots.get(target, []):
            cy = y0 + height - height * d / scale_max
            cx = x0 + (bar_width * len(bars)) / 2
            out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="2.5" fill="#000" '
                       f'fill-opacity="0.6"/>')
        out.append(f'<text x="{LEFT + index * group + group / 2:.1f}" y="{y0 + height + 14}" '
                   f'font-size="11" text-anchor="middle">{escape(target)}</text>')


def main():
    source, target = sys.argv[1], sys.argv[2]
    with open(source) as f:
        result = json.load(f)
    medians, runs = result["medians"], result["runs"]
    targets = list(medians)
    out = []
    unit = result.get("unit", "request")
    rps_values = {t: [("rps", medians[t].get("rps", 0), 0.85)] for t in targets}
    rps_dots = {t: [r["rps"] for r in runs[t]] for t in targets}
    panel(out, f"{unit.capitalize()}s per second (median bar, rounds as dots)", TOP, targets,
          rps_values, rps_dots, f"{unit}s/s")
    latency_targets = [t for t in targets if "p99_ms" in medians[t]]
    latency_values = {
        t: [(key.removesuffix("_ms"), medians[t][key], opacity) for key, opacity in LATENCIES]
        for t in latency_targets
    }
    y1 = TOP + PANEL_HEIGHT + GAP
    per = "" if unit == "request" else f" per {unit}"
    panel(out, f"Latency{per} p50 / p90 / p99 (ms, medians over rounds)", y1,
          latency_targets, latency_values, {}, "ms")
    bottom = y1 + PANEL_HEIGHT
    cpu = result.get("cpu_per_page_view")
    if cpu:
        # The pageview scenario: the instance's and nginx's CPU, and the body bytes, per
        # page view of each way.
        y2 = bottom + GAP
        cpu_values = {target: [(part, value, 0.85 if part == "instance" else 0.45)
                               for part, value in parts.items()]
                      for target, parts in cpu.items()}
        panel(out, "Server CPU-µs per page view (instance / nginx; medians over rounds)", y2,
              list(cpu), cpu_values, {}, "CPU-µs")
        y3 = y2 + PANEL_HEIGHT + GAP
        page_sizes = result["bytes_per_page_view"]
        size_values = {way: [(coding, size, 0.85 if coding == "gzip" else 0.45)
                             for coding, size in sizes.items()]
                       for way, sizes in page_sizes.items()}
        panel(out, "Body bytes per page view (identity / gzip)", y3, list(page_sizes),
              size_values, {}, "bytes")
        bottom = y3 + PANEL_HEIGHT + 16
    sizes = result.get("bytes_per_answer")
    if sizes:
        # The compress scenario: body bytes per answer of each coding, overall and by kind.
        y2 = bottom + GAP
        kinds = ["all", "product", "styles", "related"]
        size_values = {name: [(kind, size[kind], 0.85) for kind in kinds]
                       for name, size in sizes.items()}
        panel(out, "Body bytes per answer over the mix (all / product / styles / related)",
              y2, list(sizes), size_values, {}, "bytes")
        bottom = y2 + PANEL_HEIGHT + 16
    s = result["settings"]
    height = bottom + 50
    caption = (f"{result['scenario']} — {result['products']:,} products, {s['connections']} "
               f"connections, {s['rounds']} rounds × {s['seconds_per_run']} s, {result['date']}")
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif">',
           f'<rect width="{WIDTH}" height="{height}" fill="#fff"/>',
           f'<text x="{LEFT}" y="20" font-size="13">{escape(caption)}</text>']
    svg += out
    svg.append("</svg>")
    with open(target, "w") as f:
        f.write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
