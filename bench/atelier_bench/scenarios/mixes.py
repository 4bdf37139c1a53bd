"""hot, uniform, list, storefront, cold, t2micro: one URL mix driven at the service and
its baselines (bare hyper, nginx serving the same documents, pgbench running the same
queries) in turn, round by round, judged by medians and paired ratios."""

import os
import random
import sys

from .. import report
from ..report import paired_ratio
from ..catalog import build_mix, export_documents, prewarm, write_files
from ..load import BROWSER_ACCEPT, oha, pgbench, wrk
from ..machine import MIB, log
from ..runner import Scenario, Target
from ..servers import PORTS, bare_hyper, nginx_server, service

# What a 1 GiB machine leaves the server once the kernel, sshd and a small PostgreSQL
# (shared_buffers 128 MiB plus backends) have taken theirs.
T2_MICRO_SERVER_BYTES = 640 * MIB

MEDIAN_KEYS = ("rps", "p50_ms", "p90_ms", "p99_ms", "max_ms", "server_cpu_us_per_request",
               "server_peak_rss_mib", "cache_hit_rate", "errors", "non_2xx", "mean_ms")


class MixScenario(Scenario):
    """The service beside its baselines on the URL mix the scenario is named after
    (cold and t2micro: the storefront's)."""

    def __init__(self, name):
        self.name = name
        self.cold = name == "cold"
        self.memory_limit = T2_MICRO_SERVER_BYTES if name == "t2micro" else None

    def seconds(self, args):
        return args.cold_seconds if self.cold else args.duration

    def cache_bytes(self, args):
        # uniform's is small enough that almost every lookup goes to the database.
        return args.small_cache_bytes if self.name == "uniform" else args.cache_bytes

    def baselines(self):
        if self.cold or self.name == "t2micro":
            return ["bare"]
        return ["bare", "nginx", "pgbench"]

    def drivers(self, args):
        if self.name == "uniform":
            # The database path for both kinds of client: identity (wrk sends no
            # Accept-Encoding) and browsers; both read the stored gzip forms.
            return ["oha", "wrk", "wrk-gzip"]
        return ["oha"] + (["wrk"] if self.name in args.wrk_scenarios else [])

    def prepare(self, bench):
        args = bench.args
        self.mix = build_mix(self.name, args.products, args.sample, random.Random(args.seed))
        export_documents(self.mix, bench.url)
        missing = [p for p in set(self.mix.paths) if p not in self.mix.documents]
        if missing:
            sys.exit(f"{len(missing)} paths have no document, e.g. {missing[:3]}")
        self.docroot = write_files(self.mix, bench.directory)
        self.paths_file = os.path.join(bench.directory, "paths.txt")
        self.body_size = self.mix.mean_size()
        log(f"{self.name}: {len(self.mix.paths)} requests over {len(self.mix.documents)} "
            f"documents, mean body {self.body_size} B")
        if "pgbench" in self.baselines():
            prewarm(bench.url)
        if not self.cold:
            bench.start("service", self.service_server(bench))
            bench.start("bare", self.bare_server(bench))
            if "nginx" in self.baselines():
                bench.start("nginx", nginx_server(self.docroot, bench.directory,
                                                  bench.cpus.server))

    def service_server(self, bench):
        return service(bench.args, bench.url, self.cache_bytes(bench.args), bench.directory,
                       bench.cpus.server, memory_limit=self.memory_limit)

    def bare_server(self, bench):
        return bare_hyper(bench.args, "bare", PORTS["bare"], self.body_size, bench.directory,
                          bench.cpus.server, memory_limit=self.memory_limit)

    def targets(self, bench):
        args, cpu = bench.args, bench.cpus.driver

        def http(driver):
            """Runs of `driver` over the mix's URL list."""

            def drive(server, seconds):
                if driver == "oha":
                    return oha(server.port, self.paths_file, seconds, args.connections,
                               bench.directory, cpu=cpu)
                accept = BROWSER_ACCEPT if driver == "wrk-gzip" else None
                return wrk(server.port, self.paths_file, seconds, args.connections,
                           bench.directory, accept, cpu=cpu)

            return drive

        fresh = {"service": lambda: self.service_server(bench),
                 "bare": lambda: self.bare_server(bench)}
        targets = []
        for server in ["service"] + [b for b in self.baselines() if b != "pgbench"]:
            for driver in self.drivers(args):
                if driver == "wrk-gzip" and server != "service":
                    continue
                targets.append(Target(
                    f"{server}/{driver}", http(driver),
                    server=None if self.cold else server,
                    fresh_server=fresh[server] if self.cold else None,
                    reads_cache=server == "service",
                    # Each server once, with oha, before the first round.
                    warm_up=driver == "oha" and not self.cold))
        if "pgbench" in self.baselines():
            scripts = {"pgbench": self.mix.pgbench_scripts}
            if self.mix.form_scripts:
                scripts["pgbench-forms"] = self.mix.form_scripts
            for name, chosen in scripts.items():
                targets.append(Target(
                    name,
                    lambda server, seconds, chosen=chosen: pgbench(
                        bench.url, bench.directory, chosen, seconds, args.pgbench_clients,
                        cpu=cpu),
                    measured=False))
        return targets

    def result(self, bench, runs):
        args = bench.args
        cache_bytes = self.cache_bytes(args)
        medians = report.medians(runs, MEDIAN_KEYS)
        ratios = {}
        for driver in ("oha", "wrk"):
            service = f"service/{driver}"
            for baseline in ("bare", "nginx"):
                other = f"{baseline}/{driver}"
                if service in runs and other in runs:
                    ratios[f"rps {service} / {other}"] = paired_ratio(runs, service, other, "rps")
                    ratios[f"cpu_per_request {service} / {other}"] = paired_ratio(
                        runs, service, other, "server_cpu_us_per_request")
            for baseline in ("pgbench", "pgbench-forms"):
                if service in runs and baseline in runs:
                    ratios[f"rps {service} / {baseline}"] = paired_ratio(runs, service,
                                                                         baseline, "rps")
        total_errors = sum(r["errors"] + r.get("non_2xx", 0)
                           for t, rs in runs.items() if t.startswith("service") for r in rs)
        goals = {}
        if self.name == "hot":
            best = "service/wrk" if "service/wrk" in runs else "service/oha"
            base = "bare/wrk" if "bare/wrk" in runs else "bare/oha"
            rps_ratio = paired_ratio(runs, best, base, "rps")
            cpu_ratio = paired_ratio(runs, best, base, "server_cpu_us_per_request")
            goals["rps >= 0.90 x bare hyper"] = {"value": rps_ratio, "met": rps_ratio >= 0.90,
                                                 "measured_with": f"{best} vs {base}"}
            goals["cpu/request <= 1.2 x bare hyper"] = {"value": cpu_ratio,
                                                       "met": cpu_ratio <= 1.2,
                                                       "measured_with": f"{best} vs {base}"}
            if args.connections == 64:
                p99 = medians[best]["p99_ms"]
                goals["p99 <= 3 ms at 64 connections"] = {"value": p99, "met": p99 <= 3.0,
                                                          "measured_with": best}
        if self.name == "uniform":
            ratio = ratios.get("rps service/oha / pgbench")
            goals["rps >= 0.8 x pgbench"] = {"value": ratio,
                                             "met": ratio is not None and ratio >= 0.8}
            if "service/wrk-gzip" in runs:
                for baseline in ("pgbench", "pgbench-forms"):
                    if baseline in runs:
                        ratios[f"rps service/wrk-gzip / {baseline}"] = paired_ratio(
                            runs, "service/wrk-gzip", baseline, "rps")
                ratios["rps service/wrk-gzip / service/wrk"] = paired_ratio(
                    runs, "service/wrk-gzip", "service/wrk", "rps")
                # Identity clients on the database path: at least pgbench on the same
                # lookups on a small catalog, 0.9 of it at full scale.
                floor = 1.0 if args.products <= 100_000 else 0.9
                ratio = ratios["rps service/wrk / pgbench"]
                goals[f"identity clients (wrk) >= {floor} x pgbench"] = {
                    "value": ratio, "met": ratio >= floor}
                ratio = ratios["rps service/wrk-gzip / service/wrk"]
                goals["gzip clients >= 0.8 x identity clients"] = {"value": ratio,
                                                                    "met": ratio >= 0.8}
        goals["zero errors"] = {"value": total_errors, "met": total_errors == 0}
        rss = medians.get("service/oha", {}).get("server_peak_rss_mib")
        if rss is not None:
            budget = cache_bytes / MIB + 64
            goals["rss <= cache budget + 64 MiB"] = {"value": rss, "limit": budget,
                                                     "met": rss <= budget}
        return {
            **report.header(self.name, args.products),
            "settings": {
                "rounds": args.rounds, "seconds_per_run": self.seconds(args),
                "connections": args.connections, "warmup_s": args.warmup,
                "cache_bytes": cache_bytes, "pool_size": args.pool_size,
                "pgbench_clients": args.pgbench_clients,
                "server_cpu": bench.cpus.server, "driver_cpu": bench.cpus.driver,
                "memory_limit_bytes": self.memory_limit,
                "distinct_documents": len(self.mix.documents),
                "url_list_lines": len(self.mix.paths), "mean_body_bytes": self.body_size,
                "cpus": os.cpu_count(), "kernel": os.uname().release,
            },
            "medians": medians,
            "ratios": ratios,
            "goals": goals,
            "extra": {"service_ready_after_s": bench.ready_after.get("service", [])},
            "runs": runs,
        }

    def markdown(self, result, name):
        fmt = report.fmt
        s = result["settings"]
        lines = [
            f"# {result['scenario']} — {result['date']}",
            "",
            f"{result['products']:,} products; {s['rounds']} rounds of {s['seconds_per_run']} s "
            f"per target, alternated; {s['connections']} connections; server on CPU "
            f"{s['server_cpu']}, load driver on CPU {s['driver_cpu']}; cache "
            f"{s['cache_bytes'] / MIB:.0f} MiB; pool {s['pool_size']}; "
            f"{s['distinct_documents']:,} distinct documents, mean body "
            f"{s['mean_body_bytes']:,} B"
            + (f"; server memory limit {s['memory_limit_bytes'] / MIB:.0f} MiB (memory cgroup)"
               if s["memory_limit_bytes"] else "")
            + ".",
            "",
            "Medians over rounds:",
            "",
            "| target | RPS | p50 ms | p90 ms | p99 ms | max ms | server CPU-µs/req | peak RSS MiB | cache hit rate | errors | non-2xx |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for target, m in result["medians"].items():
            if target.startswith("pgbench"):
                lines.append(f"| {target} ({s['pgbench_clients']} clients) | "
                             f"{fmt(m.get('rps'), 0)} | mean {fmt(m.get('mean_ms'))} | | | | | "
                             f"| | {fmt(m.get('errors'), 0)} | |")
                continue
            lines.append(
                f"| {target} | {fmt(m.get('rps'), 0)} | {fmt(m.get('p50_ms'))} | "
                f"{fmt(m.get('p90_ms'))} | {fmt(m.get('p99_ms'))} | {fmt(m.get('max_ms'))} | "
                f"{fmt(m.get('server_cpu_us_per_request'), 1)} | "
                f"{fmt(m.get('server_peak_rss_mib'), 1)} | {fmt(m.get('cache_hit_rate'), 3)} | "
                f"{fmt(m.get('errors'), 0)} | {fmt(m.get('non_2xx'), 0)} |"
            )
        lines += report.ratio_and_goal_lines(result)
        if result["extra"].get("service_ready_after_s"):
            ready = ", ".join(f"{x:.2f}" for x in result["extra"]["service_ready_after_s"])
            lines += ["", f"Service ready (/readyz 200) after start, per round: {ready} s."]
        lines += ["", *report.load_lines(result), "",
                  f"![throughput and latency]({name}.svg)", ""]
        return "\n".join(lines)
