"""The load generators, pinned to the driver CPU, and one measured run: oha and wrk over
random lines of a URL list, bench/pageview over a list of page views, pgbench running
the service's cache-miss queries, and what the server spent meanwhile."""

import http.client
import json
import os
import re
import resource
import subprocess
import sys

from .machine import MIB, loadavg
from .servers import cgroup_failcnt, metrics

# What browsers send: every request's Accept-Encoding scan sees a full header.
BROWSER_ACCEPT = "gzip, deflate, br, zstd"


def oha(port, paths_file, seconds, connections, directory, *, cpu, rate=None):
    """One oha run over random lines of the URL list, as fast as it goes or at `rate`
    requests per second in all."""
    urls = os.path.join(directory, f"urls-{port}.txt")
    if not os.path.exists(urls):
        with open(paths_file) as src, open(urls, "w") as dst:
            for line in src:
                dst.write(f"http://127.0.0.1:{port}{line}")
    out = subprocess.run(
        ["taskset", "-c", cpu, "oha", "--no-tui", "--output-format", "json",
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


def wrk(port, paths_file, seconds, connections, directory, accept=None, *, cpu):
    """One wrk run over random lines of the URL list (for rates oha cannot drive), with
    `Accept-Encoding: accept` on every request when given."""
    script = os.path.join(directory, f"wrk-{accept or 'identity'}.lua".replace(" ", ""))
    headers = "{}" if accept is None else '{["Accept-Encoding"] = "%s"}' % accept
    with open(script, "w") as f:
        f.write(WRK_SCRIPT % (paths_file, headers))
    out = subprocess.run(
        ["taskset", "-c", cpu, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
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


def page_views(driver, port, pages_file, seconds, connections, accept=None, *, cpu):
    """One run of bench/pageview (`driver`) over random lines of a file of page views,
    each line's requests sent one after another on one connection, with
    `Accept-Encoding: accept` when given. Its unit is the page view: "rps" and the
    latencies are page views', "requests" the HTTP requests answered (measure's CPU per
    request divides by those); "driver_cpu_share" is the driver's CPU time over the run's,
    near 1 when it, not the server, set the pace."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        ["taskset", "-c", cpu, driver, "--server", f"127.0.0.1:{port}", "--pages", pages_file,
         "--seconds", str(seconds), "--connections", str(connections)]
        + (["--accept-encoding", accept] if accept else []),
        check=True, capture_output=True, text=True,
    ).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = json.loads(out)
    views = max(r["page_views"], 1)
    driver_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {
        "rps": r["page_views"] / r["seconds"], "requests_per_s": r["requests"] / r["seconds"],
        "p50_ms": r["p50_ms"], "p90_ms": r["p90_ms"], "p99_ms": r["p99_ms"],
        "max_ms": r["max_ms"], "page_views": r["page_views"], "requests": r["requests"],
        "requests_per_page_view": r["page_view_requests"] / views,
        "failed_page_views": r["failed_page_views"], "non_2xx": r["non_2xx"],
        "errors": r["errors"], "bytes_per_page_view": r["wire_bytes"] / views,
        "driver_cpu_share": driver_cpu / r["seconds"],
    }


def pgbench(url, directory, scripts, seconds, clients, *, cpu):
    """The database ceiling: the service's cache-miss queries through pgbench, and the
    load average after the run."""
    command = ["taskset", "-c", cpu, "pgbench", "-n", "-M", "prepared",
               "-c", str(clients), "-j", "1", "-T", str(seconds)]
    for name in scripts:
        command += ["-f", os.path.join(directory, f"pgbench-{name}.sql") + "@1"]
    out = subprocess.run(command + [url], check=True, capture_output=True, text=True).stdout
    tps = float(re.search(r"tps = ([\d.]+) \(without initial connection time\)", out).group(1))
    latency = float(re.search(r"latency average = ([\d.]+) ms", out).group(1))
    failed = re.search(r"number of failed transactions: (\d+)", out)
    return {"rps": tps, "mean_ms": latency, "errors": int(failed.group(1)) if failed else 0,
            "loadavg_after": loadavg()}


def measure(server, drive, is_service):
    """Runs `drive` against `server`, with the server's CPU (and that of its parts
    measured apart), peak RSS and cache counters."""
    server.reset_peak_rss()
    before_cpu = server.cpu_seconds()
    before_parts = server.part_cpu_seconds()
    before_cache = metrics(server.port) if is_service else None
    before_load = loadavg()
    failcnt = cgroup_failcnt(server.cgroup)
    result = drive()
    requests = max(result["requests"], 1)
    result["server_cpu_us_per_request"] = (server.cpu_seconds() - before_cpu) * 1e6 / requests
    result["server_peak_rss_mib"] = server.peak_rss() / MIB
    result["loadavg_before"] = before_load
    result["loadavg_after"] = loadavg()
    if is_service:
        hits, misses = metrics(server.port)
        hits, misses = hits - before_cache[0], misses - before_cache[1]
        result["cache_hit_rate"] = hits / max(hits + misses, 1)
    if server.cgroup:
        result["memory_limit_hits"] = cgroup_failcnt(server.cgroup) - failcnt
    for part, seconds in server.part_cpu_seconds().items():
        result[f"{part}_cpu_us_per_request"] = (seconds - before_parts[part]) * 1e6 / requests
    return result


def answers(port, paths, accept):
    """Per distinct path, in order: the body answered with `Accept-Encoding: accept`
    (none when None) and the content coding it came in."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for path in sorted(set(paths)):
        connection.putrequest("GET", path, skip_accept_encoding=True)
        if accept is not None:
            connection.putheader("Accept-Encoding", accept)
        connection.endheaders()
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            sys.exit(f"{path} answered {response.status} on port {port}")
        yield path, body, response.getheader("Content-Encoding") or "identity"
    connection.close()


def answer_bodies(port, paths, accept):
    """Per distinct path: the body bytes answered with `Accept-Encoding: accept` (none
    when None) and the content coding they came in."""
    return {path: (len(body), coding) for path, body, coding in answers(port, paths, accept)}
