"""fill: the peak RSS with the cache budget full, a service asked for every document of
the catalog in a random order, far more than the budget holds; once with clients that
do not take gzip and once with browsers. compress measures the same with a small
budget."""

from .. import report
from ..catalog import every_document
from ..load import BROWSER_ACCEPT, wrk
from ..machine import MIB, log
from ..runner import Scenario, Target
from ..servers import cache_weight, service


def fill_target(bench, name, paths_file, cache_bytes, accept):
    """One run of a fresh service with a budget of `cache_bytes`, asked for the
    documents of `paths_file` in turn with `Accept-Encoding: accept`: the requests, the
    entries and bytes its cache holds at the end, and its peak RSS."""
    args = bench.args

    def drive(server, seconds):
        server.reset_peak_rss()
        result = wrk(server.port, paths_file, seconds, args.connections, bench.directory,
                     accept, cpu=bench.cpus.driver)
        held = cache_weight(server.port)
        peak = server.peak_rss() / MIB
        log(f"{name}: cache full: {held}, peak RSS {peak:.1f} MiB")
        return {"cache_bytes": cache_bytes, "requests": result["requests"],
                "rps": result["rps"], "errors": result["errors"],
                "non_2xx": result["non_2xx"], "entries": held["entries"],
                "bytes": held["bytes"], "peak_rss_mib": peak}

    return Target(
        name, drive, measured=False,
        fresh_server=lambda: service(args, bench.url, cache_bytes, bench.directory,
                                     bench.cpus.server, name="fill"))


class Fill(Scenario):
    name = "fill"

    def rounds(self, args):
        return 1

    def seconds(self, args):
        return args.fill_seconds

    def prepare(self, bench):
        self.paths_file, self.documents = every_document(bench.args.products,
                                                         bench.args.seed, bench.directory)

    def targets(self, bench):
        return [fill_target(bench, clients, self.paths_file, bench.args.cache_bytes, accept)
                for clients, accept in (("identity", None), ("gzip", BROWSER_ACCEPT))]

    def result(self, bench, runs):
        args = bench.args
        runs = {clients: results[0] for clients, results in runs.items()}
        budget = args.cache_bytes / MIB + 64
        return {
            **report.header("fill", args.products),
            "settings": {"cache_bytes": args.cache_bytes, "seconds": args.fill_seconds,
                         "connections": args.connections, "documents": self.documents},
            "runs": runs,
            "goals": {f"rss <= cache budget + 64 MiB ({clients})": {
                "value": run["peak_rss_mib"], "limit": budget,
                "met": run["peak_rss_mib"] <= budget and run["errors"] == 0}
                for clients, run in runs.items()},
        }

    def chart(self, result, json_path, svg_path):
        return False

    def markdown(self, result, name):
        s = result["settings"]
        lines = [
            f"# fill — {result['date']}",
            "",
            f"{result['products']:,} products; every one of their {s['documents']:,} "
            f"documents asked for in a random order by wrk for {s['seconds']} s at "
            f"{s['connections']} connections; cache budget {s['cache_bytes'] / MIB:.0f} MiB.",
            "",
            "| clients | requests | entries held | bytes held (MiB) | peak RSS (MiB) | errors |",
            "|---|---|---|---|---|---|",
        ]
        for clients, run in result["runs"].items():
            lines.append(f"| {clients} | {run['requests']:,} | {run['entries']:,} | "
                         f"{run['bytes'] / MIB:.1f} | {run['peak_rss_mib']:.1f} | "
                         f"{run['errors'] + run['non_2xx']} |")
        lines += ["", "Goals:", ""]
        for goal_name, goal in result["goals"].items():
            mark = "met" if goal["met"] else "MISSED"
            lines.append(f"- {goal_name}: {goal['value']:.1f} (limit {goal['limit']:.1f}) — "
                         f"{mark}")
        return "\n".join(lines) + "\n"
