#!/usr/bin/env python3
"""CPU an idle `atelier serve` costs on the embedded default: the server (with the
follower it runs), and every PostgreSQL process of its cluster, over a quiet minute.

    bench/idle.py --atelier PATH --data-dir DIR [--seconds 60] [--warmup 10]

DIR is an embedded cluster with a materialized catalog (`bench/run` leaves one in
bench/work/pg-N). Nothing sends requests or changes; the figure is CPU-seconds per
second of wall clock, as a percentage of one core, from /proc (user + system time).
"""

import argparse
import os
import signal
import subprocess
import time
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")
PORT = 3120


def ticks(pid):
    """User and system ticks of one process (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (FileNotFoundError, ProcessLookupError):
        return 0


def cluster_processes(data_dir):
    """The postmaster of the cluster in `data_dir` and its children."""
    with open(os.path.join(data_dir, "postmaster.pid")) as f:
        postmaster = int(f.readline())
    children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True,
                              text=True).stdout.split()
    return [postmaster] + [int(pid) for pid in children]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--atelier", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    data_dir = os.path.abspath(args.data_dir)
    server = subprocess.Popen(
        [args.atelier, "serve", "--listen", f"127.0.0.1:{PORT}", "--data-dir", data_dir],
        env=dict(os.environ, ATELIER_LOG="warn"), start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/readyz", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the server never became ready")
                time.sleep(0.5)
        time.sleep(args.warmup)
        # The cluster's own data directory is DIR/pg for the embedded default.
        pg_data = os.path.join(data_dir, "pg")
        processes = cluster_processes(pg_data)
        before = {pid: ticks(pid) for pid in processes}
        server_before = ticks(server.pid)
        started = time.monotonic()
        time.sleep(args.seconds)
        elapsed = time.monotonic() - started
        server_ticks = ticks(server.pid) - server_before
        database_ticks = sum(ticks(pid) - before[pid] for pid in processes)
        share = lambda t: 100 * t / CLK_TCK / elapsed
        print(f"idle for {elapsed:.0f} s: server and follower {server_ticks} ticks "
              f"({share(server_ticks):.3f} % of a core), PostgreSQL {database_ticks} ticks "
              f"({share(database_ticks):.3f} %), together "
              f"{share(server_ticks + database_ticks):.3f} % of a core")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait()


if __name__ == "__main__":
    main()
