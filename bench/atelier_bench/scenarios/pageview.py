"""pageview: a storefront's product page over Zipf-distributed product ids, asked for
two ways in the same run: as the 3 + 2N requests a storefront makes today (the
product, its styles and its related list, then each related product and its styles)
and as one `/products/:id/page`. Both directly at one instance and through nginx with
nginx and that instance on one core (bench/cluster: the t2.micro layout's ceiling), by
browsers (`Accept-Encoding: gzip, deflate, br, zstd`), driven by bench/pageview, which
sends a page view's requests one after another on one connection and times the whole
page view. Per way: page views/s, latency per page view, the instance's and nginx's CPU
per page view, body bytes per page view in each coding, and errors."""

import json
import os
import random
import statistics
import sys
import zlib

from .. import report
from ..report import paired_ratio
from ..catalog import product_pages, related_lists, write_paths, zipf_ids
from ..load import BROWSER_ACCEPT, answer_bodies, answers, page_views
from ..machine import MIB, log
from ..runner import Scenario, Target
from ..servers import Cluster, ClusterInstance, stop_clusters_left

# bench/cluster runs nginx on this port and its one instance on the next.
CLUSTER_PORT = 3130
# The two ways of asking for a product page: today's requests, and the one request.
WAYS = ("3+2N", "page")
# Where they go: to the instance directly, or to nginx in front of it.
LAYOUTS = ("direct", "nginx")

MEDIAN_KEYS = ("rps", "requests_per_s", "requests_per_page_view", "p50_ms", "p90_ms",
               "p99_ms", "max_ms", "server_cpu_us_per_page_view",
               "instance_cpu_us_per_page_view", "nginx_cpu_us_per_page_view",
               "bytes_per_page_view", "server_cpu_share", "driver_cpu_share",
               "cache_hit_rate", "errors", "non_2xx", "failed_page_views")
# Ratios of a page to the 3 + 2N requests, per layout: their names and keys.
RATIOS = {"page views/s": "rps", "p50 per page view": "p50_ms",
          "p99 per page view": "p99_ms", "instance CPU per page view":
          "instance_cpu_us_per_page_view", "wire bytes per page view": "bytes_per_page_view"}


def body_bytes(views, sizes):
    """Mean body bytes per page view over the list (its repeats included): its answers'
    bodies together."""
    return statistics.fmean(sum(sizes[path] for path in view) for view in views)


def page_sizes(port, pages, related):
    """Body bytes of each distinct page to clients without gzip and to browsers, after
    checking each: the gzip answer inflates to the identity one, whose entries are the
    product's related list as the catalog holds it."""
    plain = {path: body for path, body, _ in answers(port, pages, None)}
    gzip = {}
    for path, body, coding in answers(port, pages, BROWSER_ACCEPT):
        if coding != "gzip" or zlib.decompress(body, 16 + zlib.MAX_WBITS) != plain[path]:
            sys.exit(f"{path}: the gzip answer does not inflate to the identity one")
        product = int(path.split("/")[2])
        listed = [entry["id"] for entry in json.loads(plain[path])["related"]]
        if listed != related[product]:
            sys.exit(f"{path} lists {listed}, the catalog {related[product]}")
        gzip[path] = len(body)
    return {"identity": {path: len(body) for path, body in plain.items()}, "gzip": gzip}


def per_page_view(run):
    """Adds a run's CPU per page view, of the server measured and of its parts (the
    instance, nginx): its CPU per request answered times the requests of a page view
    counted, so that the requests of the page views cut off at the run's end do not
    count against the others."""
    requests = run["requests_per_page_view"]
    run["server_cpu_us_per_page_view"] = run["server_cpu_us_per_request"] * requests
    nginx = run.get("nginx_cpu_us_per_request")
    if nginx is not None:
        run["nginx_cpu_us_per_page_view"] = nginx * requests
    run["instance_cpu_us_per_page_view"] = (run["server_cpu_us_per_page_view"]
                                            - run.get("nginx_cpu_us_per_page_view", 0))
    # Below 1, the server's core also ran other work, or waited for the driver: its page
    # views/s then say less than its CPU per page view.
    run["server_cpu_share"] = run["rps"] * run["server_cpu_us_per_page_view"] / 1e6


class PageView(Scenario):
    name = "pageview"

    def clear(self, directory):
        stop_clusters_left(directory, [self.name])
        super().clear(directory)
        # nginx workers run unprivileged when started as root: they must reach their prefix.
        os.chmod(directory, 0o755)

    def prepare(self, bench):
        args, url, directory = bench.args, bench.url, bench.directory
        ids = zipf_ids(args.products, args.sample, random.Random(args.seed))
        related, named = related_lists(url, sorted(set(ids)))
        today, page = product_pages(ids, related, named)
        self.views = {"3+2N": today, "page": page}
        self.files = {way: write_paths([" ".join(view) for view in views], directory,
                                       f"pages-{way}.txt")
                      for way, views in self.views.items()}
        self.list = {
            "page_views": len(ids), "distinct_products": len(set(ids)),
            "related_per_page_view": statistics.fmean(len(related[i]) for i in ids),
            "requests_per_page_view_3+2N": statistics.fmean(len(view) for view in today),
            "related_naming_no_product": sum(r not in named for i in ids for r in related[i]),
        }
        log(f"pageview: {json.dumps(self.list)}")
        env = {"ATELIER_LOG": "warn", "ATELIER_CACHE_BYTES": str(args.cache_bytes),
               "ATELIER_POOL_SIZE": str(args.pool_size),
               "ATELIER_COMPRESSION": args.compression, "ATELIER_BIN": args.atelier}
        cluster = bench.start("nginx", Cluster(self.name, CLUSTER_PORT, directory, url, env,
                                               bench.cpus.server))
        bench.servers["direct"] = ClusterInstance(cluster)
        instance = CLUSTER_PORT + 1
        # Body bytes per page view in each coding, from the instance; nginx must pass
        # the browsers' answers through as they are.
        paths = {path for view in today for path in view}
        pages = {view[0] for view in page}
        sizes = {"3+2N": {"identity": {}, "gzip": {}}, "page": page_sizes(instance, pages,
                                                                          related)}
        for coding, accept in (("identity", None), ("gzip", BROWSER_ACCEPT)):
            answered = answer_bodies(instance, paths, accept)
            sizes["3+2N"][coding] = {path: size for path, (size, _) in answered.items()}
        for way, sent in (("3+2N", paths), ("page", pages)):
            passed = answer_bodies(CLUSTER_PORT, sent, BROWSER_ACCEPT)
            if {path: size for path, (size, _) in passed.items()} != sizes[way]["gzip"]:
                sys.exit(f"nginx answered other bytes than the instance ({way})")
        self.bytes = {way: {coding: body_bytes(self.views[way], sizes[way][coding])
                            for coding in ("identity", "gzip")}
                      for way in WAYS}
        log(f"pageview: body bytes per page view {json.dumps(self.bytes)}")

    def targets(self, bench):
        args = bench.args

        def drive(way):
            return lambda server, seconds: page_views(
                args.pageview, server.port, self.files[way], seconds, args.connections,
                BROWSER_ACCEPT, cpu=bench.cpus.driver)

        # nginx forbids /metrics: the cache's counters are read on the instance's port.
        return [Target(f"{layout}/{way}", drive(way), server=layout,
                       reads_cache=layout == "direct", warm_up=True)
                for layout in LAYOUTS for way in WAYS]

    def result(self, bench, runs):
        args = bench.args
        for results in runs.values():
            for run in results:
                per_page_view(run)
        medians = report.medians(runs, MEDIAN_KEYS)
        ratios = {}
        for layout in LAYOUTS:
            page, today = f"{layout}/page", f"{layout}/3+2N"
            for label, key in RATIOS.items():
                ratios[f"{label} {page} / {today}"] = paired_ratio(runs, page, today, key)
        for label, key in (("nginx CPU", "nginx_cpu_us_per_page_view"),
                           ("nginx and instance CPU", "server_cpu_us_per_page_view")):
            ratios[f"{label} per page view nginx/page / nginx/3+2N"] = paired_ratio(
                runs, "nginx/page", "nginx/3+2N", key)
        sizes = self.bytes
        ratios["body bytes per page view, page gzip / page identity"] = (
            sizes["page"]["gzip"] / sizes["page"]["identity"])
        ratios["body bytes per page view, 3+2N gzip / 3+2N identity"] = (
            sizes["3+2N"]["gzip"] / sizes["3+2N"]["identity"])
        ratios["body bytes per page view, page gzip / 3+2N gzip"] = (
            sizes["page"]["gzip"] / sizes["3+2N"]["gzip"])
        direct = ratios["page views/s direct/page / direct/3+2N"]
        nginx = ratios["page views/s nginx/page / nginx/3+2N"]
        cpu = ratios["instance CPU per page view direct/page / direct/3+2N"]
        # On a core of their own, a server serves 1 / (CPU per page view): what its page
        # views/s would be where nothing else runs beside it.
        capacity = 1 / ratios["nginx and instance CPU per page view nginx/page / nginx/3+2N"]
        instance_capacity = 1 / cpu
        gzip_share = ratios["body bytes per page view, page gzip / page identity"]
        errors = sum(r["errors"] + r["non_2xx"] for rs in runs.values() for r in rs)
        goals = {
            "page views/s through nginx on one core: page >= 5 x 3+2N": {
                "value": nginx, "met": nginx >= 5, "measured_with": "nginx/page vs nginx/3+2N"},
            "the same in page views per CPU-second of nginx and its instance": {
                "value": capacity, "met": capacity >= 5},
            "page views/s directly against one instance: page >= 3 x 3+2N": {
                "value": direct, "met": direct >= 3,
                "measured_with": "direct/page vs direct/3+2N"},
            "the same in page views per CPU-second of the instance": {
                "value": instance_capacity, "met": instance_capacity >= 3},
            "server CPU per page view: page <= 0.3 x 3+2N": {
                "value": cpu, "met": cpu <= 0.3,
                "measured_with": "the instance's, direct/page vs direct/3+2N"},
            "gzip body bytes per page view <= 0.25 x identity": {
                "value": gzip_share, "met": gzip_share <= 0.25,
                "measured_with": "/products/:id/page over the list"},
            "zero errors": {"value": errors, "met": errors == 0},
        }
        return {
            **report.header(self.name, args.products),
            "unit": "page view",
            "settings": {
                "rounds": args.rounds, "seconds_per_run": args.duration,
                "connections": args.connections, "warmup_s": args.warmup,
                "cache_bytes": args.cache_bytes, "pool_size": args.pool_size,
                "compression": args.compression,
                "server_cpu": bench.cpus.server, "driver_cpu": bench.cpus.driver,
                "accept_encoding": BROWSER_ACCEPT, "cpus": os.cpu_count(),
                "kernel": os.uname().release,
            },
            "page_view_list": self.list,
            "bytes_per_page_view": sizes,
            "cpu_per_page_view": {
                target: {part: m[f"{part}_cpu_us_per_page_view"] for part in ("instance", "nginx")
                         if f"{part}_cpu_us_per_page_view" in m}
                for target, m in medians.items()},
            "medians": medians,
            "ratios": ratios,
            "goals": goals,
            "runs": runs,
        }

    def markdown(self, result, name):
        fmt = report.fmt
        s, views, sizes = result["settings"], result["page_view_list"], result["bytes_per_page_view"]
        lines = [
            f"# pageview — {result['date']}",
            "",
            f"{result['products']:,} products; {views['page_views']:,} product page views "
            f"over {views['distinct_products']:,} Zipf-distributed products, each asked for "
            f"as the 3 + 2N requests of today ({views['requests_per_page_view_3+2N']:.2f} "
            f"requests per page view; {views['related_per_page_view']:.2f} related products "
            f"per page; {views['related_naming_no_product']} related ids naming no product "
            "left out) and as one `/products/:id/page`. bench/pageview sends a page view's "
            f"requests one after another on one of {s['connections']} keep-alive "
            "connections and times it from its first request to its last answer; the figures "
            f"below are per page view. {s['rounds']} rounds of {s['seconds_per_run']} s per "
            f"target, alternated; driver on CPU {s['driver_cpu']}; the instance, and nginx "
            f"in front of it (bench/cluster, the repository's nginx.conf), on CPU "
            f"{s['server_cpu']}; cache {s['cache_bytes'] / MIB:.0f} MiB; every request sends "
            f"`Accept-Encoding: {s['accept_encoding']}`.",
            "",
            "Body bytes per page view over the list (its repeats included):",
            "",
            "| way | identity | gzip | gzip / identity |",
            "|---|---|---|---|",
        ]
        for way, size in sizes.items():
            lines.append(f"| {way} | {size['identity']:,.0f} | {size['gzip']:,.0f} | "
                         f"{size['gzip'] / size['identity']:.3f} |")
        lines += [
            "",
            "Medians over rounds (CPU per page view: the server's CPU time per request "
            "answered, from /proc, times the requests of a page view; wire bytes: heads "
            "included; server CPU share: the server's CPU time over the run's, below 1 when "
            "its core ran other work too or it waited for the driver; driver CPU share: "
            "bench/pageview's, near 1 when the driver rather than the server set the pace):",
            "",
            "| target | page views/s | requests/s | requests per page view | p50 ms | p90 ms | "
            "p99 ms | max ms | CPU-µs per page view: instance | nginx | wire bytes per page "
            "view | server CPU share | driver CPU share | cache hit rate | errors | non-2xx |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for target, m in result["medians"].items():
            lines.append(
                f"| {target} | {fmt(m.get('rps'), 0)} | {fmt(m.get('requests_per_s'), 0)} | "
                f"{fmt(m.get('requests_per_page_view'))} | {fmt(m.get('p50_ms'))} | "
                f"{fmt(m.get('p90_ms'))} | {fmt(m.get('p99_ms'))} | {fmt(m.get('max_ms'))} | "
                f"{fmt(m.get('instance_cpu_us_per_page_view'), 1)} | "
                f"{fmt(m.get('nginx_cpu_us_per_page_view'), 1)} | "
                f"{fmt(m.get('bytes_per_page_view'), 0)} | {fmt(m.get('server_cpu_share'))} | "
                f"{fmt(m.get('driver_cpu_share'))} | "
                f"{fmt(m.get('cache_hit_rate'), 3)} | "
                f"{fmt(m.get('errors'), 0)} | {fmt(m.get('non_2xx'), 0)} |")
        lines += report.ratio_and_goal_lines(result)
        lines += ["", *report.load_lines(result), "",
                  f"![page views per second, latency, CPU and bytes per page view]({name}.svg)",
                  ""]
        return "\n".join(lines)
