//! Database faults and privileges against a running server: PostgreSQL restarted under
//! load, the pool exhausted by a held lock, and the read-only role servers connect as.
//! Failures must be quick 503s with a JSON body and Retry-After, never hangs or leaked
//! internals, and the server must recover by itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use atelier::db::{self, READER_ROLE, embedded::Durability};
use atelier::http::Settings;
use atelier::materialize::{self, Plan};
use serde_json::json;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::serving::{Reply, Server, eventually, request, seed_catalog, seeded_own_cluster};
use crate::support::{OwnCluster, TestDb, document_count, sample};

/// The message of every 503 caused by the database.
const UNAVAILABLE: &str = "the catalog database is unavailable; retry shortly";

/// Reads are bounded by this (`--query-timeout-ms`).
const QUERY_TIMEOUT: Duration = Duration::from_millis(1000);

/// What a loaded 2-core machine may add to a bounded request.
const SLACK: Duration = Duration::from_secs(4);

/// Server flags bounding every database wait.
fn bounded() -> Settings {
    Settings {
        pool_timeout: Duration::from_millis(500),
        query_timeout: Duration::from_millis(1000),
        ..Settings::default()
    }
}

/// `GET path`, failing the test if no answer comes within a generous bound.
async fn get_bounded(server: &Server, path: &str) -> (Reply, Duration) {
    let started = Instant::now();
    let reply = tokio::time::timeout(Duration::from_secs(30), server.get(path))
        .await
        .unwrap_or_else(|_| panic!("GET {path} hung"));
    (reply, started.elapsed())
}

/// Asserts `reply` is the database-unavailable 503 and carries nothing internal.
fn assert_unavailable(reply: &Reply, path: &str) {
    assert_eq!(reply.status, 503, "{path}: {}", reply.text());
    assert_eq!(reply.header("retry-after"), Some("1"), "{path}");
    assert_eq!(
        reply.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(reply.json(), json!({ "message": UNAVAILABLE }), "{path}");
}

/// Products of the seeded catalog (which skips multiples of 7) not read before the lock.
const UNCACHED: [i32; 10] = [2, 3, 4, 5, 6, 8, 9, 10, 11, 12];

#[tokio::test]
async fn a_held_lock_exhausts_the_pool_and_uncached_reads_answer_503_in_bounded_time() {
    let db = TestDb::new().await;
    seed_catalog(&db.url, 40).await;
    let server = Server::start_listening(
        &db.url,
        Settings {
            pool_size: 2,
            ..bounded()
        },
    )
    .await;
    let cached = server.get("/products/1").await;
    assert_eq!(cached.status, 200);

    let mut locker = db.client().await;
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE document IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    // More readers than connections: some wait in the database, the rest for the pool.
    let server = Arc::new(server);
    let misses: Vec<_> = UNCACHED
        .into_iter()
        .map(|id| {
            let server = server.clone();
            tokio::spawn(async move {
                let path = format!("/products/{id}");
                let (reply, took) = get_bounded(&server, &path).await;
                (path, reply, took)
            })
        })
        .collect();
    for miss in misses {
        let (path, reply, took) = miss.await.unwrap();
        assert_unavailable(&reply, &path);
        assert!(took < QUERY_TIMEOUT + SLACK, "{path} took {took:?}");
    }
    // The stalled reads wait inside the database, never more of them than the pool
    // holds; reads whose requests gave up are not sent at all, so by now there may be
    // none.
    const WAITING_SQL: &str = "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'atelier serve' \
         AND wait_event_type = 'Lock'";
    let waiting: i64 = db
        .client()
        .await
        .query_one(WAITING_SQL, &[])
        .await
        .unwrap()
        .get(0);
    assert!(waiting <= 2, "{waiting} reads wait on the lock");
    let (again, took) = get_bounded(&server, "/products/1").await;
    assert_eq!((again.status, &again.body), (200, &cached.body));
    assert!(took < SLACK, "a cached read took {took:?}");
    assert_eq!(server.get("/healthz").await.status, 200);

    lock.rollback().await.unwrap();
    eventually(30, "reads succeed again", || async {
        server.get("/products/2").await.status == 200
    })
    .await;
    for id in UNCACHED {
        assert_eq!(server.get(&format!("/products/{id}")).await.status, 200);
    }
    assert_eq!(server.get("/readyz").await.status, 200);
    Arc::into_inner(server).unwrap().stop().await;
}

#[tokio::test]
async fn postgres_restarted_under_load_gives_quick_503s_then_recovers_by_itself() {
    let (own, url) = seeded_own_cluster(200).await;
    // A cache of one byte holds nothing: every request reads the database.
    let server = Server::start_listening(
        &url,
        Settings {
            cache_bytes: 1,
            ..bounded()
        },
    )
    .await;
    let addr = server.addr;
    assert_eq!(server.get("/products/1").await.status, 200);

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..6)
        .map(|client| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut answers = Vec::new();
                let mut id = client;
                while !stop.load(Ordering::Relaxed) {
                    // The seeded catalog has no multiples of 7.
                    id = id % 150 + 1;
                    if id % 7 == 0 {
                        id += 1;
                    }
                    let path = format!("/products/{id}/styles");
                    let started = Instant::now();
                    let reply = tokio::time::timeout(
                        Duration::from_secs(30),
                        request(addr, "GET", &path, &[]),
                    )
                    .await
                    .unwrap_or_else(|_| panic!("GET {path} hung"));
                    answers.push((path, reply, started.elapsed(), Instant::now()));
                }
                answers
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cluster = own.cluster.clone();
    tokio::task::spawn_blocking(move || {
        cluster.stop()?;
        std::thread::sleep(Duration::from_secs(1));
        cluster.start()
    })
    .await
    .unwrap()
    .unwrap();
    let restarted = Instant::now();
    eventually(30, "the server reads the database again", || async {
        server.get("/products/1/related").await.status == 200
    })
    .await;
    // Keep the load on a while after recovery.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);

    let mut unavailable = 0;
    let mut ok_after_restart = 0;
    for client in clients {
        let answers = client.await.unwrap();
        assert!(!answers.is_empty());
        for (path, reply, took, at) in &answers {
            assert!(*took < QUERY_TIMEOUT + SLACK, "{path} took {took:?}");
            match reply.status {
                200 => {
                    assert!(reply.json()["results"].is_array(), "{path}");
                    ok_after_restart += usize::from(*at > restarted);
                }
                _ => {
                    assert_unavailable(reply, path);
                    unavailable += 1;
                }
            }
        }
        // Once recovered, a client's last answer is a success.
        assert_eq!(answers.last().unwrap().1.status, 200);
    }
    assert!(unavailable > 0, "no request saw the database down");
    assert!(
        ok_after_restart > 0,
        "no request succeeded after the restart"
    );
    assert!(server.metric("atelier_db_errors_total").await >= 1.0);
    assert_eq!(server.get("/readyz").await.status, 200);
    server.stop().await;
}

/// Whether `sql`, run as `client`, is refused for lack of privilege.
async fn refused(client: &Client, sql: &str) -> bool {
    match client.batch_execute(sql).await {
        Ok(()) => false,
        Err(error) => {
            // Leaves a transaction the statement may have begun.
            client.batch_execute("ROLLBACK").await.unwrap();
            error.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE)
        }
    }
}

/// Asserts the reader can read what a server reads and can neither read the catalog
/// nor change anything.
async fn assert_read_only(reader: &Client) {
    let documents: i64 = reader
        .query_one("SELECT count(*) FROM document", &[])
        .await
        .expect("the reader reads documents")
        .get(0);
    assert!(documents > 0);
    let ready: bool = reader
        .query_one(atelier::documents::READY_SQL, &[])
        .await
        .expect("the reader reads whether a materialize completed")
        .get(0);
    assert!(ready);
    for sql in [
        "SELECT * FROM product",
        "SELECT * FROM style",
        "SELECT summary FROM catalog_run",
        "INSERT INTO document SELECT * FROM document",
        "UPDATE document SET related = '[]'",
        "DELETE FROM document",
        "TRUNCATE document",
        "DROP TABLE document",
        "INSERT INTO catalog_run (kind, summary) VALUES ('load', '{}')",
        "CREATE TABLE public.planted (id int)",
        "BEGIN; LOCK TABLE document IN ACCESS EXCLUSIVE MODE; ROLLBACK",
        "CREATE ROLE planted",
    ] {
        assert!(refused(reader, sql).await, "the reader may run {sql}");
    }
}

#[tokio::test]
async fn the_reader_role_reads_documents_only_across_rematerializes_and_reloads() {
    let db = TestDb::with_catalog(&sample("sara-2023")).await;
    let reader_url = db::with_user(&db.url, READER_ROLE).unwrap();
    let reader = db::connect(&reader_url).await.unwrap();
    assert_read_only(&reader).await;

    // A full materialize swaps in a new document table; a load swaps the catalog.
    materialize::materialize(&db.url, Plan::Everything, &materialize::Settings::default())
        .await
        .unwrap();
    assert_read_only(&reader).await;
    let mut owner = db.client().await;
    let rejects = tempfile::NamedTempFile::new().unwrap();
    atelier::load::load_catalog(&mut owner, &sample("sara-2023"), rejects.path(), false)
        .await
        .unwrap();
    materialize::materialize(&db.url, Plan::Everything, &materialize::Settings::default())
        .await
        .unwrap();
    assert_read_only(&reader).await;

    // A server reading as the reader serves, is ready and follows materialize.
    let server = Server::start_listening(&reader_url, Settings::default()).await;
    assert_eq!(
        server.get("/products/1").await.json()["name"],
        "Camo Onesie"
    );
    assert_eq!(server.get("/readyz").await.status, 200);
    owner
        .batch_execute("UPDATE product SET name = 'Renamed' WHERE id = 1")
        .await
        .unwrap();
    materialize::materialize(
        &db.url,
        Plan::Products(vec![1]),
        &materialize::Settings::default(),
    )
    .await
    .unwrap();
    eventually(10, "the change is served", || async {
        server.get("/products/1").await.json()["name"] == "Renamed"
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn a_role_without_privileges_gets_503s_that_name_no_internals() {
    let db = TestDb::with_catalog(&sample("sara-2023")).await;
    let owner = db.client().await;
    let role = format!("atelier_nobody_{}", std::process::id());
    owner
        .batch_execute(&format!("CREATE ROLE {role} LOGIN"))
        .await
        .unwrap();
    let url = db::with_user(&db.url, &role).unwrap();
    let server = Server::start(&url, bounded()).await;
    for path in ["/products/1", "/products/1/styles", "/products?page=1"] {
        let (reply, took) = get_bounded(&server, path).await;
        assert!(took < QUERY_TIMEOUT + SLACK, "{path} took {took:?}");
        assert_unavailable(&reply, path);
        let body = reply.text().to_lowercase();
        for internal in [
            "permission",
            "document",
            "select",
            "db error",
            role.as_str(),
        ] {
            assert!(!body.contains(internal), "{path}: {body}");
        }
    }
    let ready = server.get("/readyz").await;
    assert_eq!(ready.status, 503);
    assert!(!ready.text().contains("permission"), "{}", ready.text());
    server.stop().await;
    owner
        .batch_execute(&format!("DROP ROLE {role}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_embedded_default_serves_as_the_reader() {
    let own = OwnCluster::new();
    let owner_url = db::resolve_url(&own.database()).await.unwrap();
    let mut owner = db::connect(&owner_url).await.unwrap();
    db::apply_schema(&owner).await.unwrap();
    let rejects = own.dir.path().join("rejects.csv");
    atelier::load::load_catalog(&mut owner, &sample("sara-2023"), &rejects, false)
        .await
        .unwrap();

    let served_url = atelier::demo::prepare_database(&own.database())
        .await
        .unwrap()
        .read_url;
    assert!(
        served_url.starts_with(&format!("postgres://{READER_ROLE}@")),
        "{served_url}"
    );
    assert_read_only(&db::connect(&served_url).await.unwrap()).await;
    let server = Server::start_listening(&served_url, Settings::default()).await;
    assert_eq!(
        server.get("/products/3/related").await.json(),
        json!([5, 9, 7, 2, 1])
    );
    server.stop().await;
}

#[tokio::test]
async fn databases_of_a_fresh_cluster_applying_the_schema_at_once_share_one_reader() {
    let own = OwnCluster::new();
    own.cluster.ensure_running(Durability::Throwaway).unwrap();
    let maintenance = own.cluster.url("postgres").unwrap();
    let mut urls = Vec::new();
    for n in 0..6 {
        let name = format!("race_{n}");
        db::create_database_if_missing(&maintenance, &name)
            .await
            .unwrap();
        urls.push(own.cluster.url(&name).unwrap());
    }
    let applications = urls.iter().map(|url| async move {
        let client = db::connect(url).await?;
        db::apply_schema(&client).await
    });
    for outcome in futures_util::future::join_all(applications).await {
        outcome.expect("every database gets the schema and the grants");
    }
    for url in &urls {
        let reader = db::connect(&db::with_user(url, READER_ROLE).unwrap())
            .await
            .unwrap();
        assert_eq!(document_count(&reader).await, 0);
        assert!(refused(&reader, "SELECT * FROM product").await);
    }
}

/// SIGKILLs `own`'s postmaster and starts the cluster again, which recovers from the WAL.
async fn crash_and_restart(own: &OwnCluster) {
    let pid = std::fs::read_to_string(own.cluster.pgdata().join("postmaster.pid")).unwrap();
    let pid: i32 = pid.lines().next().unwrap().trim().parse().unwrap();
    // SAFETY: kill(2) on the cluster's own postmaster, a process this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    eventually(30, "the crashed cluster is down", || async {
        !own.cluster.is_running()
    })
    .await;
    let cluster = own.cluster.clone();
    tokio::task::spawn_blocking(move || cluster.ensure_running(Durability::Throwaway))
        .await
        .unwrap()
        .unwrap();
}

/// A database that went through crash recovery still reports where its replay ended
/// (`pg_last_wal_replay_lsn()`), as a promoted standby does: a server must not take it
/// for a replica that lags and hold every invalidation back until its wait runs out.
#[tokio::test]
async fn after_the_database_crashed_a_change_is_served_at_once() {
    let (own, url) = seeded_own_cluster(20).await;
    crash_and_restart(&own).await;
    let client = db::connect(&url).await.unwrap();
    let recovered: bool = client
        .query_one("SELECT pg_last_wal_replay_lsn() IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(recovered, "the start recovered from a crash");

    let server = Server::start_listening(&url, Settings::default()).await;
    assert_eq!(server.get("/products/1").await.json()["name"], "Product 1");
    client
        .batch_execute("UPDATE product SET name = 'After the crash' WHERE id = 1")
        .await
        .unwrap();
    materialize::materialize(
        &url,
        Plan::Products(vec![1]),
        &materialize::Settings::default(),
    )
    .await
    .unwrap();
    let changed = Instant::now();
    eventually(5, "the change is served", || async {
        server.get("/products/1").await.json()["name"] == "After the crash"
    })
    .await;
    assert!(
        changed.elapsed() < Duration::from_secs(2),
        "{:?}",
        changed.elapsed()
    );
    server.stop().await;
}

#[tokio::test]
async fn after_the_database_crashed_a_server_drops_again_only_what_changed_just_before() {
    let (own, url) = seeded_own_cluster(20).await;
    let client = db::connect(&url).await.unwrap();
    // The catalog was built long ago, not within the replay's margin; and that is kept
    // through the crash (the cluster commits asynchronously, which the crash shows).
    client
        .batch_execute(
            "SET synchronous_commit = on; \
             UPDATE document_notice SET sent_at = sent_at - interval '1 minute'",
        )
        .await
        .unwrap();
    let server = Server::start_listening(&url, Settings::default()).await;
    // Both cached first, so that the change is served only once its notice was applied.
    for id in [1, 2] {
        assert_eq!(
            server.get(&format!("/products/{id}")).await.json()["name"],
            format!("Product {id}")
        );
    }
    client
        .batch_execute("UPDATE product SET name = 'Before the crash' WHERE id = 1")
        .await
        .unwrap();
    materialize::materialize(
        &url,
        Plan::Products(vec![1]),
        &materialize::Settings::default(),
    )
    .await
    .unwrap();
    eventually(5, "the change is served", || async {
        server.get("/products/1").await.json()["name"] == "Before the crash"
    })
    .await;
    assert_eq!(server.get("/products/2").await.json()["name"], "Product 2");

    // A crash may lose the last commits (synchronous_commit is off) after their notices
    // went out, so what the server applied just before is dropped again; nothing else.
    crash_and_restart(&own).await;
    server
        .wait_for_metric("atelier_notify_catch_ups_total", 1.0)
        .await;
    assert_eq!(server.metric("atelier_notify_cache_drops_total").await, 1.0);
    assert!(
        server
            .metric("atelier_notify_caught_up_notices_total")
            .await
            >= 1.0
    );
    let misses = server.metric("atelier_cache_misses_total").await;
    assert_eq!(server.get("/products/2").await.json()["name"], "Product 2");
    assert_eq!(server.metric("atelier_cache_misses_total").await, misses);
    let client = db::connect(&url).await.unwrap();
    let stored: String = client
        .query_one(
            "SELECT product->>'name' FROM document WHERE product_id = 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(server.get("/products/1").await.json()["name"], stored);
    assert_eq!(
        server.metric("atelier_cache_misses_total").await,
        misses + 1.0
    );
    server.stop().await;
}
