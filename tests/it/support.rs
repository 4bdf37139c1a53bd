//! Shared test fixtures: the process's throwaway cluster, a fresh database per test,
//! paths of the genuine sample files, `atelier serve` and `atelier materialize --follow`
//! as processes of their own, and a keep-alive HTTP/1.1 client that reports failures
//! instead of panicking.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use atelier::catalog::FileKind;
use atelier::db::{self, embedded::Cluster, embedded::Durability};
use atelier::documents::{Kind, gzip};
use atelier::materialize::{self, Plan, Settings};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
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

/// Every stored document as text, by product.
pub async fn documents(client: &Client) -> BTreeMap<i32, [String; 4]> {
    client
        .query(
            "SELECT product_id, list_entry::text, product::text, styles::text, related::text \
             FROM document",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), [row.get(1), row.get(2), row.get(3), row.get(4)]))
        .collect()
}

/// Asserts that every stored body read by id has its gzip form made, and that the form
/// is the one a server makes of the body: the same bytes, so the same ETag; empty where
/// gzip does not gain.
pub async fn assert_gzip_forms_made(client: &Client) {
    let columns: Vec<String> = Kind::BY_ID
        .iter()
        .map(|kind| format!("{}::text, {}", kind.column(), kind.gzip_column().unwrap()))
        .collect();
    let rows = client
        .query(
            &format!("SELECT product_id, {} FROM document", columns.join(", ")),
            &[],
        )
        .await
        .unwrap();
    for row in &rows {
        let id: i32 = row.get(0);
        for (index, kind) in Kind::BY_ID.iter().enumerate() {
            let body: String = row.get(1 + 2 * index);
            let form: Option<Vec<u8>> = row.get(2 + 2 * index);
            let made = gzip::gzip(body.as_bytes()).map_or_else(Vec::new, |form| form.to_vec());
            assert_eq!(form, Some(made), "the gzip form of product {id}'s {kind}");
        }
    }
}

/// Asserts that the stored documents, with their gzip forms, are exactly what a full
/// rebuild makes of the catalog now (the rebuild replaces them).
pub async fn assert_as_full_rebuild(url: &str) {
    let client = db::connect(url).await.unwrap();
    let live = documents(&client).await;
    assert_gzip_forms_made(&client).await;
    materialize::materialize(url, Plan::Everything, &Settings::default())
        .await
        .unwrap();
    assert_gzip_forms_made(&client).await;
    let full = documents(&client).await;
    assert_eq!(live.len(), full.len(), "documents kept vs built in full");
    for (id, built) in &full {
        assert_eq!(live.get(id), Some(built), "product {id}");
    }
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

// ---------------------------------------------------------------------------------------
// `atelier serve` and `atelier materialize --follow` as processes of their own

/// The binary under test.
pub const ATELIER: &str = env!("CARGO_BIN_EXE_atelier");
/// Bound on any one request, and on a process becoming ready or exiting.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A loopback port nobody listens on right now, and one no other test of this run was
/// given: a process is started on it only after the probe closes, and two tests handed
/// the same port would each find the other's process answering on it.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// An `atelier serve` process; killed when dropped.
pub struct Instance {
    pub addr: SocketAddr,
    args: Vec<String>,
    log: std::path::PathBuf,
    pub child: Child,
}

impl Instance {
    /// Starts `atelier serve` on a port of its own with `args` and waits until `/readyz`
    /// answers 200. Its output goes to `log_dir`.
    pub async fn start(log_dir: &Path, args: &[&str]) -> Instance {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = log_dir.join(format!("atelier-{}.log", addr.port()));
        let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        let child = spawn_instance(addr, &args, &log);
        let mut instance = Instance {
            addr,
            args,
            log,
            child,
        };
        instance.wait_ready().await;
        instance
    }

    /// Waits until `/readyz` answers 200 ([`PATIENCE`] at most), while the process runs.
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "instance {} exited with {status}; its log:\n{}",
                    self.addr,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if let Ok(reply) = get_once(self.addr, "/readyz").await
                && reply.status == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "instance {} never became ready; its log:\n{}",
                self.addr,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then waits for a clean exit (the drain is bounded by the service).
    pub async fn terminate(&mut self) {
        let pid = self.child.id().expect("the instance runs") as i32;
        // SAFETY: signals a child process this struct owns and has not reaped.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("the instance exits after SIGTERM")
            .unwrap();
        assert!(status.success(), "the instance exited with {status}");
    }

    /// Starts the same instance again on the same port and waits until it is ready.
    pub async fn restart(&mut self) {
        self.child = spawn_instance(self.addr, &self.args, &self.log);
        self.wait_ready().await;
    }

    /// An unlabelled sample of the instance's `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        let reply = get_once(self.addr, "/metrics").await.expect("/metrics");
        let text = String::from_utf8_lossy(&reply.body).into_owned();
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no sample {name} in\n{text}"))
            .parse()
            .unwrap()
    }

    /// Document lookups this process has answered (cache hits and misses).
    pub async fn lookups(&self) -> f64 {
        self.metric("atelier_cache_hits_total").await
            + self.metric("atelier_cache_misses_total").await
    }

    /// Waits until the instance listens for invalidations ([`PATIENCE`] at most).
    pub async fn wait_listening(&self) {
        let deadline = Instant::now() + PATIENCE;
        while self.metric("atelier_notify_listening").await != 1.0 {
            assert!(Instant::now() < deadline, "{} never listened", self.addr);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `atelier serve --listen ADDR ARGS`, its output appended to `log`.
fn spawn_instance(addr: SocketAddr, args: &[String], log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(ATELIER)
        .arg("serve")
        .arg("--listen")
        .arg(addr.to_string())
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("start atelier serve")
}

/// `atelier materialize --follow` as a process of its own; killed when dropped.
pub struct FollowerProcess(pub Child);

impl FollowerProcess {
    /// Follows the database at `url`, its output discarded.
    pub fn start(url: &str) -> FollowerProcess {
        FollowerProcess::spawn(url, Stdio::null(), Stdio::null())
    }

    /// Follows the database at `url`, its log appended to `log`.
    pub fn start_logged(url: &str, log: &Path) -> FollowerProcess {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        FollowerProcess::spawn(url, log.try_clone().unwrap().into(), log.into())
    }

    fn spawn(url: &str, stdout: Stdio, stderr: Stdio) -> FollowerProcess {
        let child = Command::new(ATELIER)
            .args(["materialize", "--follow", "--database-url", url])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("start atelier materialize --follow");
        FollowerProcess(child)
    }
}

// ---------------------------------------------------------------------------------------
// A keep-alive HTTP/1.1 client that reports failures instead of panicking

/// One HTTP response as received.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The server said it closes the connection after this response.
    pub close: bool,
}

impl Reply {
    /// The first header called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A connection to a server, read through a buffer.
pub type Connection = BufReader<TcpStream>;

/// Opens a connection to `addr`, bounded in time.
pub async fn connect(addr: SocketAddr) -> std::io::Result<Connection> {
    let stream = tokio::time::timeout(PATIENCE, TcpStream::connect(addr)).await??;
    stream.set_nodelay(true)?;
    Ok(BufReader::new(stream))
}

/// `GET path` on an open connection, bounded in time.
pub async fn get(connection: &mut Connection, path: &str, extra: &str) -> std::io::Result<Reply> {
    send(connection, "GET", path, extra).await
}

/// `method path` on an open connection, bounded in time.
pub async fn send(
    connection: &mut Connection,
    method: &str,
    path: &str,
    extra: &str,
) -> std::io::Result<Reply> {
    tokio::time::timeout(PATIENCE, exchange(connection, method, path, extra)).await?
}

async fn exchange(
    connection: &mut Connection,
    method: &str,
    path: &str,
    extra: &str,
) -> std::io::Result<Reply> {
    let head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n");
    connection.get_mut().write_all(head.as_bytes()).await?;
    let invalid = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let mut line = String::new();
    if connection.read_line(&mut line).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid(format!("not a status line: {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if connection.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed
            .split_once(':')
            .ok_or_else(|| invalid(format!("not a header: {trimmed:?}")))?;
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let mut reply = Reply {
        status,
        headers,
        body: Vec::new(),
        close: false,
    };
    reply.close = reply
        .header("connection")
        .is_some_and(|value| value.eq_ignore_ascii_case("close"));
    if reply.header("transfer-encoding") == Some("chunked") {
        reply.body = read_chunks(connection).await?;
        return Ok(reply);
    }
    let length = match reply.header("content-length") {
        Some(length) => length
            .parse()
            .map_err(|_| invalid(format!("bad length {length}")))?,
        None if status == 304 || status == 204 => 0,
        None => return Err(invalid("a response without Content-Length".into())),
    };
    reply.body.resize(length, 0);
    connection.read_exact(&mut reply.body).await?;
    Ok(reply)
}

/// A chunked body (nginx sends compressed responses so), without trailers.
async fn read_chunks(connection: &mut Connection) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        connection.read_line(&mut line).await?;
        let size = usize::from_str_radix(line.trim_end(), 16).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("chunk {line:?}"))
        })?;
        let start = body.len();
        body.resize(start + size + 2, 0);
        connection.read_exact(&mut body[start..]).await?;
        body.truncate(start + size);
        if size == 0 {
            return Ok(body);
        }
    }
}

/// `GET path` on a connection of its own.
pub async fn get_once(addr: SocketAddr, path: &str) -> std::io::Result<Reply> {
    let mut connection = connect(addr).await?;
    get(&mut connection, path, "Connection: close\r\n").await
}

/// Polls `check` every 50 ms until it holds ([`PATIENCE`] at most).
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
