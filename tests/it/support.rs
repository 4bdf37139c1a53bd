//! Shared test fixtures: the process's throwaway cluster, a fresh database per test,
//! and paths of the genuine sample files.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use atelier::catalog::FileKind;
use atelier::db::{self, embedded::Cluster, embedded::Durability};
use atelier::materialize::{Plan, Settings};
use tokio_postgres::Client;

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static NEXT_DATABASE: AtomicU32 = AtomicU32::new(0);

/// The cluster every test of this process shares, created on first use in a temporary
/// directory and stopped and removed when the process exits.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("atelier-test-{}", std::process::id()));
        let cluster = Cluster::new(&dir).expect("PostgreSQL server binaries are required");
        cluster
            .ensure_running(Durability::Throwaway)
            .expect("cannot start the test cluster");
        // SAFETY: registers a plain function to run at process exit.
        unsafe { libc::atexit(stop_cluster) };
        cluster
    })
}

extern "C" fn stop_cluster() {
    if let Some(cluster) = CLUSTER.get() {
        let _ = cluster.stop();
        let root = cluster.pgdata().parent().map(Path::to_path_buf);
        if let Some(root) = root {
            let _ = std::fs::remove_dir_all(root);
        }
    }
}

/// A database of its own for one test, with the schema applied.
pub struct TestDb {
    pub url: String,
}

impl TestDb {
    /// A new empty database with `schema.sql` applied.
    pub async fn new() -> TestDb {
        let cluster = cluster();
        let name = format!(
            "test_{}_{}",
            std::process::id(),
            NEXT_DATABASE.fetch_add(1, Ordering::Relaxed)
        );
        db::create_database_if_missing(&cluster.url("postgres").unwrap(), &name)
            .await
            .expect("create test database");
        let url = cluster.url(&name).unwrap();
        let client = db::connect(&url).await.expect("connect to test database");
        db::apply_schema(&client).await.expect("apply schema.sql");
        TestDb { url }
    }

    /// A new database holding the catalog of `dir`, loaded and materialized.
    pub async fn with_catalog(dir: &Path) -> TestDb {
        let test_db = TestDb::new().await;
        let mut client = test_db.client().await;
        let rejects = tempfile::NamedTempFile::new().unwrap();
        atelier::load::load_catalog(&mut client, dir, rejects.path(), false)
            .await
            .expect("load the catalog");
        atelier::materialize::materialize(&test_db.url, Plan::Everything, &Settings::default())
            .await
            .expect("materialize the catalog");
        test_db
    }

    /// A new connection to this database.
    pub async fn client(&self) -> Client {
        db::connect(&self.url)
            .await
            .expect("connect to test database")
    }
}

/// A directory of genuine sample files (`beck-2021`, `sara-2023`) under
/// `tests/fixtures/atelier-sample/`, where `SOURCES.md` says where each comes from.
pub fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/atelier-sample")
        .join(name)
}

/// The spaced sample `beck-2021` with `sara-2023`'s related.csv beside it (beck-2021 has
/// none), copied into a temporary directory.
pub fn beck_with_related() -> tempfile::TempDir {
    let dir = tempfile::TempDir::new().unwrap();
    for kind in FileKind::ALL {
        let from = match kind {
            FileKind::Related => "sara-2023",
            _ => "beck-2021",
        };
        let file = kind.file_name();
        std::fs::copy(sample(from).join(file), dir.path().join(file)).unwrap();
    }
    dir
}

/// An embedded cluster of one test's own, in a temporary directory, for tests that stop
/// the database or start the embedded default; stopped and removed when dropped.
pub struct OwnCluster {
    pub dir: tempfile::TempDir,
    pub cluster: Cluster,
}

impl OwnCluster {
    /// A cluster directory, not yet created or started.
    pub fn new() -> Self {
        let dir = tempfile::TempDir::new().unwrap();
        let cluster = Cluster::new(dir.path()).expect("PostgreSQL server binaries are required");
        OwnCluster { dir, cluster }
    }

    /// The database this directory's embedded cluster holds.
    pub fn database(&self) -> atelier::db::Database {
        atelier::db::Database::Embedded(self.dir.path().to_path_buf())
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = self.cluster.stop();
    }
}

/// One line of a rejects report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub file: String,
    pub line: u64,
    pub outcome: String,
    pub reason: String,
    pub raw: String,
}

/// Every line of the rejects report at `path`, after checking its header.
pub fn read_report(path: &Path) -> Vec<Reject> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header, ["file", "line", "outcome", "reason", "raw"]);
    reader
        .records()
        .map(|record| {
            let record = record.unwrap();
            Reject {
                file: record[0].to_string(),
                line: record[1].parse().unwrap(),
                outcome: record[2].to_string(),
                reason: record[3].to_string(),
                raw: record[4].to_string(),
            }
        })
        .collect()
}

/// The documents `client` can see.
pub async fn document_count(client: &Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM document", &[])
        .await
        .unwrap()
        .get(0)
}

/// Terminates the servers' LISTEN connections to `client`'s database; says how many.
pub async fn terminate_listen_connections(client: &Client) -> u64 {
    client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = $1",
            &[&atelier::http::notify::LISTEN_APPLICATION_NAME],
        )
        .await
        .unwrap()
}
