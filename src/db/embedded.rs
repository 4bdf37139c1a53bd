//! The embedded default database: a PostgreSQL cluster this project creates and runs
//! itself from the system's server binaries, in a directory of its own. It is left
//! running between commands (`atelier db stop` ends it). A cluster can also be made a
//! primary and get streaming replicas of its own.
//!
//! Only the OS user the server runs as (and root) can connect: the server takes no TCP
//! connections, and its Unix socket lies in a directory of mode 0700 that only that user
//! can enter. Its `pg_hba.conf` trusts that socket and accepts nothing else, so every
//! role, the superuser and the read-only reader alike, is closed to other local users,
//! with no password to keep. A cluster made by an older version, which trusted every
//! connection on 127.0.0.1, is rewritten this way and restarted on its next
//! [`Cluster::ensure_running`].

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Error, Result};

/// The OS user PostgreSQL runs as when this process is root (postgres refuses root).
pub(crate) const SERVICE_USER: &str = "postgres";
/// The superuser role created by initdb.
const SUPERUSER: &str = "postgres";
/// Our settings, kept apart from the stock postgresql.conf.
const SETTINGS_FILE: &str = "atelier.conf";
/// The port of a new cluster. With no TCP it only names the socket file
/// (`.s.PGSQL.<port>`), which lies in the cluster's own directory.
const PORT: u16 = 5432;
/// The directory, under the cluster's root, that holds its socket.
const SOCKET_DIR: &str = "socket";
/// The longest socket path the kernel takes (`sun_path` less its terminating NUL).
const MAX_SOCKET_PATH: usize = 107;
/// The client authentication of every embedded cluster: the socket, whose directory
/// only the cluster's OS user can enter, and nothing else (no `host` line: TCP is
/// refused even where `listen_addresses` is set).
const HBA: &str = "\
# Written by atelier, which puts it back whenever it differs. The server listens on a Unix
# socket only, in a directory of mode 0700 that only its OS user can enter; whoever
# reaches the socket owns the cluster's files anyway. No TCP connection is accepted.
local   all           all   trust
local   replication   all   trust
";

/// How a cluster is tuned when it is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync on: the default for a cluster that holds a catalog worth keeping.
    Durable,
    /// fsync off: for throwaway test clusters, where speed matters and a crash loses nothing.
    Throwaway,
}

/// A PostgreSQL cluster under `root/pg`, logging to `root/postgres.log`.
#[derive(Debug, Clone)]
pub struct Cluster {
    root: PathBuf,
    bin_dir: PathBuf,
}

impl Cluster {
    /// The cluster in `root`, which need not exist yet. Fails with a message naming the
    /// package to install when no PostgreSQL server binaries are found.
    pub fn new(root: &Path) -> Result<Self> {
        let bin_dir = find_server_binaries().ok_or_else(|| {
            Error::Embedded(
                "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found in \
                 `pg_config --bindir`, /usr/lib/postgresql/*/bin or PATH; install them \
                 (Debian/Ubuntu: `apt-get install postgresql`) or set DATABASE_URL"
                    .into(),
            )
        })?;
        fs::create_dir_all(root).map_err(|e| Error::io("create", root, e))?;
        let root = root
            .canonicalize()
            .map_err(|e| Error::io("resolve", root, e))?;
        Ok(Cluster { root, bin_dir })
    }

    /// The directory holding the cluster's files.
    pub fn pgdata(&self) -> PathBuf {
        self.root.join("pg")
    }

    fn log_file(&self) -> PathBuf {
        self.root.join("postgres.log")
    }

    /// Whether initdb has run here.
    pub fn is_initialized(&self) -> bool {
        self.pgdata().join("PG_VERSION").exists()
    }

    /// The directory holding the server's Unix socket (mode 0700, the server's OS user's).
    pub fn socket_dir(&self) -> PathBuf {
        self.root.join(SOCKET_DIR)
    }

    /// The port in the cluster's settings; it names the socket file.
    pub fn port(&self) -> Result<u16> {
        let path = self.pgdata().join(SETTINGS_FILE);
        let text = fs::read_to_string(&path).map_err(|e| Error::io("read", &path, e))?;
        text.lines()
            .filter_map(|line| line.trim().strip_prefix("port = "))
            .find_map(|port| port.trim().parse().ok())
            .ok_or_else(|| Error::Embedded(format!("no port in {}", path.display())))
    }

    /// The host and port of this cluster in a connection URL: the socket directory,
    /// percent-encoded, and the port. URLs that list several clusters join these with `,`.
    pub fn host_and_port(&self) -> Result<String> {
        Ok(format!(
            "{}:{}",
            percent_encode(self.socket_dir().as_os_str().as_bytes()),
            self.port()?
        ))
    }

    /// The connection URL of database `dbname` in this cluster, as the superuser, over
    /// the socket (libpq and psql take it too).
    pub fn url(&self, dbname: &str) -> Result<String> {
        Ok(format!(
            "postgres://{SUPERUSER}@{}/{dbname}",
            self.host_and_port()?
        ))
    }

    /// Whether the cluster's server is running.
    pub fn is_running(&self) -> bool {
        self.is_initialized()
            && self
                .pg_command("pg_ctl")
                .arg("status")
                .arg("-D")
                .arg(self.pgdata())
                .output()
                .is_ok_and(|out| out.status.success())
    }

    /// Creates the cluster if needed, makes sure it takes connections on its socket
    /// only, and starts it if it is not running. A running server whose settings had to
    /// change (a cluster made by an older version) is restarted. Several processes may
    /// call this at once: a lock file serialises them.
    pub fn ensure_running(&self, durability: Durability) -> Result<()> {
        let _lock = DirLock::acquire(&self.root.join("cluster.lock"))?;
        if !self.is_initialized() {
            self.init(durability)?;
            tracing::info!(
                "created the embedded PostgreSQL cluster in {}",
                self.pgdata().display()
            );
        }
        let changed = self.secure()?;
        if self.is_running() {
            // A server with no socket file runs with settings other than these.
            if !changed && self.socket_path(self.port()?)?.exists() {
                return Ok(());
            }
            tracing::warn!(
                "restarting the embedded PostgreSQL in {} so that it takes connections \
                 only on its own socket, from its own OS user",
                self.root.display()
            );
            self.stop()?;
        }
        self.start()?;
        // Said once, when it starts: the server outlives this command.
        tracing::info!(
            "started the embedded PostgreSQL cluster in {}; it logs to {} and keeps \
             running after this command (`atelier db stop --data-dir {}` stops it)",
            self.pgdata().display(),
            self.log_file().display(),
            self.root.display()
        );
        Ok(())
    }

    /// Writes the settings and `pg_hba.conf` that close the cluster to other users (no
    /// TCP, the socket in a directory only the server's OS user can enter) where they
    /// differ, and prepares that directory. Returns whether a file changed, so that a
    /// running server must restart to apply it.
    fn secure(&self) -> Result<bool> {
        let path = self.pgdata().join(SETTINGS_FILE);
        let text = fs::read_to_string(&path).map_err(|e| Error::io("read", &path, e))?;
        let settings = with_setting(&text, "listen_addresses", "''");
        let settings = with_setting(
            &settings,
            "unix_socket_directories",
            &self.socket_setting()?,
        );
        let mut changed = false;
        if settings != text {
            write_file(&path, settings.as_bytes())?;
            changed = true;
        }
        let hba = self.pgdata().join("pg_hba.conf");
        if fs::read_to_string(&hba).ok().as_deref() != Some(HBA) {
            // Rewritten in place, so the file keeps its owner and mode.
            write_file(&hba, HBA.as_bytes())?;
            changed = true;
        }
        self.socket_path(self.port()?)?;
        self.prepare_socket_dir()?;
        Ok(changed)
    }

    /// The path of the server's socket file on `port`, checked against the kernel's limit.
    fn socket_path(&self, port: u16) -> Result<PathBuf> {
        let path = self.socket_dir().join(format!(".s.PGSQL.{port}"));
        if path.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(Error::Embedded(format!(
                "the cluster's socket path {} is longer than the {MAX_SOCKET_PATH} bytes a \
                 Unix socket path may have; choose a shorter --data-dir (ATELIER_DATA_DIR)",
                path.display()
            )));
        }
        Ok(path)
    }

    /// `unix_socket_directories` naming the socket directory, quoted for the settings file.
    fn socket_setting(&self) -> Result<String> {
        let dir = self.socket_dir();
        let text = dir.to_str().ok_or_else(|| {
            Error::Embedded(format!(
                "the cluster's directory {} is not valid UTF-8; choose another --data-dir",
                dir.display()
            ))
        })?;
        Ok(socket_setting(text))
    }

    /// Creates the socket directory if needed: mode 0700, owned by the server's OS user,
    /// so that no other user (root aside) can reach the socket.
    fn prepare_socket_dir(&self) -> Result<()> {
        let dir = self.socket_dir();
        fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io("set permissions of", &dir, e))?;
        self.give_to_service_user(&dir)
    }

    fn init(&self, durability: Durability) -> Result<()> {
        // A cluster whose socket could not be made is not worth creating.
        self.socket_path(PORT)?;
        let pgdata = self.pgdata();
        if pgdata.exists() {
            // A half-made cluster from an interrupted initdb: start again.
            fs::remove_dir_all(&pgdata).map_err(|e| Error::io("remove", &pgdata, e))?;
        }
        self.prepare_dir(&self.root)?;
        self.run(
            self.pg_command("initdb")
                .arg("-D")
                .arg(&pgdata)
                .args(["-U", SUPERUSER, "--auth-local=trust", "--auth-host=reject"])
                .args(["--encoding=UTF8", "--locale=C", "--no-sync"]),
            "initdb",
        )?;
        let socket_dirs = self.socket_setting()?;
        let fsync = match durability {
            Durability::Durable => "on",
            Durability::Throwaway => "off",
        };
        // wal_level=minimal lets COPY into tables created in the same transaction skip
        // the WAL, which roughly halves load time; a replica needs `replica` instead.
        let settings = format!(
            "# Written by atelier when it created this cluster.\n\
             listen_addresses = ''\n\
             port = {PORT}\n\
             unix_socket_directories = {socket_dirs}\n\
             max_connections = 200\n\
             shared_buffers = 256MB\n\
             work_mem = 64MB\n\
             maintenance_work_mem = 512MB\n\
             wal_level = minimal\n\
             max_wal_senders = 0\n\
             max_wal_size = 8GB\n\
             checkpoint_timeout = 30min\n\
             synchronous_commit = off\n\
             fsync = {fsync}\n\
             full_page_writes = {fsync}\n\
             log_min_messages = warning\n\
             log_min_error_statement = panic\n"
        );
        let settings_path = pgdata.join(SETTINGS_FILE);
        write_file(&settings_path, settings.as_bytes())?;
        self.give_to_service_user(&settings_path)?;
        let conf = pgdata.join("postgresql.conf");
        let mut file = OpenOptions::new()
            .append(true)
            .open(&conf)
            .map_err(|e| Error::io("open", &conf, e))?;
        writeln!(file, "include '{SETTINGS_FILE}'").map_err(|e| Error::io("write", &conf, e))?;
        Ok(())
    }

    /// Lets streaming replicas follow this cluster: WAL detailed enough for them, senders
    /// to stream it, and some kept back for a replica that falls behind. The server is
    /// restarted when it runs and a setting changed. Loads write more WAL from then on.
    pub fn allow_replicas(&self) -> Result<()> {
        let path = self.pgdata().join(SETTINGS_FILE);
        let text = fs::read_to_string(&path).map_err(|e| Error::io("read", &path, e))?;
        let mut settings = text.clone();
        for (name, value) in [
            ("wal_level", "replica"),
            ("max_wal_senders", "10"),
            ("wal_keep_size", "'1GB'"),
        ] {
            settings = with_setting(&settings, name, value);
        }
        if settings == text {
            return Ok(());
        }
        write_file(&path, settings.as_bytes())?;
        if self.is_running() {
            self.stop()?;
            self.start()?;
        }
        Ok(())
    }

    /// Creates a streaming replica of this running cluster in `root`, which must hold no
    /// cluster yet: a base backup (`pg_basebackup -R`, so it follows this cluster as its
    /// primary) with a socket of its own, started and answering read-only queries.
    /// This cluster must allow replicas ([`Cluster::allow_replicas`]).
    pub fn create_replica(&self, root: &Path) -> Result<Cluster> {
        let replica = Cluster::new(root)?;
        let _lock = DirLock::acquire(&replica.root.join("cluster.lock"))?;
        if replica.pgdata().exists() {
            return Err(Error::Embedded(format!(
                "cannot create a replica in {}: it holds a cluster already",
                replica.pgdata().display()
            )));
        }
        replica.prepare_dir(&replica.root)?;
        let port = self.port()?.to_string();
        self.run(
            self.pg_command("pg_basebackup")
                .arg("-h")
                .arg(self.socket_dir())
                .args(["-p", &port, "-U", SUPERUSER])
                .arg("-D")
                .arg(replica.pgdata())
                .args(["-R", "-X", "stream", "-c", "fast"]),
            "pg_basebackup",
        )?;
        // The copied settings still name this cluster's socket directory.
        replica.secure()?;
        replica.start()?;
        Ok(replica)
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) -> Result<()> {
        self.prepare_socket_dir()?;
        let log = self.log_file();
        if !log.exists() {
            write_file(&log, b"")?;
            self.give_to_service_user(&log)?;
        }
        self.run(
            self.pg_command("pg_ctl")
                .arg("start")
                .arg("-D")
                .arg(self.pgdata())
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "-s"]),
            "pg_ctl start",
        )
        .map_err(|e| {
            Error::Embedded(format!(
                "{e}; last lines of {}:\n{}",
                log.display(),
                tail(&log)
            ))
        })
    }

    /// Stops the server (fast shutdown: sessions are ended, data is kept).
    pub fn stop(&self) -> Result<()> {
        if !self.is_running() {
            return Ok(());
        }
        self.run(
            self.pg_command("pg_ctl")
                .arg("stop")
                .arg("-D")
                .arg(self.pgdata())
                .args(["-m", "fast", "-w", "-s"]),
            "pg_ctl stop",
        )
    }

    /// A command for one of the server binaries, run as the service user when we are root.
    fn pg_command(&self, program: &str) -> Command {
        let path = self.bin_dir.join(program);
        if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", SERVICE_USER, "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    fn run(&self, command: &mut Command, what: &str) -> Result<()> {
        let output = command
            .output()
            .map_err(|e| Error::Embedded(format!("cannot run {what}: {e}")))?;
        if output.status.success() {
            return Ok(());
        }
        Err(Error::Embedded(format!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            String::from_utf8_lossy(&output.stdout).trim(),
        )))
    }

    /// Makes `dir` usable by the server: owned by the service user when we are root, and
    /// reachable through its parents.
    fn prepare_dir(&self, dir: &Path) -> Result<()> {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io("set permissions of", dir, e))?;
        self.give_to_service_user(dir)
    }

    fn give_to_service_user(&self, path: &Path) -> Result<()> {
        give_to_service_user(path)
    }
}

/// Makes `path` the service user's when we are root (PostgreSQL runs as that user then).
pub(crate) fn give_to_service_user(path: &Path) -> Result<()> {
    if !is_root() {
        return Ok(());
    }
    let (uid, gid) = user_ids(SERVICE_USER).ok_or_else(|| {
        Error::Embedded(format!(
            "running as root, but there is no `{SERVICE_USER}` OS user to run PostgreSQL as \
             (Debian/Ubuntu: `apt-get install postgresql` creates it)"
        ))
    })?;
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| Error::io("change owner of", path, e))
}

/// An exclusive advisory lock on a file, released when dropped.
struct DirLock(File);

impl DirLock {
    fn acquire(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| Error::io("open", path, e))?;
        // SAFETY: flock on a file descriptor we own; no memory is shared.
        let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX) };
        if rc != 0 {
            return Err(Error::io("lock", path, std::io::Error::last_os_error()));
        }
        Ok(DirLock(file))
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // SAFETY: as above; unlocking is also implied by closing the file.
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&self.0), libc::LOCK_UN) };
    }
}

/// The directory of initdb/pg_ctl/postgres: `pg_config --bindir`, then the newest
/// `/usr/lib/postgresql/<version>/bin`, then PATH.
pub(crate) fn find_server_binaries() -> Option<PathBuf> {
    let has_all = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    let mut debian: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    debian.sort();
    let from_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    from_pg_config
        .into_iter()
        .chain(debian.into_iter().rev().map(|(_, dir)| dir))
        .chain(from_path)
        .find(|dir| has_all(dir))
}

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The uid and gid of an OS user, from the password database.
fn user_ids(name: &str) -> Option<(u32, u32)> {
    let name = std::ffi::CString::new(name).ok()?;
    let mut buffer: Vec<libc::c_char> = vec![0; 16 * 1024];
    // SAFETY: zeroed is a valid bit pattern for this plain C struct.
    let mut record: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to live, writable memory of the stated size; the
    // reentrant getpwnam_r writes only there, so concurrent callers are fine.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut record,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() {
        return None;
    }
    Some((record.pw_uid, record.pw_gid))
}

/// `bytes` with every byte but the URL-unreserved ones as `%XX`: a socket directory as
/// the host of a connection URL.
fn percent_encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The `unix_socket_directories` value naming one directory: a quoted string of the
/// settings file holding a list of one element, double-quoted unless plain.
fn socket_setting(dir: &str) -> String {
    let plain = dir
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/-._~+".contains(&b));
    let element = if plain {
        dir.to_string()
    } else {
        format!("\"{}\"", dir.replace('"', "\"\""))
    };
    format!("'{}'", element.replace('\\', "\\\\").replace('\'', "''"))
}

/// Settings text with `name = value`, replacing the line that set `name` or appended.
fn with_setting(settings: &str, name: &str, value: &str) -> String {
    let line = format!("{name} = {value}");
    let mut found = false;
    let mut lines: Vec<&str> = settings
        .lines()
        .map(|existing| {
            let key = existing.split('=').next().unwrap_or_default().trim();
            if key == name {
                found = true;
                line.as_str()
            } else {
                existing
            }
        })
        .collect();
    if !found {
        lines.push(&line);
    }
    lines.join("\n") + "\n"
}

fn write_file(path: &Path, contents: &[u8]) -> Result<()> {
    fs::write(path, contents).map_err(|e| Error::io("write", path, e))
}

/// The last lines of a log file, for error messages.
fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_replaced_in_place_or_appended() {
        let settings = "port = 5432\nwal_level = minimal\nfsync = off\n";
        assert_eq!(
            with_setting(settings, "wal_level", "replica"),
            "port = 5432\nwal_level = replica\nfsync = off\n"
        );
        assert_eq!(
            with_setting(settings, "wal_keep_size", "'1GB'"),
            "port = 5432\nwal_level = minimal\nfsync = off\nwal_keep_size = '1GB'\n"
        );
        // A name that only starts like another setting's is a different setting.
        assert_eq!(
            with_setting("wal_level_x = 1\n", "wal_level", "replica"),
            "wal_level_x = 1\nwal_level = replica\n"
        );
    }

    #[test]
    fn a_socket_directory_becomes_a_url_host_and_a_setting() {
        assert_eq!(
            percent_encode(b"/tmp/a b/.atelier/socket"),
            "%2Ftmp%2Fa%20b%2F.atelier%2Fsocket"
        );
        assert_eq!(
            socket_setting("/srv/.atelier/socket"),
            "'/srv/.atelier/socket'"
        );
        // Commas would split the list, quotes end the string: such a name is quoted twice.
        assert_eq!(
            socket_setting("/srv/it's, \"x\"\\y"),
            "'\"/srv/it''s, \"\"x\"\"\\\\y\"'"
        );
    }
}
