#!/usr/bin/env python3
"""`bench/run failover`: what clients see when the database's primary dies mid-run.

`bench/cluster start --ha` brings up a pg_auto_failover formation on loopback (a monitor,
a primary and its synchronous standby, held by bench/failover), loads the catalog into it
and materializes it, starts one follower (`atelier materialize --follow`) and two
`atelier serve` instances given the formation's multi-host URL, behind nginx (the
repository's nginx.conf), instances and nginx on the server CPU. Each run, the driver
(`failover drive`, on the driver CPU) warms both instances' caches with the read list,
then for `--seconds` sends storefront reads through nginx at `--read-rate` (product,
styles, related, list pages, and a share of documents read nowhere before), commits
`--rate` catalog changes a second (renames and price changes of hot products, each
acknowledged commit recorded, the writers reconnecting through the multi-host URL), polls
both instances directly until each change is served, and at `--kill-at` seconds SIGKILLs
the primary's keeper and PostgreSQL. Afterwards it checks that no acknowledged change is
missing from the catalog and that every changed product's documents on each instance are
what materialize builds now. Between runs the killed node rejoins as a standby and the
instances restart (fresh caches), reading from the current primary first.

Runs alternate the servers' `--missed-changes` (catch-up, drop) where the server has the
flag, ABBA over rounds; without it every LISTEN reconnect drops the whole cache, which is
`drop`. Writes bench/results/<date>-failover.{json,md,svg}.
"""

import argparse
import datetime
import json
import math
import os
import random
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from atelier_bench import report  # noqa: E402
from atelier_bench.catalog import build_mix  # noqa: E402
from atelier_bench.machine import (MIB, WORK, add_cpu_options, choose_cpus, cpu_seconds,  # noqa: E402
                                   loadavg, log, run)
from atelier_bench.servers import CLUSTER  # noqa: E402

DEFAULT_PRODUCTS = 20_000
# After a failover a server replays every notice logged from 30 s before its last look
# at the log (http::catch_up::RECENT): the set-up's full materialize, a notice to drop
# everything, must be older than that by the first kill, or that run drops it all.
AFTER_SETUP_S = 35
# Goals.
VISIBLE_BACK_WITHIN_S = 30
MODES = ["catch-up", "drop"]


def free_port_block(count):
    """A port P with P .. P+count-1 all free on loopback (bench/cluster takes P for nginx
    and the next ones for the instances)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count >= 65535:
            continue
        try:
            held = []
            for port in range(base, base + count):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    sys.exit("no block of free ports on loopback")


def missed_changes_supported(atelier):
    """Whether `atelier serve` has --missed-changes."""
    text = subprocess.run([atelier, "serve", "--help"], capture_output=True, text=True).stdout
    return "--missed-changes" in text


def catalog_dir(args):
    """The catalog's CSV files, generated into bench/work/catalog-N when missing (the
    directory the other scenarios generate into)."""
    directory = os.path.join(WORK, f"catalog-{args.products}")
    if not os.path.exists(os.path.join(directory, "related.csv")):
        run([args.atelier, "generate", "--products", str(args.products), "--out", directory])
    return directory


def build_lists(args, directory):
    """The read list (the storefront mix with one list page of 5 per four product
    documents, as bench/freshness reads), the products the writer changes (a random half
    of the hot products), and the cold paths (every document of the other products, in a
    random order, each read at most once)."""
    rng = random.Random(args.seed)
    storefront = build_mix("storefront", args.products, args.sample, rng)
    pages = build_mix("list", args.products, args.sample, rng)
    paths = storefront.paths + pages.paths[: len(storefront.paths) // 4]
    rng.shuffle(paths)
    hot = sorted({int(p.split("/")[2]) for p in storefront.paths})
    changing = sorted(rng.sample(hot, len(hot) // 2))
    hot_set = set(hot)
    cold = [f"/products/{i}{s}" for i in range(1, args.products + 1) if i not in hot_set
            for s in ("", "/styles", "/related")]
    rng.shuffle(cold)
    files = {}
    for name, lines in (("paths", paths), ("changing", changing), ("cold", cold)):
        files[name] = os.path.join(directory, f"{name}.txt")
        with open(files[name], "w") as f:
            f.write("\n".join(map(str, lines)) + "\n")
    return files, {"read_paths": len(paths), "distinct_read_paths": len(set(paths)),
                   "hot_products": len(hot), "changing_products": len(changing),
                   "cold_paths": len(cold)}


def failover_command(args, formation, command):
    """A command to the formation's holder; its last answer."""
    out = subprocess.run([args.failover, command, "--dir", formation], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def primary_first_url(formation, primary):
    """The formation's multi-host URL with node `primary` first: a freshly started
    instance's pool connects to the first host that answers, so the reads are on the
    node the run kills, every run alike."""
    with open(os.path.join(formation, "formation.json")) as f:
        node_urls = json.load(f)["node_urls"]
    hosts = ",".join(node_urls[n].split("@", 1)[1].split("/", 1)[0]
                     for n in (primary, 1 - primary))
    return f"postgres://postgres@{hosts}/atelier"


def cluster_env(args, mode, supported):
    env = dict(os.environ, ATELIER_CACHE_BYTES=str(args.cache_bytes),
               ATELIER_POOL_SIZE=str(args.pool_size))
    if supported:
        env["ATELIER_MISSED_CHANGES"] = mode
    return env


def pids_of(run_dir):
    """The instances' and nginx's processes (nginx's workers included)."""
    pids = []
    for name in ("instance-1.pid", "instance-2.pid", "nginx/nginx.pid"):
        try:
            with open(os.path.join(run_dir, name)) as f:
                pids.append(int(f.read()))
        except OSError:
            pass
    for pid in list(pids):
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                pids += [int(p) for p in f.read().split()]
        except OSError:
            pass
    return pids


def server_cpu_seconds(run_dir):
    total = 0.0
    for pid in pids_of(run_dir):
        try:
            total += cpu_seconds(pid)
        except OSError:
            pass
    return total


def one_run(args, cpus, files, run_dir, formation, mode, supported, index, token_base):
    """Settles the formation, restarts the instances reading from the primary first,
    drives one run and brings the killed node back: the driver's result."""
    settle = failover_command(args, formation, "settle")
    primary = failover_command(args, formation, "status")["primary"]
    url = primary_first_url(formation, primary)
    run([CLUSTER, "restart", "--run-dir", run_dir, "--database-url", url],
        env=cluster_env(args, mode, supported), stdout=subprocess.DEVNULL)
    out = os.path.join(os.path.dirname(run_dir), f"run-{index}.json")
    with open(os.path.join(run_dir, "settings")) as f:
        port = int(next(line for line in f if line.startswith("port=")).split("=")[1])
    log(f"failover: run {index + 1}, --missed-changes {mode}, node {primary} primary")
    load_before = loadavg()
    cpu_before, started = server_cpu_seconds(run_dir), time.monotonic()
    subprocess.run(
        ["taskset", "-c", cpus.driver, args.failover, "drive", "--dir", formation,
         "--nginx", f"127.0.0.1:{port}",
         "--instances", f"127.0.0.1:{port + 1},127.0.0.1:{port + 2}",
         "--paths", files["paths"], "--cold", files["cold"], "--changing", files["changing"],
         "--seconds", str(args.seconds), "--kill-at", str(args.kill_at),
         "--rate", str(args.rate), "--read-rate", str(args.read_rate),
         "--connections", str(args.connections), "--cold-share", str(args.cold_share),
         "--poll-ms", str(args.poll_ms), "--seed", str(args.seed + index),
         "--token-base", str(token_base + index * 100_000), "--out", out],
        check=True)
    with open(out) as f:
        result = json.load(f)
    result["mode"] = mode
    result["primary_before"] = primary
    result["settle_before_s"] = settle.get("seconds")
    # The server's CPU over the driver's whole run (warm-up and checks included), a rough
    # figure of how busy its core was.
    result["server_cpu_share"] = ((server_cpu_seconds(run_dir) - cpu_before)
                                  / (time.monotonic() - started))
    result["loadavg_before"] = load_before
    result["loadavg_after"] = loadavg()
    describe(result)
    return result


def describe(r):
    k, w, v = r["kill"], r["writes"], r["visibility"]
    misses = ", ".join(f"{fmt_rate(i['miss_rate_after_reconnect'])} (before "
                       f"{fmt_rate(i['miss_rate_before_kill'])})" for i in r["instances"])
    log(f"  engine failover {k['engine_failover_s']:.1f} s, writes back after "
        f"{fmt_s(w['writes_back_after_kill_s'])}, p99 visible ≤ 1 s after "
        f"{fmt_s(v['p99_back_within_goal_after_kill_s'])}; lost {r['lost']['acknowledged_lost']}, "
        f"stale {r['final_check']['stale_documents']}+{r['final_check']['stale_pages']}, "
        f"cached reads failed {r['reads']['cached_failed_after_kill']}, gap 503s "
        f"{r['reads']['gap']['all']['unavailable_503']}; miss rate after reconnect {misses}")


def fmt_s(value):
    return "–" if value is None else f"{value:.1f} s"


def fmt_rate(value):
    return "–" if value is None else f"{value:.1%}"


def schedule(modes, rounds):
    """Each mode `rounds` times, ABBA: A B, B A, A B, ..."""
    order = []
    for r in range(rounds):
        order += modes if r % 2 == 0 else list(reversed(modes))
    return order


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", nargs="?", default="failover")
    parser.add_argument("--products", type=int, default=DEFAULT_PRODUCTS)
    parser.add_argument("--rounds", type=int, default=2,
                        help="runs per --missed-changes mode (ABBA)")
    parser.add_argument("--modes", default=",".join(MODES),
                        help="the servers' --missed-changes in turn, where they have it")
    parser.add_argument("--seconds", type=float, default=60, help="seconds per run")
    parser.add_argument("--kill-at", type=float, default=15,
                        help="seconds into each run at which the primary is killed")
    parser.add_argument("--rate", type=float, default=100, help="changes committed per second")
    parser.add_argument("--read-rate", type=float, default=2000,
                        help="reads per second through nginx (0: as fast as they go)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--cold-share", type=float, default=0.05,
                        help="share of reads asking for a document read nowhere before")
    parser.add_argument("--sample", type=int, default=10_000)
    parser.add_argument("--cache-bytes", type=int, default=256 * MIB)
    parser.add_argument("--pool-size", type=int, default=4)
    parser.add_argument("--poll-ms", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    add_cpu_options(parser)
    parser.add_argument("--atelier", default="atelier")
    parser.add_argument("--failover", default="failover")
    args = parser.parse_args()
    cpus = choose_cpus(args.server_cpu, args.driver_cpu)
    os.makedirs(WORK, exist_ok=True)
    catalog = catalog_dir(args)
    directory = os.path.join(WORK, "scenarios", "failover")
    run_dir = os.path.join(directory, "cluster")
    if os.path.exists(os.path.join(run_dir, "settings")):
        run([CLUSTER, "stop", "--run-dir", run_dir], stdout=subprocess.DEVNULL)
    subprocess.run(["rm", "-rf", directory], check=True)
    os.makedirs(directory)
    files, lists = build_lists(args, directory)
    supported = missed_changes_supported(args.atelier)
    modes = [m for m in args.modes.split(",") if m] if supported else ["drop"]
    order = schedule(modes, args.rounds)
    log(f"failover: {lists['read_paths']:,} read paths over {lists['hot_products']:,} hot "
        f"products ({lists['changing_products']:,} changed by the writer); runs: "
        f"{', '.join(order)}" + ("" if supported else
                                 " (the server has no --missed-changes: every LISTEN "
                                 "reconnect drops the cache)"))
    port = free_port_block(3)
    formation = os.path.join(run_dir, "formation")
    # bench/cluster runs these builds.
    os.environ["ATELIER_BIN"], os.environ["FAILOVER_BIN"] = args.atelier, args.failover
    token_base = (int(time.time()) // 10 % 1900 + 100) * 1_000_000
    runs = []
    setup_started = time.monotonic()
    try:
        run([CLUSTER, "start", "--ha", "--catalog", catalog, "--instances", "2",
             "--port", str(port), "--cpus", cpus.server, "--run-dir", run_dir],
            env=cluster_env(args, order[0], supported),
            stdout=subprocess.DEVNULL)
        setup_s = time.monotonic() - setup_started
        log(f"failover: set up in {setup_s:.0f} s; waiting {AFTER_SETUP_S} s for the "
            "set-up's notices to age out of a catch-up's replay window")
        time.sleep(AFTER_SETUP_S)
        with open(os.path.join(formation, "formation.json")) as f:
            created_s = json.load(f)["created_s"]
        for index, mode in enumerate(order):
            runs.append(one_run(args, cpus, files, run_dir, formation, mode, supported, index,
                                token_base))
            # The killed node back as the standby, for the next run (and its time).
            try:
                runs[-1]["rejoin_s"] = failover_command(args, formation, "rejoin")["seconds"]
            except subprocess.CalledProcessError as error:
                runs[-1]["rejoin_s"] = None
                log(f"failover: the killed node did not rejoin ({error.stderr.strip()}); "
                    "no more runs")
                break
    finally:
        run([CLUSTER, "stop", "--run-dir", run_dir], stdout=subprocess.DEVNULL)
    result = summarize(args, cpus, lists, runs, supported, setup_s, created_s)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H%MZ")
    report.write(result, stamp, markdown, report.svg_from(chart))


# ---------------------------------------------------------------- the result


def summarize(args, cpus, lists, runs, supported, setup_s, created_s):
    rows = []
    for r in runs:
        reads, writes, vis = r["reads"], r["writes"], r["visibility"]
        gap = reads["gap"]
        rows.append({
            "mode": r["mode"],
            "killed_node": r["kill"]["killed_node"],
            "reads_on_killed_node": bool((r["reads_on_nodes"][r["kill"]["killed_node"]] or 0) > 0),
            "engine_failover_s": r["kill"]["engine_failover_s"],
            "writes_back_after_kill_s": writes["writes_back_after_kill_s"],
            "visible_p99_back_after_kill_s": vis["p99_back_within_goal_after_kill_s"],
            "windows_over_goal_later": vis.get("windows_over_goal_later"),
            "acknowledged": writes["acknowledged"],
            "acknowledged_lost": r["lost"]["acknowledged_lost"],
            "catalog_mismatches": r["lost"]["catalog_mismatches"],
            "in_doubt": r["lost"]["in_doubt"],
            "in_doubt_committed": r["lost"]["in_doubt_committed"],
            "stale_answers": r["final_check"]["stale_documents"] + r["final_check"]["stale_pages"],
            "answers_compared": (r["final_check"]["documents_compared"]
                                 + r["final_check"]["pages_compared"]),
            "cached_reads_failed": reads["cached_failed_after_kill"],
            "reads": reads["total"]["all"]["count"],
            "reads_not_ok": reads["total"]["all"]["not_ok"],
            "gap_s": writes["writes_back_after_kill_s"],
            "gap_reads": gap["all"]["count"],
            "gap_cold_reads": gap["by_category"]["cold"]["count"],
            "gap_503": gap["all"]["unavailable_503"],
            "gap_503_retry_after": gap["all"]["unavailable_503_with_retry_after"],
            "after_kill_503": reads["after_kill"]["all"]["unavailable_503"],
            "after_kill_503_retry_after":
                reads["after_kill"]["all"]["unavailable_503_with_retry_after"],
            "after_kill_other_failures": (reads["after_kill"]["all"]["errors"]
                                          + reads["after_kill"]["all"]["other_status"]),
            "instances_503_after_kill": sum(i.get("unavailable_503_after_kill") or 0
                                            for i in r["instances"]),
            "instances_db_errors_after_kill": sum(i.get("db_errors_after_kill") or 0
                                                  for i in r["instances"]),
            "read_p99_ms": reads["latency"]["p99_ms"],
            "read_p99_gap_ms": reads["latency_gap"]["p99_ms"],
            "visible_p50_ms": vis["latency"]["p50_ms"],
            "visible_p99_ms": vis["latency"]["p99_ms"],
            "visible_max_ms": vis["latency"]["max_ms"],
            "never_seen": vis["never_seen"],
            "listen_reconnected_after_kill_s": [
                None if i["listen_reconnected_s"] is None
                else i["listen_reconnected_s"] - r["kill"]["killed_s"] for i in r["instances"]],
            "miss_rate_after_reconnect": [i["miss_rate_after_reconnect"] for i in r["instances"]],
            "miss_rate_before_kill": [i["miss_rate_before_kill"] for i in r["instances"]],
            "reconnect_seen_by": sorted({i["reconnect_seen_by"] or "not seen"
                                         for i in r["instances"]}),
            "server_cpu_share": r["server_cpu_share"],
            "rejoin_s": r["rejoin_s"],
        })
    goals = {}
    lost = sum(r["acknowledged_lost"] + r["catalog_mismatches"] for r in rows)
    goals["acknowledged changes lost (all runs)"] = {"value": lost, "met": lost == 0}
    stale = sum(r["stale_answers"] for r in rows)
    goals["stale answers once the writer stops (all runs)"] = {"value": stale, "met": stale == 0}
    cached = sum(r["cached_reads_failed"] for r in rows)
    goals["failed reads of cached documents after the kill (all runs)"] = {
        "value": cached, "met": cached == 0}
    backs = [r["visible_p99_back_after_kill_s"] for r in rows]
    worst = None if None in backs else max(backs)
    goals[f"commit→visible p99 back ≤ 1 s within {VISIBLE_BACK_WITHIN_S} s of the kill "
          "(worst run)"] = {"value": worst, "limit": VISIBLE_BACK_WITHIN_S,
                            "met": worst is not None and worst <= VISIBLE_BACK_WITHIN_S}
    by_mode = {}
    for mode in sorted({r["mode"] for r in rows}):
        mine = [r for r in rows if r["mode"] == mode]
        after = [m for r in mine for m in r["miss_rate_after_reconnect"] if m is not None]
        before = [m for r in mine for m in r["miss_rate_before_kill"] if m is not None]
        by_mode[mode] = {
            "runs": len(mine),
            "miss_rate_after_reconnect_median": statistics.median(after) if after else None,
            "miss_rate_after_reconnect": after,
            "miss_rate_before_kill_median": statistics.median(before) if before else None,
            "visible_p99_back_after_kill_s": [r["visible_p99_back_after_kill_s"] for r in mine],
            "cached_reads_failed": sum(r["cached_reads_failed"] for r in mine),
        }
    header = report.header("failover", args.products)
    return {
        **header,
        "settings": {"seconds": args.seconds, "kill_at_s": args.kill_at, "rate_per_s": args.rate,
                     "read_rate_per_s": args.read_rate, "connections": args.connections,
                     "cold_share": args.cold_share, "cache_bytes": args.cache_bytes,
                     "pool_size": args.pool_size, "poll_ms": args.poll_ms,
                     "rounds": args.rounds, "missed_changes_flag": supported,
                     "server_cpu": cpus.server, "driver_cpu": cpus.driver,
                     "cpus": os.cpu_count(), **lists},
        "setup": {"cluster_start_s": setup_s, "formation_created_s": created_s},
        "rows": rows,
        "by_mode": by_mode,
        "goals": goals,
        "runs": runs,
    }


def markdown(result, name):
    s = result["settings"]
    fmt = report.fmt
    lines = [
        f"# failover — {result['date']}",
        "",
        f"{result['products']:,} products in a pg_auto_failover formation on loopback (a "
        f"monitor, a primary and its synchronous standby; `bench/cluster start --ha`, "
        f"set up in {result['setup']['cluster_start_s']:.0f} s, the formation itself in "
        f"{result['setup']['formation_created_s']:.0f} s); 2 instances "
        f"(cache {s['cache_bytes'] / MIB:.0f} MiB, pool {s['pool_size']}) behind nginx on CPU "
        f"{s['server_cpu']}, the driver on CPU {s['driver_cpu']}, PostgreSQL and the "
        f"follower on either. Each run: {s['seconds']:.0f} s of storefront reads through "
        f"nginx at {s['read_rate_per_s']:,.0f}/s over {s['connections']} connections "
        f"({s['read_paths']:,} paths over {s['hot_products']:,} hot products, warmed on both "
        f"instances first, plus {s['cold_share']:.0%} documents read nowhere before), "
        f"{s['rate_per_s']:.0f} changes/s on {s['changing_products']:,} of the hot products, "
        f"both instances polled every {s['poll_ms']} ms per change, the primary SIGKILLed at "
        f"{s['kill_at_s']:.0f} s. Instances restarted before each run, reading from the "
        f"primary first.",
        "",
    ]
    if not s["missed_changes_flag"]:
        lines += ["The server had no `--missed-changes`: every LISTEN reconnect drops the "
                  "whole cache (what `drop` is).", ""]
    lines += [
        "| run | --missed-changes | engine failover s | writes back s | p99 visible ≤ 1 s after s (later windows over) | acknowledged (lost) | stale answers | cached reads failed | gap reads (503, with Retry-After) | other failed reads | instances' own 503s | LISTEN back after kill s | miss rate 10 s after reconnect (before kill) | server CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(result["rows"]):
        listen = ", ".join(fmt(x, 1) for x in r["listen_reconnected_after_kill_s"])
        misses = ", ".join(f"{fmt_rate(a)} ({fmt_rate(b)})" for a, b in
                           zip(r["miss_rate_after_reconnect"], r["miss_rate_before_kill"]))
        lines.append(
            f"| {i + 1} | {r['mode']} | {fmt(r['engine_failover_s'], 1)} | "
            f"{fmt(r['writes_back_after_kill_s'], 1)} | "
            f"{fmt(r['visible_p99_back_after_kill_s'], 1)} "
            f"({fmt(r['windows_over_goal_later'])}) | {r['acknowledged']:,} "
            f"({r['acknowledged_lost'] + r['catalog_mismatches']}) | {r['stale_answers']} of "
            f"{r['answers_compared']:,} | {r['cached_reads_failed']} | {r['gap_reads']:,} "
            f"({r['gap_503']}, {r['gap_503_retry_after']}) | {r['after_kill_other_failures']} | "
            f"{fmt(r['instances_503_after_kill'], 0)} | {listen} | {misses} | "
            f"{r['server_cpu_share']:.0%} |")
    lines += [
        "",
        "- engine failover: from the kill until the monitor reports the other node "
        "primary (pg_auto_failover's own time, the baseline); writes back: until the first "
        "change attempted after the kill was acknowledged;",
        "- p99 visible ≤ 1 s after: until the first commit of the first of five 1 s windows "
        "in a row whose commit→visible p99 (on both instances, every change seen) is within "
        "1 s; in brackets, the windows after those five that were over all the same;",
        "- stale answers: each changed product's three documents and the list pages "
        "holding them, asked of each instance directly once the queue was empty plus 3 s, "
        "against what materialize builds from the catalog;",
        "- cached reads failed: reads of hot documents never changed in the run (warmed "
        "before the kill) answered other than 200 after it; gap reads: those sent between "
        "the kill and writes back (503s, and how many carried Retry-After); other failed "
        "reads: connection errors and other statuses after the kill; the instances' own "
        "503s after the kill (their /metrics): answers nginx retried on the other instance;",
        "- miss rate: each instance's cache misses over lookups (its /metrics, the "
        "pollers' requests included) in the 10 s after its LISTEN connection came back, "
        "and in the 10 s before the kill.",
        "",
        "Commit→visible over each run (ms; changes acknowledged before the kill wait for "
        "the failover), writes whose connection broke without an answer (and how many of "
        "those the catalog holds: committed, not acknowledged), reads' latency through nginx "
        "over the run and between the kill and writes back, and the time the killed node "
        "took to rejoin as the standby after the run:",
        "",
        "| run | p50 | p99 | max | never seen | writes in doubt (committed) | read p99 ms: run (gap) | rejoin s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(result["rows"]):
        lines.append(f"| {i + 1} | {fmt(r['visible_p50_ms'], 0)} | {fmt(r['visible_p99_ms'], 0)} "
                     f"| {fmt(r['visible_max_ms'], 0)} | {r['never_seen']} | {r['in_doubt']} "
                     f"({r['in_doubt_committed']}) | {fmt(r['read_p99_ms'], 1)} "
                     f"({fmt(r['read_p99_gap_ms'], 1)}) | {fmt(r['rejoin_s'], 1)} |")
    lines += ["", "By `--missed-changes` (median over runs and instances):", "",
              "| mode | runs | miss rate 10 s after reconnect | miss rate before kill | cached reads failed |",
              "|---|---|---|---|---|"]
    for mode, m in result["by_mode"].items():
        lines.append(f"| {mode} | {m['runs']} | {fmt_rate(m['miss_rate_after_reconnect_median'])} "
                     f"| {fmt_rate(m['miss_rate_before_kill_median'])} | "
                     f"{m['cached_reads_failed']} |")
    lines += ["", "Goals:", ""]
    lines += report.goal_lines(result["goals"], number=lambda v: fmt(v, 1))
    loads = [r["loadavg_after"][0] for r in result["runs"]]
    lines += ["", f"Machine load (1-min load average after each run): "
              f"{', '.join(f'{x:.2f}' for x in loads)} on {s['cpus']} CPUs.", "",
              f"![timeline of each run]({name}.svg)", ""]
    return "\n".join(lines)


def chart(result):
    """Per run, against time: commit→visible p99 per second of commit (log scale, with
    the 1 s goal), reads answered other than 200 per second, and each instance's cache
    entries; the kill, the promotion and writes back marked."""
    runs = result["runs"]
    width, left, right, panel_h, gap = 900, 70, 30, 150, 60
    height = 85 + len(runs) * (panel_h + gap)
    seconds = result["settings"]["seconds"]
    plot_w = width - left - right
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif">',
           f'<rect width="{width}" height="{height}" fill="#fff"/>',
           f'<text x="{left}" y="20" font-size="13">failover — {result["date"]} — '
           f'{result["products"]:,} products</text>',
           f'<text x="{left}" y="38" font-size="11">commit→visible p99 per second of commit '
           f'(blue, log scale; goal 1 s dashed); reads answered other than 200 per second '
           f'(red bars);</text>',
           f'<text x="{left}" y="52" font-size="11">each instance\'s cache entries (grey, '
           f'scaled); shaded: from the kill until writes are acknowledged again</text>']
    def x_of(t):
        return left + plot_w * min(max(t, 0), seconds) / seconds

    lo, hi = math.log10(10), math.log10(30_000)
    for n, r in enumerate(runs):
        top = 85 + n * (panel_h + gap)
        bottom = top + panel_h

        def y_ms(ms):
            v = (math.log10(max(ms, 10)) - lo) / (hi - lo)
            return bottom - panel_h * min(v, 1)

        out.append(f'<text x="{left}" y="{top - 8}" font-size="12" font-weight="bold">run '
                   f'{n + 1}: --missed-changes {r["mode"]}, node {r["kill"]["killed_node"]} '
                   f'killed</text>')
        out.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{panel_h}" '
                   f'fill="none" stroke="#ccc"/>')
        for ms in (10, 100, 1000, 10_000):
            y = y_ms(ms)
            style = 'stroke="#d62728" stroke-dasharray="5,3"' if ms == 1000 else 'stroke="#eee"'
            out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
                       f'{style}/>')
            out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="10" '
                       f'text-anchor="end">{ms:,} ms</text>')
        for t in range(0, int(seconds) + 1, 10):
            out.append(f'<text x="{x_of(t):.1f}" y="{bottom + 14}" font-size="10" '
                       f'text-anchor="middle">{t} s</text>')
        kill = r["kill"]
        marks = [(kill["killed_s"], "kill", "#000"),
                 (kill["promoted_s"], "promoted", "#555")]
        back = r["writes"]["writes_back_after_kill_s"]
        if back is not None:
            marks.append((kill["killed_s"] + back, "writes back", "#2ca02c"))
        if back is not None:
            x0, x1 = x_of(kill["killed_s"]), x_of(kill["killed_s"] + back)
            out.append(f'<rect x="{x0:.1f}" y="{top}" width="{x1 - x0:.1f}" '
                       f'height="{panel_h}" fill="#fdd" opacity="0.5"/>')
        for i, (t, label, colour) in enumerate(marks):
            out.append(f'<line x1="{x_of(t):.1f}" x2="{x_of(t):.1f}" y1="{top}" '
                       f'y2="{bottom}" stroke="{colour}" stroke-dasharray="3,3"/>')
            out.append(f'<text x="{x_of(t) + 3:.1f}" y="{top + 12 + 11 * i}" font-size="10" '
                       f'fill="{colour}">{label}</text>')
        # Cache entries of each instance, scaled to the panel.
        peak = max([s[3] or 0 for i in r["instances"] for s in i["samples"]] + [1])
        for inst in r["instances"]:
            points = " ".join(f"{x_of(s[0]):.1f},{bottom - panel_h * (s[3] or 0) / peak:.1f}"
                              for s in inst["samples"])
            out.append(f'<polyline points="{points}" fill="none" stroke="#bbb"/>')
        # Reads not 200 per second, as bars scaled to the busiest second.
        windows = r["reads"]["windows"]
        worst = max([w["count"] - w["ok"] for w in windows] + [1])
        for w in windows:
            bad = w["count"] - w["ok"]
            if bad:
                h = panel_h * 0.5 * bad / worst
                out.append(f'<rect x="{x_of(w["t_s"]):.1f}" y="{bottom - h:.1f}" '
                           f'width="{plot_w / seconds - 1:.1f}" height="{h:.1f}" '
                           f'fill="#d62728" opacity="0.6"><title>{bad} reads not 200</title>'
                           f'</rect>')
        # One line per stretch of seconds with commits: none is drawn across the gap.
        stretches, last = [], None
        for w in r["visibility"]["windows"]:
            if w["p99_ms"] is None:
                continue
            if last is None or w["t_s"] != last + 1:
                stretches.append([])
            stretches[-1].append(f"{x_of(w['t_s'] + 0.5):.1f},{y_ms(w['p99_ms']):.1f}")
            last = w["t_s"]
        for points in stretches:
            out.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="#1f77b4" '
                       f'stroke-width="1.5"/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
