//! Tests of the embedded cluster (who may connect to it) and schema application.

use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use crate::support::{OwnCluster, TestDb, cluster, document_count};
use atelier::db::{
    self,
    embedded::{Cluster, Durability},
};

#[tokio::test]
async fn schema_applies_twice_and_creates_every_table() {
    let test_db = TestDb::new().await;
    let client = test_db.client().await;
    db::apply_schema(&client)
        .await
        .expect("second application is a no-op");
    let tables: Vec<String> = client
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'public' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        tables,
        [
            "catalog_run",
            "document",
            "document_notice",
            "document_queue",
            "feature",
            "list_block",
            "photo",
            "product",
            "product_edited",
            "related",
            "sku",
            "style"
        ]
    );
}

#[test]
fn cluster_reports_running_and_its_socket_url() {
    let cluster = cluster();
    assert!(cluster.is_running());
    let socket_dir = cluster.socket_dir();
    let host = socket_dir.to_str().unwrap().replace('/', "%2F");
    assert_eq!(
        cluster.url("x").unwrap(),
        format!("postgres://postgres@{host}:{}/x", cluster.port().unwrap())
    );
}

// ---------------------------------------------------------------------------------------
// Who may connect: the server's own OS user (and root), over the socket, and nobody else

/// Whether this process is root, as in CI: only root can try connecting as another user.
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The OS user the test cluster's server runs as: `postgres` under root, else ourselves.
fn server_user() -> Option<&'static str> {
    is_root().then_some("postgres")
}

/// The outcome of `psql URL -c 'SELECT 42'`, run as `user` (`None`: as this process).
fn psql_as(user: Option<&str>, url: &str) -> (bool, String) {
    let mut command = match user {
        Some(user) => {
            let mut command = Command::new("runuser");
            command.args(["-u", user, "--", "psql"]);
            command
        }
        None => Command::new("psql"),
    };
    let output = command
        .args(["-X", "-w", "-At", "-c", "SELECT 42", url])
        .current_dir("/")
        .output()
        .expect("psql (postgresql-client) is required");
    let answered =
        output.status.success() && String::from_utf8_lossy(&output.stdout).trim() == "42";
    (
        answered,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `url` of the same database over TCP at `host` (`127.0.0.1` or `[::1]`) on the port.
fn over_tcp(url: &str, host: &str, port: u16) -> String {
    let (scheme_and_user, rest) = url.split_once('@').unwrap();
    let database = &rest[rest.find('/').unwrap()..];
    format!("{scheme_and_user}@{host}:{port}{database}")
}

/// The inodes of the TCP sockets listening on this machine (IPv4 and IPv6).
fn listening_tcp_inodes() -> HashSet<String> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    // st 0A is LISTEN; the inode is the tenth field.
                    (fields.get(3) == Some(&"0A")).then(|| fields.get(9).map(|s| s.to_string()))?
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Asserts that the server of `cluster` listens on no TCP socket and that its
/// `pg_hba.conf` accepts the socket only; `client` is the superuser's.
async fn assert_socket_only(cluster: &Cluster, client: &tokio_postgres::Client) {
    let listen: String = client
        .query_one("SHOW listen_addresses", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(listen, "");
    let rules: Vec<(String, String)> = client
        .query("SELECT type, auth_method FROM pg_hba_file_rules", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert!(!rules.is_empty());
    assert!(
        rules.iter().all(|(kind, _)| kind == "local"),
        "pg_hba.conf accepts more than the socket: {rules:?}"
    );
    // The postmaster (first line of postmaster.pid) holds no listening TCP socket.
    let pid_file = std::fs::read_to_string(cluster.pgdata().join("postmaster.pid")).unwrap();
    let pid = pid_file.lines().next().unwrap();
    let listening = listening_tcp_inodes();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let target = std::fs::read_link(fd.unwrap().path()).unwrap_or_default();
        let target = target.to_string_lossy();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
        {
            assert!(
                !listening.contains(inode),
                "the server listens on TCP (socket {inode})"
            );
        }
    }
    // The socket's directory: the server's OS user's alone.
    let socket_dir = std::fs::metadata(cluster.socket_dir()).unwrap();
    let pgdata = std::fs::metadata(cluster.pgdata()).unwrap();
    assert_eq!(socket_dir.permissions().mode() & 0o777, 0o700);
    assert_eq!(
        (socket_dir.uid(), socket_dir.gid()),
        (pgdata.uid(), pgdata.gid())
    );
}

#[tokio::test]
async fn the_cluster_takes_connections_on_its_own_socket_only() {
    let cluster = cluster();
    let client = db::connect(&cluster.url("postgres").unwrap())
        .await
        .unwrap();
    assert_socket_only(cluster, &client).await;
}

/// Asserts that `nobody` cannot connect as the superuser or the reader, over the
/// socket or TCP, while the server's OS user and this process can (over the socket).
async fn assert_other_users_refused(cluster: &Cluster, owner_url: &str) {
    let reader_url = db::with_user(owner_url, db::READER_ROLE).unwrap();
    let port = cluster.port().unwrap();
    for url in [owner_url, reader_url.as_str()] {
        let (answered, stderr) = psql_as(Some("nobody"), url);
        assert!(!answered, "nobody got in over the socket: {url}");
        assert!(stderr.contains("Permission denied"), "{url}: {stderr}");
        for host in ["127.0.0.1", "[::1]"] {
            let tcp = over_tcp(url, host, port);
            assert!(!psql_as(Some("nobody"), &tcp).0, "nobody got in: {tcp}");
            // Not even this process: there is no TCP to go through.
            assert!(!psql_as(None, &tcp).0, "got in over TCP: {tcp}");
        }
        let (answered, stderr) = psql_as(None, url);
        assert!(answered, "this process is refused: {url}: {stderr}");
        let (answered, stderr) = psql_as(server_user(), url);
        assert!(answered, "the server's OS user is refused: {url}: {stderr}");
    }
    // The library connects the same way, as the owner and as the reader.
    let reader = db::connect(&reader_url).await.unwrap();
    assert_eq!(document_count(&reader).await, 0);
    db::connect(owner_url).await.unwrap();
}

#[tokio::test]
async fn another_os_user_is_refused_as_owner_and_reader_over_tcp_and_the_socket() {
    if !is_root() {
        eprintln!(
            "NOT RUN: connecting as another OS user (nobody) needs root, to switch users \
             with runuser; run the tests as root, as CI does"
        );
        return;
    }
    let test_db = TestDb::new().await;
    assert_other_users_refused(cluster(), &test_db.url).await;
}

#[test]
fn a_data_directory_too_long_for_a_socket_path_is_refused_before_initdb() {
    let dir = tempfile::TempDir::new().unwrap();
    let root = dir.path().join("d".repeat(100));
    let cluster = Cluster::new(&root).unwrap();
    let error = cluster
        .ensure_running(Durability::Throwaway)
        .unwrap_err()
        .to_string();
    assert!(error.contains("choose a shorter --data-dir"), "{error}");
    assert!(!cluster.is_initialized());
}

/// The pg_hba.conf of clusters made by earlier versions: trust on the socket and on
/// loopback TCP, for every user.
const OPEN_HBA: &str = "\
local   all             all                                     trust
host    all             all             127.0.0.1/32            trust
host    all             all             ::1/128                 trust
local   replication     all                                     trust
host    replication     all             127.0.0.1/32            trust
host    replication     all             ::1/128                 trust
";

#[tokio::test]
async fn a_cluster_left_open_by_an_older_version_is_closed_on_its_next_start() {
    let own = OwnCluster::new();
    let cluster = own.cluster.clone();
    let tcp_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    // Made and left running the way earlier versions did it: TCP on 127.0.0.1, no
    // socket, trust for everyone.
    let reopen = cluster.clone();
    tokio::task::spawn_blocking(move || {
        reopen.ensure_running(Durability::Throwaway).unwrap();
        reopen.stop().unwrap();
        let settings_path = reopen.pgdata().join("atelier.conf");
        let settings: String = std::fs::read_to_string(&settings_path)
            .unwrap()
            .lines()
            .map(|line| match line.split('=').next().unwrap().trim() {
                "listen_addresses" => "listen_addresses = '127.0.0.1'".to_string(),
                "port" => format!("port = {tcp_port}"),
                "unix_socket_directories" => "unix_socket_directories = ''".to_string(),
                _ => line.to_string(),
            })
            .map(|line| line + "\n")
            .collect();
        std::fs::write(&settings_path, settings).unwrap();
        std::fs::write(reopen.pgdata().join("pg_hba.conf"), OPEN_HBA).unwrap();
        std::fs::remove_dir_all(reopen.socket_dir()).unwrap();
        reopen.start().unwrap();
    })
    .await
    .unwrap();
    let open_url = format!("postgres://postgres@127.0.0.1:{tcp_port}/postgres");
    let open = db::connect(&open_url)
        .await
        .expect("the old cluster is open");
    let url = cluster.url("postgres").unwrap();
    assert!(db::connect(&url).await.is_err(), "no socket yet");

    let restart = cluster.clone();
    tokio::task::spawn_blocking(move || restart.ensure_running(Durability::Throwaway))
        .await
        .unwrap()
        .unwrap();
    assert!(open.is_closed() || open.simple_query("SELECT 1").await.is_err());
    assert!(db::connect(&open_url).await.is_err(), "TCP still open");
    let client = db::connect(&url).await.unwrap();
    assert_socket_only(&cluster, &client).await;
    db::apply_schema(&client).await.unwrap();
    if is_root() {
        assert_other_users_refused(&cluster, &url).await;
    }
    // A later start changes nothing and keeps the server running.
    let pid = std::fs::read_to_string(cluster.pgdata().join("postmaster.pid")).unwrap();
    let again = cluster.clone();
    tokio::task::spawn_blocking(move || again.ensure_running(Durability::Throwaway))
        .await
        .unwrap()
        .unwrap();
    let after = std::fs::read_to_string(cluster.pgdata().join("postmaster.pid")).unwrap();
    assert_eq!(pid.lines().next(), after.lines().next());
}
