"""compress: the storefront mix answered to clients that do not take gzip and to
browsers. Body bytes per answer in each coding, the cache's weight with and without the
gzip forms, cache-hit throughput of each kind of client beside bare hyper sending
bodies of the same mean sizes, and nginx in front of one instance either compressing
every answer itself (the instance run with --compression off) or passing the
instance's gzip through, beside the instance driven directly; all driven by wrk. Then
the peak RSS of a small cache filled by browsers."""

import json
import os
import random
import statistics
import sys

from .. import report
from ..report import paired_ratio
from ..catalog import build_mix, every_document, write_paths
from ..load import BROWSER_ACCEPT, answer_bodies, wrk
from ..machine import MIB, log
from ..runner import Scenario, Target, run_target
from ..servers import (PORTS, Cluster, ClusterInstance, bare_hyper, cache_weight, service,
                       stop_clusters_left)
from .fill import fill_target

# bench/cluster runs nginx on port P and its one instance on P+1.
CLUSTER_PORTS = {"compressing": 3110, "passing": 3120}
# The cache filled after the rounds: small, so that browsers fill it within the run.
FILL_CACHE_BYTES = 64 * MIB
FILL_SECONDS = 40

MEDIAN_KEYS = ("rps", "p50_ms", "p90_ms", "p99_ms", "max_ms", "server_cpu_us_per_request",
               "server_peak_rss_mib", "cache_hit_rate", "errors", "non_2xx",
               "bytes_per_answer", "nginx_cpu_us_per_request")


def kind_of(path):
    return "styles" if path.endswith("/styles") else (
        "related" if path.endswith("/related") else "product")


def bytes_per_answer(mix, answers):
    """Mean body bytes per answer over the mix (its repeats included), overall and per
    kind of document, and the share of answers that came compressed."""
    by_kind = {}
    for path in mix.paths:
        by_kind.setdefault(kind_of(path), []).append(answers[path][0])
    compressed = sum(answers[p][1] != "identity" for p in mix.paths) / len(mix.paths)
    return {
        "all": statistics.fmean(answers[p][0] for p in mix.paths),
        **{kind: statistics.fmean(sizes) for kind, sizes in sorted(by_kind.items())},
        "compressed_share": compressed,
    }


class Compress(Scenario):
    name = "compress"

    def clear(self, directory):
        stop_clusters_left(directory, CLUSTER_PORTS)
        super().clear(directory)
        # nginx workers run unprivileged when started as root: they must reach their prefix.
        os.chmod(directory, 0o755)

    def prepare(self, bench):
        args, url, directory, cpu = bench.args, bench.url, bench.directory, bench.cpus.server
        self.mix = build_mix("storefront", args.products, args.sample, random.Random(args.seed))
        self.paths_file = write_paths(self.mix.paths, directory)
        env = {"ATELIER_LOG": "warn", "ATELIER_CACHE_BYTES": str(args.cache_bytes),
               "ATELIER_POOL_SIZE": str(args.pool_size), "ATELIER_BIN": args.atelier}
        bench.start("service", service(args, url, args.cache_bytes, directory, cpu))
        # Bytes per answer, from the service itself and from nginx compressing.
        identity = answer_bodies(PORTS["service"], self.mix.paths, None)
        gzip = answer_bodies(PORTS["service"], self.mix.paths, BROWSER_ACCEPT)
        bench.start("compressing", Cluster("compressing", CLUSTER_PORTS["compressing"],
                                           directory, url,
                                           dict(env, ATELIER_COMPRESSION="off"), cpu))
        bench.start("passing", Cluster("passing", CLUSTER_PORTS["passing"], directory, url,
                                       env, cpu))
        bench.servers["direct"] = ClusterInstance(bench.servers["passing"])
        nginx_gzip = answer_bodies(CLUSTER_PORTS["compressing"], self.mix.paths,
                                   BROWSER_ACCEPT)
        passed = answer_bodies(CLUSTER_PORTS["passing"], self.mix.paths, BROWSER_ACCEPT)
        if passed != gzip:
            sys.exit("nginx passing through answered other bytes than the service")
        # Both instances now hold every document of the mix: the cache's weight with the
        # gzip forms and without them.
        self.memory = {name: cache_weight(CLUSTER_PORTS[name] + 1) for name in CLUSTER_PORTS}
        self.sizes = {
            "identity": bytes_per_answer(self.mix, identity),
            "gzip, once per document (service)": bytes_per_answer(self.mix, gzip),
            "gzip level 1 per request (nginx)": bytes_per_answer(self.mix, nginx_gzip),
        }
        log(f"compress: body bytes per answer {json.dumps(self.sizes)}")
        self.identity_size = round(self.sizes["identity"]["all"])
        self.gzip_size = round(self.sizes["gzip, once per document (service)"]["all"])
        for name, port, size in (("bare-identity", PORTS["bare"], self.identity_size),
                                 ("bare-gzip", PORTS["bare-gzip"], self.gzip_size)):
            bench.start(name, bare_hyper(args, name, port, size, directory, cpu))

    def targets(self, bench):
        args = bench.args

        def drive(accept):
            return lambda server, seconds: wrk(server.port, self.paths_file, seconds,
                                               args.connections, bench.directory, accept,
                                               cpu=bench.cpus.driver)

        return [
            Target(target, drive(accept), server=server, reads_cache=server == "service",
                   warm_up=True)
            for target, (server, accept) in {
                "service/identity": ("service", None),
                "service/gzip": ("service", BROWSER_ACCEPT),
                f"bare/identity size ({self.identity_size} B)": ("bare-identity", None),
                f"bare/gzip size ({self.gzip_size} B)": ("bare-gzip", None),
                "instance direct/gzip": ("direct", BROWSER_ACCEPT),
                "nginx compressing/gzip": ("compressing", BROWSER_ACCEPT),
                "nginx passing through/gzip": ("passing", BROWSER_ACCEPT),
            }.items()
        ]

    def after(self, bench, runs):
        paths_file, _ = every_document(bench.args.products, bench.args.seed, bench.directory)
        self.memory["full"] = run_target(
            bench, fill_target(bench, "compress", paths_file, FILL_CACHE_BYTES, BROWSER_ACCEPT),
            FILL_SECONDS)

    def result(self, bench, runs):
        args, sizes, memory = bench.args, self.sizes, self.memory
        medians = report.medians(runs, MEDIAN_KEYS)
        bare_identity = next(t for t in runs if t.startswith("bare/identity"))
        bare_gzip = next(t for t in runs if t.startswith("bare/gzip"))
        pairs = [
            ("service/gzip", "service/identity"),
            ("service/identity", bare_identity),
            ("service/gzip", bare_gzip),
            ("nginx passing through/gzip", "nginx compressing/gzip"),
            ("nginx compressing/gzip", "instance direct/gzip"),
            ("nginx passing through/gzip", "instance direct/gzip"),
        ]
        ratios = {}
        for a, b in pairs:
            ratios[f"rps {a} / {b}"] = paired_ratio(runs, a, b, "rps")
            ratios[f"cpu_per_request {a} / {b}"] = paired_ratio(
                runs, a, b, "server_cpu_us_per_request")
        ratios["nginx cpu_per_request nginx passing through/gzip / nginx compressing/gzip"] = (
            paired_ratio(runs, "nginx passing through/gzip", "nginx compressing/gzip",
                         "nginx_cpu_us_per_request"))
        identity = sizes["identity"]["all"]
        gzip_share = sizes["gzip, once per document (service)"]["all"] / identity
        hits = ratios["rps service/gzip / service/identity"]
        hit_capacity = 1 / ratios["cpu_per_request service/gzip / service/identity"]
        nginx = ratios["rps nginx passing through/gzip / nginx compressing/gzip"]
        capacity = 1 / ratios[
            "cpu_per_request nginx passing through/gzip / nginx compressing/gzip"]
        errors = sum(r["errors"] + r.get("non_2xx", 0) for rs in runs.values() for r in rs)
        full = memory["full"]
        rss = full["peak_rss_mib"]
        budget = full["cache_bytes"] / MIB + 64
        goals = {
            "gzip bytes <= 0.25 x identity over the mix": {"value": gzip_share,
                                                           "met": gzip_share <= 0.25},
            "gzip cache hits >= 0.95 x identity cache hits (rps)": {"value": hits,
                                                                    "met": hits >= 0.95},
            "the same in requests per CPU-second of the service (1 / CPU per request)": {
                "value": hit_capacity, "met": hit_capacity >= 0.95},
            "nginx -> 1 instance, gzip clients: passing through >= 1.5 x compressing": {
                "value": nginx, "met": nginx >= 1.5},
            "the same in requests per CPU-second of nginx and its instance (1 / CPU per "
            "request), what one core of their own would serve": {
                "value": capacity, "met": capacity >= 1.5},
            "zero errors": {"value": errors, "met": errors == 0},
            "rss <= cache budget + 64 MiB, cache full": {"value": rss, "limit": budget,
                                                         "met": rss <= budget},
        }
        return {
            **report.header("compress", args.products),
            "settings": {
                "rounds": args.rounds, "seconds_per_run": args.duration,
                "connections": args.connections, "warmup_s": args.warmup,
                "cache_bytes": args.cache_bytes, "pool_size": args.pool_size,
                "server_cpu": bench.cpus.server, "driver_cpu": bench.cpus.driver,
                "distinct_documents": len(set(self.mix.paths)),
                "url_list_lines": len(self.mix.paths),
                "accept_encoding": BROWSER_ACCEPT, "cpus": os.cpu_count(),
                "kernel": os.uname().release,
            },
            "bytes_per_answer": sizes,
            "cache": {"with gzip forms": memory["passing"],
                      "stored bytes only (--compression off)": memory["compressing"]},
            "cache_full": full,
            "medians": medians,
            "ratios": ratios,
            "goals": goals,
            "runs": runs,
        }

    def markdown(self, result, name):
        fmt = report.fmt
        s = result["settings"]
        sizes = result["bytes_per_answer"]
        identity = sizes["identity"]["all"]
        lines = [
            f"# compress — {result['date']}",
            "",
            f"{result['products']:,} products; the storefront mix "
            f"({s['distinct_documents']:,} distinct documents); {s['rounds']} rounds of "
            f"{s['seconds_per_run']} s per target, alternated; wrk at {s['connections']} "
            f"connections on CPU {s['driver_cpu']}; servers (nginx and its instance too) on "
            f"CPU {s['server_cpu']}; cache {s['cache_bytes'] / MIB:.0f} MiB. gzip clients "
            f"send `Accept-Encoding: {s['accept_encoding']}`.",
            "",
            "Body bytes per answer over the mix (its repeats included):",
            "",
            "| coding | all | vs identity | product | styles | related | answers compressed |",
            "|---|---|---|---|---|---|---|",
        ]
        for coding, size in sizes.items():
            lines.append(
                f"| {coding} | {size['all']:,.0f} | {size['all'] / identity:.3f} | "
                f"{size['product']:,.0f} | {size['styles']:,.0f} | {size['related']:,.0f} | "
                f"{size['compressed_share']:.2f} |")
        cache = result["cache"]
        plain = cache["stored bytes only (--compression off)"]
        lines += ["", "The cache holding every document of the mix (from `/metrics`):", "",
                  "| documents kept | entries | bytes | bytes per entry | vs stored bytes only |",
                  "|---|---|---|---|---|"]
        for kept, held in cache.items():
            lines.append(f"| {kept} | {held['entries']:,} | {held['bytes']:,} | "
                         f"{held['bytes'] / max(held['entries'], 1):,.0f} | "
                         f"{held['bytes'] / max(plain['bytes'], 1):.3f} |")
        full = result["cache_full"]
        lines += [
            "",
            f"With the cache full: a service with a {full['cache_bytes'] / MIB:.0f} MiB "
            f"budget, asked by gzip clients for every document of the catalog in turn for "
            f"{FILL_SECONDS} s ({full['requests']:,} requests, {full['errors']} errors, "
            f"{full['non_2xx']} not 2xx), held "
            f"{full['entries']:,} entries weighing {full['bytes']:,} bytes, at a peak RSS of "
            f"{full['peak_rss_mib']:.1f} MiB.",
            "",
            "Medians over rounds (bytes per answer: on the wire, headers included, from wrk):",
            "",
            "| target | RPS | p50 ms | p90 ms | p99 ms | server CPU-µs/req | of which nginx | "
            "bytes/answer | peak RSS MiB | cache hit rate | errors | non-2xx |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for target, m in result["medians"].items():
            lines.append(
                f"| {target} | {fmt(m.get('rps'), 0)} | {fmt(m.get('p50_ms'))} | "
                f"{fmt(m.get('p90_ms'))} | {fmt(m.get('p99_ms'))} | "
                f"{fmt(m.get('server_cpu_us_per_request'), 1)} | "
                f"{fmt(m.get('nginx_cpu_us_per_request'), 1)} | "
                f"{fmt(m.get('bytes_per_answer'), 0)} | {fmt(m.get('server_peak_rss_mib'), 1)} | "
                f"{fmt(m.get('cache_hit_rate'), 3)} | {fmt(m.get('errors'), 0)} | "
                f"{fmt(m.get('non_2xx'), 0)} |")
        lines += report.ratio_and_goal_lines(result)
        lines += ["", *report.load_lines(result), "",
                  f"![throughput and latency]({name}.svg)", ""]
        return "\n".join(lines)
