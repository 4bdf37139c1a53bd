//! Automatic failover on a real pg_auto_failover formation (`db::ha`): a monitor, a
//! primary and its synchronous standby on loopback, the primary's machine killed while
//! a writer commits, a follower rebuilds and servers serve. No acknowledged change is
//! lost, every one is rebuilt and served, servers keep answering from their caches while
//! their LISTEN host is gone and catch up on what they missed, and once the old primary
//! has rejoined as a standby, servers and followers given both hosts keep working.

use std::collections::BTreeMap;
use std::net::TcpListener;
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
use crate::support::{FollowerProcess, Instance, assert_as_full_rebuild, get_once};

/// The database every formation here holds.
const DATABASE: &str = "atelier";

/// Three loopback ports nobody listens on right now.
pub fn free_ports() -> [u16; 3] {
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let port = |i: usize| listeners[i].local_addr().unwrap().port();
    [port(0), port(1), port(2)]
}

/// A formation in a directory of its own (where the processes' logs go too), its
/// database holding the schema and [`seed_catalog`]'s `products`, written through the
/// URL that names both nodes.
struct Catalogued {
    dir: tempfile::TempDir,
    formation: Formation,
    /// Both nodes, node 0 (the first primary) first.
    url: String,
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
            dir,
            formation,
            url,
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

/// Asks `instance` for every product of `ids` in turn until stopped, keeping their
/// documents in its cache; answers are not judged (reads fail while no node answers).
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

#[tokio::test]
async fn failover_promotes_the_standby_and_the_old_primary_rejoins_as_its_standby() {
    let dir = tempfile::TempDir::new().unwrap();
    let formation = Formation::create(dir.path(), free_ports(), "atelier")
        .await
        .unwrap();
    assert_eq!(formation.primary().await.unwrap(), Some(Node(0)));
    let writer = db::connect(&formation.url("atelier")).await.unwrap();
    writer
        .batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();

    formation.kill(Node(0)).await;
    assert_eq!(formation.promoted(Node(0)).await.unwrap(), Node(1));
    // The URL names both nodes: a new connection finds the one that takes writes.
    let writer = db::connect(&formation.url("atelier")).await.unwrap();
    writer
        .batch_execute("INSERT INTO t VALUES (2)")
        .await
        .unwrap();

    formation.rejoin(Node(0)).await.unwrap();
    formation.settled().await.unwrap();
    let old = db::connect(&formation.node_url(Node(0), "atelier"))
        .await
        .unwrap();
    let standby: bool = old
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(standby, "the old primary came back as a standby");
    let rows: Vec<i32> = old
        .query("SELECT x FROM t ORDER BY x", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(rows, [1, 2], "it follows the new primary");
}
