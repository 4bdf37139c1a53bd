#!/usr/bin/env python3
"""Profiles the service (and bare hyper) with perf: each server pinned to the server CPU
under oha load of a scenario's URL list, `perf record -g` on its pid, then the top symbols (self
time) into bench/work/profile-<scenario>-<target>.txt.

Usage: profile.py --atelier PATH --bare-hyper PATH --database-url URL [--scenario hot|uniform]
Run bench/run with that scenario first: it leaves the scenario's URL list in bench/work/.
"""

import argparse
import os
import subprocess
import threading

from atelier_bench.load import oha
from atelier_bench.machine import MIB, WORK, add_cpu_options, choose_cpus, log
from atelier_bench.servers import PORTS, bare_hyper, service


def profile(server, scenario, paths_file, directory, seconds, connections, cpu):
    data = os.path.join(WORK, f"profile-{scenario}-{server.name}.data")
    load = threading.Thread(
        target=oha,
        args=(server.port, paths_file, seconds + 4, connections, directory),
        kwargs={"cpu": cpu},
    )
    load.start()
    subprocess.run(["sleep", "2"], check=True)
    subprocess.run(
        ["perf", "record", "-q", "-g", "-F", "999", "-o", data, "-p", str(server.process.pid),
         "--", "sleep", str(seconds)],
        check=True, capture_output=True,
    )
    load.join()
    report = subprocess.run(
        ["perf", "report", "-i", data, "--no-children", "--sort", "dso,symbol", "--stdio",
         "--percent-limit", "0.7", "-g", "none"],
        check=True, capture_output=True, text=True,
    ).stdout
    out = os.path.join(WORK, f"profile-{scenario}-{server.name}.txt")
    with open(out, "w") as f:
        f.write(report)
    log(f"wrote {out}")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--atelier", required=True)
    parser.add_argument("--bare-hyper", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--scenario", choices=["hot", "uniform"], default="hot")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--body-bytes", type=int, default=2154)
    add_cpu_options(parser)
    args = parser.parse_args()
    cpus = choose_cpus(args.server_cpu, args.driver_cpu)
    directory = os.path.join(WORK, "scenarios", args.scenario)
    paths_file = os.path.join(directory, "paths.txt")
    args.pool_size = 16
    args.compression = "gzip"
    cache_bytes = (256 if args.scenario == "hot" else 1) * MIB
    server = service(args, args.database_url, cache_bytes, directory, cpus.server).start()
    try:
        oha(server.port, paths_file, 5, args.connections, directory, cpu=cpus.driver)
        profile(server, args.scenario, paths_file, directory, args.seconds, args.connections,
                cpus.driver)
    finally:
        server.stop()
    if args.scenario != "hot":
        return
    bare = bare_hyper(args, "bare", PORTS["bare"], args.body_bytes, directory,
                      cpus.server).start()
    try:
        profile(bare, args.scenario, paths_file, directory, args.seconds, args.connections,
                cpus.driver)
    finally:
        bare.stop()


if __name__ == "__main__":
    main()
