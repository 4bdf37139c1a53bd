//! A highly available PostgreSQL on loopback, from pg_auto_failover (Debian's
//! `postgresql-15-auto-failover`): a monitor and two nodes, a primary and a synchronous
//! standby, each run by its own `pg_autoctl` keeper. The monitor promotes the standby
//! when the primary stops answering; a node that comes back rejoins as a standby.
//!
//! It is what the failover tests and `bench/failover` run against, and the smallest
//! form of the layout docs/operations.md describes. Nodes take TCP connections on
//! 127.0.0.1 only, trusted without a password: a trial on one machine, not a secured
//! deployment. The timeouts are shortened to loopback's (see [`MONITOR_SETTINGS`]).
//!
//! [`Formation::kill`] is a machine that dies: its keeper and every PostgreSQL process
//! of its node get SIGKILL at once, so nothing restarts it and no client sees a clean
//! shutdown.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use super::embedded::{SERVICE_USER, find_server_binaries, give_to_service_user, is_root};
use crate::{Error, Result};

/// The monitor's failure detection, shortened from its defaults (a health check every
/// 5 s, unhealthy after 20 s, a 30 s wait for a dead primary to demote itself) to a
/// loopback's: a dead primary is noticed within about 2 s and replaced within about 6.
/// The demote wait must stay longer than the keepers' network partition timeout
/// ([`NETWORK_PARTITION_SECONDS`]): a primary cut off from the monitor and its standby
/// demotes itself within that time, so two primaries never take writes at once.
pub const MONITOR_SETTINGS: [(&str, &str); 6] = [
    ("pgautofailover.health_check_period", "1000"),
    ("pgautofailover.health_check_timeout", "1000"),
    ("pgautofailover.health_check_retry_delay", "500"),
    ("pgautofailover.health_check_max_retries", "1"),
    ("pgautofailover.node_considered_unhealthy_timeout", "2000"),
    ("pgautofailover.primary_demote_timeout", "4000"),
];

/// How long a keeper whose primary lost both the monitor and its standby waits before
/// demoting it (the default is 20 s).
pub const NETWORK_PARTITION_SECONDS: u32 = 3;

/// The superuser every URL names (trusted on loopback).
const USER: &str = "postgres";
/// How long creating a member, or the formation settling, may take.
const PATIENCE: Duration = Duration::from_secs(120);

/// One of the two data nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Node(pub usize);

/// A monitor and two nodes under one directory, each member's keeper a child process of
/// this value; every member is killed when it is dropped.
pub struct Formation {
    root: PathBuf,
    bin_dir: PathBuf,
    monitor_port: u16,
    node_ports: [u16; 2],
    /// The keepers, by member: the monitor, then the nodes.
    keepers: Mutex<[Option<Child>; 3]>,
}

impl Formation {
    /// Creates the formation in `root` (empty or missing) with a database `dbname` on
    /// TCP ports `ports` (the monitor's, then the two nodes'), starts every member and
    /// returns once node 0 is the primary and node 1 its synchronous standby.
    pub async fn create(root: &Path, ports: [u16; 3], dbname: &str) -> Result<Formation> {
        let bin_dir = find_server_binaries()
            .ok_or_else(|| Error::Embedded("PostgreSQL server binaries not found".into()))?;
        std::fs::create_dir_all(root).map_err(|e| Error::io("create", root, e))?;
        let root = root
            .canonicalize()
            .map_err(|e| Error::io("resolve", root, e))?;
        for dir in ["", "config", "share", "run"] {
            let dir = root.join(dir);
            std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
            give_to_service_user(&dir)?;
        }
        let formation = Formation {
            root,
            bin_dir,
            monitor_port: ports[0],
            node_ports: [ports[1], ports[2]],
            keepers: Mutex::new([None, None, None]),
        };
        formation.create_monitor().await?;
        for node in [Node(0), Node(1)] {
            formation.create_node(node, dbname).await?;
        }
        formation.settled().await?;
        Ok(formation)
    }

    /// The URL of database `dbname` on both nodes: clients take the first that answers
    /// (and, with `target_session_attrs=read-write`, the first that takes writes).
    pub fn url(&self, dbname: &str) -> String {
        let [first, second] = self.node_ports;
        format!("postgres://{USER}@127.0.0.1:{first},127.0.0.1:{second}/{dbname}")
    }

    /// The URL of database `dbname` on `node` alone.
    pub fn node_url(&self, node: Node, dbname: &str) -> String {
        format!(
            "postgres://{USER}@127.0.0.1:{}/{dbname}",
            self.node_ports[node.0]
        )
    }

    /// The monitor's own database, where its view of the nodes is.
    pub fn monitor_url(&self) -> String {
        format!(
            "postgres://{USER}@127.0.0.1:{}/pg_auto_failover",
            self.monitor_port
        )
    }

    /// The node the monitor holds as the primary, when one is (a node that reached the
    /// state it was assigned, `primary`, `wait_primary` or `single`).
    pub async fn primary(&self) -> Result<Option<Node>> {
        Ok(self
            .states()
            .await?
            .into_iter()
            .find(|(_, reported, assigned)| {
                reported == assigned && ["primary", "wait_primary", "single"].contains(&&**reported)
            })
            .map(|(node, _, _)| node))
    }

    /// Each node's state as the monitor has it: (node, reported, assigned).
    pub async fn states(&self) -> Result<Vec<(Node, String, String)>> {
        const SQL: &str = "SELECT nodename, reportedstate::text, goalstate::text \
                           FROM pgautofailover.node ORDER BY nodeid";
        let monitor = super::connect(&self.monitor_url()).await?;
        let rows = monitor.query(SQL, &[]).await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let name: String = row.get(0);
                let index = name.strip_prefix("node")?.parse::<usize>().ok()?;
                Some((Node(index), row.get(1), row.get(2)))
            })
            .collect())
    }

    /// Returns once one node is the primary and the other its standby, both as assigned.
    pub async fn settled(&self) -> Result<()> {
        self.wait_until("a primary and a secondary", |states| {
            let mut reported: Vec<&str> = states
                .iter()
                .filter(|(_, reported, assigned)| reported == assigned)
                .map(|(_, reported, _)| reported.as_str())
                .collect();
            reported.sort_unstable();
            reported == ["primary", "secondary"]
        })
        .await
    }

    /// Returns once a node other than `old` is the primary; that node.
    pub async fn promoted(&self, old: Node) -> Result<Node> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(node)) = self.primary().await
                && node != old
            {
                return Ok(node);
            }
            if Instant::now() > deadline {
                return Err(self.failure("no standby was promoted"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The machine of `node` dies: its keeper and its PostgreSQL processes get SIGKILL.
    pub async fn kill(&self, node: Node) {
        let mut keepers = self.keepers.lock().await;
        kill_member(&mut keepers[node.0 + 1], &self.node_dir(node));
    }

    /// Starts `node`'s keeper again (after [`Formation::kill`]): it rejoins the
    /// formation as a standby of the current primary, dropping what it had written past
    /// the promotion. With pg_auto_failover 2.0 on PostgreSQL 15 the keeper's pg_rewind
    /// fails and it takes a new base backup, which waits for a checkpoint on the
    /// primary (a `CHECKPOINT` there starts it at once). Returns at once;
    /// [`Formation::settled`] waits for it.
    pub async fn rejoin(&self, node: Node) -> Result<()> {
        let keeper = self.run_keeper(&self.node_dir(node), &format!("node{}", node.0))?;
        self.keepers.lock().await[node.0 + 1] = Some(keeper);
        Ok(())
    }

    /// Kills every member at once (nothing here is kept).
    pub async fn stop(&self) {
        let mut keepers = self.keepers.lock().await;
        for (member, keeper) in keepers.iter_mut().enumerate() {
            kill_member(keeper, &self.member_dir(member));
        }
    }

    async fn create_monitor(&self) -> Result<()> {
        let pgdata = self.root.join("monitor");
        let port = self.monitor_port.to_string();
        self.autoctl(
            &["create", "monitor", "--pgport", &port],
            &pgdata,
            "create the monitor",
        )
        .await?;
        let keeper = self.run_keeper(&pgdata, "monitor")?;
        self.keepers.lock().await[0] = Some(keeper);
        let monitor = self.reach(&self.monitor_url()).await?;
        for (name, value) in MONITOR_SETTINGS {
            monitor
                .batch_execute(&format!("ALTER SYSTEM SET {name} = {value}"))
                .await?;
        }
        monitor.batch_execute("SELECT pg_reload_conf()").await?;
        Ok(())
    }

    async fn create_node(&self, node: Node, dbname: &str) -> Result<()> {
        let pgdata = self.node_dir(node);
        let name = format!("node{}", node.0);
        let port = self.node_ports[node.0].to_string();
        let monitor = format!("{}?sslmode=disable", self.monitor_url())
            .replace(&format!("{USER}@"), "autoctl_node@");
        self.autoctl(
            &[
                "create",
                "postgres",
                "--pgport",
                &port,
                "--name",
                &name,
                "--dbname",
                dbname,
                "--monitor",
                &monitor,
            ],
            &pgdata,
            "create a node",
        )
        .await?;
        let partition = NETWORK_PARTITION_SECONDS.to_string();
        self.autoctl(
            &[
                "config",
                "set",
                "timeout.network_partition_timeout",
                &partition,
            ],
            &pgdata,
            "configure a node",
        )
        .await?;
        let keeper = self.run_keeper(&pgdata, &name)?;
        self.keepers.lock().await[node.0 + 1] = Some(keeper);
        // The second node copies the first: the first must be the primary by then.
        if node == Node(0) {
            self.wait_until("the first node is the primary", |states| {
                states
                    .iter()
                    .any(|(node, reported, _)| *node == Node(0) && reported == "single")
            })
            .await?;
        }
        Ok(())
    }

    fn node_dir(&self, node: Node) -> PathBuf {
        self.member_dir(node.0 + 1)
    }

    /// The data directory of a member: 0 is the monitor, then the nodes.
    fn member_dir(&self, member: usize) -> PathBuf {
        match member {
            0 => self.root.join("monitor"),
            node => self.root.join(format!("node{}", node - 1)),
        }
    }

    /// Runs one `pg_autoctl` command on `pgdata` to completion.
    async fn autoctl(&self, args: &[&str], pgdata: &Path, what: &str) -> Result<()> {
        let mut command = self.autoctl_command(args, pgdata);
        if matches!(args.first(), Some(&"create")) {
            command.args(["--hostname", "127.0.0.1", "--auth", "trust", "--no-ssl"]);
            command.args(["--listen", "127.0.0.1"]);
            command.arg("--pgctl").arg(self.bin_dir.join("pg_ctl"));
        }
        let output = command
            .output()
            .await
            .map_err(|e| Error::Embedded(format!("cannot run pg_autoctl to {what}: {e}")))?;
        if output.status.success() {
            return Ok(());
        }
        Err(Error::Embedded(format!(
            "pg_autoctl could not {what} ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }

    /// Starts `pg_autoctl run` on `pgdata` in a process group of its own, logging to
    /// `<name>.log`.
    fn run_keeper(&self, pgdata: &Path, name: &str) -> Result<Child> {
        let log_path = self.root.join(format!("{name}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| Error::io("open", &log_path, e))?;
        let err = log
            .try_clone()
            .map_err(|e| Error::io("open", &log_path, e))?;
        self.autoctl_command(&["run"], pgdata)
            .stdout(log)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::Embedded(format!("cannot start pg_autoctl run: {e}")))
    }

    /// `pg_autoctl ARGS --pgdata PGDATA`, as the service user when we are root, with its
    /// configuration and state kept under the formation's directory.
    fn autoctl_command(&self, args: &[&str], pgdata: &Path) -> Command {
        let mut command = if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", SERVICE_USER, "--", "pg_autoctl"]);
            command
        } else {
            Command::new("pg_autoctl")
        };
        command
            .args(args)
            .arg("--pgdata")
            .arg(pgdata)
            .env("XDG_CONFIG_HOME", self.root.join("config"))
            .env("XDG_DATA_HOME", self.root.join("share"))
            .env("XDG_RUNTIME_DIR", self.root.join("run"))
            .env("PG_CONFIG", self.bin_dir.join("pg_config"))
            .stdin(Stdio::null());
        command
    }

    /// A connection to `url` once its server takes them.
    async fn reach(&self, url: &str) -> Result<tokio_postgres::Client> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match super::connect(url).await {
                Ok(client) => return Ok(client),
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn wait_until(
        &self,
        what: &str,
        done: impl Fn(&[(Node, String, String)]) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(states) = self.states().await
                && done(&states)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.failure(&format!("timed out waiting until {what}")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An error naming `what` went wrong, with the end of each member's log.
    fn failure(&self, what: &str) -> Error {
        let mut message = what.to_string();
        for name in ["monitor", "node0", "node1"] {
            let log =
                std::fs::read_to_string(self.root.join(format!("{name}.log"))).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            message.push_str(&format!("\n--- {name}.log (last lines)\n"));
            for line in tail.into_iter().rev() {
                message.push_str(line);
                message.push('\n');
            }
        }
        Error::Embedded(message)
    }
}

impl Drop for Formation {
    fn drop(&mut self) {
        for member in 0..3 {
            let pgdata = self.member_dir(member);
            kill_member(&mut self.keepers.get_mut()[member], &pgdata);
        }
    }
}

/// Kills a member's PostgreSQL processes and its keeper (the keeper's whole process
/// group); tokio reaps the keeper.
fn kill_member(keeper: &mut Option<Child>, pgdata: &Path) {
    if let Ok(text) = std::fs::read_to_string(pgdata.join("postmaster.pid"))
        && let Some(postmaster) = text.lines().next().and_then(|pid| pid.trim().parse().ok())
    {
        let mut doomed = children_of(postmaster);
        doomed.push(postmaster);
        for pid in doomed {
            // SAFETY: kill(2) with a pid read from the member's files; no memory shared.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    // The postmaster and its children went first, so no keeper restarts them.
    if let Some(keeper) = keeper.take()
        && let Some(group) = keeper.id()
    {
        // SAFETY: as above; the keeper leads a process group of its own.
        unsafe { libc::killpg(group as i32, libc::SIGKILL) };
    }
}

/// The processes whose parent is `parent`, from /proc.
fn children_of(parent: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // The command name may hold spaces: fields resume after its closing paren.
            let after_name = &stat[stat.rfind(')')? + 2..];
            let ppid: i32 = after_name.split(' ').nth(1)?.parse().ok()?;
            (ppid == parent).then_some(pid)
        })
        .collect()
}
