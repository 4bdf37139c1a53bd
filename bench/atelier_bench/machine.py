"""What the benchmark knows of the machine it runs on: where it keeps its files, which
CPUs the server under test and the load generators get, and what it reads of /proc."""

import os
import subprocess
import sys
import time
from dataclasses import dataclass

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(BENCH, "work")
RESULTS = os.path.join(BENCH, "results")
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024

# Environment variables naming the CPUs (taskset lists), for the options' defaults.
SERVER_CPU_ENV = "BENCH_SERVER_CPU"
DRIVER_CPU_ENV = "BENCH_DRIVER_CPU"


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(command, **kwargs):
    log("$ " + " ".join(command))
    return subprocess.run(command, check=True, **kwargs)


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def cpu_seconds(pid):
    """User and system time of one process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass(frozen=True)
class Cpus:
    """Where things run, as taskset CPU lists: the server under test on one CPU, the load
    generators (oha, wrk, pgbench, the freshness writer) on another."""

    server: str
    driver: str


def usable_cpus():
    """The CPUs this process may run on (its affinity, which a container or taskset may
    have narrowed), in order."""
    return sorted(os.sched_getaffinity(0))


def add_cpu_options(parser):
    """--server-cpu and --driver-cpu, by default from the environment, else chosen by
    choose_cpus."""
    parser.add_argument("--server-cpu", default=os.environ.get(SERVER_CPU_ENV),
                        help="CPU (taskset list) of the server under test; default "
                        f"${SERVER_CPU_ENV}, else the first CPU this process may use")
    parser.add_argument("--driver-cpu", default=os.environ.get(DRIVER_CPU_ENV),
                        help="CPU (taskset list) of the load generators; default "
                        f"${DRIVER_CPU_ENV}, else the first other CPU this process may use")


def parse_cpu_list(text):
    """The CPUs of a taskset list such as "0", "2-3" or "0,2"."""
    cpus = set()
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def choose_cpus(server=None, driver=None):
    """The server's and the load generators' CPUs: those given, else the first two CPUs
    this process may use. Exits with an explanation when that is one CPU and neither
    was named: the figures would then measure the server and its load at once."""
    usable = usable_cpus()
    for name, value in (("--server-cpu", server), ("--driver-cpu", driver)):
        if value is None:
            continue
        try:
            outside = parse_cpu_list(value) - set(usable)
        except ValueError:
            sys.exit(f"{name} {value}: not a CPU list (e.g. 0, 2-3 or 0,2)")
        if outside:
            sys.exit(f"{name} {value}: CPU {min(outside)} is not among those this process "
                     f"may use ({','.join(map(str, usable))})")
    if server is None and driver is None and len(usable) < 2:
        sys.exit(
            f"only CPU {usable[0]} is available to the benchmark: the server under test and "
            "the load generators each need a CPU of their own, or every figure measures "
            "both at once. Run it where two CPUs are free, or name them with --server-cpu "
            f"and --driver-cpu (${SERVER_CPU_ENV}, ${DRIVER_CPU_ENV}); the same CPU for "
            "both runs anyway.")
    if server is None:
        taken = parse_cpu_list(driver) if driver is not None else set()
        server = str(next((c for c in usable if c not in taken), usable[0]))
    if driver is None:
        taken = parse_cpu_list(server)
        driver = str(next((c for c in usable if c not in taken), usable[0]))
    if parse_cpu_list(server) & parse_cpu_list(driver):
        log(f"the server (CPU {server}) and the load generators (CPU {driver}) share a CPU: "
            "each figure includes the other's work")
    return Cpus(server=server, driver=driver)
