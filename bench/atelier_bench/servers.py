"""The servers a scenario measures: `atelier serve`, bare hyper, nginx serving the
exported documents, and bench/cluster's nginx in front of one instance; each pinned to
the server CPU, with its CPU time, memory and cache counters read from /proc and
/metrics."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

from .machine import BENCH, cpu_seconds, log, run

PORTS = {"service": 3100, "bare": 3101, "nginx": 3102, "bare-gzip": 3103}
CLUSTER = os.path.join(BENCH, "cluster")


class Server:
    """A server process under test, pinned to `cpu` (a taskset list)."""

    def __init__(self, name, command, port, directory, *, cpu, memory_limit=None, env=None):
        self.name, self.command, self.port = name, command, port
        self.directory, self.memory_limit, self.env = directory, memory_limit, env
        self.cpu = cpu
        self.process = None
        self.cgroup = None

    def start(self):
        log_path = os.path.join(self.directory, f"{self.name}.log")
        self.log = open(log_path, "ab")
        env = dict(os.environ, **(self.env or {}))
        self.process = subprocess.Popen(
            ["taskset", "-c", self.cpu] + self.command,
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
        return sum(cpu_seconds(pid) for pid in self.pids())

    def part_cpu_seconds(self):
        """CPU seconds of the parts measured apart as well (none for one process)."""
        return {}

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


def service_command(args, url, cache_bytes):
    return [args.atelier, "serve", "--listen", f"127.0.0.1:{PORTS['service']}",
            "--database-url", url, "--cache-bytes", str(cache_bytes),
            "--pool-size", str(args.pool_size), "--compression", args.compression]


def service(args, url, cache_bytes, directory, cpu, name="service", memory_limit=None):
    """`atelier serve` on the service port, logging only warnings."""
    return Server(name, service_command(args, url, cache_bytes), PORTS["service"], directory,
                  cpu=cpu, memory_limit=memory_limit, env={"ATELIER_LOG": "warn"})


def bare_hyper(args, name, port, body_bytes, directory, cpu, memory_limit=None):
    """bare hyper answering every request with `body_bytes` of JSON."""
    return Server(name, [args.bare_hyper, f"127.0.0.1:{port}", str(body_bytes)], port,
                  directory, cpu=cpu, memory_limit=memory_limit)


def nginx_server(docroot, directory, cpu):
    """One nginx worker serving the exported documents at the service's URL paths."""
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
    return Server("nginx", [nginx, "-c", conf, "-p", directory], PORTS["nginx"], directory,
                  cpu=cpu)


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


def cache_weight(port):
    """The service's cache entries and their weight in bytes, from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as response:
        text = response.read().decode()
    values = {}
    for name in ("atelier_cache_entries", "atelier_cache_bytes"):
        values[name] = int(float(re.search(rf"^{name}\s+(\S+)", text, re.M).group(1)))
    return {"entries": values["atelier_cache_entries"], "bytes": values["atelier_cache_bytes"]}


class Cluster(Server):
    """One `atelier serve` behind nginx with the repository's nginx.conf, started by
    bench/cluster with both on the server CPU, measured as one server (the instance,
    nginx's master and its workers)."""

    def __init__(self, name, port, directory, url, env, cpu):
        super().__init__(name, [], port, directory, cpu=cpu, env=env)
        self.run_dir = os.path.join(directory, f"cluster-{name}")
        self.url = url

    def start(self):
        env = dict(os.environ, **self.env)
        run([CLUSTER, "start", "--instances", "1", "--port", str(self.port),
             "--database-url", self.url, "--cpus", self.cpu, "--run-dir", self.run_dir],
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

    def part_cpu_seconds(self):
        """CPU time of nginx alone (master and workers), the share a machine of its own
        would carry."""
        instance = self.pid_of("instance-1.pid")
        return {"nginx": sum(cpu_seconds(pid) for pid in self.pids() if pid != instance)}

    def stop(self):
        run([CLUSTER, "stop", "--port", str(self.port), "--run-dir", self.run_dir],
            stdout=subprocess.DEVNULL)


class ClusterInstance(Server):
    """The instance of a Cluster, driven directly."""

    def __init__(self, cluster):
        super().__init__(f"{cluster.name}-instance", [], cluster.port + 1, cluster.directory,
                         cpu=cluster.cpu)
        self.cluster = cluster

    def pids(self):
        return [self.cluster.pid_of("instance-1.pid")]

    def stop(self):
        pass


def stop_clusters_left(directory, names):
    """Stops the clusters an interrupted run left in `directory`."""
    for name in names:
        run_dir = os.path.join(directory, f"cluster-{name}")
        if os.path.exists(os.path.join(run_dir, "settings")):
            run([CLUSTER, "stop", "--run-dir", run_dir], stdout=subprocess.DEVNULL)
