#!/usr/bin/env python3
"""Counts the user-space instructions each server spends per request, with callgrind:
a figure that does not move with whatever else the machine runs, so small changes to the
hot path can be compared on a busy machine (wall-clock benchmarks cannot tell 5% apart
there). Kernel time (the socket calls) is not counted.

Each server runs under `valgrind --tool=callgrind`, is warmed up over the URL list (so
the service answers from its cache), has its counters zeroed, serves a fixed number of
requests driven by oha, and has its counters dumped: instructions / requests.

Bare hyper is counted twice: as the plain ceiling (one field), and sending the fields
the service sends with a document (`bare-hyper --document-fields`), so that what those
fields cost hyper is told apart from the service's own work.

Usage: instructions.py --atelier PATH --bare-hyper PATH --database-url URL
                       [--paths FILE] [--urls N] [--requests N] [--accept-encoding A]...
The default URL list is the hot scenario's (run `bench/run hot` once to draw it).
"""

import argparse
import glob
import os
import re
import subprocess
import time
import urllib.request

from atelier_bench.machine import WORK, add_cpu_options, choose_cpus, log

PORT = 3110


def start(command, name, directory, cpu):
    name = re.sub(r"[^\w.-]+", "-", name).strip("-")
    out = os.path.join(directory, f"callgrind-{name}.out")
    for old in glob.glob(out + "*"):
        os.remove(old)
    log = open(os.path.join(directory, f"callgrind-{name}.log"), "wb")
    process = subprocess.Popen(
        ["taskset", "-c", cpu, "valgrind", "--tool=callgrind",
         f"--callgrind-out-file={out}"] + command,
        stdout=log, stderr=log, start_new_session=True,
        env=dict(os.environ, ATELIER_LOG="warn"),
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/products/1", timeout=5):
                return process, out
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit(f"{name} did not answer under valgrind; see its log")


def oha(urls, requests, connections, accept, cpu):
    subprocess.run(
        ["taskset", "-c", cpu, "oha", "--no-tui", "-n", str(requests),
         "-c", str(connections), "--urls-from-file", urls,
         "-H", f"Accept-Encoding: {accept}"],
        check=True, capture_output=True,
    )


def instructions(process, out, urls, requests, connections, accept, cpu):
    return counted(process, out, None, requests,
                   lambda: oha(urls, requests, connections, accept, cpu))


def counted(process, out, command, requests, drive=None):
    """Zeroes the server's counters, drives it (`command`, or `drive()`), dumps them:
    instructions per request."""
    subprocess.run(["callgrind_control", "-z", str(process.pid)], check=True,
                   capture_output=True)
    if drive is None:
        subprocess.run(command, check=True, capture_output=True)
    else:
        drive()
    subprocess.run(["callgrind_control", "-d", str(process.pid)], check=True,
                   capture_output=True)
    total = 0
    for dump in glob.glob(out + ".*"):
        with open(dump) as f:
            for line in f:
                match = re.match(r"(?:summary|totals): (\d+)", line)
                if match:
                    total += int(match.group(1))
                    break
    return total / requests


def measure(name, command, directory, urls, args, accept="identity"):
    process, out = start(command, name, directory, args.cpus.server)
    try:
        oha(urls, args.warmup, args.connections, accept, args.cpus.driver)
        per_request = instructions(process, out, urls, args.requests, args.connections,
                                   accept, args.cpus.driver)
    finally:
        process.terminate()
        process.wait(timeout=60)
    log(f"{name}: {per_request:,.0f} instructions per request")
    return per_request


def main():
    global PORT
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--atelier", required=True)
    parser.add_argument("--bare-hyper", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--paths", default=os.path.join(WORK, "scenarios", "hot",
                                                        "paths.txt"))
    parser.add_argument("--urls", type=int, default=2000, help="URL-list lines used")
    parser.add_argument("--warmup", type=int, default=8000)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--body-bytes", type=int, default=2154)
    parser.add_argument("--port", type=int, default=3110)
    parser.add_argument("--accept-encoding", action="append",
                        help="the clients' Accept-Encoding; repeat it to count the service "
                        "once per value (default: identity)")
    add_cpu_options(parser)
    args = parser.parse_args()
    args.cpus = choose_cpus(args.server_cpu, args.driver_cpu)
    accepts = args.accept_encoding or ["identity"]
    PORT = args.port
    directory = os.path.join(WORK, "instructions")
    os.makedirs(directory, exist_ok=True)
    urls = os.path.join(directory, "urls.txt")
    with open(args.paths) as src, open(urls, "w") as dst:
        for _, line in zip(range(args.urls), src):
            dst.write(f"http://127.0.0.1:{PORT}{line}")
    services = {
        accept: measure(f"service ({accept})", [
            args.atelier, "serve", "--listen", f"127.0.0.1:{PORT}",
            "--database-url", args.database_url], directory, urls, args, accept)
        for accept in accepts
    }
    bare_command = [args.bare_hyper, f"127.0.0.1:{PORT}", str(args.body_bytes)]
    bare = measure("bare", bare_command, directory, urls, args)
    fields = measure("bare with document fields", bare_command + ["--document-fields"],
                     directory, urls, args)
    log(f"bare hyper with the service's document fields / bare hyper: {fields / bare:.2f}")
    for accept, service in services.items():
        log(f"service ({accept}) / bare hyper: {service / bare:.2f}; "
            f"/ bare hyper with document fields: {service / fields:.2f}")


if __name__ == "__main__":
    main()
