#!/usr/bin/env python3
"""`bench/run freshness`: how long a committed change takes to be served, under read load.

`atelier serve` (on the server CPU, --server-cpu) answers a storefront read load with
list pages in it (wrk, on the driver CPU, --driver-cpu) while `atelier materialize
--follow` follows the change queue, and the freshness tool (bench/freshness, on the
driver CPU too) commits random product changes (a sku's quantity, a style's sale price,
a photo's URL, a product's name) at each rate for the run's length, polling
each changed URL until it holds the change. Runs without writes before and after give
the read throughput to compare with. Records per rate: commit-to-visible latency
(p50/p90/p99/max), read throughput against the runs without writes, the follower's CPU
(its process and its PostgreSQL backend), PostgreSQL's WAL per change (and what the same
changes write with triggers off), and, once the writers stop, whether every changed
product's documents and a sample of the list pages holding them are what materialize
builds from the catalog. Writes bench/results/<date>-freshness.{json,md,svg}.
"""

import argparse
import datetime
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from atelier_bench import report  # noqa: E402
from atelier_bench.catalog import FULL_PRODUCTS, build_mix, prepare_catalog, psql  # noqa: E402
from atelier_bench.load import wrk  # noqa: E402
from atelier_bench.machine import (CLK_TCK, MIB, WORK, add_cpu_options, choose_cpus,  # noqa: E402
                                   cpu_seconds, loadavg, log, usable_cpus)
from atelier_bench.servers import Server, metrics  # noqa: E402

GOALS_P99_MS = {100: 1000, 1000: 2000}
FOLLOWER = "atelier follow"


class Process:
    """A process whose CPU time is read from /proc."""

    def __init__(self, pid):
        self.pid = pid

    def cpu_seconds(self):
        try:
            return cpu_seconds(self.pid)
        except OSError:
            return 0.0


def postgres_cpu():
    """CPU seconds of every PostgreSQL process on the machine, by pid (the benchmark's
    cluster is the only one here)."""
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                head, rest = f.read().rsplit(")", 1)
            if head.split("(", 1)[1] != "postgres":
                continue
            fields = rest.split()
            found[int(pid)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
        except (OSError, IndexError):
            continue
    return found


def postgres_cpu_since(before):
    """CPU seconds PostgreSQL's processes used since `before` (a postgres_cpu()): those
    that ended meanwhile are not counted, and none of ours ends within a run."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in postgres_cpu().items())


def machine_busy_seconds():
    """CPU time the whole machine spent busy (all processes, ours or not)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / CLK_TCK


def pin_postgres(cpus):
    """Pins every PostgreSQL process to `cpus` (taskset's list form); backends started
    later inherit the postmaster's affinity."""
    for pid in postgres_cpu():
        subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def backend_pid(url, application):
    pids = psql(url, f"SELECT pid FROM pg_stat_activity WHERE application_name = "
                           f"'{application}' ORDER BY backend_start LIMIT 1;").split()
    return int(pids[0]) if pids else None


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def build_paths(args, directory):
    """The storefront mix with one list page (of 5) for every four product documents."""
    rng = random.Random(args.seed)
    storefront = build_mix("storefront", args.products, args.sample, rng)
    pages = build_mix("list", args.products, args.sample, rng)
    paths = storefront.paths + pages.paths[: len(storefront.paths) // 4]
    rng.shuffle(paths)
    path = os.path.join(directory, "paths.txt")
    with open(path, "w") as f:
        f.write("\n".join(paths) + "\n")
    return path, len(paths)


def run_phase(args, cpus, url, service, follower, paths_file, directory, rate, index,
              token_base):
    """One run: wrk for `args.seconds`, with the freshness tool writing at `rate` (or
    nothing) meanwhile. Tokens start at `token_base`, so that no value a change writes
    is in the catalog already (from an earlier run): a change would look visible at
    once."""
    name = f"{rate}/s" if rate else "no writes"
    log(f"freshness: {name}")
    if rate:
        # Every run with writes starts right after a checkpoint, so that each pays the
        # same full-page images in its WAL.
        psql(url, "CHECKPOINT;")
    backend = backend_pid(url, FOLLOWER)
    watched = {"follower": Process(follower.pid), "follower backend": Process(backend),
               "server": Process(service.process.pid)}
    cpu_before = {k: p.cpu_seconds() for k, p in watched.items()}
    postgres_before, busy_before = postgres_cpu(), machine_busy_seconds()
    hits_before = metrics(service.port)
    load_before = loadavg()
    tool = None
    out = os.path.join(directory, f"freshness-{index}.json")
    if rate:
        tool = subprocess.Popen(
            ["taskset", "-c", cpus.driver, args.freshness, "--database-url", url,
             "--server", f"127.0.0.1:{service.port}", "--rate", str(rate),
             "--seconds", str(args.seconds), "--seed", str(args.seed + index),
             "--poll-ms", str(args.poll_ms), "--pages", str(args.pages),
             "--token-base", str(token_base + index * 200_000), "--out", out],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(directory, "freshness.log"), "a"))
    started = time.monotonic()
    reads = wrk(service.port, paths_file, args.seconds, args.connections, directory,
                cpu=cpus.driver)
    wall = time.monotonic() - started
    cpu = {k: (p.cpu_seconds() - cpu_before[k]) for k, p in watched.items()}
    cpu["postgres"] = postgres_cpu_since(postgres_before)
    cpu["machine"] = machine_busy_seconds() - busy_before
    hits, misses = (a - b for a, b in zip(metrics(service.port), hits_before))
    load_after = loadavg()
    if tool and tool.wait() != 0:
        sys.exit("the freshness tool failed; see bench/work/scenarios/freshness/freshness.log")
    phase = {
        "rate_per_s": rate,
        "reads": reads,
        "wall_s": wall,
        "cpu_s": cpu,
        "cache_hit_rate": hits / max(hits + misses, 1),
        # Every answer the server gave during wrk's run, the pollers' included: one cache
        # lookup each.
        "server_requests": hits + misses,
        "server_cpu_us_per_request": cpu["server"] * 1e6 / max(hits + misses, 1),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    }
    if tool:
        with open(out) as f:
            phase["freshness"] = json.load(f)
        f = phase["freshness"]
        log(f"  p50 {f['latency']['p50_ms']:.0f} ms, p99 {f['latency']['p99_ms']:.0f} ms, max "
            f"{f['latency']['max_ms']:.0f} ms, never seen {f['never_seen']}, stale "
            f"{f['final_check']['stale_documents']}+{f['final_check']['stale_pages']}")
    log(f"  reads: {reads['rps']:.0f} rps, p99 {reads['p99_ms']:.2f} ms")
    return phase


def bare_wal(args, cpus, url, directory):
    """WAL and PostgreSQL CPU per change of the same changes with triggers off: the
    changes alone."""
    out = os.path.join(directory, "freshness-bare.json")
    psql(url, "CHECKPOINT;")
    before = postgres_cpu()
    subprocess.run(
        ["taskset", "-c", cpus.driver, args.freshness, "--database-url", url, "--server",
         "127.0.0.1:1", "--rate", "1000", "--seconds", "5", "--seed", str(args.seed + 99),
         "--token-base", "2100000000", "--bare", "1", "--out", out],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # The tool queued the products it changed behind the triggers' back: the follower
    # puts their documents right before it stops.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if psql(url, "SELECT count(*) FROM document_queue;").strip() == "0":
            break
        time.sleep(0.5)
    with open(out) as f:
        bare = json.load(f)
    return bare["wal_bytes_per_change"], postgres_cpu_since(before) * 1e6 / bare["changes"]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scenario", nargs="?", default="freshness")
    parser.add_argument("--products", type=int, default=FULL_PRODUCTS)
    parser.add_argument("--data-dir")
    parser.add_argument("--database-url")
    parser.add_argument("--rates", default="100,1000", help="changes per second, in turn")
    parser.add_argument("--seconds", type=int, default=60, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=2,
                        help="times each rate is run (the machine's load drifts)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--sample", type=int, default=10_000)
    parser.add_argument("--cache-bytes", type=int, default=256 * MIB)
    parser.add_argument("--pool-size", type=int, default=4)
    parser.add_argument("--poll-ms", type=int, default=20)
    parser.add_argument("--pages", type=int, default=2000,
                        help="list pages compared after each run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-cpu", default="any",
                        help="CPUs for PostgreSQL and the follower (taskset list), e.g. 2-3 "
                             "on a machine with cores to spare for them; the default leaves "
                             "them unpinned (on 2 CPUs, pinned beside wrk, they starve)")
    add_cpu_options(parser)
    parser.add_argument("--atelier", default="atelier")
    parser.add_argument("--freshness", default="freshness")
    args = parser.parse_args()
    cpus = choose_cpus(args.server_cpu, args.driver_cpu)
    rates = [int(r) for r in args.rates.split(",")]
    os.makedirs(WORK, exist_ok=True)
    url = prepare_catalog(args)
    directory = os.path.join(WORK, "scenarios", "freshness")
    os.makedirs(directory, exist_ok=True)
    paths_file, requests = build_paths(args, directory)
    log(f"freshness: {requests} read paths; rates {rates}; {args.seconds} s each")

    # A port of its own: another benchmark may hold the usual ones, and a server found
    # there would be taken for ours.
    port = free_port()
    command = [args.atelier, "serve", "--listen", f"127.0.0.1:{port}", "--database-url", url,
               "--cache-bytes", str(args.cache_bytes), "--pool-size", str(args.pool_size)]
    service = Server("service", command, port, directory, cpu=cpus.server,
                           env={"ATELIER_LOG": "warn"}).start()
    time.sleep(0.5)
    if service.process.poll() is not None:
        sys.exit("atelier serve exited at start; see its log")
    follower_log = open(os.path.join(directory, "follower.log"), "ab")
    pin = [] if args.database_cpu == "any" else ["taskset", "-c", args.database_cpu]
    if pin:
        pin_postgres(args.database_cpu)
    follower = subprocess.Popen(pin + [args.atelier, "materialize", "--follow", "--database-url", url],
                                stdout=follower_log, stderr=follower_log, start_new_session=True)
    phases = []
    try:
        time.sleep(1)
        wrk(service.port, paths_file, args.warmup, args.connections, directory, cpu=cpus.driver)
        # Each rate between two runs without writes: the machine is shared, and its load
        # drifts; each rate is compared with the mean of the runs on either side.
        schedule = [None]
        for _ in range(args.rounds):
            for rate in rates:
                schedule += [rate, None]
        # Tokens unique to this run, whichever runs came before (ten-second steps over
        # about five hours, then round again).
        token_base = (int(time.time()) // 10 % 1900 + 100) * 1_000_000
        for index, rate in enumerate(schedule):
            phases.append(run_phase(args, cpus, url, service, follower, paths_file, directory,
                                    rate, index, token_base))
        wal_bare, cpu_bare = bare_wal(args, cpus, url, directory)
    finally:
        follower.terminate()
        follower.wait(timeout=30)
        service.stop()
        if pin:
            pin_postgres(",".join(map(str, usable_cpus())))
    result = summarize(args, cpus, phases, wal_bare, cpu_bare, requests)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H%MZ")
    report.write(result, stamp, markdown, report.svg_from(chart))


def summarize(args, cpus, phases, wal_bare, cpu_bare, requests):
    rows = []
    goals = {}
    for index, p in enumerate(phases):
        if not p["rate_per_s"]:
            continue
        neighbours = [phases[i] for i in (index - 1, index + 1)
                      if 0 <= i < len(phases) and not phases[i]["rate_per_s"]]
        baseline = statistics.fmean(n["reads"]["rps"] for n in neighbours)
        baseline_cpu = statistics.fmean(n["server_cpu_us_per_request"] for n in neighbours)
        f = p["freshness"]
        rate = p["rate_per_s"]
        changes = f["changes"]
        follower_cpu = p["cpu_s"]["follower"] + p["cpu_s"]["follower backend"]
        row = {
            "rate_per_s": rate,
            "run": 1 + sum(1 for r in rows if r["rate_per_s"] == rate),
            "achieved_rate_per_s": f["achieved_rate_per_s"],
            "changes": changes,
            "latency": f["latency"],
            "by_kind": f["by_kind"],
            "never_seen": f["never_seen"],
            "read_rps": p["reads"]["rps"],
            "read_rps_no_writes": baseline,
            "read_ratio": p["reads"]["rps"] / baseline,
            "read_p99_ms": p["reads"]["p99_ms"],
            # What the server can answer on a core of its own, against the runs without
            # writes: the inverse ratio of its CPU time per answer.
            "server_cpu_us_per_request": p["server_cpu_us_per_request"],
            "server_cpu_us_per_request_no_writes": baseline_cpu,
            "server_capacity_ratio": baseline_cpu / p["server_cpu_us_per_request"],
            "read_errors": p["reads"]["errors"] + p["reads"]["non_2xx"],
            "follower_cpu_share": follower_cpu / p["wall_s"],
            "follower_process_cpu_share": p["cpu_s"]["follower"] / p["wall_s"],
            "follower_cpu_us_per_change": follower_cpu * 1e6 / changes,
            "server_cpu_share": p["cpu_s"]["server"] / p["wall_s"],
            "postgres_cpu_share": p["cpu_s"]["postgres"] / p["wall_s"],
            "writers_cpu_us_per_change": (p["cpu_s"]["postgres"]
                                          - p["cpu_s"]["follower backend"]) * 1e6 / changes,
            "writers_cpu_us_per_change_triggers_off": cpu_bare,
            "machine_busy_share": p["cpu_s"]["machine"] / p["wall_s"] / os.cpu_count(),
            "wal_bytes_per_change": f["wal_bytes_per_change"],
            "wal_bytes_per_change_triggers_off": wal_bare,
            "extra_wal_bytes_per_change": f["wal_bytes_per_change"] - wal_bare,
            "final_check": f["final_check"],
            "timeline": f["timeline"],
            "cache_hit_rate": p["cache_hit_rate"],
        }
        rows.append(row)
    for rate in sorted({r["rate_per_s"] for r in rows}):
        runs = [r for r in rows if r["rate_per_s"] == rate]
        limit = GOALS_P99_MS.get(rate)
        if limit:
            worst = max(r["latency"]["p99_ms"] for r in runs)
            goals[f"p99 commit→visible ≤ {limit} ms at {rate}/s (worst run)"] = {
                "value": worst,
                "met": worst <= limit and all(r["never_seen"] == 0 for r in runs)}
        ratio = statistics.median(r["read_ratio"] for r in runs)
        goals[f"read throughput ≥ 0.9 × no writes at {rate}/s (median of runs)"] = {
            "value": ratio, "met": ratio >= 0.9}
        capacity = statistics.median(r["server_capacity_ratio"] for r in runs)
        goals[f"server answers per CPU-second ≥ 0.9 × no writes at {rate}/s (median of runs)"] = {
            "value": capacity, "met": capacity >= 0.9}
        stale = sum(r["final_check"]["stale_documents"] + r["final_check"]["stale_pages"]
                    for r in runs)
        goals[f"zero stale answers after the writers stop at {rate}/s (all runs)"] = {
            "value": stale, "met": stale == 0}
    return {
        "scenario": "freshness",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "products": args.products,
        "settings": {"seconds": args.seconds, "rounds": args.rounds,
                     "connections": args.connections,
                     "cache_bytes": args.cache_bytes, "pool_size": args.pool_size,
                     "poll_ms": args.poll_ms, "read_paths": requests, "server_cpu": cpus.server,
                     "driver_cpu": cpus.driver, "database_cpu": args.database_cpu,
                     "cpus": os.cpu_count()},
        "baseline_read_rps": [p["reads"]["rps"] for p in phases if not p["rate_per_s"]],
        "rates": rows,
        "goals": goals,
        "phases": phases,
    }


def markdown(result, name):
    s = result["settings"]
    fmt = report.fmt
    lines = [
        f"# freshness — {result['date']}",
        "",
        f"{result['products']:,} products; storefront reads with list pages (wrk, "
        f"{s['connections']} connections, {s['read_paths']:,} paths) for {s['seconds']} s per "
        f"run, each rate {s['rounds']} times, every run with writes between two without; "
        f"writer and "
        f"pollers (bench/freshness, polling every {s['poll_ms']} ms) and wrk on CPU "
        f"{s['driver_cpu']}, the server on CPU {s['server_cpu']}, `materialize --follow` and "
        f"PostgreSQL on {database_cpus(s)}; cache {s['cache_bytes'] / MIB:.0f} MiB.",
        "",
        "| changes/s | changes | p50 ms | p90 ms | p99 ms | max ms | never seen | reads/s (× no writes) | read p99 ms | follower CPU (process) | follower CPU-µs/change | WAL B/change (triggers off) | stale after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rates"]:
        l, c = r["latency"], r["final_check"]
        lines.append(
            f"| {r['rate_per_s']:,} ({fmt(r['achieved_rate_per_s'], 0)}), run {r['run']} | {r['changes']:,} | "
            f"{fmt(l['p50_ms'], 0)} | {fmt(l['p90_ms'], 0)} | {fmt(l['p99_ms'], 0)} | "
            f"{fmt(l['max_ms'], 0)} | {r['never_seen']} | {fmt(r['read_rps'], 0)} "
            f"({fmt(r['read_ratio'], 3)}) | {fmt(r['read_p99_ms'])} | "
            f"{r['follower_cpu_share']:.1%} ({r['follower_process_cpu_share']:.1%}) | "
            f"{fmt(r['follower_cpu_us_per_change'], 0)} | {fmt(r['wal_bytes_per_change'], 0)} "
            f"({fmt(r['wal_bytes_per_change_triggers_off'], 0)}) | "
            f"{c['stale_documents']} of {c['documents_compared']:,} documents, "
            f"{c['stale_pages']} of {c['pages_compared']:,} pages |")
    lines += ["", "Read throughput of the runs without writes, in order: "
              + ", ".join(fmt(x, 0) for x in result["baseline_read_rps"])
              + " requests/s; each rate is compared with the mean of the runs beside it.", "",
              "Where the CPU went during each rate's run (shares of one CPU; the machine "
              "figure is all its processes, ours or not, as a share of both CPUs):", "",
              "| changes/s | server | server CPU-µs per answer (no writes) | server answers per CPU-second (× no writes) | cache hit rate | PostgreSQL (all) | follower (process + backend) | machine busy | PostgreSQL CPU-µs per change besides the follower (triggers off) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rates"]:
        lines.append(f"| {r['rate_per_s']:,}, run {r['run']} | {r['server_cpu_share']:.0%} | "
                     f"{fmt(r['server_cpu_us_per_request'])} "
                     f"({fmt(r['server_cpu_us_per_request_no_writes'])}) | "
                     f"{fmt(1e6 / r['server_cpu_us_per_request'], 0)} "
                     f"({fmt(r['server_capacity_ratio'], 3)}) | {r['cache_hit_rate']:.2%} | "
                     f"{r['postgres_cpu_share']:.0%} | {r['follower_cpu_share']:.0%} | "
                     f"{r['machine_busy_share']:.0%} | {fmt(r['writers_cpu_us_per_change'], 0)} "
                     f"({fmt(r['writers_cpu_us_per_change_triggers_off'], 0)}) |")
    lines.append("")
    lines += ["Latency by kind of change (p50 / p99 / max ms):", ""]
    for r in result["rates"]:
        kinds = "; ".join(f"{k}: {fmt(v['p50_ms'], 0)} / {fmt(v['p99_ms'], 0)} / "
                          f"{fmt(v['max_ms'], 0)}" for k, v in r["by_kind"].items())
        lines.append(f"- {r['rate_per_s']:,}/s, run {r['run']} — {kinds}")
    lines += ["", "Goals:", ""]
    lines += report.goal_lines(result["goals"])
    loads = [p["loadavg_after"][0] for p in result["phases"]]
    lines += ["", f"Machine load (1-min load average after each run): {', '.join(f'{x:.2f}' for x in loads)} "
              f"on {s['cpus']} CPUs.", "", f"![latency and throughput]({name}.svg)", ""]
    return "\n".join(lines)


def database_cpus(settings):
    cpus = settings.get("database_cpu", "any")
    return "either CPU" if cpus == "any" else f"CPU {cpus}"


def chart(result):
    """Commit-to-visible latency per rate (p50, p99, max, with the goal), and read
    throughput per run, as two bar panels."""
    width, height, left, top, plot_h = 860, 560, 90, 60, 170
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif">',
           f'<rect width="{width}" height="{height}" fill="#fff"/>',
           f'<text x="{left}" y="24" font-size="13">freshness — {result["date"]} — '
           f'{result["products"]:,} products</text>']

    def panel(y0, title, groups, unit, goal_lines=()):
        peak = max([v for _, bars in groups for _, v, _ in bars] + [g for g, _ in goal_lines] + [1])
        peak *= 1.15
        out.append(f'<text x="{left}" y="{y0 - 12}" font-size="14" font-weight="bold">{title}</text>')
        for i in range(5):
            y = y0 + plot_h - plot_h * i / 4
            out.append(f'<line x1="{left}" x2="{width - 30}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
            out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">'
                       f'{peak * i / 4:,.0f}{unit}</text>')
        slot = (width - 30 - left) / max(len(groups), 1)
        for g, (label, bars) in enumerate(groups):
            bar_w = slot * 0.7 / max(len(bars), 1)
            for b, (name, value, colour) in enumerate(bars):
                x = left + g * slot + slot * 0.15 + b * bar_w
                h = plot_h * value / peak
                out.append(f'<rect x="{x:.1f}" y="{y0 + plot_h - h:.1f}" width="{bar_w - 2:.1f}" '
                           f'height="{h:.1f}" fill="{colour}"><title>{name}: {value:,.1f}</title></rect>')
                out.append(f'<text x="{x + bar_w / 2:.1f}" y="{y0 + plot_h - h - 4:.1f}" '
                           f'font-size="10" text-anchor="middle">{value:,.0f}</text>')
                out.append(f'<text x="{x + bar_w / 2:.1f}" y="{y0 + plot_h + 14:.1f}" '
                           f'font-size="10" text-anchor="middle">{name}</text>')
            out.append(f'<text x="{left + g * slot + slot / 2:.1f}" y="{y0 + plot_h + 30:.1f}" '
                       f'font-size="12" text-anchor="middle">{label}</text>')
            for goal, goal_label in goal_lines:
                if goal_label.startswith(label):
                    y = y0 + plot_h - plot_h * goal / peak
                    x0 = left + g * slot + slot * 0.1
                    out.append(f'<line x1="{x0:.1f}" x2="{x0 + slot * 0.8:.1f}" y1="{y:.1f}" '
                               f'y2="{y:.1f}" stroke="#d62728" stroke-dasharray="5,3"/>')
                    out.append(f'<text x="{x0 + slot * 0.8:.1f}" y="{y - 4:.1f}" font-size="10" '
                               f'text-anchor="end" fill="#d62728">goal p99 ≤ {goal:,.0f} ms</text>')

    latency_groups = [
        (f"{r['rate_per_s']:,} changes/s ({r['run']})",
         [("p50", r["latency"]["p50_ms"], "#9ecae1"), ("p99", r["latency"]["p99_ms"], "#3182bd"),
          ("max", r["latency"]["max_ms"], "#08519c")])
        for r in result["rates"]]
    goals = [(GOALS_P99_MS[r["rate_per_s"]], f"{r['rate_per_s']:,} changes/s ({r['run']})")
             for r in result["rates"] if r["rate_per_s"] in GOALS_P99_MS]
    panel(top + 10, "Commit → visible (ms)", latency_groups, "", goals)
    read_groups = [("reads/s", [("no writes", statistics.median(result["baseline_read_rps"]), "#7f7f7f")]
                    + [(f"{r['rate_per_s']:,}/s ({r['run']})", r["read_rps"], "#1f77b4")
                       for r in result["rates"]])]
    panel(top + plot_h + 110, "Read throughput (requests/s) beside the writes", read_groups, "")
    out.append("</svg>")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
