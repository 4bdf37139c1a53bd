//! Automatic failover on a real pg_auto_failover formation (`db::ha`): a monitor, a
//! primary and its synchronous standby on loopback, the primary's machine killed while
//! a writer commits, a follower rebuilds and servers serve. No acknowledged change is
//! lost, every one is rebuilt and served, servers keep answering from their caches while
//! their LISTEN host is gone and catch up on what they missed, and once the old primary
//! has rejoined as a standby, servers and followers given both hosts keep working.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use atelier::db::{
    self,
    ha::{Formation, Node},
};
use atelier::http::notify::LISTEN_APPLICATION_NAME;
use atelier::materialize::follow;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::serving::{eventually, seed_catalog};
use crate::support::{FollowerProcess, Instance, assert_as_full_rebuild, free_port, get_once};

/// The database every formation here holds.
const DATABASE: &str = "atelier";

/// Three loopback ports nobody listens on right now, none given to another test.
pub fn free_ports() -> [u16; 3] {
    [free_port(), free_port(), free_port()]
}

/// A formation in a directory of its own (where the processes' logs go too), its
/// database holding the schema and [`seed_catalog`]'s `products`, written through the
/// URL that names both nodes.
struct Catalogued {
    formation: Formation,
    /// The nodes' ports: node 0's, then node 1's.
    ports: [u16; 2],
    /// Both nodes, node 0 (the first primary) first.
    url: String,
    /// Dropped after the formation, whose members' files it holds.
    dir: tempfile::TempDir,
}

impl Catalogued {
    async fn new(products: i32) -> Catalogued {
        let dir = tempfile::TempDir::new().unwrap();
        let ports = free_ports();
        let formation = Formation::create(dir.path(), ports, DATABASE)
            .await
            .unwrap();
        assert_eq!(formation.primary().await.unwrap(), Some(Node(0)));
        let url = formation.url(DATABASE);
        db::apply_schema(&db::connect(&url).await.unwrap())
            .await
            .unwrap();
        seed_catalog(&url, products).await;
        Catalogued {
            formation,
            ports: [ports[1], ports[2]],
            url,
            dir,
        }
    }

    fn logs(&self) -> &Path {
        self.dir.path()
    }

    /// A connection to `node` alone.
    async fn node(&self, node: Node) -> Client {
        db::connect(&self.formation.node_url(node, DATABASE))
            .await
            .unwrap()
    }

    /// Sessions of `application` on `node`'s database.
    async fn sessions(&self, node: Node, application: &str) -> i64 {
        const SQL: &str = "SELECT count(*) FROM pg_stat_activity \
                           WHERE datname = current_database() AND application_name = $1";
        self.node(node)
            .await
            .query_one(SQL, &[&application])
            .await
            .unwrap()
            .get(0)
    }
}

impl Drop for Catalogued {
    /// A failed test shows the end of each server's and follower's log.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let Ok(entries) = std::fs::read_dir(self.dir.path()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !(name.starts_with("atelier-") || name.starts_with("follower")) {
                continue;
            }
            let log = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            eprintln!("--- {name} (last lines)");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// The ids of [`seed_catalog`]'s `products` (multiples of 7 name none).
fn product_ids(products: i32) -> Vec<i32> {
    (1..=products).filter(|id| id % 7 != 0).collect()
}

/// Every product's name in the catalog `client` reaches.
async fn names(client: &Client) -> BTreeMap<i32, String> {
    client
        .query("SELECT id, name FROM product", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// The products whose stored document names them otherwise than the catalog does
/// (or that have none): (id, catalog name, document's name).
async fn documents_behind(client: &Client) -> Vec<(i32, String, Option<String>)> {
    client
        .query(
            "SELECT p.id, p.name, d.product->>'name' FROM product p \
             LEFT JOIN document d ON d.product_id = p.id \
             WHERE d.product->>'name' IS DISTINCT FROM p.name ORDER BY p.id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

/// Renames product `id` to `name` (one transaction).
async fn set_name(client: &Client, id: i32, name: &str) {
    client
        .execute("UPDATE product SET name = $2 WHERE id = $1", &[&id, &name])
        .await
        .unwrap();
}

/// Rows in the change queue.
async fn queued(client: &Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM document_queue", &[])
        .await
        .unwrap()
        .get(0)
}

/// The name `instance` serves for product `id`, when it answers 200.
async fn served_name(instance: &Instance, id: i32) -> Option<String> {
    let reply = get_once(instance.addr, &format!("/products/{id}"))
        .await
        .ok()?;
    (reply.status == 200).then(|| reply.json()["name"].as_str().unwrap().to_string())
}

/// Waits until `instance` serves each product of `expected` under its name there
/// (`seconds` at most); how long that took.
async fn assert_served(instance: &Instance, expected: &BTreeMap<i32, String>, seconds: u64) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut pending: Vec<(&i32, &String)> = expected.iter().collect();
    loop {
        let mut still = Vec::new();
        for (id, name) in pending {
            let served = served_name(instance, *id).await;
            if served.as_ref() != Some(name) {
                still.push((id, name, served));
            }
        }
        if still.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} products not served as the catalog has them after {seconds} s \
             (id, catalog, served): {:?}",
            still.len(),
            expected.len(),
            &still[..still.len().min(10)]
        );
        pending = still.into_iter().map(|(id, name, _)| (id, name)).collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------
// A writer through the failover

/// What the writer knows of its commits.
#[derive(Default)]
struct Ledger {
    /// By product, the sequence number of the last rename whose COMMIT was acknowledged.
    acknowledged: BTreeMap<i32, u64>,
    /// Renames whose COMMIT was sent but never answered: (product, sequence number).
    in_doubt: Vec<(i32, u64)>,
    /// Commits acknowledged in all.
    acks: u64,
    /// When the last one was.
    last_ack: Option<Instant>,
    /// When the first write or connection failed.
    first_failure: Option<Instant>,
    /// When the first commit after that was acknowledged.
    resumed: Option<Instant>,
    failures: u64,
}

/// The name the rename numbered `sequence` gives.
fn written(sequence: u64) -> String {
    format!("Written {sequence}")
}

/// One product renamed per transaction, about 100 a second, products taken in turn,
/// through the URL that names both nodes; on an error it reconnects and goes on.
struct Writer {
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

/// Why a rename did not come back acknowledged.
enum Failed {
    /// The server refused it or the connection broke before COMMIT: nothing committed.
    Before,
    /// The connection broke during COMMIT: it may or may not have committed.
    During,
}

async fn rename(client: &mut Client, id: i32, name: &str) -> Result<(), Failed> {
    let transaction = client.transaction().await.map_err(|_| Failed::Before)?;
    transaction
        .execute("UPDATE product SET name = $2 WHERE id = $1", &[&id, &name])
        .await
        .map_err(|_| Failed::Before)?;
    match transaction.commit().await {
        Ok(()) => Ok(()),
        // The server answered: it did not commit.
        Err(error) if error.as_db_error().is_some() => Err(Failed::Before),
        Err(_) => Err(Failed::During),
    }
}

impl Writer {
    fn start(url: &str, ids: Vec<i32>) -> Writer {
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (url, shared, stopping) = (url.to_string(), ledger.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut client: Option<Client> = None;
            let mut turn = ids.iter().copied().cycle();
            let mut sequence = 0;
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let failed = |ledger: &Arc<Mutex<Ledger>>| {
                let mut ledger = ledger.lock().unwrap();
                ledger.failures += 1;
                ledger.first_failure.get_or_insert_with(Instant::now);
            };
            while !stopping.load(Ordering::Relaxed) {
                tick.tick().await;
                if client.as_ref().is_none_or(Client::is_closed) {
                    match db::connect(&url).await {
                        Ok(connected) => client = Some(connected),
                        Err(_) => {
                            failed(&shared);
                            tokio::time::sleep(Duration::from_millis(40)).await;
                            continue;
                        }
                    }
                }
                let id = turn.next().unwrap();
                sequence += 1;
                let connection = client.as_mut().expect("connected above");
                match rename(connection, id, &written(sequence)).await {
                    Ok(()) => {
                        let mut ledger = shared.lock().unwrap();
                        ledger.acknowledged.insert(id, sequence);
                        ledger.acks += 1;
                        let now = Instant::now();
                        ledger.last_ack = Some(now);
                        if ledger.first_failure.is_some() && ledger.resumed.is_none() {
                            ledger.resumed = Some(now);
                        }
                    }
                    Err(Failed::Before) => {
                        failed(&shared);
                        client = None;
                    }
                    Err(Failed::During) => {
                        shared.lock().unwrap().in_doubt.push((id, sequence));
                        failed(&shared);
                        client = None;
                    }
                }
            }
        });
        Writer { ledger, stop, task }
    }

    fn acks(&self) -> u64 {
        self.ledger.lock().unwrap().acks
    }

    fn last_ack(&self) -> Option<Instant> {
        self.ledger.lock().unwrap().last_ack
    }

    /// Waits until `more` commits past the `acks` counted so far were acknowledged.
    async fn wait_for_acks(&self, more: u64, seconds: u64) {
        let target = self.acks() + more;
        eventually(seconds, &format!("{more} more commits"), || async {
            self.acks() >= target
        })
        .await;
    }

    async fn finish(self) -> Ledger {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        Arc::try_unwrap(self.ledger)
            .ok()
            .expect("the writer is done")
            .into_inner()
            .unwrap()
    }
}

/// Asks the server at `addr` for every product of `ids` in turn until stopped, keeping
/// their documents in its cache; answers are not judged (reads fail while no node
/// answers).
fn keep_reading(addr: std::net::SocketAddr, ids: Vec<i32>) -> (Arc<AtomicBool>, JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let task = tokio::spawn(async move {
        for id in ids.iter().cycle() {
            if stopping.load(Ordering::Relaxed) {
                return;
            }
            let _ = get_once(addr, &format!("/products/{id}")).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    (stop, task)
}

#[tokio::test]
async fn failover_loses_no_acknowledged_change_and_serves_each_one() {
    const PRODUCTS: i32 = 300;
    let catalog = Catalogued::new(PRODUCTS).await;
    let ids = product_ids(PRODUCTS);
    let original = names(&db::connect(&catalog.url).await.unwrap()).await;
    let _follower =
        FollowerProcess::start_logged(&catalog.url, &catalog.logs().join("follower.log"));
    let server = Instance::start(catalog.logs(), &["--database-url", &catalog.url]).await;
    server.wait_listening().await;
    let (reading, reader) = keep_reading(server.addr, ids.clone());

    let writer = Writer::start(&catalog.url, ids.clone());
    writer.wait_for_acks(200, 30).await;
    let killed = Instant::now();
    catalog.formation.kill(Node(0)).await;
    assert_eq!(catalog.formation.promoted(Node(0)).await.unwrap(), Node(1));
    let promoted = killed.elapsed();
    eventually(60, "writes are accepted again", || async {
        writer.last_ack().is_some_and(|last| last > killed)
    })
    .await;
    // A few seconds more of writing on the new primary.
    writer.wait_for_acks(300, 30).await;
    let ledger = writer.finish().await;
    reading.store(true, Ordering::Relaxed);
    reader.await.unwrap();
    let refused = ledger
        .first_failure
        .expect("writes failed while no node took them");
    let resumed = ledger.resumed.expect("writes were accepted again");
    println!(
        "kill -> promotion {promoted:?}; kill -> first write accepted again {:?}; \
         writes refused for {:?} ({} failed attempts); {} commits acknowledged, {} in doubt",
        resumed.duration_since(killed),
        resumed.duration_since(refused),
        ledger.failures,
        ledger.acks,
        ledger.in_doubt.len()
    );

    // Every acknowledged rename is in the catalog: the product has its last acknowledged
    // name, or a later one whose COMMIT went unanswered.
    let primary = catalog.node(Node(1)).await;
    let catalog_names = names(&primary).await;
    assert_eq!(catalog_names.len(), ids.len());
    let mut changed = BTreeMap::new();
    for id in &ids {
        let name = &catalog_names[id];
        let doubtful: Vec<u64> = ledger
            .in_doubt
            .iter()
            .filter(|(product, _)| product == id)
            .map(|(_, sequence)| *sequence)
            .collect();
        let acknowledged = ledger.acknowledged.get(id).copied();
        let mut allowed: Vec<String> = doubtful
            .iter()
            .filter(|sequence| acknowledged.is_none_or(|last| **sequence > last))
            .map(|sequence| written(*sequence))
            .collect();
        allowed.push(acknowledged.map_or_else(|| original[id].clone(), written));
        assert!(
            allowed.contains(name),
            "product {id} is named {name:?}; its last acknowledged name and later \
             unanswered ones: {allowed:?}"
        );
        if *name != original[id] {
            changed.insert(*id, name.clone());
        }
    }
    assert!(changed.len() >= ids.len() / 2, "most products were renamed");

    // The follower rebuilds every change, none from data older than the change.
    eventually(30, "the queue drains", || async {
        queued(&primary).await == 0
    })
    .await;
    assert_eq!(documents_behind(&primary).await, []);
    // The server serves each product's last name (documents it cached before are
    // dropped whatever node their change was committed on).
    let serving = Instant::now();
    assert_served(&server, &changed, 10).await;
    println!(
        "every renamed product served with its last name {:?} after the queue drained",
        serving.elapsed()
    );
    // The follower and the server's LISTEN connection found the new primary.
    eventually(
        10,
        "the follower and the LISTEN are on the new primary",
        || async {
            catalog.sessions(Node(1), follow::APPLICATION_NAME).await >= 1
                && catalog.sessions(Node(1), LISTEN_APPLICATION_NAME).await == 1
        },
    )
    .await;
    // Every document, not only the names: what a full rebuild makes of the catalog.
    assert_as_full_rebuild(&catalog.url).await;
}

/// Asks the server at `addr` for each product of `warm` in turn until stopped, counting
/// answers that are its warm document byte for byte, and noting every other.
struct GapReader {
    stop: Arc<AtomicBool>,
    task: JoinHandle<(u64, Vec<String>)>,
}

impl GapReader {
    fn start(addr: std::net::SocketAddr, warm: BTreeMap<i32, Vec<u8>>) -> GapReader {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let task = tokio::spawn(async move {
            let (mut served, mut failures) = (0, Vec::new());
            for (id, body) in warm.iter().cycle() {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                match get_once(addr, &format!("/products/{id}")).await {
                    Ok(reply) if reply.status == 200 && reply.body == *body => served += 1,
                    Ok(reply) => failures.push(format!(
                        "product {id}: status {}, {}",
                        reply.status,
                        String::from_utf8_lossy(&reply.body)
                    )),
                    Err(error) => failures.push(format!("product {id}: {error}")),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (served, failures)
        });
        GapReader { stop, task }
    }

    /// Stops; the warm documents served, and every other answer.
    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// Cache hits and misses `instance` has counted.
async fn hits_and_misses(instance: &Instance) -> (f64, f64) {
    (
        instance.metric("atelier_cache_hits_total").await,
        instance.metric("atelier_cache_misses_total").await,
    )
}

/// Whether the role servers read as may log in, on `node`.
async fn reader_may_log_in(catalog: &Catalogued, node: Node) -> bool {
    const SQL: &str = "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1";
    catalog
        .node(node)
        .await
        .query_one(SQL, &[&db::READER_ROLE])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn failover_with_the_listen_host_gone_leaves_no_stale_answer() {
    const PRODUCTS: i32 = 300;
    let catalog = Catalogued::new(PRODUCTS).await;
    let ids = product_ids(PRODUCTS);
    let writer = db::connect(&catalog.url).await.unwrap();
    let _follower =
        FollowerProcess::start_logged(&catalog.url, &catalog.logs().join("follower.log"));
    eventually(30, "the seed's queue drains", || async {
        queued(&writer).await == 0
    })
    .await;
    // The catalog was built long before the failover: a server whose primary was
    // replaced replays whatever was announced from `catch_up::RECENT` (30 s) before it
    // last looked at the log, and the seed's announcements, a full rebuild among them,
    // are moved back out of that time so that only this test's changes are in it.
    writer
        .batch_execute("UPDATE document_notice SET sent_at = sent_at - interval '10 minutes'")
        .await
        .unwrap();

    // Reads go to the standby, listed first; the LISTEN connection to the primary.
    let [first, second] = catalog.ports;
    let standby_first = format!(
        "postgres://{}@127.0.0.1:{second},127.0.0.1:{first}/{DATABASE}",
        db::READER_ROLE
    );
    let catching_up_args = ["--database-url", &standby_first];
    let dropping_args = ["--database-url", &standby_first, "--missed-changes", "drop"];
    let (catching_up, dropping) = tokio::join!(
        Instance::start(catalog.logs(), &catching_up_args),
        Instance::start(catalog.logs(), &dropping_args),
    );
    let servers = [&catching_up, &dropping];
    for server in servers {
        server.wait_listening().await;
    }
    // Every product's document in both caches.
    let mut warm = BTreeMap::new();
    for id in &ids {
        let path = format!("/products/{id}");
        let one = get_once(catching_up.addr, &path).await.unwrap();
        let other = get_once(dropping.addr, &path).await.unwrap();
        assert_eq!((one.status, other.status), (200, 200), "product {id}");
        assert_eq!(one.body, other.body, "product {id}");
        warm.insert(*id, one.body);
    }
    assert!(catalog.sessions(Node(1), "atelier serve").await >= 2);
    assert_eq!(catalog.sessions(Node(0), "atelier serve").await, 0);
    assert_eq!(catalog.sessions(Node(0), LISTEN_APPLICATION_NAME).await, 2);

    // Every tenth product changes: half while the servers cannot listen, half after.
    let changed: Vec<i32> = ids.iter().copied().step_by(10).collect();
    let (in_the_gap, after_the_gap): (Vec<i32>, Vec<i32>) =
        changed.iter().partition(|id| *id % 20 < 10);
    assert!(!in_the_gap.is_empty() && !after_the_gap.is_empty());
    let unchanged: Vec<i32> = ids
        .iter()
        .copied()
        .filter(|id| !changed.contains(id))
        .collect();
    // The gap readers ask for a few unchanged products all along.
    let (read_in_the_gap, read_after) = unchanged.split_at(20);
    let gap_warm: BTreeMap<i32, Vec<u8>> = read_in_the_gap
        .iter()
        .map(|id| (*id, warm[id].clone()))
        .collect();

    // The servers' role may not log in for a while, so that their LISTEN connections
    // stay away after the promotion for as long as the changes of the gap take to be
    // rebuilt and announced, rather than racing their 1-s retry. Their pooled
    // connections to the standby stay open.
    writer
        .batch_execute(&format!("ALTER ROLE {} NOLOGIN", db::READER_ROLE))
        .await
        .unwrap();
    eventually(10, "the standby has the role change", || async {
        !reader_may_log_in(&catalog, Node(1)).await
    })
    .await;
    let gap_readers = servers.map(|server| GapReader::start(server.addr, gap_warm.clone()));

    let killed = Instant::now();
    catalog.formation.kill(Node(0)).await;
    assert_eq!(catalog.formation.promoted(Node(0)).await.unwrap(), Node(1));
    println!("kill -> promotion {:?}", killed.elapsed());
    for server in servers {
        eventually(10, "the server notices its LISTEN host is gone", || async {
            server.metric("atelier_notify_listening").await == 0.0
        })
        .await;
    }
    let writer = db::connect(&catalog.url).await.unwrap();
    let mut expected = BTreeMap::new();
    for id in &in_the_gap {
        let name = format!("Renamed in the gap {id}");
        set_name(&writer, *id, &name).await;
        expected.insert(*id, name);
    }
    eventually(30, "the follower rebuilds the gap's changes", || async {
        queued(&writer).await == 0 && documents_behind(&writer).await.is_empty()
    })
    .await;
    for server in servers {
        assert_eq!(
            server.metric("atelier_notify_listening").await,
            0.0,
            "the gap's changes were announced while neither server listened"
        );
    }

    writer
        .batch_execute(&format!("ALTER ROLE {} LOGIN", db::READER_ROLE))
        .await
        .unwrap();
    let allowed = Instant::now();
    for server in servers {
        server.wait_listening().await;
    }
    println!(
        "LISTEN back on the new primary {:?} after the role may log in again",
        allowed.elapsed()
    );
    for server in servers {
        assert_served(server, &expected, 10).await;
    }
    println!(
        "the gap's changes served by both servers {:?} after the role may log in again",
        allowed.elapsed()
    );
    for id in &after_the_gap {
        let name = format!("Renamed after the gap {id}");
        set_name(&writer, *id, &name).await;
        expected.insert(*id, name);
    }
    for server in servers {
        assert_served(server, &expected, 10).await;
    }
    for (server, reader) in servers.into_iter().zip(gap_readers) {
        let (served, failures) = reader.finish().await;
        assert!(
            failures.is_empty(),
            "{} of the warm documents' reads on {} failed: {:?}",
            failures.len(),
            server.addr,
            &failures[..failures.len().min(10)]
        );
        assert!(served > 0);
    }

    // The server catching up kept every other document: not one more miss.
    assert!(catching_up.metric("atelier_notify_catch_ups_total").await >= 1.0);
    assert_eq!(
        catching_up.metric("atelier_notify_cache_drops_total").await,
        1.0,
        "only at start-up"
    );
    assert!(
        catching_up
            .metric("atelier_notify_caught_up_notices_total")
            .await
            >= 1.0
    );
    let (hits, misses) = hits_and_misses(&catching_up).await;
    for id in &unchanged {
        let reply = get_once(catching_up.addr, &format!("/products/{id}"))
            .await
            .unwrap();
        assert_eq!(
            (reply.status, &reply.body),
            (200, &warm[id]),
            "product {id}"
        );
    }
    assert_eq!(
        hits_and_misses(&catching_up).await,
        (hits + unchanged.len() as f64, misses),
        "(hits, misses) after asking for every unchanged product"
    );
    // The server dropping its cache at the reconnection: each unchanged document not read
    // since is a miss.
    assert!(dropping.metric("atelier_notify_cache_drops_total").await >= 2.0);
    let (_, misses) = hits_and_misses(&dropping).await;
    for id in read_after {
        let reply = get_once(dropping.addr, &format!("/products/{id}"))
            .await
            .unwrap();
        assert_eq!(
            (reply.status, &reply.body),
            (200, &warm[id]),
            "product {id}"
        );
    }
    assert_eq!(
        hits_and_misses(&dropping).await.1,
        misses + read_after.len() as f64
    );
}

#[tokio::test]
async fn failover_then_the_old_primary_rejoins_and_servers_keep_serving() {
    const PRODUCTS: i32 = 50;
    let catalog = Catalogued::new(PRODUCTS).await;
    let logs = catalog.logs();
    let mut first_follower =
        FollowerProcess::start_logged(&catalog.url, &logs.join("follower-1.log"));
    let server = Instance::start(logs, &["--database-url", &catalog.url]).await;
    server.wait_listening().await;
    let mut expected = BTreeMap::from([(1, "Product 1".to_string())]);
    assert_served(&server, &expected, 5).await;

    catalog.formation.kill(Node(0)).await;
    assert_eq!(catalog.formation.promoted(Node(0)).await.unwrap(), Node(1));
    // The URL names both nodes: a new connection finds the one that takes writes.
    let writer = db::connect(&catalog.url).await.unwrap();
    set_name(&writer, 1, "Renamed after the failover").await;
    expected.insert(1, "Renamed after the failover".into());
    assert_served(&server, &expected, 20).await;

    let rejoining = Instant::now();
    catalog.formation.rejoin(Node(0)).await.unwrap();
    catalog.formation.settled().await.unwrap();
    println!(
        "the old primary rejoined as a standby in {:?}",
        rejoining.elapsed()
    );
    let old = catalog.node(Node(0)).await;
    let standby: bool = old
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(standby, "the old primary came back as a standby");
    eventually(10, "it follows the new primary", || async {
        names(&old).await[&1] == "Renamed after the failover"
    })
    .await;

    // A server started now reads from the old primary, a standby listed first, and
    // listens on the new one.
    let late = Instance::start(logs, &["--database-url", &catalog.url]).await;
    late.wait_listening().await;
    // Changes reach both servers through the follower that ran all along ...
    set_name(&writer, 2, "Renamed after the rejoin").await;
    expected.insert(2, "Renamed after the rejoin".into());
    for instance in [&server, &late] {
        assert_served(instance, &expected, 20).await;
    }
    // ... and through one started now, with the standby listed first.
    first_follower.0.kill().await.unwrap();
    eventually(10, "the first follower's session ends", || async {
        catalog.sessions(Node(1), follow::APPLICATION_NAME).await == 0
    })
    .await;
    let _second_follower =
        FollowerProcess::start_logged(&catalog.url, &logs.join("follower-2.log"));
    set_name(&writer, 3, "Renamed by a follower started after the rejoin").await;
    expected.insert(3, "Renamed by a follower started after the rejoin".into());
    for instance in [&server, &late] {
        assert_served(instance, &expected, 20).await;
    }
    // Writers and LISTENs on the primary; the late server's reads on the standby.
    assert_eq!(catalog.sessions(Node(1), follow::APPLICATION_NAME).await, 1);
    assert_eq!(catalog.sessions(Node(0), follow::APPLICATION_NAME).await, 0);
    assert_eq!(catalog.sessions(Node(1), LISTEN_APPLICATION_NAME).await, 2);
    assert!(catalog.sessions(Node(0), "atelier serve").await >= 1);
}
