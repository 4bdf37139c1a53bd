"""The one summarizer and writer of results: medians over rounds and paired ratios of
the runs, and bench/results/<date>-<scenario>.json, .md and .svg (the figures, the
scenario's tables and goals, the chart), with the Markdown pieces scenarios share."""

import datetime
import json
import os
import statistics
import subprocess
import sys

from .machine import BENCH, RESULTS, log

# ---------------------------------------------------------------- summarizing


def header(scenario, products):
    """The keys every result begins with."""
    return {
        "scenario": scenario,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "products": products,
    }


def median_of(results, key):
    values = [r[key] for r in results if key in r]
    return statistics.median(values) if values else None


def medians(runs, keys):
    """Per target, the median over rounds of each of `keys` its runs have."""
    return {
        target: {k: median_of(results, k) for k in keys if median_of(results, k) is not None}
        for target, results in runs.items()
    }


def paired_ratio(runs, a, b, key):
    """Median over rounds of a[key]/b[key], round by round."""
    if a not in runs or b not in runs:
        return None
    ratios = [x[key] / y[key] for x, y in zip(runs[a], runs[b]) if y.get(key)]
    return statistics.median(ratios) if ratios else None


# ---------------------------------------------------------------- writing


def fmt(value, digits=2):
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def ratio_lines(ratios):
    return [f"- {name}: {fmt(value, 3)}" for name, value in ratios.items()]


def goal_lines(goals, number=lambda value: fmt(value, 3)):
    """One line per goal: its value, its limit and what it was measured with where
    given, and whether it was met."""
    lines = []
    for name, goal in goals.items():
        mark = "met" if goal["met"] else "MISSED"
        detail = f" ({goal['measured_with']})" if "measured_with" in goal else ""
        limit = f" (limit {fmt(goal['limit'], 1)})" if "limit" in goal else ""
        lines.append(f"- {name}: {number(goal['value'])}{limit} — {mark}{detail}")
    return lines


def ratio_and_goal_lines(result):
    """The paired ratios and the goals of a scenario with same-run baselines, each
    section after a blank line."""
    return ["", "Paired ratios (median over rounds of the per-round ratio):", "",
            *ratio_lines(result["ratios"]), "", "Goals:", "", *goal_lines(result["goals"])]


def load_lines(result):
    """The machine's load over the runs, for reading the figures against."""
    loads = [r["loadavg_after"][0] for rs in result["runs"].values() for r in rs]
    return [
        f"Machine load (1-min load average after each run): min {min(loads):.2f}, median "
        f"{statistics.median(loads):.2f}, max {max(loads):.2f} on {result['settings']['cpus']} "
        "CPUs.",
    ]


def draw_chart(json_path, svg_path):
    """bench/chart.py's bars of requests per second and latency, per target."""
    subprocess.run([sys.executable, os.path.join(BENCH, "chart.py"), json_path, svg_path],
                   check=True)


def svg_from(draw):
    """A chart for write that saves the SVG text `draw(result)` returns."""

    def chart(result, json_path, svg_path):
        with open(svg_path, "w") as f:
            f.write(draw(result))
        return True

    return chart


def write(result, stamp, markdown, chart):
    """Writes bench/results/<stamp>-<scenario>.json, then its chart (.svg) with
    `chart(result, json_path, svg_path)`, which says whether it drew one, and its
    Markdown (.md), the text `markdown(result, name)` returns for the files' `name`."""
    os.makedirs(RESULTS, exist_ok=True)
    name = f"{stamp}-{result['scenario']}"
    base = os.path.join(RESULTS, name)
    with open(base + ".json", "w") as f:
        json.dump(result, f, indent=1)
    written = [".json"]
    if chart(result, base + ".json", base + ".svg"):
        written.append(".svg")
    with open(base + ".md", "w") as f:
        f.write(markdown(result, name))
    log(f"wrote {base}.md, {', '.join(written)}")
