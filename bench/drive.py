#!/usr/bin/env python3
"""Runs the benchmark scenarios of `atelier serve` with same-run baselines.

Each scenario alternates the service with its baselines round by round (service, bare
hyper, nginx, pgbench; again), then writes bench/results/<date>-<scenario>.{json,md,svg}
with medians and paired ratios. Called by bench/run, which installs the tools and builds.
"""

import argparse
import bisect
import datetime
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

BENCH = os.path.dirname(os.path.abspath(__file__))
WORK = os.path.join(BENCH, "work")
RESULTS = os.path.join(BENCH, "results")
FULL_PRODUCTS = 1_000_011
SERVER_CPU = "0"
DRIVER_CPU = "1"
PORTS = {"service": 3100, "bare": 3101, "nginx": 3102, "bare-gzip": 3103}
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024
# What a 1 GiB machine leaves the server once the kernel, sshd and a small PostgreSQL
# (shared_buffers 128 MiB plus backends) have taken theirs.
T2_MICRO_SERVER_BYTES = 640 * MIB
SCENARIOS = ["hot", "uniform", "list", "storefront", "cold", "t2micro", "soak", "compress",
             "fill"]
LIST_COUNT = 5
ZIPF_S = 1.01


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(command, **kwargs):
    log("$ " + " ".join(command))
    return subprocess.run(command, check=True, **kwargs)


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


# ---------------------------------------------------------------- the catalog


def prepare_catalog(args):
    """The database URL of a loaded, materialized catalog, preparing one if needed."""
    if args.database_url:
        return args.database_url
    data_dir = args.data_dir or os.path.join(WORK, f"pg-{args.products}")
    ready = os.path.join(WORK, f"ready-{args.products}")
    own = args.data_dir is None
    if own and not os.path.exists(ready):
        catalog = os.path.join(WORK, f"catalog-{args.products}")
        if not os.path.exists(os.path.join(catalog, "related.csv")):
            run([args.atelier, "generate", "--products", str(args.products), "--out", catalog])
        run([args.atelier, "load", catalog, "--data-dir", data_dir])
        run([args.atelier, "materialize", "--data-dir", data_dir])
        with open(ready, "w") as f:
            f.write(datetime.datetime.now(datetime.UTC).isoformat() + "\n")
    # Exits 3 when the cluster is stopped: the output tells.
    status = subprocess.run(
        [args.atelier, "db", "status", "--data-dir", data_dir],
        capture_output=True, text=True,
    ).stdout.strip()
    if not status.startswith("running: "):
        # Any command starts the embedded cluster; a materialize of one product is the
        # cheapest that leaves the catalog as it was, and only runs on our own cluster.
        if not own:
            sys.exit(f"the cluster in {data_dir} is not running ({status}); start it first")
        run([args.atelier, "materialize", "--products", "1", "--data-dir", data_dir])
        status = subprocess.run(
            [args.atelier, "db", "status", "--data-dir", data_dir],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    return status.removeprefix("running: ")


def psql(url, sql):
    return subprocess.run(
        ["psql", url, "-X", "-At", "-F", "\x1f", "-v", "ON_ERROR_STOP=1", "-f", "-"],
        input=sql, check=True, capture_output=True, text=True,
    ).stdout


# ---------------------------------------------------------------- request mixes


class Mix:
    """The requests of a scenario: URL paths (with repeats, in random order), the
    documents behind them, and pgbench scripts running the service's cache-miss queries."""

    def __init__(self, name, paths, pgbench_scripts):
        self.name = name
        self.paths = paths
        self.pgbench_scripts = pgbench_scripts
        self.documents = {}

    def mean_size(self):
        sizes = [len(self.documents[p]) for p in self.paths if p in self.documents]
        return round(statistics.fmean(sizes)) if sizes else 1000


PRODUCT_QUERIES = {
    "product": "SELECT product FROM document WHERE product_id = :id;",
    "styles": "SELECT styles FROM document WHERE product_id = :id;",
    "related": "SELECT related FROM document WHERE product_id = :id;",
}


def product_scripts(id_expression):
    return {
        name: f"\\set id {id_expression}\n{query}\n" for name, query in PRODUCT_QUERIES.items()
    }


def zipf_sampler(n, s, rng):
    """Draws ranks 1..n with P(k) ∝ 1/k^s, by bisection on the cumulative weights."""
    cumulative, total = [], 0.0
    for k in range(1, n + 1):
        total += 1.0 / k**s
        cumulative.append(total)
    return lambda: bisect.bisect_left(cumulative, rng.random() * total) + 1


def build_mix(scenario, products, sample, rng):
    suffixes = ["", "/styles", "/related"]
    if scenario == "hot":
        first = products - products // 10 + 1
        ids = [rng.randint(first, products) for _ in range(sample)]
        paths = [f"/products/{i}{s}" for i in ids for s in suffixes]
        rng.shuffle(paths)
        return Mix(scenario, paths, product_scripts(f"random({first}, {products})"))
    if scenario == "uniform":
        ids = [rng.randint(1, products) for _ in range(sample)]
        paths = [f"/products/{i}{s}" for i in ids for s in suffixes]
        rng.shuffle(paths)
        return Mix(scenario, paths, product_scripts(f"random(1, {products})"))
    if scenario == "list":
        last_page = max(1, products // LIST_COUNT)
        pages = [rng.randint(1, last_page) for _ in range(sample)]
        paths = [f"/products?page={p}&count={LIST_COUNT}" for p in pages]
        # The service's page query (materialize::list::PAGE_SQL) with the page's ranks.
        script = (
            f"\\set page random(1, {last_page})\n"
            f"\\set first (:page - 1) * {LIST_COUNT} + 1\n"
            f"SELECT d.list_entry FROM document d WHERE d.product_id >= ("
            f"SELECT x.product_id FROM (SELECT first_id, start FROM list_block "
            f"WHERE start < :first ORDER BY start DESC, first_id DESC LIMIT 1) b "
            f"CROSS JOIN LATERAL (SELECT product_id FROM document WHERE product_id >= b.first_id "
            f"ORDER BY product_id OFFSET :first - b.start - 1 LIMIT 1) x) "
            f"ORDER BY d.product_id LIMIT {LIST_COUNT};\n"
        )
        return Mix(scenario, paths, {"page": script})
    if scenario in ("storefront", "cold", "t2micro", "compress"):
        # A storefront page asks for a product, its styles and its related list; the
        # popularity of products follows Zipf, over ranks scattered across the ids.
        draw = zipf_sampler(products, ZIPF_S, rng)
        scatter = {}
        paths = []
        for _ in range(sample):
            rank = draw()
            product = scatter.setdefault(rank, rng.randint(1, products))
            paths.extend(f"/products/{product}{s}" for s in suffixes)
        scripts = {
            name: (
                f"\\set rank random_zipfian(1, {products}, {ZIPF_S})\n"
                f"\\set id permute(:rank - 1, {products}) + 1\n{query}\n"
            )
            for name, query in PRODUCT_QUERIES.items()
        }
        return Mix(scenario, paths, scripts)
    raise ValueError(scenario)


def prewarm(url):
    """Reads the document table, its TOAST table and its key into the OS page cache, so
    that pgbench, which draws ids over every product, reads from memory as the service's
    warmed-up sample does, not from disk (a catalog just loaded has pushed them out)."""
    try:
        psql(url, "CREATE EXTENSION IF NOT EXISTS pg_prewarm; "
                  "SELECT pg_prewarm('document', 'read'), pg_prewarm('document_pkey', 'read'), "
                  "pg_prewarm(reltoastrelid, 'read') FROM pg_class "
                  "WHERE oid = 'document'::regclass;")
    except subprocess.CalledProcessError as error:
        log(f"cannot prewarm the document table ({error}); pgbench may read from disk")


def export_documents(mix, url):
    """Reads the documents behind the mix's paths, as the service would send them."""
    ids = sorted({int(m.group(1)) for p in mix.paths if (m := re.match(r"/products/(\d+)", p))})
    if ids:
        rows = psql(
            url,
            "SELECT product_id, product::text, styles::text, related::text FROM document "
            f"WHERE product_id = ANY('{{{','.join(map(str, ids))}}}'::int[]);",
        )
        for line in rows.splitlines():
            product_id, product, styles, related = line.split("\x1f")
            mix.documents[f"/products/{product_id}"] = product.encode()
            mix.documents[f"/products/{product_id}/styles"] = styles.encode()
            mix.documents[f"/products/{product_id}/related"] = related.encode()
    pages = sorted({int(m.group(1)) for p in mix.paths if (m := re.match(r"/products\?page=(\d+)", p))})
    if pages:
        rows = psql(
            url,
            f"SELECT p.page, '[' || string_agg(d.list_entry::text, ',' ORDER BY d.rank) || ']' "
            f"FROM unnest('{{{','.join(map(str, pages))}}}'::int[]) AS p(page) "
            f"JOIN (SELECT list_entry, row_number() OVER (ORDER BY product_id) AS rank "
            f"FROM document) d ON d.rank BETWEEN (p.page - 1) * {LIST_COUNT} + 1 "
            f"AND p.page * {LIST_COUNT} GROUP BY p.page;",
        )
        for line in rows.splitlines():
            page, body = line.split("\x1f")
            mix.documents[f"/products?page={page}&count={LIST_COUNT}"] = body.encode()


def write_files(mix, directory):
    """The URL list for the drivers, and the documents as an nginx document root."""
    os.makedirs(directory, exist_ok=True)
    docroot = os.path.join(directory, "docroot")
    shutil.rmtree(docroot, ignore_errors=True)
    for path, body in mix.documents.items():
        if path.startswith("/products?"):
            page = re.search(r"page=(\d+)", path).group(1)
            target = os.path.join(docroot, "list", f"{page}-{LIST_COUNT}.json")
        else:
            target = os.path.join(docroot, path.lstrip("/"), "body.json")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(body)
    with open(os.path.join(directory, "paths.txt"), "w") as f:
        f.write("\n".join(mix.paths) + "\n")
    for name, script in mix.pgbench_scripts.items():
        with open(os.path.join(directory, f"pgbench-{name}.sql"), "w") as f:
            f.write(script)
    return docroot


# ---------------------------------------------------------------- servers


class Server:
    """A server process under test, pinned to the server CPU."""

    def __init__(self, name, command, port, directory, memory_limit=None, env=None):
        self.name, self.command, self.port = name, command, port
        self.directory, self.memory_limit, self.env = directory, memory_limit, env
        self.process = None
        self.cgroup = None

    def start(self):
        log_path = os.path.join(self.directory, f"{self.name}.log")
        self.log = open(log_path, "ab")
        env = dict(os.environ, **(self.env or {}))
        self.process = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU] + self.command,
            stdout=self.log, stderr=self.log, env=env, start_new_session=True,
        )
        self.started = time.monotonic()
        if self.memory_limit:
            self.cgroup = limit_memory(self.process.pid, self.memory_limit, self.name)
        self.wait_ready()
        return self

    def wait_ready(self, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"{self.name} exited with {self.process.returncode}; see its log")
            try:
                with urllib.request.urlopen(self.ready_url(), timeout=2) as response:
                    if response.status == 200:
                        self.ready_after = time.monotonic() - self.started
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        sys.exit(f"{self.name} was not ready within {timeout} s")

    def ready_url(self):
        path = "/readyz" if self.command[1:2] == ["serve"] else "/"
        return f"http://127.0.0.1:{self.port}{path}"

    def pids(self):
        """The server's processes: itself and its children (nginx's workers)."""
        pids = [self.process.pid]
        try:
            with open(f"/proc/{self.process.pid}/task/{self.process.pid}/children") as f:
                pids += [int(p) for p in f.read().split()]
        except OSError:
            pass
        return pids

    def cpu_seconds(self):
        total = 0
        for pid in self.pids():
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / CLK_TCK

    def reset_peak_rss(self):
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                pass

    def memory(self, field):
        """A memory figure of /proc/<pid>/status (VmRSS, VmHWM, ...) summed over the
        server's processes, in bytes."""
        total = 0
        for pid in self.pids():
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        total += int(line.split()[1]) * 1024
        return total

    def rss(self):
        """The server's resident memory now."""
        return self.memory("VmRSS")

    def peak_rss(self):
        """The server's peak resident memory since the last reset_peak_rss."""
        return self.memory("VmHWM")

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.cgroup:
            try:
                os.rmdir(self.cgroup)
            except OSError:
                pass
        self.log.close()


def limit_memory(pid, limit, name):
    """Puts `pid` in a memory cgroup (v1) of `limit` bytes; None when not possible."""
    parent = None
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.strip().split(":", 2)
            if "memory" in controllers.split(","):
                parent = "/sys/fs/cgroup/memory" + path
    if not parent or not os.access(parent, os.W_OK):
        log("memory cgroup not writable; no memory limit")
        return None
    cgroup = os.path.join(parent, f"atelier-bench-{name}")
    os.makedirs(cgroup, exist_ok=True)
    for file, value in [("memory.limit_in_bytes", limit), ("cgroup.procs", pid)]:
        with open(os.path.join(cgroup, file), "w") as f:
            f.write(str(value))
    return cgroup


def cgroup_failcnt(cgroup):
    if not cgroup:
        return None
    with open(os.path.join(cgroup, "memory.failcnt")) as f:
        return int(f.read())


def nginx_server(docroot, directory):
    conf = os.path.join(directory, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
worker_processes 1;
worker_rlimit_nofile 16384;
daemon off;
master_process on;
user root;
pid {directory}/nginx.pid;
error_log {directory}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000000;
    keepalive_timeout 60s;
    open_file_cache max=8000 inactive=60s;
    default_type application/json;
    server {{
        listen 127.0.0.1:{PORTS["nginx"]} backlog=4096;
        root {docroot};
        location = / {{ return 200 "ok"; }}
        location = /products {{ try_files /list/$arg_page-$arg_count.json =404; }}
        location /products/ {{ try_files $uri/body.json =404; }}
    }}
}}
""")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    return Server("nginx", [nginx, "-c", conf, "-p", directory], PORTS["nginx"], directory)


def metrics(port):
    """The service's cache hit and miss counters."""
    # A generous timeout: on a machine busy with other work, the answer right after a run
    # can take seconds.
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as response:
        text = response.read().decode()
    values = {}
    for name in ("atelier_cache_hits_total", "atelier_cache_misses_total"):
        match = re.search(rf"^{name}\s+(\d+)", text, re.M)
        values[name] = int(match.group(1)) if match else 0
    return values["atelier_cache_hits_total"], values["atelier_cache_misses_total"]


# ---------------------------------------------------------------- drivers


def oha(port, paths_file, seconds, connections, directory, rate=None):
    """One oha run over random lines of the URL list, as fast as it goes or at `rate`
    requests per second in all."""
    urls = os.path.join(directory, f"urls-{port}.txt")
    if not os.path.exists(urls):
        with open(paths_file) as src, open(urls, "w") as dst:
            for line in src:
                dst.write(f"http://127.0.0.1:{port}{line}")
    out = subprocess.run(
        ["taskset", "-c", DRIVER_CPU, "oha", "--no-tui", "--output-format", "json",
         "-z", f"{seconds}s", "--wait-ongoing-requests-after-deadline",
         # oha asks for gzip by default; these scenarios compare the stored bytes with
         # baselines that send them as they are.
         "-H", "Accept-Encoding: identity",
         "-c", str(connections), "--urls-from-file", urls]
        + (["-q", str(rate)] if rate else []),
        check=True, capture_output=True, text=True,
    ).stdout
    report = json.loads(out)
    summary = report["summary"]
    percentiles = report.get("latencyPercentiles", {})
    statuses = {str(k): v for k, v in report.get("statusCodeDistribution", {}).items()}
    errors = sum(report.get("errorDistribution", {}).values())
    ok = sum(v for k, v in statuses.items() if k.startswith("2"))
    return {
        "rps": summary["requestsPerSec"],
        "p50_ms": percentiles.get("p50", 0) * 1000,
        "p90_ms": percentiles.get("p90", 0) * 1000,
        "p99_ms": percentiles.get("p99", 0) * 1000,
        "max_ms": summary["slowest"] * 1000,
        "requests": sum(statuses.values()),
        "non_2xx": sum(statuses.values()) - ok,
        "errors": errors,
        "statuses": statuses,
        "error_kinds": report.get("errorDistribution", {}),
    }


WRK_SCRIPT = """
local paths = {}
for line in io.lines("%s") do paths[#paths + 1] = line end
local headers = %s
math.randomseed(os.time())
request = function()
    return wrk.format("GET", paths[math.random(#paths)], headers)
end
done = function(summary, latency, requests)
    io.write(string.format("JSON {\\"requests\\": %%d, \\"p50\\": %%d, \\"p90\\": %%d, \\"p99\\": %%d, \\"max\\": %%d, \\"non2xx\\": %%d, \\"errors\\": %%d, \\"duration_us\\": %%d, \\"bytes\\": %%d}\\n",
        summary.requests, latency:percentile(50), latency:percentile(90),
        latency:percentile(99), latency.max, summary.errors.status,
        summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
        summary.duration, summary.bytes))
end
"""


def wrk(port, paths_file, seconds, connections, directory, accept=None):
    """One wrk run over random lines of the URL list (for rates oha cannot drive), with
    `Accept-Encoding: accept` on every request when given."""
    script = os.path.join(directory, f"wrk-{accept or 'identity'}.lua".replace(" ", ""))
    headers = "{}" if accept is None else '{["Accept-Encoding"] = "%s"}' % accept
    with open(script, "w") as f:
        f.write(WRK_SCRIPT % (paths_file, headers))
    out = subprocess.run(
        ["taskset", "-c", DRIVER_CPU, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
         "-s", script, f"http://127.0.0.1:{port}"],
        check=True, capture_output=True, text=True,
    ).stdout
    line = next(l for l in out.splitlines() if l.startswith("JSON "))
    r = json.loads(line[5:])
    return {
        "rps": r["requests"] / (r["duration_us"] / 1e6),
        "p50_ms": r["p50"] / 1000, "p90_ms": r["p90"] / 1000, "p99_ms": r["p99"] / 1000,
        "max_ms": r["max"] / 1000, "requests": r["requests"], "non_2xx": r["non2xx"],
        "errors": r["errors"], "bytes_per_answer": r["bytes"] / max(r["requests"], 1),
    }


def pgbench(url, directory, scripts, seconds, clients):
    """The database ceiling: the service's cache-miss queries through pgbench."""
    command = ["taskset", "-c", DRIVER_CPU, "pgbench", "-n", "-M", "prepared",
               "-c", str(clients), "-j", "1", "-T", str(seconds)]
    for name in scripts:
        command += ["-f", os.path.join(directory, f"pgbench-{name}.sql") + "@1"]
    out = subprocess.run(command + [url], check=True, capture_output=True, text=True).stdout
    tps = float(re.search(r"tps = ([\d.]+) \(without initial connection time\)", out).group(1))
    latency = float(re.search(r"latency average = ([\d.]+) ms", out).group(1))
    failed = re.search(r"number of failed transactions: (\d+)", out)
    return {"rps": tps, "mean_ms": latency, "errors": int(failed.group(1)) if failed else 0}


# ---------------------------------------------------------------- one scenario


def measure(server, drive, is_service):
    """Runs `drive` against `server`, with the server's CPU, peak RSS and cache counters."""
    server.reset_peak_rss()
    before_cpu = server.cpu_seconds()
    before_cache = metrics(server.port) if is_service else None
    before_load = loadavg()
    failcnt = cgroup_failcnt(server.cgroup)
    result = drive()
    result["server_cpu_us_per_request"] = (
        (server.cpu_seconds() - before_cpu) * 1e6 / max(result["requests"], 1)
    )
    result["server_peak_rss_mib"] = server.peak_rss() / MIB
    result["loadavg_before"] = before_load
    result["loadavg_after"] = loadavg()
    if is_service:
        hits, misses = metrics(server.port)
        hits, misses = hits - before_cache[0], misses - before_cache[1]
        result["cache_hit_rate"] = hits / max(hits + misses, 1)
    if server.cgroup:
        result["memory_limit_hits"] = cgroup_failcnt(server.cgroup) - failcnt
    return result


def service_command(args, url, cache_bytes):
    return [args.atelier, "serve", "--listen", f"127.0.0.1:{PORTS['service']}",
            "--database-url", url, "--cache-bytes", str(cache_bytes),
            "--pool-size", str(args.pool_size), "--compression", args.compression]


def run_scenario(args, scenario, url):
    directory = os.path.join(WORK, "scenarios", scenario)
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    rng = random.Random(args.seed)
    mix = build_mix(scenario, args.products, args.sample, rng)
    export_documents(mix, url)
    missing = [p for p in set(mix.paths) if p not in mix.documents]
    if missing:
        sys.exit(f"{len(missing)} paths have no document, e.g. {missing[:3]}")
    docroot = write_files(mix, directory)
    paths_file = os.path.join(directory, "paths.txt")
    body_size = mix.mean_size()
    log(f"{scenario}: {len(mix.paths)} requests over {len(mix.documents)} documents, "
        f"mean body {body_size} B")

    cache_bytes = args.cache_bytes
    if scenario == "uniform":
        # Small enough that almost every lookup goes to the database.
        cache_bytes = args.small_cache_bytes
    memory_limit = T2_MICRO_SERVER_BYTES if scenario == "t2micro" else None
    cold = scenario == "cold"
    seconds = args.cold_seconds if cold else args.duration

    def service():
        return Server("service", service_command(args, url, cache_bytes), PORTS["service"],
                      directory, memory_limit, env={"ATELIER_LOG": "warn"})

    def bare():
        return Server("bare", [args.bare_hyper, f"127.0.0.1:{PORTS['bare']}", str(body_size)],
                      PORTS["bare"], directory, memory_limit)

    drivers = ["oha"] + (["wrk"] if scenario in args.wrk_scenarios else [])
    if scenario == "uniform":
        # The database path for both kinds of client: identity (wrk sends no
        # Accept-Encoding), and browsers, whose misses each make a gzip form.
        drivers = ["oha", "wrk", "wrk-gzip"]
    targets = ["service", "bare", "nginx", "pgbench"]
    if cold or scenario == "t2micro":
        targets = ["service", "bare"]
    if "pgbench" in targets:
        prewarm(url)
    runs = {f"{t}/{d}": [] for t in targets for d in drivers
            if t != "pgbench" and (t == "service" or d != "wrk-gzip")}
    if "pgbench" in targets:
        runs["pgbench"] = []
    extra = {"service_ready_after_s": []}

    servers = {}
    if not cold:
        servers["service"] = service().start()
        servers["bare"] = bare().start()
        if "nginx" in targets:
            servers["nginx"] = nginx_server(docroot, directory).start()
        # Warm-up: fills the cache and the pool, and brings the baselines to speed.
        for name, server in servers.items():
            oha(server.port, paths_file, args.warmup, args.connections, directory)
    try:
        for round_number in range(1, args.rounds + 1):
            log(f"{scenario}: round {round_number}/{args.rounds}")
            for target in targets:
                if target == "pgbench":
                    result = pgbench(url, directory, mix.pgbench_scripts, seconds,
                                     args.pgbench_clients)
                    result["loadavg_after"] = loadavg()
                    runs["pgbench"].append(result)
                    log(f"  pgbench: {result['rps']:.0f} tps")
                    continue
                for driver in drivers:
                    if driver == "wrk-gzip" and target != "service":
                        continue
                    if cold:
                        server = (service if target == "service" else bare)().start()
                        if target == "service":
                            extra["service_ready_after_s"].append(server.ready_after)
                    else:
                        server = servers[target]
                    drive = {
                        "oha": oha,
                        "wrk": wrk,
                        "wrk-gzip": lambda *a: wrk(*a, accept=BROWSER_ACCEPT),
                    }[driver]
                    try:
                        result = measure(
                            server,
                            lambda: drive(server.port, paths_file, seconds, args.connections,
                                          directory),
                            target == "service",
                        )
                    finally:
                        if cold:
                            server.stop()
                    runs[f"{target}/{driver}"].append(result)
                    log(f"  {target}/{driver}: {result['rps']:.0f} rps, p99 "
                        f"{result['p99_ms']:.2f} ms, {result['server_cpu_us_per_request']:.1f} "
                        f"CPU-µs/req, errors {result['errors']}+{result['non_2xx']}")
    finally:
        for server in servers.values():
            server.stop()
    return summarize(args, scenario, mix, body_size, cache_bytes, memory_limit, seconds,
                     runs, extra)


# ---------------------------------------------------------------- soak

SOAK_SAMPLE_SECONDS = 10


def run_soak(args, url):
    """The storefront mix at a share of the service's measured peak for a long run: errors,
    latency, and the server's memory and CPU sampled along the way."""
    directory = os.path.join(WORK, "scenarios", "soak")
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    mix = build_mix("storefront", args.products, args.sample, random.Random(args.seed))
    paths_file = os.path.join(directory, "paths.txt")
    with open(paths_file, "w") as f:
        f.write("\n".join(mix.paths) + "\n")
    server = Server("service", service_command(args, url, args.cache_bytes), PORTS["service"],
                    directory, env={"ATELIER_LOG": "warn"}).start()
    samples = []
    try:
        oha(server.port, paths_file, args.warmup, args.connections, directory)
        peak = oha(server.port, paths_file, args.duration, args.connections, directory)["rps"]
        rate = max(1, int(peak * args.soak_share))
        log(f"soak: peak {peak:.0f} rps; {args.soak_seconds} s at {rate} rps")
        outcome = {}
        load = threading.Thread(target=lambda: outcome.update(
            oha(server.port, paths_file, args.soak_seconds, args.connections, directory, rate)))
        started = time.monotonic()
        load.start()
        previous = (started, server.cpu_seconds(), sum(metrics(server.port)))
        while load.is_alive():
            load.join(timeout=SOAK_SAMPLE_SECONDS)
            now, cpu, lookups = time.monotonic(), server.cpu_seconds(), sum(metrics(server.port))
            seconds = now - previous[0]
            samples.append({
                "t_s": round(now - started, 1),
                "rss_mib": server.rss() / MIB,
                "cpu_share": (cpu - previous[1]) / seconds,
                "lookups_per_s": (lookups - previous[2]) / seconds,
            })
            previous = (now, cpu, lookups)
    finally:
        server.stop()
    # Memory is judged after the first minute, once the cache has filled.
    settled = [x["rss_mib"] for x in samples if x["t_s"] >= 60] or [x["rss_mib"] for x in samples]
    growth = settled[-1] - settled[0]
    errors = outcome["errors"] + outcome["non_2xx"]
    return {
        "scenario": "soak",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "products": args.products,
        "settings": {"seconds": args.soak_seconds, "rate_rps": rate, "peak_rps": peak,
                     "share": args.soak_share, "connections": args.connections,
                     "cache_bytes": args.cache_bytes, "pool_size": args.pool_size,
                     "cpus": os.cpu_count()},
        "result": outcome,
        "rss_mib": {"after_first_minute": settled[0], "end": settled[-1], "max": max(settled),
                    "growth_after_first_minute": growth},
        "goals": {
            "zero errors": {"value": errors, "met": errors == 0},
            "rss flat after warm-up (growth <= 4 MiB)": {"value": growth, "met": growth <= 4},
        },
        "samples": samples,
    }


def write_soak_results(result, stamp):
    os.makedirs(RESULTS, exist_ok=True)
    base = os.path.join(RESULTS, f"{stamp}-soak")
    with open(base + ".json", "w") as f:
        json.dump(result, f, indent=1)
    with open(base + ".svg", "w") as f:
        f.write(soak_chart(result))
    s, r, m = result["settings"], result["result"], result["rss_mib"]
    lines = [
        f"# soak — {result['date']}",
        "",
        f"{result['products']:,} products; storefront mix for {s['seconds']} s at {s['rate_rps']:,} "
        f"requests/s ({s['share']:.0%} of the {s['peak_rps']:,.0f} measured just before); "
        f"{s['connections']} connections; cache {s['cache_bytes'] / MIB:.0f} MiB; pool "
        f"{s['pool_size']}; server on CPU {SERVER_CPU}, oha on CPU {DRIVER_CPU}.",
        "",
        "| requests | achieved RPS | p50 ms | p90 ms | p99 ms | max ms | errors | non-2xx |",
        "|---|---|---|---|---|---|---|---|",
        f"| {r['requests']:,} | {fmt(r['rps'], 0)} | {fmt(r['p50_ms'])} | {fmt(r['p90_ms'])} | "
        f"{fmt(r['p99_ms'])} | {fmt(r['max_ms'])} | {r['errors']} | {r['non_2xx']} |",
        "",
        f"Server RSS: {m['after_first_minute']:.1f} MiB after the first minute, {m['end']:.1f} MiB "
        f"at the end, {m['max']:.1f} MiB at most; growth after the first minute "
        f"{m['growth_after_first_minute']:+.1f} MiB.",
        "",
        "Goals:",
        "",
    ]
    for name, goal in result["goals"].items():
        lines.append(f"- {name}: {fmt(goal['value'], 1)} — {'met' if goal['met'] else 'MISSED'}")
    lines += ["", f"Sampled every {SOAK_SAMPLE_SECONDS} s:", "",
              "| t s | RSS MiB | server CPU share | lookups/s |", "|---|---|---|---|"]
    lines += [f"| {x['t_s']:.0f} | {x['rss_mib']:.1f} | {x['cpu_share']:.2f} | "
              f"{x['lookups_per_s']:,.0f} |" for x in result["samples"]]
    lines += ["", f"![memory and load over time]({os.path.basename(base)}.svg)", ""]
    with open(base + ".md", "w") as f:
        f.write("\n".join(lines))
    log(f"wrote {base}.md, .json, .svg")


def soak_chart(result):
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
        out.append(f'<text x="{left}" y="{y0 - 10}" font-size="14" font-weight="bold">{title}</text>')
        for i in range(5):
            y = y0 + plot_h - plot_h * i / 4
            out.append(f'<line x1="{left}" x2="{width - 30}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
            out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">'
                       f'{peak * i / 4:,.0f}</text>')
        points = " ".join(
            f"{left + (width - 30 - left) * x['t_s'] / end:.1f},{y0 + plot_h - plot_h * x[key] / peak:.1f}"
            for x in samples)
        out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{(width + left) / 2}" y="{y0 + plot_h + 18}" font-size="11" '
                   f'text-anchor="middle">seconds since the soak began (0–{end:.0f})</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- compress

CLUSTER = os.path.join(BENCH, "cluster")
# bench/cluster runs nginx on port P and its one instance on P+1.
COMPRESS_CLUSTER_PORTS = {"compressing": 3110, "passing": 3120}
# What browsers send: every request's Accept-Encoding scan sees a full header.
BROWSER_ACCEPT = "gzip, deflate, br, zstd"


class Cluster(Server):
    """One `atelier serve` behind nginx with the repository's nginx.conf, started by
    bench/cluster with both on the server CPU, measured as one server (the instance,
    nginx's master and its workers)."""

    def __init__(self, name, port, directory, url, env):
        super().__init__(name, [], port, directory, env=env)
        self.run_dir = os.path.join(directory, f"cluster-{name}")
        self.url = url

    def start(self):
        env = dict(os.environ, **self.env)
        run([CLUSTER, "start", "--instances", "1", "--port", str(self.port),
             "--database-url", self.url, "--cpus", SERVER_CPU, "--run-dir", self.run_dir],
            env=env, stdout=subprocess.DEVNULL)
        return self

    def pid_of(self, file):
        with open(os.path.join(self.run_dir, file)) as f:
            return int(f.read())

    def pids(self):
        nginx = self.pid_of("nginx/nginx.pid")
        pids = [self.pid_of("instance-1.pid"), nginx]
        try:
            with open(f"/proc/{nginx}/task/{nginx}/children") as f:
                pids += [int(p) for p in f.read().split()]
        except OSError:
            pass
        return pids

    def nginx_cpu_seconds(self):
        """CPU time of nginx alone (master and workers), the share a machine of its own
        would carry."""
        instance = self.pid_of("instance-1.pid")
        total = 0
        for pid in self.pids():
            if pid != instance:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
        return total / CLK_TCK

    def stop(self):
        run([CLUSTER, "stop", "--port", str(self.port), "--run-dir", self.run_dir],
            stdout=subprocess.DEVNULL)


class ClusterInstance(Server):
    """The instance of a Cluster, driven directly."""

    def __init__(self, cluster):
        super().__init__(f"{cluster.name}-instance", [], cluster.port + 1, cluster.directory)
        self.cluster = cluster

    def pids(self):
        return [self.cluster.pid_of("instance-1.pid")]

    def stop(self):
        pass


def answer_bodies(port, paths, accept):
    """Per distinct path: the body bytes answered with `Accept-Encoding: accept` (none
    when None) and the content coding they came in."""
    import http.client
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    answers = {}
    for path in sorted(set(paths)):
        connection.putrequest("GET", path, skip_accept_encoding=True)
        if accept is not None:
            connection.putheader("Accept-Encoding", accept)
        connection.endheaders()
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            sys.exit(f"{path} answered {response.status} on port {port}")
        answers[path] = (len(body), response.getheader("Content-Encoding") or "identity")
    connection.close()
    return answers


def cache_weight(port):
    """The service's cache entries and their weight in bytes, from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as response:
        text = response.read().decode()
    values = {}
    for name in ("atelier_cache_entries", "atelier_cache_bytes"):
        values[name] = int(float(re.search(rf"^{name}\s+(\S+)", text, re.M).group(1)))
    return {"entries": values["atelier_cache_entries"], "bytes": values["atelier_cache_bytes"]}


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


def run_compress(args, url):
    """The storefront mix answered to identity and gzip-accepting clients: bytes per
    answer, cache-hit throughput of each against bare hyper sending bodies of the same
    mean sizes, and nginx in front of one instance, compressing per request (the instance
    run with --compression off) or passing the instance's gzip through, beside the
    instance driven directly; all driven by wrk."""
    scenario = "compress"
    directory = os.path.join(WORK, "scenarios", scenario)
    for name in COMPRESS_CLUSTER_PORTS:
        run_dir = os.path.join(directory, f"cluster-{name}")
        if os.path.exists(os.path.join(run_dir, "settings")):
            run([CLUSTER, "stop", "--run-dir", run_dir], stdout=subprocess.DEVNULL)
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    # nginx workers run unprivileged when started as root: they must reach their prefix.
    os.chmod(directory, 0o755)
    mix = build_mix("storefront", args.products, args.sample, random.Random(args.seed))
    paths_file = os.path.join(directory, "paths.txt")
    with open(paths_file, "w") as f:
        f.write("\n".join(mix.paths) + "\n")
    env = {"ATELIER_LOG": "warn", "ATELIER_CACHE_BYTES": str(args.cache_bytes),
           "ATELIER_POOL_SIZE": str(args.pool_size), "ATELIER_BIN": args.atelier}
    servers = {}
    try:
        servers["service"] = Server("service", service_command(args, url, args.cache_bytes),
                                    PORTS["service"], directory,
                                    env={"ATELIER_LOG": "warn"}).start()
        # Bytes per answer, from the service itself and from nginx compressing.
        identity = answer_bodies(PORTS["service"], mix.paths, None)
        gzip = answer_bodies(PORTS["service"], mix.paths, BROWSER_ACCEPT)
        servers["compressing"] = Cluster(
            "compressing", COMPRESS_CLUSTER_PORTS["compressing"], directory, url,
            dict(env, ATELIER_COMPRESSION="off")).start()
        servers["passing"] = Cluster("passing", COMPRESS_CLUSTER_PORTS["passing"],
                                     directory, url, env).start()
        servers["direct"] = ClusterInstance(servers["passing"])
        nginx_gzip = answer_bodies(COMPRESS_CLUSTER_PORTS["compressing"], mix.paths,
                                   BROWSER_ACCEPT)
        passed = answer_bodies(COMPRESS_CLUSTER_PORTS["passing"], mix.paths, BROWSER_ACCEPT)
        if passed != gzip:
            sys.exit("nginx passing through answered other bytes than the service")
        # Both instances now hold every document of the mix: the cache's weight with the
        # gzip forms and without them.
        memory = {name: cache_weight(COMPRESS_CLUSTER_PORTS[name] + 1)
                  for name in COMPRESS_CLUSTER_PORTS}
        sizes = {
            "identity": bytes_per_answer(mix, identity),
            "gzip, once per document (service)": bytes_per_answer(mix, gzip),
            "gzip level 1 per request (nginx)": bytes_per_answer(mix, nginx_gzip),
        }
        log(f"compress: body bytes per answer {json.dumps(sizes)}")
        identity_size = round(sizes["identity"]["all"])
        gzip_size = round(sizes["gzip, once per document (service)"]["all"])
        for name, port, size in (("bare-identity", PORTS["bare"], identity_size),
                                 ("bare-gzip", PORTS["bare-gzip"], gzip_size)):
            servers[name] = Server(name, [args.bare_hyper, f"127.0.0.1:{port}", str(size)],
                                   port, directory).start()
        targets = {
            "service/identity": ("service", None),
            "service/gzip": ("service", BROWSER_ACCEPT),
            f"bare/identity size ({identity_size} B)": ("bare-identity", None),
            f"bare/gzip size ({gzip_size} B)": ("bare-gzip", None),
            "instance direct/gzip": ("direct", BROWSER_ACCEPT),
            "nginx compressing/gzip": ("compressing", BROWSER_ACCEPT),
            "nginx passing through/gzip": ("passing", BROWSER_ACCEPT),
        }
        runs = {target: [] for target in targets}
        for target, (name, accept) in targets.items():
            wrk(servers[name].port, paths_file, args.warmup, args.connections, directory,
                accept)
        for round_number in range(1, args.rounds + 1):
            log(f"{scenario}: round {round_number}/{args.rounds}")
            for target, (name, accept) in targets.items():
                server = servers[name]
                nginx_before = server.nginx_cpu_seconds() if isinstance(server, Cluster) else 0
                result = measure(
                    server,
                    lambda: wrk(server.port, paths_file, args.duration, args.connections,
                                directory, accept),
                    name == "service",
                )
                if isinstance(server, Cluster):
                    result["nginx_cpu_us_per_request"] = (
                        (server.nginx_cpu_seconds() - nginx_before) * 1e6
                        / max(result["requests"], 1))
                runs[target].append(result)
                log(f"  {target}: {result['rps']:.0f} rps, p99 {result['p99_ms']:.2f} ms, "
                    f"{result['server_cpu_us_per_request']:.1f} CPU-µs/req, "
                    f"{result['bytes_per_answer']:.0f} B/answer, "
                    f"errors {result['errors']}+{result['non_2xx']}")
    finally:
        for server in servers.values():
            server.stop()
    paths_file, _ = every_document(args, directory)
    memory["full"] = fill_cache(args, url, directory, paths_file, FILL_CACHE_BYTES,
                                FILL_SECONDS, BROWSER_ACCEPT, "compress")
    return summarize_compress(args, mix, sizes, memory, runs)


FILL_CACHE_BYTES = 64 * MIB
FILL_SECONDS = 40


def every_document(args, directory):
    """A file listing every document of the catalog once, in a random order."""
    paths = [f"/products/{i}{s}" for i in range(1, args.products + 1)
             for s in ("", "/styles", "/related")]
    random.Random(args.seed).shuffle(paths)
    paths_file = os.path.join(directory, "every-document.txt")
    with open(paths_file, "w") as f:
        f.write("\n".join(paths) + "\n")
    return paths_file, len(paths)


def fill_cache(args, url, directory, paths_file, cache_bytes, seconds, accept, label):
    """Peak RSS with the cache full: a service with a budget of `cache_bytes` asked by
    clients sending `accept` for the documents of `paths_file` in turn, far more than
    the budget holds."""
    server = Server("fill", service_command(args, url, cache_bytes), PORTS["service"],
                    directory, env={"ATELIER_LOG": "warn"}).start()
    try:
        server.reset_peak_rss()
        result = wrk(server.port, paths_file, seconds, args.connections, directory, accept)
        held = cache_weight(server.port)
        peak = server.peak_rss() / MIB
    finally:
        server.stop()
    log(f"{label}: cache full: {held}, peak RSS {peak:.1f} MiB")
    return {"cache_bytes": cache_bytes, "requests": result["requests"], "rps": result["rps"],
            "errors": result["errors"], "non_2xx": result["non_2xx"],
            "entries": held["entries"],
            "bytes": held["bytes"], "peak_rss_mib": peak}


def run_fill(args, url):
    """Peak RSS with the default cache budget full, once with clients that do not take
    gzip and once with browsers: a service asked for every document of the catalog in
    a random order, far more than the budget holds."""
    directory = os.path.join(WORK, "scenarios", "fill")
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    paths_file, documents = every_document(args, directory)
    runs = {
        clients: fill_cache(args, url, directory, paths_file, args.cache_bytes,
                            args.fill_seconds, accept, f"fill ({clients})")
        for clients, accept in (("identity", None), ("gzip", BROWSER_ACCEPT))
    }
    budget = args.cache_bytes / MIB + 64
    return {
        "scenario": "fill",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "products": args.products,
        "settings": {"cache_bytes": args.cache_bytes, "seconds": args.fill_seconds,
                     "connections": args.connections, "documents": documents},
        "runs": runs,
        "goals": {f"rss <= cache budget + 64 MiB ({clients})": {
            "value": run["peak_rss_mib"], "limit": budget,
            "met": run["peak_rss_mib"] <= budget and run["errors"] == 0}
            for clients, run in runs.items()},
    }


def write_fill_results(result, stamp):
    os.makedirs(RESULTS, exist_ok=True)
    base = os.path.join(RESULTS, f"{stamp}-fill")
    with open(base + ".json", "w") as f:
        json.dump(result, f, indent=1)
    s = result["settings"]
    lines = [
        f"# fill — {result['date']}",
        "",
        f"{result['products']:,} products; every one of their {s['documents']:,} documents "
        f"asked for in a random order by wrk for {s['seconds']} s at {s['connections']} "
        f"connections; cache budget {s['cache_bytes'] / MIB:.0f} MiB.",
        "",
        "| clients | requests | entries held | bytes held (MiB) | peak RSS (MiB) | errors |",
        "|---|---|---|---|---|---|",
    ]
    for clients, run in result["runs"].items():
        lines.append(f"| {clients} | {run['requests']:,} | {run['entries']:,} | "
                     f"{run['bytes'] / MIB:.1f} | {run['peak_rss_mib']:.1f} | "
                     f"{run['errors'] + run['non_2xx']} |")
    lines += ["", "Goals:", ""]
    for name, goal in result["goals"].items():
        mark = "met" if goal["met"] else "MISSED"
        lines.append(f"- {name}: {goal['value']:.1f} (limit {goal['limit']:.1f}) — {mark}")
    with open(base + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    log(f"wrote {base}.md")


def summarize_compress(args, mix, sizes, memory, runs):
    keys = ["rps", "p50_ms", "p90_ms", "p99_ms", "max_ms", "server_cpu_us_per_request",
            "server_peak_rss_mib", "cache_hit_rate", "errors", "non_2xx", "bytes_per_answer",
            "nginx_cpu_us_per_request"]
    medians = {
        target: {k: median_of(results, k) for k in keys if median_of(results, k) is not None}
        for target, results in runs.items()
    }
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
    capacity = 1 / ratios["cpu_per_request nginx passing through/gzip / nginx compressing/gzip"]
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
        "scenario": "compress",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "products": args.products,
        "settings": {
            "rounds": args.rounds, "seconds_per_run": args.duration,
            "connections": args.connections, "warmup_s": args.warmup,
            "cache_bytes": args.cache_bytes, "pool_size": args.pool_size,
            "server_cpu": SERVER_CPU, "driver_cpu": DRIVER_CPU,
            "distinct_documents": len(set(mix.paths)), "url_list_lines": len(mix.paths),
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


def write_compress_results(result, stamp):
    os.makedirs(RESULTS, exist_ok=True)
    base = os.path.join(RESULTS, f"{stamp}-compress")
    with open(base + ".json", "w") as f:
        json.dump(result, f, indent=1)
    subprocess.run([sys.executable, os.path.join(BENCH, "chart.py"), base + ".json",
                    base + ".svg"], check=True)
    s = result["settings"]
    sizes = result["bytes_per_answer"]
    identity = sizes["identity"]["all"]
    lines = [
        f"# compress — {result['date']}",
        "",
        f"{result['products']:,} products; the storefront mix ({s['distinct_documents']:,} "
        f"distinct documents); {s['rounds']} rounds of {s['seconds_per_run']} s per target, "
        f"alternated; wrk at {s['connections']} connections on CPU {s['driver_cpu']}; "
        f"servers (nginx and its instance too) on CPU {s['server_cpu']}; cache "
        f"{s['cache_bytes'] / MIB:.0f} MiB. gzip clients send `Accept-Encoding: "
        f"{s['accept_encoding']}`.",
        "",
        "Body bytes per answer over the mix (its repeats included):",
        "",
        "| coding | all | vs identity | product | styles | related | answers compressed |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, size in sizes.items():
        lines.append(
            f"| {name} | {size['all']:,.0f} | {size['all'] / identity:.3f} | "
            f"{size['product']:,.0f} | {size['styles']:,.0f} | {size['related']:,.0f} | "
            f"{size['compressed_share']:.2f} |")
    cache = result["cache"]
    plain = cache["stored bytes only (--compression off)"]
    lines += ["", "The cache holding every document of the mix (from `/metrics`):", "",
              "| documents kept | entries | bytes | bytes per entry | vs stored bytes only |",
              "|---|---|---|---|---|"]
    for name, held in cache.items():
        lines.append(f"| {name} | {held['entries']:,} | {held['bytes']:,} | "
                     f"{held['bytes'] / max(held['entries'], 1):,.0f} | "
                     f"{held['bytes'] / max(plain['bytes'], 1):.3f} |")
    full = result["cache_full"]
    lines += [
        "",
        f"With the cache full: a service with a {full['cache_bytes'] / MIB:.0f} MiB budget, "
        f"asked by gzip clients for every document of the catalog in turn for "
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
    lines += ["", "Paired ratios (median over rounds of the per-round ratio):", ""]
    lines += [f"- {name}: {fmt(value, 3)}" for name, value in result["ratios"].items()]
    lines += ["", "Goals:", ""]
    for name, goal in result["goals"].items():
        limit = f" (limit {fmt(goal['limit'], 1)})" if "limit" in goal else ""
        lines.append(f"- {name}: {fmt(goal['value'], 3)}{limit} — "
                     f"{'met' if goal['met'] else 'MISSED'}")
    loads = [r["loadavg_after"][0] for rs in result["runs"].values() for r in rs]
    lines += [
        "",
        f"Machine load (1-min load average after each run): min {min(loads):.2f}, median "
        f"{statistics.median(loads):.2f}, max {max(loads):.2f} on {s['cpus']} CPUs.",
        "",
        f"![throughput and latency]({os.path.basename(base)}.svg)",
        "",
    ]
    with open(base + ".md", "w") as f:
        f.write("\n".join(lines))
    log(f"wrote {base}.md, .json, .svg")


# ---------------------------------------------------------------- results


def median_of(results, key):
    values = [r[key] for r in results if key in r]
    return statistics.median(values) if values else None


def paired_ratio(runs, a, b, key):
    """Median over rounds of a[key]/b[key], round by round."""
    if a not in runs or b not in runs:
        return None
    ratios = [x[key] / y[key] for x, y in zip(runs[a], runs[b]) if y.get(key)]
    return statistics.median(ratios) if ratios else None


def summarize(args, scenario, mix, body_size, cache_bytes, memory_limit, seconds, runs, extra):
    keys = ["rps", "p50_ms", "p90_ms", "p99_ms", "max_ms", "server_cpu_us_per_request",
            "server_peak_rss_mib", "cache_hit_rate", "errors", "non_2xx", "mean_ms"]
    medians = {
        target: {k: median_of(results, k) for k in keys if median_of(results, k) is not None}
        for target, results in runs.items()
    }
    ratios = {}
    for driver in ("oha", "wrk"):
        service = f"service/{driver}"
        for baseline in ("bare", "nginx"):
            other = f"{baseline}/{driver}"
            if service in runs and other in runs:
                ratios[f"rps {service} / {other}"] = paired_ratio(runs, service, other, "rps")
                ratios[f"cpu_per_request {service} / {other}"] = paired_ratio(
                    runs, service, other, "server_cpu_us_per_request")
        if service in runs and "pgbench" in runs:
            ratios[f"rps {service} / pgbench"] = paired_ratio(runs, service, "pgbench", "rps")
    service = medians.get("service/oha", {})
    total_errors = sum(r["errors"] + r.get("non_2xx", 0)
                       for t, rs in runs.items() if t.startswith("service") for r in rs)
    goals = {}
    if scenario == "hot":
        best = "service/wrk" if "service/wrk" in runs else "service/oha"
        base = "bare/wrk" if "bare/wrk" in runs else "bare/oha"
        rps_ratio = paired_ratio(runs, best, base, "rps")
        cpu_ratio = paired_ratio(runs, best, base, "server_cpu_us_per_request")
        goals["rps >= 0.90 x bare hyper"] = {"value": rps_ratio, "met": rps_ratio >= 0.90,
                                             "measured_with": f"{best} vs {base}"}
        goals["cpu/request <= 1.2 x bare hyper"] = {"value": cpu_ratio, "met": cpu_ratio <= 1.2,
                                                   "measured_with": f"{best} vs {base}"}
        if args.connections == 64:
            p99 = medians[best]["p99_ms"]
            goals["p99 <= 3 ms at 64 connections"] = {"value": p99, "met": p99 <= 3.0,
                                                      "measured_with": best}
    if scenario == "uniform":
        ratio = ratios.get("rps service/oha / pgbench")
        goals["rps >= 0.8 x pgbench"] = {"value": ratio, "met": ratio is not None and ratio >= 0.8}
        if "service/wrk-gzip" in runs:
            ratios["rps service/wrk / pgbench"] = paired_ratio(runs, "service/wrk", "pgbench",
                                                              "rps")
            ratios["rps service/wrk-gzip / pgbench"] = paired_ratio(
                runs, "service/wrk-gzip", "pgbench", "rps")
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
    rss = service.get("server_peak_rss_mib")
    if rss is not None:
        budget = cache_bytes / MIB + 64
        goals["rss <= cache budget + 64 MiB"] = {"value": rss, "limit": budget, "met": rss <= budget}
    return {
        "scenario": scenario,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "products": args.products,
        "settings": {
            "rounds": args.rounds, "seconds_per_run": seconds, "connections": args.connections,
            "warmup_s": args.warmup, "cache_bytes": cache_bytes, "pool_size": args.pool_size,
            "pgbench_clients": args.pgbench_clients,
            "server_cpu": SERVER_CPU, "driver_cpu": DRIVER_CPU,
            "memory_limit_bytes": memory_limit, "distinct_documents": len(mix.documents),
            "url_list_lines": len(mix.paths), "mean_body_bytes": body_size,
            "cpus": os.cpu_count(), "kernel": os.uname().release,
        },
        "medians": medians,
        "ratios": ratios,
        "goals": goals,
        "extra": extra,
        "runs": runs,
    }


def fmt(value, digits=2):
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def write_results(result, stamp):
    os.makedirs(RESULTS, exist_ok=True)
    base = os.path.join(RESULTS, f"{stamp}-{result['scenario']}")
    with open(base + ".json", "w") as f:
        json.dump(result, f, indent=1)
    subprocess.run([sys.executable, os.path.join(BENCH, "chart.py"), base + ".json",
                    base + ".svg"], check=True)
    s = result["settings"]
    lines = [
        f"# {result['scenario']} — {result['date']}",
        "",
        f"{result['products']:,} products; {s['rounds']} rounds of {s['seconds_per_run']} s per "
        f"target, alternated; {s['connections']} connections; server on CPU {s['server_cpu']}, "
        f"load driver on CPU {s['driver_cpu']}; cache {s['cache_bytes'] / MIB:.0f} MiB; pool "
        f"{s['pool_size']}; {s['distinct_documents']:,} distinct documents, mean body "
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
        if target == "pgbench":
            lines.append(f"| pgbench ({s['pgbench_clients']} clients) | {fmt(m.get('rps'), 0)} | "
                         f"mean {fmt(m.get('mean_ms'))} | | | | | | | {fmt(m.get('errors'), 0)} | |")
            continue
        lines.append(
            f"| {target} | {fmt(m.get('rps'), 0)} | {fmt(m.get('p50_ms'))} | {fmt(m.get('p90_ms'))} "
            f"| {fmt(m.get('p99_ms'))} | {fmt(m.get('max_ms'))} | "
            f"{fmt(m.get('server_cpu_us_per_request'), 1)} | {fmt(m.get('server_peak_rss_mib'), 1)} "
            f"| {fmt(m.get('cache_hit_rate'), 3)} | {fmt(m.get('errors'), 0)} | {fmt(m.get('non_2xx'), 0)} |"
        )
    lines += ["", "Paired ratios (median over rounds of the per-round ratio):", ""]
    lines += [f"- {name}: {fmt(value, 3)}" for name, value in result["ratios"].items()]
    lines += ["", "Goals:", ""]
    for name, goal in result["goals"].items():
        mark = "met" if goal["met"] else "MISSED"
        detail = f" ({goal['measured_with']})" if "measured_with" in goal else ""
        limit = f" (limit {fmt(goal['limit'], 1)})" if "limit" in goal else ""
        lines.append(f"- {name}: {fmt(goal['value'], 3)}{limit} — {mark}{detail}")
    if result["extra"].get("service_ready_after_s"):
        ready = ", ".join(f"{x:.2f}" for x in result["extra"]["service_ready_after_s"])
        lines += ["", f"Service ready (/readyz 200) after start, per round: {ready} s."]
    loads = [r["loadavg_after"][0] for rs in result["runs"].values() for r in rs]
    lines += [
        "",
        f"Machine load (1-min load average after each run): min {min(loads):.2f}, median "
        f"{statistics.median(loads):.2f}, max {max(loads):.2f} on {s['cpus']} CPUs.",
        "",
        f"![throughput and latency]({os.path.basename(base)}.svg)",
        "",
    ]
    with open(base + ".md", "w") as f:
        f.write("\n".join(lines))
    log(f"wrote {base}.md, .json, .svg")


def stop_on_sigterm(signum, frame):
    """Turns SIGTERM into an exception so the servers started are stopped on the way out."""
    raise KeyboardInterrupt


def main():
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scenarios", nargs="*", default=["all"],
                        help=f"any of {', '.join(SCENARIOS)}, or all")
    parser.add_argument("--products", type=int, default=FULL_PRODUCTS,
                        help="catalog scale (default the full 1,000,011)")
    parser.add_argument("--data-dir", help="an existing, materialized embedded cluster to use "
                        "(read only) instead of preparing one under bench/work/")
    parser.add_argument("--database-url", help="an existing, materialized database to use")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per run")
    parser.add_argument("--cold-seconds", type=int, default=30,
                        help="seconds measured after each restart in the cold scenario")
    parser.add_argument("--warmup", type=int, default=5, help="seconds of warm-up per server")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--sample", type=int, default=10_000,
                        help="product ids (or pages) drawn into each scenario's URL list")
    parser.add_argument("--cache-bytes", type=int, default=256 * MIB)
    parser.add_argument("--compression", default="gzip", choices=["gzip", "off"],
                        help="the service's --compression")
    parser.add_argument("--small-cache-bytes", type=int, default=1 * MIB,
                        help="the service's cache in the uniform (database path) scenario")
    parser.add_argument("--pool-size", type=int, default=4,
                        help="the service's database connections (each carries many reads)")
    parser.add_argument("--pgbench-clients", type=int, default=16,
                        help="pgbench's connections (16 gave pgbench its best rate here; "
                        "4 and 64 gave less)")
    parser.add_argument("--fill-seconds", type=int, default=40,
                        help="seconds the fill scenario asks for documents")
    parser.add_argument("--soak-seconds", type=int, default=600)
    parser.add_argument("--soak-share", type=float, default=0.5,
                        help="the soak's request rate as a share of the measured peak")
    parser.add_argument("--wrk-scenarios", default="hot,storefront",
                        help="scenarios also driven by wrk (oha saturates its core near 70k/s)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--atelier", default="atelier")
    parser.add_argument("--bare-hyper", default="bare-hyper")
    args = parser.parse_args()
    args.wrk_scenarios = set(args.wrk_scenarios.split(",")) if args.wrk_scenarios else set()
    scenarios = SCENARIOS if "all" in args.scenarios else args.scenarios
    for scenario in scenarios:
        if scenario not in SCENARIOS:
            parser.error(f"unknown scenario {scenario}")
    os.makedirs(WORK, exist_ok=True)
    url = prepare_catalog(args)
    log(f"catalog: {re.sub(r'//[^@]*@', '//', url)} ({args.products:,} products)")
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H%MZ")
    for scenario in scenarios:
        if scenario == "soak":
            write_soak_results(run_soak(args, url), stamp)
        elif scenario == "compress":
            write_compress_results(run_compress(args, url), stamp)
        elif scenario == "fill":
            write_fill_results(run_fill(args, url), stamp)
        else:
            write_results(run_scenario(args, scenario, url), stamp)


if __name__ == "__main__":
    main()
