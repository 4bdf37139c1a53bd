"""soak: the storefront mix at a share of the service's peak, measured just before, for
a long run: errors, latency, and the server's memory, CPU share and lookups per second
sampled along the way. No baselines."""

import os
import random
import threading
import time

from .. import report
from ..catalog import build_mix, write_paths
from ..load import oha
from ..machine import MIB, log
from ..runner import Scenario, Target
from ..servers import metrics, service

SAMPLE_SECONDS = 10


class Soak(Scenario):
    name = "soak"

    def rounds(self, args):
        return 1

    def seconds(self, args):
        return args.soak_seconds

    def prepare(self, bench):
        args = bench.args
        self.cpus = bench.cpus
        mix = build_mix("storefront", args.products, args.sample, random.Random(args.seed))
        self.paths_file = write_paths(mix.paths, bench.directory)
        server = bench.start("service", service(args, bench.url, args.cache_bytes,
                                                bench.directory, bench.cpus.server))
        self.oha(bench, server, args.warmup)
        self.peak = self.oha(bench, server, args.duration)["rps"]
        self.rate = max(1, int(self.peak * args.soak_share))
        log(f"soak: peak {self.peak:.0f} rps; {args.soak_seconds} s at {self.rate} rps")

    def oha(self, bench, server, seconds, rate=None):
        return oha(server.port, self.paths_file, seconds, bench.args.connections,
                   bench.directory, cpu=bench.cpus.driver, rate=rate)

    def targets(self, bench):
        return [Target("soak", lambda server, seconds: self.soak(bench, server, seconds),
                       server="service", measured=False)]

    def soak(self, bench, server, seconds):
        """oha at the soak's rate for `seconds`, with the server sampled every
        SAMPLE_SECONDS: oha's figures, and the samples."""
        outcome, samples = {}, []
        load = threading.Thread(target=lambda: outcome.update(
            self.oha(bench, server, seconds, self.rate)))
        started = time.monotonic()
        load.start()
        previous = (started, server.cpu_seconds(), sum(metrics(server.port)))
        while load.is_alive():
            load.join(timeout=SAMPLE_SECONDS)
            now, cpu, lookups = time.monotonic(), server.cpu_seconds(), sum(metrics(server.port))
            elapsed = now - previous[0]
            samples.append({
                "t_s": round(now - started, 1),
                "rss_mib": server.rss() / MIB,
                "cpu_share": (cpu - previous[1]) / elapsed,
                "lookups_per_s": (lookups - previous[2]) / elapsed,
            })
            previous = (now, cpu, lookups)
        return {**outcome, "samples": samples}

    def result(self, bench, runs):
        args = bench.args
        outcome = dict(runs["soak"][0])
        samples = outcome.pop("samples")
        # Memory is judged after the first minute, once the cache has filled.
        settled = ([x["rss_mib"] for x in samples if x["t_s"] >= 60]
                   or [x["rss_mib"] for x in samples])
        growth = settled[-1] - settled[0]
        errors = outcome["errors"] + outcome["non_2xx"]
        return {
            **report.header("soak", args.products),
            "settings": {"seconds": args.soak_seconds, "rate_rps": self.rate,
                         "peak_rps": self.peak, "share": args.soak_share,
                         "connections": args.connections, "cache_bytes": args.cache_bytes,
                         "pool_size": args.pool_size, "cpus": os.cpu_count()},
            "result": outcome,
            "rss_mib": {"after_first_minute": settled[0], "end": settled[-1],
                        "max": max(settled), "growth_after_first_minute": growth},
            "goals": {
                "zero errors": {"value": errors, "met": errors == 0},
                "rss flat after warm-up (growth <= 4 MiB)": {"value": growth,
                                                              "met": growth <= 4},
            },
            "samples": samples,
        }

    def chart(self, result, json_path, svg_path):
        return report.svg_from(chart)(result, json_path, svg_path)

    def markdown(self, result, name):
        fmt = report.fmt
        s, r, m = result["settings"], result["result"], result["rss_mib"]
        lines = [
            f"# soak — {result['date']}",
            "",
            f"{result['products']:,} products; storefront mix for {s['seconds']} s at "
            f"{s['rate_rps']:,} requests/s ({s['share']:.0%} of the {s['peak_rps']:,.0f} "
            f"measured just before); {s['connections']} connections; cache "
            f"{s['cache_bytes'] / MIB:.0f} MiB; pool {s['pool_size']}; server on CPU "
            f"{self.cpus.server}, oha on CPU {self.cpus.driver}.",
            "",
            "| requests | achieved RPS | p50 ms | p90 ms | p99 ms | max ms | errors | non-2xx |",
            "|---|---|---|---|---|---|---|---|",
            f"| {r['requests']:,} | {fmt(r['rps'], 0)} | {fmt(r['p50_ms'])} | "
            f"{fmt(r['p90_ms'])} | {fmt(r['p99_ms'])} | {fmt(r['max_ms'])} | {r['errors']} | "
            f"{r['non_2xx']} |",
            "",
            f"Server RSS: {m['after_first_minute']:.1f} MiB after the first minute, "
            f"{m['end']:.1f} MiB at the end, {m['max']:.1f} MiB at most; growth after the "
            f"first minute {m['growth_after_first_minute']:+.1f} MiB.",
            "",
            "Goals:",
            "",
        ]
        lines += report.goal_lines(result["goals"], number=lambda value: fmt(value, 1))
        lines += ["", f"Sampled every {SAMPLE_SECONDS} s:", "",
                  "| t s | RSS MiB | server CPU share | lookups/s |", "|---|---|---|---|"]
        lines += [f"| {x['t_s']:.0f} | {x['rss_mib']:.1f} | {x['cpu_share']:.2f} | "
                  f"{x['lookups_per_s']:,.0f} |" for x in result["samples"]]
        lines += ["", f"![memory and load over time]({name}.svg)", ""]
        return "\n".join(lines)


def chart(result):
    """Server RSS and lookups per second over the soak, as two line plots."""
    width, height, left, top, plot_h = 860, 520, 80, 50, 170
    samples = result["samples"]
    end = max([x["t_s"] for x in samples] + [1])
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif">',
           f'<rect width="{width}" height="{height}" fill="#fff"/>',
           f'<text x="{left}" y="20" font-size="13">soak — {result["date"]}</text>']
    for index, (key, title, colour) in enumerate([
            ("rss_mib", "Server RSS (MiB)", "#1f77b4"),
            ("lookups_per_s", "Document lookups per second", "#2ca02c")]):
        y0 = top + index * (plot_h + 70)
        peak = max([x[key] for x in samples] + [1]) * 1.15
        out.append(f'<text x="{left}" y="{y0 - 10}" font-size="14" font-weight="bold">'
                   f'{title}</text>')
        for i in range(5):
            y = y0 + plot_h - plot_h * i / 4
            out.append(f'<line x1="{left}" x2="{width - 30}" y1="{y:.1f}" y2="{y:.1f}" '
                       f'stroke="#ddd"/>')
            out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" '
                       f'text-anchor="end">{peak * i / 4:,.0f}</text>')
        points = " ".join(
            f"{left + (width - 30 - left) * x['t_s'] / end:.1f},"
            f"{y0 + plot_h - plot_h * x[key] / peak:.1f}"
            for x in samples)
        out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" '
                   f'stroke-width="2"/>')
        out.append(f'<text x="{(width + left) / 2}" y="{y0 + plot_h + 18}" font-size="11" '
                   f'text-anchor="middle">seconds since the soak began (0–{end:.0f})</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
