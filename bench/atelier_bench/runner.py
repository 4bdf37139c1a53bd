"""The one runner every scenario goes through: a scenario declares what it measures
(Scenario, its Targets); the runner prepares it, warms it up, drives every target in
turn for the scenario's rounds, stops what it started, and hands the runs to the
scenario's result and to the report."""

import os
import shutil
from dataclasses import dataclass
from typing import Callable

from . import report
from .load import measure
from .machine import WORK, log


@dataclass
class Target:
    """One run per round: a load driven at a server, or at the database alone.

    `drive(server, seconds)` runs it and returns its figures. The server is the one
    the scenario started as `server`, or one started afresh for every run from
    `fresh_server` and stopped after it; None for a load that needs neither."""

    name: str
    drive: Callable
    server: str | None = None
    fresh_server: Callable | None = None
    # The server's CPU per request, peak RSS and the load average around the run.
    measured: bool = True
    # The service's cache hit rate over the run, from /metrics.
    reads_cache: bool = False
    # Driven for --warmup seconds before the first round.
    warm_up: bool = False


class Bench:
    """What a scenario runs with: the options, the catalog's URL, the CPUs, its own
    directory under bench/work/scenarios, and the servers it started."""

    def __init__(self, args, url, cpus, directory):
        self.args, self.url, self.cpus, self.directory = args, url, cpus, directory
        self.servers = {}
        # Seconds from start to ready of every server started afresh, by name.
        self.ready_after = {}

    def start(self, name, server):
        """Starts `server`, to be stopped when the scenario's runs end."""
        self.servers[name] = server.start()
        return server

    def stop_servers(self):
        for server in self.servers.values():
            server.stop()
        self.servers = {}


class Scenario:
    """A scenario: what it prepares, which targets each round drives, and how its result
    reads. Subclasses set `name` and override what differs."""

    name = None

    def rounds(self, args):
        return args.rounds

    def seconds(self, args):
        return args.duration

    def clear(self, directory):
        """Empties the scenario's directory of an earlier run's files."""
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)

    def prepare(self, bench):
        """Draws the requests and starts the servers every round uses (bench.start)."""

    def targets(self, bench):
        raise NotImplementedError

    def after(self, bench, runs):
        """What is measured once the rounds' servers have stopped."""

    def result(self, bench, runs):
        """The result as written to JSON."""
        raise NotImplementedError

    def markdown(self, result, name):
        """The result as Markdown; `name` is the files' name without extension."""
        raise NotImplementedError

    def chart(self, result, json_path, svg_path):
        """Draws the result as SVG; False when the scenario has no chart."""
        report.draw_chart(json_path, svg_path)
        return True


def run_target(bench, target, seconds):
    """One run of `target`: its figures."""

    def drive(server):
        if not target.measured:
            return target.drive(server, seconds)
        return measure(server, lambda: target.drive(server, seconds), target.reads_cache)

    if target.fresh_server is None:
        return drive(bench.servers.get(target.server))
    server = target.fresh_server().start()
    bench.ready_after.setdefault(server.name, []).append(server.ready_after)
    try:
        return drive(server)
    finally:
        server.stop()


def describe(result):
    """One log line of a run's figures."""
    parts = [f"{result['rps']:.0f} rps"]
    if "p99_ms" in result:
        parts.append(f"p99 {result['p99_ms']:.2f} ms")
    if "server_cpu_us_per_request" in result:
        parts.append(f"{result['server_cpu_us_per_request']:.1f} CPU-µs/req")
    if "bytes_per_answer" in result:
        parts.append(f"{result['bytes_per_answer']:.0f} B/answer")
    parts.append(f"errors {result['errors']}+{result.get('non_2xx', 0)}")
    return ", ".join(parts)


def run(scenario, args, url, cpus, stamp):
    """Runs `scenario` and writes its result files, named after `stamp`."""
    directory = os.path.join(WORK, "scenarios", scenario.name)
    scenario.clear(directory)
    bench = Bench(args, url, cpus, directory)
    rounds, seconds = scenario.rounds(args), scenario.seconds(args)
    try:
        scenario.prepare(bench)
        targets = scenario.targets(bench)
        runs = {target.name: [] for target in targets}
        # Warm-up: fills the cache and the pool, and brings the baselines to speed.
        for target in targets:
            if target.warm_up:
                target.drive(bench.servers.get(target.server), args.warmup)
        for round_number in range(1, rounds + 1):
            log(f"{scenario.name}: round {round_number}/{rounds}")
            for target in targets:
                result = run_target(bench, target, seconds)
                runs[target.name].append(result)
                log(f"  {target.name}: {describe(result)}")
    finally:
        bench.stop_servers()
    scenario.after(bench, runs)
    report.write(scenario.result(bench, runs), stamp, scenario.markdown, scenario.chart)
