//! Finding PostgreSQL (a given URL or the embedded cluster), connecting to it
//! ([`connection`]) and applying `schema.sql`.

pub mod connection;
pub mod embedded;
pub mod ha;

use tokio_postgres::Client;

use std::path::{Path, PathBuf};

use crate::{Error, Result};

use embedded::{Cluster, Durability};

/// The catalog schema; every statement in it is idempotent.
pub const SCHEMA_SQL: &str = include_str!("../../schema.sql");

/// The database the embedded cluster keeps the catalog in.
pub const EMBEDDED_DATABASE: &str = "atelier";

/// The read-only role `schema.sql` creates: it may read the documents and whether a
/// materialize has completed, nothing else. The embedded default serves as this role.
pub const READER_ROLE: &str = "atelier_reader";

/// Serialises concurrent schema applications (an arbitrary, fixed advisory-lock key).
const SCHEMA_LOCK_KEY: i64 = 0x0061_7465_6c69_6572;

/// Which PostgreSQL a command uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// A server reached through this URL, used as it is.
    Url(String),
    /// The embedded cluster in this data directory.
    Embedded(PathBuf),
}

/// The connection URL of `database`; the embedded cluster is created and started on
/// first use.
pub async fn resolve_url(database: &Database) -> Result<String> {
    let data_dir = match database {
        Database::Url(url) => return Ok(url.clone()),
        Database::Embedded(data_dir) => data_dir.clone(),
    };
    let cluster = tokio::task::spawn_blocking(move || -> Result<Cluster> {
        let cluster = Cluster::new(&data_dir)?;
        cluster.ensure_running(Durability::Durable)?;
        Ok(cluster)
    })
    .await
    .expect("embedded cluster start-up panicked")?;
    create_database_if_missing(&cluster.url("postgres")?, EMBEDDED_DATABASE).await?;
    cluster.url(EMBEDDED_DATABASE)
}

/// Opens one connection to `url`; its I/O runs on a spawned task until the client is
/// dropped. Of several hosts (`host1:port1,host2:port2`), it takes the first that
/// accepts writes: this is how loads, materialize and followers find the primary, also
/// after a failover.
pub async fn connect(url: &str) -> Result<Client> {
    Ok(connection::open(&writer_config(url)?).await?)
}

/// The connection settings of `url` for a writer: of several hosts, the first that
/// accepts writes ([`connect`] opens connections so; a follower, which opens its own,
/// starts from these).
pub fn writer_config(url: &str) -> Result<tokio_postgres::Config> {
    let mut config: tokio_postgres::Config = url.parse()?;
    if config.get_hosts().len() > 1 {
        config.target_session_attrs(tokio_postgres::config::TargetSessionAttrs::ReadWrite);
    }
    Ok(config)
}

/// Creates database `name` through the maintenance URL unless it exists already.
pub async fn create_database_if_missing(maintenance_url: &str, name: &str) -> Result<()> {
    let client = connect(maintenance_url).await?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if exists {
        return Ok(());
    }
    let create = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
    match client.batch_execute(&create).await {
        // Another process created it meanwhile.
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => Ok(()),
        other => other.map_err(Error::from),
    }
}

/// Applies `schema.sql` (idempotent), serialised against concurrent callers.
pub async fn apply_schema(client: &Client) -> Result<()> {
    client
        .batch_execute(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY}); {SCHEMA_SQL}\nCOMMIT;"
        ))
        .await?;
    Ok(())
}

/// What `atelier db status` found, which its exit status tells scripts; its
/// `Display` is the line the command prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterState {
    /// The embedded cluster runs, reached at this URL.
    Running { url: String },
    /// The embedded cluster exists but is stopped.
    Stopped { pgdata: PathBuf },
    /// No embedded cluster was ever created in the data directory.
    Absent { data_dir: PathBuf },
    /// `DATABASE_URL` is set: no embedded cluster is managed.
    External { url: String },
}

impl ClusterState {
    /// The process's exit status for this state: `pg_ctl status`'s, 0 when a server
    /// runs (or is someone else's to run), 3 when it is stopped, 4 when there is none.
    pub fn exit_status(&self) -> u8 {
        match self {
            ClusterState::Running { .. } | ClusterState::External { .. } => 0,
            ClusterState::Stopped { .. } => 3,
            ClusterState::Absent { .. } => 4,
        }
    }
}

impl std::fmt::Display for ClusterState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClusterState::Running { url } => write!(f, "running: {url}"),
            ClusterState::Stopped { pgdata } => write!(
                f,
                "stopped: {} (load, materialize or serve starts it)",
                pgdata.display()
            ),
            ClusterState::Absent { data_dir } => write!(
                f,
                "no embedded cluster in {} (load, materialize or serve creates it)",
                data_dir.display()
            ),
            ClusterState::External { url } => write!(
                f,
                "using DATABASE_URL ({}); no embedded cluster is managed",
                redact(url)
            ),
        }
    }
}

/// `atelier db status`: whether the embedded cluster exists and runs; it never creates
/// or starts one (nor the directory).
pub fn status(database: &Database) -> Result<ClusterState> {
    let data_dir = match database {
        Database::Url(url) => return Ok(ClusterState::External { url: url.clone() }),
        Database::Embedded(data_dir) => data_dir,
    };
    Ok(match existing_cluster(data_dir)? {
        None => ClusterState::Absent {
            data_dir: data_dir.clone(),
        },
        Some(cluster) if cluster.is_running() => ClusterState::Running {
            url: cluster.url(EMBEDDED_DATABASE)?,
        },
        Some(cluster) => ClusterState::Stopped {
            pgdata: cluster.pgdata(),
        },
    })
}

/// What `atelier db stop` did; its `Display` is the line the command prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopOutcome {
    /// There is no embedded cluster in this data directory.
    NoCluster { data_dir: PathBuf },
    /// The cluster was not running.
    NotRunning,
    /// The cluster was stopped.
    Stopped,
}

impl std::fmt::Display for StopOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopOutcome::NoCluster { data_dir } => {
                write!(f, "no embedded cluster in {}", data_dir.display())
            }
            StopOutcome::NotRunning => f.write_str("not running"),
            StopOutcome::Stopped => f.write_str("stopped"),
        }
    }
}

/// `atelier db stop`: stops the embedded cluster if it runs.
pub fn stop(database: &Database) -> Result<StopOutcome> {
    let Database::Embedded(data_dir) = database else {
        return Err(Error::InvalidInput(
            "DATABASE_URL is set: the embedded cluster is not in use, nothing to stop".into(),
        ));
    };
    Ok(match existing_cluster(data_dir)? {
        None => StopOutcome::NoCluster {
            data_dir: data_dir.clone(),
        },
        Some(cluster) if !cluster.is_running() => StopOutcome::NotRunning,
        Some(cluster) => {
            cluster.stop()?;
            StopOutcome::Stopped
        }
    })
}

/// The embedded cluster in `data_dir`, if one was ever created there; looking for it
/// creates nothing.
fn existing_cluster(data_dir: &Path) -> Result<Option<Cluster>> {
    if !data_dir.is_dir() {
        return Ok(None);
    }
    let cluster = Cluster::new(data_dir)?;
    Ok(cluster.is_initialized().then_some(cluster))
}

/// `url` with its user replaced by `user` and any password dropped: the same database,
/// reached as another role. `url` must be a `postgres://` or `postgresql://` URL.
pub fn with_user(url: &str, user: &str) -> Result<String> {
    let invalid = || Error::InvalidInput(format!("not a PostgreSQL URL: {}", redact(url)));
    let scheme_end = url.find("://").ok_or_else(invalid)? + 3;
    let scheme = &url[..scheme_end];
    if scheme != "postgres://" && scheme != "postgresql://" {
        return Err(invalid());
    }
    let rest = &url[scheme_end..];
    // The user info ends at the last `@` before the path.
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let host = match rest[..authority_end].rfind('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    Ok(format!("{scheme}{user}@{host}"))
}

/// A URL with its password, if any, replaced by `***`, for printing.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_of_several_hosts_take_the_one_that_accepts_writes() {
        use tokio_postgres::config::TargetSessionAttrs;
        let attrs = |url| writer_config(url).unwrap().get_target_session_attrs();
        assert_eq!(
            attrs("postgres://postgres@127.0.0.1:5433,127.0.0.1:5434/atelier"),
            TargetSessionAttrs::ReadWrite
        );
        assert_eq!(
            attrs("postgres://postgres@127.0.0.1:5433/atelier"),
            TargetSessionAttrs::Any
        );
    }

    #[test]
    fn with_user_swaps_the_user_and_keeps_the_rest() {
        assert_eq!(
            with_user("postgres://postgres@127.0.0.1:5433/atelier", READER_ROLE).unwrap(),
            "postgres://atelier_reader@127.0.0.1:5433/atelier"
        );
        assert_eq!(
            with_user("postgresql://u:p%40ss@db:5432/x?sslmode=require", "r").unwrap(),
            "postgresql://r@db:5432/x?sslmode=require"
        );
        assert_eq!(
            with_user("postgres://postgres@%2Ftmp%2Fa%2Fsocket:5432/atelier", "r").unwrap(),
            "postgres://r@%2Ftmp%2Fa%2Fsocket:5432/atelier"
        );
        assert_eq!(
            with_user("postgres://localhost/x", "r").unwrap(),
            "postgres://r@localhost/x"
        );
        assert!(with_user("host=localhost user=postgres", "r").is_err());
        assert!(with_user("mysql://u@h/x", "r").is_err());
    }
}
