"""The command line of bench/drive.py (`bench/run --help`): the options, the catalog,
the CPUs, then each scenario named, through the runner."""

import argparse
import datetime
import os
import re
import signal

from . import runner
from .catalog import FULL_PRODUCTS, prepare_catalog
from .machine import MIB, WORK, add_cpu_options, choose_cpus, log
from .scenarios import SCENARIOS

DESCRIPTION = """Runs the benchmark scenarios of `atelier serve` with same-run baselines.

Each scenario alternates the service with its baselines round by round (service, bare
hyper, nginx, pgbench; again), then writes bench/results/<date>-<scenario>.{json,md,svg}
with medians and paired ratios. Called by bench/run, which installs the tools and builds.
"""


def stop_on_sigterm(signum, frame):
    """Turns SIGTERM into an exception so the servers started are stopped on the way out."""
    raise KeyboardInterrupt


def parser():
    parser = argparse.ArgumentParser(description=DESCRIPTION)
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
    add_cpu_options(parser)
    parser.add_argument("--atelier", default="atelier")
    parser.add_argument("--bare-hyper", default="bare-hyper")
    parser.add_argument("--pageview", default="pageview",
                        help="bench/pageview, the pageview scenario's load generator")
    return parser


def main():
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    options = parser()
    args = options.parse_args()
    args.wrk_scenarios = set(args.wrk_scenarios.split(",")) if args.wrk_scenarios else set()
    names = list(SCENARIOS) if "all" in args.scenarios else args.scenarios
    for name in names:
        if name not in SCENARIOS:
            options.error(f"unknown scenario {name}")
    cpus = choose_cpus(args.server_cpu, args.driver_cpu)
    os.makedirs(WORK, exist_ok=True)
    url = prepare_catalog(args)
    log(f"catalog: {re.sub(r'//[^@]*@', '//', url)} ({args.products:,} products); "
        f"server on CPU {cpus.server}, load generators on CPU {cpus.driver}")
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H%MZ")
    for name in names:
        runner.run(SCENARIOS[name](), args, url, cpus, stamp)
