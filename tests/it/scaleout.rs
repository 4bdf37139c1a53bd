//! Scale-out with real processes: `atelier serve` instances behind nginx (the top-level
//! nginx.conf, placeholders filled in) lose no client request when one is killed or
//! every one restarts in turn; instances reading from a streaming replica fall back to
//! the primary when it stops, and invalidate only once the replica has replayed a
//! change, so a re-materialize reaches every instance's cache with the new documents.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use atelier::db::{self, embedded::Cluster, embedded::Durability};
use atelier::materialize::{self, Plan};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::compression::gunzip;
use crate::serving::{header_values, seed_catalog};
use crate::support::{
    Instance, PATIENCE, Reply, TestDb, connect, free_port, get, get_once, send, wait_until,
};

const NGINX: &str = "/usr/sbin/nginx";
/// Products in the synthetic catalogs (ids 1..=300 without multiples of 7).
const PRODUCTS: i32 = 300;

// ---------------------------------------------------------------------------------------
// nginx, and a load through it

/// nginx from the top-level nginx.conf in a directory of its own; its process group
/// (master and workers) is killed when dropped.
struct Nginx {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    child: Child,
}

impl Nginx {
    /// nginx in front of `instances`, with `proxy_cache` (`off` or `documents`).
    async fn start(instances: &[&Instance], proxy_cache: &str) -> Nginx {
        let dir = tempfile::TempDir::new().unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let addrs: Vec<String> = instances.iter().map(|i| i.addr.to_string()).collect();
        let template = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/nginx.conf"))
            .expect("read nginx.conf");
        let conf = render(&template, &addr.to_string(), &addrs, proxy_cache);
        std::fs::create_dir(dir.path().join("logs")).unwrap();
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        // Workers run unprivileged when the master is root: they must reach the prefix.
        use std::os::unix::fs::PermissionsExt;
        for path in [dir.path().to_path_buf(), dir.path().join("logs")] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .args(["-e", "logs/error.log", "-g", "daemon off;"])
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("start nginx (apt-get install nginx)");
        let nginx = Nginx { addr, dir, child };
        let deadline = Instant::now() + PATIENCE;
        while !get_once(addr, "/healthz")
            .await
            .is_ok_and(|reply| reply.status == 200)
        {
            assert!(
                Instant::now() < deadline,
                "nginx never answered: {}",
                nginx.error_log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        nginx
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("logs/error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: signals the process group nginx leads (it was spawned as its leader).
            unsafe { libc::killpg(pid as i32, libc::SIGKILL) };
        }
    }
}

/// nginx.conf with its placeholders filled: each `__INSTANCE__` line once per
/// instance.
fn render(template: &str, listen: &str, instances: &[String], proxy_cache: &str) -> String {
    let mut conf = String::new();
    for line in template.lines() {
        if line.contains("__INSTANCE__") {
            for instance in instances {
                conf.push_str(&line.replace("__INSTANCE__", instance));
                conf.push('\n');
            }
        } else {
            conf.push_str(
                &line
                    .replace("__LISTEN__", listen)
                    .replace("__PROXY_CACHE__", proxy_cache),
            );
            conf.push('\n');
        }
    }
    conf
}

/// Clients sending GETs over keep-alive connections until stopped, counting answers
/// that are not 200 with a JSON document, and connection errors, as failures.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    workers: Vec<JoinHandle<Vec<String>>>,
}

impl Load {
    fn start(addr: SocketAddr, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let workers = (0..clients)
            .map(|client| {
                let (stop, ok) = (stop.clone(), ok.clone());
                tokio::spawn(async move {
                    let mut failures = Vec::new();
                    let mut connection = None;
                    let mut n = client;
                    while !stop.load(Ordering::Relaxed) {
                        n += clients;
                        let id = 1 + (n * 37) % PRODUCTS as usize;
                        let id = if id.is_multiple_of(7) { id + 1 } else { id };
                        let path = match n % 3 {
                            0 => format!("/products/{id}"),
                            1 => format!("/products/{id}/styles"),
                            _ => format!("/products/{id}/related"),
                        };
                        if connection.is_none() {
                            match connect(addr).await {
                                Ok(opened) => connection = Some(opened),
                                Err(error) => {
                                    failures.push(format!("connect: {error}"));
                                    continue;
                                }
                            }
                        }
                        let open = connection.as_mut().expect("connected above");
                        match get(open, &path, "").await {
                            Ok(reply) => {
                                let is_json = matches!(reply.body.first(), Some(b'{' | b'['));
                                if reply.status == 200 && is_json {
                                    ok.fetch_add(1, Ordering::Relaxed);
                                } else {
                                    failures.push(format!("{path}: status {}", reply.status));
                                }
                                if reply.close {
                                    connection = None;
                                }
                            }
                            Err(error) => {
                                failures.push(format!("{path}: {error}"));
                                connection = None;
                            }
                        }
                    }
                    failures
                })
            })
            .collect();
        Load { stop, ok, workers }
    }

    /// Waits until `more` further requests have succeeded.
    async fn wait_for(&self, more: u64) {
        let target = self.ok.load(Ordering::Relaxed) + more;
        let deadline = Instant::now() + PATIENCE;
        while self.ok.load(Ordering::Relaxed) < target {
            assert!(Instant::now() < deadline, "the load stalled");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the clients; the successes and every failure.
    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut failures = Vec::new();
        for worker in self.workers {
            failures.extend(worker.await.unwrap());
        }
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

// ---------------------------------------------------------------------------------------
// Instances behind nginx

async fn catalog() -> TestDb {
    let db = TestDb::new().await;
    seed_catalog(&db.url, PRODUCTS).await;
    db
}

#[tokio::test]
async fn killing_an_instance_fails_no_client_request() {
    let db = catalog().await;
    let logs = tempfile::TempDir::new().unwrap();
    let args = ["--database-url", db.url.as_str()];
    let (mut a, b, c) = tokio::join!(
        Instance::start(logs.path(), &args),
        Instance::start(logs.path(), &args),
        Instance::start(logs.path(), &args),
    );
    let nginx = Nginx::start(&[&a, &b, &c], "off").await;
    let load = Load::start(nginx.addr, 8);
    load.wait_for(300).await;
    assert!(a.lookups().await > 0.0, "least_conn spreads the load");
    a.child.kill().await.unwrap();
    load.wait_for(1000).await;
    let (ok, failures) = load.finish().await;
    assert!(
        failures.is_empty(),
        "{} failed: {:?}\n{}",
        failures.len(),
        &failures[..failures.len().min(10)],
        nginx.error_log()
    );
    assert!(ok >= 1300);
    assert!(b.lookups().await > 0.0 && c.lookups().await > 0.0);
}

#[tokio::test]
async fn a_rolling_restart_fails_no_client_request() {
    let db = catalog().await;
    let logs = tempfile::TempDir::new().unwrap();
    let args = ["--database-url", db.url.as_str()];
    let (a, b) = tokio::join!(
        Instance::start(logs.path(), &args),
        Instance::start(logs.path(), &args),
    );
    let mut instances = [a, b];
    let nginx = Nginx::start(&[&instances[0], &instances[1]], "off").await;
    let load = Load::start(nginx.addr, 8);
    load.wait_for(200).await;
    for instance in &mut instances {
        instance.terminate().await;
        load.wait_for(100).await;
        // Ready is all the next stop waits for, as in an operator's rolling restart:
        // nginx may still hold this instance out of rotation (it failed while stopped),
        // and then only nginx.conf's backup entries reach it while the next one is down.
        instance.restart().await;
    }
    load.wait_for(200).await;
    for instance in &instances {
        wait_until("nginx sends the restarted instance requests", || async {
            instance.lookups().await > 0.0
        })
        .await;
    }
    let (ok, failures) = load.finish().await;
    assert!(
        failures.is_empty(),
        "{} failed: {:?}\n{}",
        failures.len(),
        &failures[..failures.len().min(10)],
        nginx.error_log()
    );
    assert!(ok >= 500);
}

#[tokio::test]
async fn nginx_hides_metrics_compresses_json_and_revalidates_its_cache() {
    let db = catalog().await;
    let logs = tempfile::TempDir::new().unwrap();
    // The default policy: `max-age=0, s-maxage=1`.
    let instance = Instance::start(logs.path(), &["--database-url", db.url.as_str()]).await;
    let nginx = Nginx::start(&[&instance], "documents").await;
    let mut connection = connect(nginx.addr).await.unwrap();

    for path in ["/metrics", "/metrics/", "//metrics", "/metrics?x=1"] {
        let reply = get(&mut connection, path, "").await.unwrap();
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.json()["message"], "no such path");
    }
    let reply = get(&mut connection, "/healthz", "").await.unwrap();
    assert_eq!(reply.status, 200);

    let page = "/products?count=40";
    let plain = get(&mut connection, page, "").await.unwrap();
    assert_eq!(plain.status, 200);
    assert!(plain.body.len() > 1024);
    let zipped = get(&mut connection, page, "Accept-Encoding: gzip\r\n")
        .await
        .unwrap();
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    assert!(zipped.body.len() < plain.body.len());

    // First a miss, then hits while the service's s-maxage (1 s) lasts: nginx takes it
    // over max-age=0, which alone it would not store. Once it has passed, the stale
    // entry is served while nginx revalidates it in the background with its ETag, which
    // the service answers with 304; then hits again.
    let path = "/products/3/styles";
    let first = get(&mut connection, path, "").await.unwrap();
    assert_eq!(first.header("x-cache-status"), Some("MISS"));
    let again = get(&mut connection, path, "").await.unwrap();
    assert_eq!(again.header("x-cache-status"), Some("HIT"));
    assert_eq!(again.body, first.body);
    // nginx counts the s-maxage in whole seconds: the entry expires 1 to 2 s from now.
    let deadline = Instant::now() + PATIENCE;
    let stale = loop {
        let reply = get(&mut connection, path, "").await.unwrap();
        if reply.header("x-cache-status") != Some("HIT") {
            break reply;
        }
        assert!(Instant::now() < deadline, "the cached entry never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(stale.header("x-cache-status"), Some("STALE"));
    assert_eq!(stale.body, first.body);
    let not_modified = "route=\"get_product_styles\",status=\"304\"} 1\n";
    wait_until(
        "the service has answered a revalidation with 304",
        || async {
            let metrics = get_once(instance.addr, "/metrics").await.unwrap();
            String::from_utf8_lossy(&metrics.body).contains(not_modified)
        },
    )
    .await;
    let refreshed = get(&mut connection, path, "").await.unwrap();
    assert_eq!(refreshed.header("x-cache-status"), Some("HIT"));
    assert_eq!(refreshed.body, first.body);
    assert_eq!(refreshed.header("etag"), first.header("etag"));

    // With no instance left, clients get the service's kind of answer to an outage.
    let mut instance = instance;
    instance.child.kill().await.unwrap();
    let reply = get(&mut connection, "/products/4", "").await.unwrap();
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(
        reply.json()["message"],
        "the catalog service is unavailable; retry shortly"
    );
}

/// Every `Vary` value of an answer.
fn vary(reply: &Reply) -> Vec<&str> {
    header_values(&reply.headers, "vary")
}

#[tokio::test]
async fn nginx_passes_gzip_through_and_keys_its_cache_by_coding() {
    let db = catalog().await;
    let logs = tempfile::TempDir::new().unwrap();
    let instance = Instance::start(logs.path(), &["--database-url", db.url.as_str()]).await;
    let instances = [&instance];
    let (cached, uncached) = tokio::join!(
        Nginx::start(&instances, "documents"),
        Nginx::start(&instances, "off"),
    );
    let gzip = "Accept-Encoding: gzip\r\n";
    let browser = "Accept-Encoding: gzip, deflate, br, zstd\r\n";

    // The instance's own answers, straight from it.
    let page = |n: u32| format!("/products?count=40&page={n}");
    let mut direct = connect(instance.addr).await.unwrap();
    let own_plain = get(&mut direct, &page(1), "").await.unwrap();
    let own_zipped = get(&mut direct, &page(1), gzip).await.unwrap();
    assert_eq!(own_zipped.header("content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&own_zipped.body), own_plain.body);

    // Through nginx: the instance's gzip bytes and strong ETag as they are (nginx would
    // have weakened the ETag had it compressed again), its Vary once, for any spelling of
    // the header; the stored bytes to clients that do not take gzip.
    for nginx in [&cached, &uncached] {
        let mut connection = connect(nginx.addr).await.unwrap();
        for accept in [gzip, browser, "Accept-Encoding: br;q=1, GZIP;q=0.5\r\n"] {
            let zipped = get(&mut connection, &page(1), accept).await.unwrap();
            assert_eq!(zipped.status, 200);
            assert_eq!(zipped.header("content-encoding"), Some("gzip"), "{accept}");
            assert_eq!(zipped.body, own_zipped.body, "{accept}");
            assert_eq!(zipped.header("etag"), own_zipped.header("etag"));
            assert_eq!(vary(&zipped), ["Accept-Encoding"], "{accept}");
        }
        for accept in [
            "",
            "Accept-Encoding: gzip;q=0\r\n",
            "Accept-Encoding: br\r\n",
        ] {
            let plain = get(&mut connection, &page(1), accept).await.unwrap();
            assert_eq!(plain.header("content-encoding"), None, "{accept}");
            assert_eq!(plain.body, own_plain.body, "{accept}");
            assert_eq!(plain.header("etag"), own_plain.header("etag"));
            assert_eq!(vary(&plain), ["Accept-Encoding"], "{accept}");
        }
    }

    // The cache holds one answer per URL and coding: each coding misses once, then
    // hits with its own bytes, whatever else was cached under the URL before.
    let mut connection = connect(cached.addr).await.unwrap();
    let path = page(2);
    let mut bodies = std::collections::HashMap::new();
    for (accept, status) in [
        ("", "MISS"),
        (gzip, "MISS"),
        ("", "HIT"),
        (gzip, "HIT"),
        (browser, "HIT"),
        ("Accept-Encoding: gzip;q=0\r\n", "HIT"),
        ("Accept-Encoding: identity\r\n", "HIT"),
    ] {
        let reply = get(&mut connection, &path, accept).await.unwrap();
        assert_eq!(reply.status, 200);
        let coding = reply.header("content-encoding").unwrap_or("identity");
        assert_eq!(
            reply.header("x-cache-status"),
            Some(status),
            "{accept} {coding}"
        );
        let expected_coding = if accept.contains("gzip") && !accept.contains("q=0") {
            "gzip"
        } else {
            "identity"
        };
        assert_eq!(coding, expected_coding, "{accept}");
        let body = bodies
            .entry(coding.to_string())
            .or_insert(reply.body.clone());
        assert_eq!(&reply.body, body, "{accept}");
    }
    assert_eq!(gunzip(&bodies["gzip"]), bodies["identity"]);

    // Once the s-maxage has passed, the gzip entry is revalidated with its own ETag and
    // the instance answers 304 for that representation.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let reply = get(&mut connection, &path, gzip).await.unwrap();
        assert_eq!(reply.body, bodies["gzip"]);
        if reply.header("x-cache-status") != Some("HIT") {
            break;
        }
        assert!(Instant::now() < deadline, "the cached entry never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let not_modified = "route=\"list_products\",status=\"304\"} 1\n";
    wait_until(
        "the instance has answered a revalidation with 304",
        || async {
            let metrics = get_once(instance.addr, "/metrics").await.unwrap();
            String::from_utf8_lossy(&metrics.body).contains(not_modified)
        },
    )
    .await;
    let refreshed = get(&mut connection, &path, gzip).await.unwrap();
    assert_eq!(refreshed.header("x-cache-status"), Some("HIT"));
    assert_eq!(refreshed.header("content-encoding"), Some("gzip"));
    assert_eq!(refreshed.body, bodies["gzip"]);
}

#[tokio::test]
async fn nginx_passes_preflights_through_and_caches_answers_per_origin() {
    let db = catalog().await;
    let logs = tempfile::TempDir::new().unwrap();
    // A lifetime in nginx's cache that cannot run out during the test.
    let instance = Instance::start(
        logs.path(),
        &[
            "--database-url",
            db.url.as_str(),
            "--cors-origins",
            "http://a.example,http://b.example",
            "--shared-max-age",
            "60",
        ],
    )
    .await;
    let nginx = Nginx::start(&[&instance], "documents").await;
    let mut connection = connect(nginx.addr).await.unwrap();

    // Preflights bypass the cache: each is the instance's own answer.
    let preflight = "Origin: http://a.example\r\nAccess-Control-Request-Method: GET\r\n";
    for _ in 0..2 {
        let reply = send(&mut connection, "OPTIONS", "/products/3/page", preflight)
            .await
            .unwrap();
        assert_eq!(reply.status, 204);
        assert_eq!(reply.header("x-cache-status"), None);
        assert_eq!(
            reply.header("access-control-allow-origin"),
            Some("http://a.example")
        );
        assert_eq!(
            reply.header("access-control-allow-methods"),
            Some("GET, HEAD")
        );
    }

    // The joined answers are cached like every document, one entry per origin, since
    // each names the origin it is for.
    for path in ["/products/3/page", "/products?ids=3,1&include=styles"] {
        for (origin, status) in [("a", "MISS"), ("b", "MISS"), ("a", "HIT"), ("b", "HIT")] {
            let origin = format!("http://{origin}.example");
            let reply = get(&mut connection, path, &format!("Origin: {origin}\r\n"))
                .await
                .unwrap();
            assert_eq!(reply.status, 200);
            assert_eq!(
                reply.header("x-cache-status"),
                Some(status),
                "{path} {origin}"
            );
            assert_eq!(
                reply.header("access-control-allow-origin"),
                Some(origin.as_str())
            );
        }
    }
}

#[tokio::test]
async fn nginx_compresses_what_an_instance_sends_uncompressed() {
    let db = catalog().await;
    let logs = tempfile::TempDir::new().unwrap();
    let instance = Instance::start(
        logs.path(),
        &["--database-url", db.url.as_str(), "--compression", "off"],
    )
    .await;
    let nginx = Nginx::start(&[&instance], "documents").await;
    let mut direct = connect(instance.addr).await.unwrap();
    let path = "/products?count=40";
    let own = get(&mut direct, path, "Accept-Encoding: gzip\r\n")
        .await
        .unwrap();
    assert_eq!(own.header("content-encoding"), None);
    assert!(vary(&own).is_empty());
    let mut connection = connect(nginx.addr).await.unwrap();
    for _ in 0..2 {
        let zipped = get(&mut connection, path, "Accept-Encoding: gzip\r\n")
            .await
            .unwrap();
        assert_eq!(zipped.header("content-encoding"), Some("gzip"));
        assert_eq!(gunzip(&zipped.body), own.body);
        // nginx weakens the ETag of what it compresses, and says the answer varies.
        let etag = own.header("etag").unwrap();
        assert_eq!(zipped.header("etag"), Some(format!("W/{etag}").as_str()));
        assert_eq!(vary(&zipped), ["Accept-Encoding"]);
        let plain = get(&mut connection, path, "").await.unwrap();
        assert_eq!(plain.header("content-encoding"), None);
        assert_eq!(plain.body, own.body);
        assert_eq!(vary(&plain), ["Accept-Encoding"]);
    }
}

// ---------------------------------------------------------------------------------------
// Instances reading from a streaming replica

/// A primary that allows replicas, holding a materialized catalog, and a streaming
/// replica of it; both stopped when dropped.
struct Replicated {
    _primary_dir: tempfile::TempDir,
    _replica_dir: tempfile::TempDir,
    primary: Cluster,
    replica: Cluster,
}

impl Replicated {
    async fn new() -> Replicated {
        let primary_dir = tempfile::TempDir::new().unwrap();
        let replica_dir = tempfile::TempDir::new().unwrap();
        let root = primary_dir.path().to_path_buf();
        let primary = tokio::task::spawn_blocking(move || {
            let primary = Cluster::new(&root).unwrap();
            primary.ensure_running(Durability::Throwaway).unwrap();
            primary.allow_replicas().unwrap();
            primary
        })
        .await
        .unwrap();
        db::create_database_if_missing(&primary.url("postgres").unwrap(), "atelier")
            .await
            .unwrap();
        let url = primary.url("atelier").unwrap();
        db::apply_schema(&db::connect(&url).await.unwrap())
            .await
            .unwrap();
        seed_catalog(&url, PRODUCTS).await;
        let (source, root) = (primary.clone(), replica_dir.path().to_path_buf());
        let replica = tokio::task::spawn_blocking(move || source.create_replica(&root))
            .await
            .unwrap()
            .expect("create a streaming replica");
        Replicated {
            _primary_dir: primary_dir,
            _replica_dir: replica_dir,
            primary,
            replica,
        }
    }

    fn primary_url(&self) -> String {
        self.primary.url("atelier").unwrap()
    }

    /// The replica first, the primary when the replica does not answer.
    fn read_url(&self) -> String {
        format!(
            "postgres://postgres@{},{}/atelier",
            self.replica.host_and_port().unwrap(),
            self.primary.host_and_port().unwrap()
        )
    }

    /// Connections of `application` on the cluster at `url`.
    async fn sessions(url: &str, application: &str) -> i64 {
        let client = db::connect(url).await.unwrap();
        const SQL: &str = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1";
        client.query_one(SQL, &[&application]).await.unwrap().get(0)
    }
}

impl Drop for Replicated {
    fn drop(&mut self) {
        let _ = self.replica.stop();
        let _ = self.primary.stop();
    }
}

async fn product_name(instance: &Instance, id: i32) -> String {
    let reply = get_once(instance.addr, &format!("/products/{id}"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    reply.json()["name"].as_str().unwrap().to_string()
}

/// Renames product `id` to "Renamed" on the primary and re-materializes it.
async fn rename_and_materialize(primary_url: &str, id: i32) {
    let primary = db::connect(primary_url).await.unwrap();
    primary
        .execute("UPDATE product SET name = 'Renamed' WHERE id = $1", &[&id])
        .await
        .unwrap();
    materialize::materialize(
        primary_url,
        Plan::Products(vec![id]),
        &materialize::Settings::default(),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_rematerialize_reaches_every_instance_once_the_replica_replayed_it() {
    let clusters = Replicated::new().await;
    let (primary_url, read_url) = (clusters.primary_url(), clusters.read_url());
    let replica_url = clusters.replica.url("atelier").unwrap();
    let logs = tempfile::TempDir::new().unwrap();
    // One names its primary, the other finds it among the read hosts.
    let named = ["--database-url", &read_url, "--primary-url", &primary_url];
    let found = ["--database-url", &read_url];
    let (a, b) = tokio::join!(
        Instance::start(logs.path(), &named),
        Instance::start(logs.path(), &found),
    );
    let instances = [a, b];
    for instance in &instances {
        instance.wait_listening().await;
        assert_eq!(product_name(instance, 1).await, "Product 1");
    }
    // Documents come from the replica; only the LISTEN connections are on the primary.
    assert!(Replicated::sessions(&replica_url, "atelier serve").await >= 2);
    assert_eq!(Replicated::sessions(&primary_url, "atelier serve").await, 0);
    assert_eq!(
        Replicated::sessions(&primary_url, "atelier serve listen").await,
        2
    );

    // The replica stops replaying while the product changes and is re-materialized.
    let replica = db::connect(&replica_url).await.unwrap();
    replica
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    rename_and_materialize(&primary_url, 1).await;
    // The notification has arrived meanwhile; requests keep getting the old document
    // and, since nothing was dropped before the replica has the new one, do not put
    // the replica's stale copy back into the cache.
    let paused_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < paused_until {
        for instance in &instances {
            assert_eq!(product_name(instance, 1).await, "Product 1");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    const STORED_SQL: &str = "SELECT product->>'name' FROM document WHERE product_id = 1";
    let on_replica: String = replica.query_one(STORED_SQL, &[]).await.unwrap().get(0);
    assert_eq!(on_replica, "Product 1", "the replica really lags");

    replica
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    for instance in &instances {
        wait_until("the instance serves the new document", || async {
            product_name(instance, 1).await == "Renamed"
        })
        .await;
    }
}

#[tokio::test]
async fn instances_keep_serving_from_the_primary_when_the_replica_stops() {
    let clusters = Replicated::new().await;
    let (primary_url, read_url) = (clusters.primary_url(), clusters.read_url());
    let logs = tempfile::TempDir::new().unwrap();
    let pool_size = 4;
    let pool = pool_size.to_string();
    let instance = Instance::start(
        logs.path(),
        &["--database-url", &read_url, "--pool-size", &pool],
    )
    .await;
    instance.wait_listening().await;
    // Ids that are multiples of 7 name no product.
    let ids = || (1..=PRODUCTS).filter(|id| id % 7 != 0);
    for id in ids().take(20) {
        assert_eq!(product_name(&instance, id).await, format!("Product {id}"));
    }

    let replica = clusters.replica.clone();
    tokio::task::spawn_blocking(move || replica.stop())
        .await
        .unwrap()
        .unwrap();
    // Pooled connections to the replica fail once each when next used; new ones go to
    // the primary. Every document asked for from here on is not cached yet.
    let mut uncached = ids().skip(20);
    let mut failed = 0;
    loop {
        let id = uncached.next().unwrap();
        let reply = get_once(instance.addr, &format!("/products/{id}"))
            .await
            .unwrap();
        if reply.status == 200 {
            break;
        }
        assert_eq!(reply.status, 503);
        failed += 1;
        assert!(failed <= pool_size * 2, "reads keep failing after the stop");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in uncached.take(40) {
        let reply = get_once(instance.addr, &format!("/products/{id}/styles"))
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "product {id} after the fallback");
    }
    assert!(Replicated::sessions(&primary_url, "atelier serve").await >= 1);

    // Changes still reach the cache: the replay check falls back to the primary too.
    rename_and_materialize(&primary_url, 2).await;
    wait_until("the instance serves the new document", || async {
        product_name(&instance, 2).await == "Renamed"
    })
    .await;
}
