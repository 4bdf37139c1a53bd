//! `failover drive`: one run of the failover benchmark against a formation held by
//! `failover up`, two `atelier serve` instances behind nginx, and a follower.
//!
//! Before the run, every distinct path of the read list is asked of each instance
//! directly, so their caches hold the hot set. Then, for `--seconds`:
//!
//! - **Readers**: `--connections` keep-alive connections to nginx sending the read list's
//!   paths (the storefront mix: product, styles, related, list pages) at `--read-rate`
//!   in all, plus a share (`--cold-share`) of paths read nowhere before (each once), which
//!   the instances must read from the database. Every answer is kept: when it was sent,
//!   how long it took, its status, whether a 503 carried `Retry-After`, and the kind of
//!   document: `steady` (a hot product's, never changed in the run: cached before the
//!   kill), `changed` (a product the writer changes), `list`, or `cold`.
//! - **Writer**: `--rate` changes a second, alternately a product's rename and its first
//!   style's sale price, on products of the hot set (`--changing`), each carrying a
//!   unique, increasing token and recorded in a log table (`failover_change`) in the
//!   same statement; a product is changed again only once its last change is visible or
//!   given up. `--writers` connections, each reconnecting through the multi-host URL
//!   (the host that accepts writes) after an error; a change due while its writer has no
//!   connection is attempted on a new one, and one due while its writer is still busy
//!   is skipped, so the writer keeps its rate rather than queueing a burst.
//! - **Pollers**: after each acknowledged commit, both instances are asked for the
//!   changed document directly until it holds the token (every `--poll-ms`, or a fifth
//!   of the time waited so far); the change is visible once both serve it.
//! - **Metrics**: every 200 ms each instance's /metrics (cache hits, misses, entries, the
//!   notify counters where the server has them, its database errors and its own 503s,
//!   which nginx retries on the other instance).
//! - **The kill**: at `--kill-at` seconds, `kill-primary` to the holder.
//!
//! Afterwards: once the change queue is empty and `--settle` seconds more have passed,
//! every changed product's documents and the list pages holding them are asked of each
//! instance and compared byte for byte with what materialize builds from the catalog
//! now; every acknowledged change is looked for in the log table, and each changed
//! product's name and price are compared with its last logged change.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use atelier::documents::PAGE_SQL;
use atelier::materialize::{DEFAULT_CAMPUS, listed_documents_sql};
use clap::Args;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_postgres::Client;

use crate::control::{self, Description};
use crate::http::{self, Http, Pool};

/// How long a poller waits for its change before giving up on it.
const GIVE_UP: Duration = Duration::from_secs(30);
/// How often each instance's /metrics is read.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// The window after an instance's LISTEN reconnects whose miss rate is reported.
const AFTER_RECONNECT: f64 = 10.0;
/// The commit→visible p99 a window must be back under.
const VISIBLE_GOAL_MS: f64 = 1000.0;
/// Windows in a row within the goal that make the recovery.
const SUSTAINED: usize = 5;
/// Entries per list page in the read list and the page check.
const PAGE_COUNT: i32 = 5;
/// Connections per instance shared by the pollers.
const POLL_CONNECTIONS: usize = 64;

/// The 1-based list rank of product $1.
const RANK_SQL: &str = "
    SELECT (b.start + (SELECT count(*) FROM document d
                       WHERE d.product_id >= b.first_id AND d.product_id <= $1))::int
    FROM list_block b WHERE b.first_id <= $1 ORDER BY b.first_id DESC LIMIT 1";

/// The log of committed changes, written in the same statement as each change.
const LOG_TABLE_SQL: &str = "CREATE TABLE IF NOT EXISTS failover_change (
    token integer PRIMARY KEY, product_id integer NOT NULL, kind text NOT NULL)";

#[derive(Args, Clone)]
pub struct DriveArgs {
    /// The formation holder's directory (`failover up --dir`).
    #[arg(long)]
    dir: PathBuf,
    /// nginx, as HOST:PORT.
    #[arg(long)]
    nginx: String,
    /// The instances behind it, as HOST:PORT,HOST:PORT.
    #[arg(long, value_delimiter = ',', required = true)]
    instances: Vec<String>,
    /// The read list: one path a line (repeats give the mix its weights).
    #[arg(long)]
    paths: PathBuf,
    /// Paths never read before, in the order they are sent, each once.
    #[arg(long)]
    cold: PathBuf,
    /// Product ids the writer changes, one a line.
    #[arg(long)]
    changing: PathBuf,
    #[arg(long, default_value_t = 60.0)]
    seconds: f64,
    /// When the primary is killed, in seconds from the start; negative: never.
    #[arg(long, default_value_t = 15.0, allow_negative_numbers = true)]
    kill_at: f64,
    /// Changes committed per second.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Connections committing changes.
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// Reads per second through nginx, in all (0: as fast as the connections go).
    #[arg(long, default_value_t = 2000.0)]
    read_rate: f64,
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// The share of reads that ask for a document read nowhere before.
    #[arg(long, default_value_t = 0.05)]
    cold_share: f64,
    #[arg(long, default_value_t = 20)]
    poll_ms: u64,
    /// Seconds waited, once the queue is empty, before the stale check.
    #[arg(long, default_value_t = 3.0)]
    settle: f64,
    /// List pages compared in the stale check, at most.
    #[arg(long, default_value_t = 500)]
    pages: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The first change's token; each later one adds one. Unique to the run.
    #[arg(long)]
    token_base: i32,
    #[arg(long)]
    out: PathBuf,
}

/// The kind of document a read asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    Steady,
    Changed,
    List,
    Cold,
}

impl Category {
    const ALL: [Category; 4] = [
        Category::Steady,
        Category::Changed,
        Category::List,
        Category::Cold,
    ];

    fn name(self) -> &'static str {
        match self {
            Category::Steady => "steady",
            Category::Changed => "changed",
            Category::List => "list",
            Category::Cold => "cold",
        }
    }
}

/// One answer through nginx.
#[derive(Clone, Copy)]
struct Read {
    /// Seconds from the start to sending the request.
    sent_s: f64,
    latency_ms: f64,
    /// 0: no answer (a connection error or a timeout).
    status: u16,
    retry_after: bool,
    category: Category,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Name,
    Price,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Name => "name",
            Kind::Price => "price",
        }
    }

    /// The statement ($1 the token, $2 the product; one row when it changed something),
    /// the path that shows the change, and what that path's body holds once it does.
    fn change(self, product: i32, token: i32) -> (&'static str, String, String) {
        match self {
            Kind::Name => (
                "WITH changed AS (
                     UPDATE product SET name = 'Failover ' || $1::int WHERE id = $2
                     RETURNING id)
                 INSERT INTO failover_change SELECT $1, id, 'name' FROM changed",
                format!("/products/{product}"),
                format!("\"Failover {token}\""),
            ),
            Kind::Price => (
                "WITH changed AS (
                     UPDATE style SET sale_price = $1::int WHERE id = (
                         SELECT id FROM style WHERE product_id = $2 ORDER BY id LIMIT 1)
                     RETURNING product_id)
                 INSERT INTO failover_change SELECT $1, product_id, 'price' FROM changed",
                format!("/products/{product}/styles"),
                format!("\"sale_price\": \"{token}.00\""),
            ),
        }
    }
}

/// What became of one scheduled change.
#[derive(Clone)]
enum Outcome {
    /// Handed to a writer, not yet answered.
    Pending,
    /// Committed and acknowledged `at_s` seconds from the start; per instance, the time
    /// from then until it served the change (`None`: not within [`GIVE_UP`]).
    Acknowledged {
        at_s: f64,
        visible_ms: Vec<Option<f64>>,
    },
    /// The commit failed; `in_doubt` when the connection broke without an answer (it may
    /// have committed).
    Failed { in_doubt: bool, reason: String },
    /// Its writer was still busy with an earlier change.
    Skipped,
}

#[derive(Clone)]
struct Change {
    token: i32,
    product: i32,
    kind: Kind,
    /// Seconds from the start to handing it to a writer.
    due_s: f64,
    outcome: Outcome,
}

/// What every task of the run shares.
struct Run {
    args: DriveArgs,
    start: Instant,
    end: Instant,
    url: String,
    changes: Mutex<Vec<Change>>,
    /// Products whose last change is not yet visible or given up.
    in_flight: Mutex<HashSet<i32>>,
    pollers: Vec<Pool>,
    pollers_running: Mutex<JoinSet<()>>,
}

impl Run {
    fn now_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn set_outcome(&self, index: usize, outcome: Outcome) {
        self.changes.lock().expect("changes lock")[index].outcome = outcome;
    }

    fn release(&self, product: i32) {
        self.in_flight
            .lock()
            .expect("in-flight lock")
            .remove(&product);
    }
}

/// A small, seeded, portable random stream (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn read_lines(path: &PathBuf) -> Result<Vec<String>, String> {
    Ok(std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect())
}

/// The product id a document path names, if it names one.
fn product_of(path: &str) -> Option<i32> {
    let rest = path.strip_prefix("/products/")?;
    rest.split('/').next()?.parse().ok()
}

/// A connection to the host of `url` that accepts writes, bounded in time.
async fn connect(url: &str) -> Result<Client, String> {
    match tokio::time::timeout(Duration::from_secs(3), atelier::db::connect(url)).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("connecting timed out".to_string()),
    }
}

pub async fn run(args: DriveArgs) -> Result<(), String> {
    let description = Description::read(&args.dir)?;
    let hot = read_lines(&args.paths)?;
    let cold = read_lines(&args.cold)?;
    let wanted: Vec<i32> = read_lines(&args.changing)?
        .iter()
        .filter_map(|line| line.parse().ok())
        .collect();
    let client = connect(&description.url).await?;
    client
        .batch_execute(LOG_TABLE_SQL)
        .await
        .map_err(|e| format!("create the change log: {e}"))?;
    // Only products with a style can take both kinds of change.
    let changing: Vec<i32> = client
        .query(
            "SELECT DISTINCT product_id FROM style WHERE product_id = ANY($1) ORDER BY 1",
            &[&wanted],
        )
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if changing.is_empty() {
        return Err("no product of --changing has a style".into());
    }
    let changing_set: HashSet<i32> = changing.iter().copied().collect();
    let reads_on_nodes = serve_connections(&description).await;

    let warm = warm_up(&args, &hot).await;
    eprintln!(
        "failover: warmed {} paths on {} instances ({} not 200); running {} s, kill at {} s",
        warm.0,
        args.instances.len(),
        warm.1,
        args.seconds,
        args.kill_at
    );

    let start = Instant::now();
    let run = Arc::new(Run {
        end: start + Duration::from_secs_f64(args.seconds),
        start,
        url: description.url.clone(),
        changes: Mutex::new(Vec::new()),
        in_flight: Mutex::new(HashSet::new()),
        pollers: args
            .instances
            .iter()
            .map(|server| Pool::new(server, POLL_CONNECTIONS))
            .collect(),
        pollers_running: Mutex::new(JoinSet::new()),
        args: args.clone(),
    });

    let sampler = tokio::spawn(sample_metrics(run.clone()));
    let kill = tokio::spawn(kill_primary(run.clone()));
    let hot = Arc::new(hot);
    let cold = Arc::new(cold);
    let cold_next = Arc::new(AtomicUsize::new(0));
    let changing_set = Arc::new(changing_set);
    let mut readers = JoinSet::new();
    for connection in 0..args.connections {
        readers.spawn(reader(
            run.clone(),
            connection,
            hot.clone(),
            cold.clone(),
            cold_next.clone(),
            changing_set.clone(),
        ));
    }
    let writing = tokio::spawn(write_changes(run.clone(), changing.clone()));

    let mut reads = Vec::new();
    while let Some(batch) = readers.join_next().await {
        reads.extend(batch.map_err(|e| e.to_string())?);
    }
    let samples = sampler.await.map_err(|e| e.to_string())?;
    writing.await.map_err(|e| e.to_string())?;
    let kill = kill.await.map_err(|e| e.to_string())??;
    eprintln!("failover: reads and writes done; waiting for the pollers");
    // The writers are done: no poller starts after this.
    let mut pollers = std::mem::take(&mut *run.pollers_running.lock().expect("pollers lock"));
    while pollers.join_next().await.is_some() {}
    let changes = run.changes.lock().expect("changes lock").clone();

    let client = connect(&description.url).await?;
    let queue_empty_after_s = wait_for_empty_queue(&client).await;
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    eprintln!("failover: checking the instances' answers against the catalog");
    let stale = final_check(&args, &client, &changes).await?;
    let lost = lost_check(&client, &changes).await?;

    let kill_s = kill.get("killed_s").and_then(Value::as_f64);
    let writes = writes_summary(&changes, kill_s);
    let writes_back_s = writes["writes_back_after_kill_s"].as_f64();
    let visibility = visibility_summary(&args, &changes, kill_s);
    let reads_summary = reads_summary(&reads, kill_s, writes_back_s, args.seconds);
    let instances = instances_summary(&args, &samples, kill_s);
    let result = json!({
        "settings": {
            "seconds": args.seconds, "kill_at_s": args.kill_at, "rate_per_s": args.rate,
            "writers": args.writers, "read_rate_per_s": args.read_rate,
            "connections": args.connections, "cold_share": args.cold_share,
            "poll_ms": args.poll_ms, "settle_s": args.settle, "seed": args.seed,
            "read_paths": hot.len(), "cold_paths": cold.len(),
            "changing_products": changing.len(),
        },
        "reads_on_nodes": reads_on_nodes,
        "warm_up": {"paths": warm.0, "not_200": warm.1},
        "kill": kill,
        "writes": writes,
        "lost": lost,
        "visibility": visibility,
        "reads": reads_summary,
        "instances": instances,
        "queue_empty_after_s": queue_empty_after_s,
        "final_check": stale,
    });
    std::fs::write(&args.out, serde_json::to_string_pretty(&result).unwrap())
        .map_err(|e| format!("write {}: {e}", args.out.display()))?;
    eprintln!("failover: wrote {}", args.out.display());
    Ok(())
}

/// How many of the instances' pooled connections each node holds (`atelier serve`, the
/// pool's application name): which node the reads were on before the kill.
async fn serve_connections(description: &Description) -> Value {
    let mut counts = Vec::new();
    for url in &description.node_urls {
        let count = match connect(url).await {
            Ok(client) => client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'atelier serve'",
                    &[],
                )
                .await
                .map(|row| row.get::<_, i64>(0))
                .ok(),
            Err(_) => None,
        };
        counts.push(count);
    }
    json!(counts)
}

/// Asks every distinct path of the read list of each instance once: the paths, and the
/// answers that were not 200.
async fn warm_up(args: &DriveArgs, hot: &[String]) -> (usize, usize) {
    let mut distinct: Vec<String> = hot.to_vec();
    distinct.sort();
    distinct.dedup();
    let distinct = Arc::new(distinct);
    let failed = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for server in &args.instances {
        let next = Arc::new(AtomicUsize::new(0));
        for _ in 0..8 {
            let (server, distinct, next, failed) = (
                server.clone(),
                distinct.clone(),
                next.clone(),
                failed.clone(),
            );
            tasks.spawn(async move {
                let mut connection = None;
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(path) = distinct.get(index) else {
                        break;
                    };
                    let ok = http::get(&mut connection, &server, path)
                        .await
                        .is_some_and(|answer| answer.status == 200);
                    if !ok {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    }
    while tasks.join_next().await.is_some() {}
    (distinct.len(), failed.load(Ordering::Relaxed))
}

/// One reader connection through nginx, until the end of the run.
async fn reader(
    run: Arc<Run>,
    index: usize,
    hot: Arc<Vec<String>>,
    cold: Arc<Vec<String>>,
    cold_next: Arc<AtomicUsize>,
    changing: Arc<HashSet<i32>>,
) -> Vec<Read> {
    let args = &run.args;
    let mut rng = Rng::new(args.seed.wrapping_add(1000 + index as u64));
    let interval = (args.read_rate > 0.0)
        .then(|| Duration::from_secs_f64(args.connections as f64 / args.read_rate));
    let mut next = run.start
        + interval.map_or(Duration::ZERO, |i| {
            i * index as u32 / args.connections as u32
        });
    let mut connection: Option<Http> = None;
    let mut reads = Vec::new();
    loop {
        if let Some(interval) = interval {
            if next >= run.end {
                break;
            }
            tokio::time::sleep_until(next.into()).await;
            let now = Instant::now();
            // A reader that fell far behind starts again from now instead of sending a
            // burst.
            if now > next + Duration::from_secs(1) {
                next = now;
            }
            next += interval;
        } else if Instant::now() >= run.end {
            break;
        }
        let (path, category) = if rng.unit() < args.cold_share
            && let Some(path) = cold.get(cold_next.fetch_add(1, Ordering::Relaxed))
        {
            (path.as_str(), Category::Cold)
        } else {
            let path = hot[rng.below(hot.len())].as_str();
            let category = match product_of(path) {
                None => Category::List,
                Some(id) if changing.contains(&id) => Category::Changed,
                Some(_) => Category::Steady,
            };
            (path, category)
        };
        let sent = Instant::now();
        if connection.is_none() {
            connection = Http::connect(&args.nginx).await.ok();
        }
        let answer = match connection.as_mut() {
            Some(http) => http.get(path).await.ok(),
            None => None,
        };
        let (status, retry_after) = match &answer {
            Some(answer) => (answer.status, answer.retry_after),
            None => (0, false),
        };
        if answer.is_none() || !connection.as_ref().is_some_and(Http::reusable) {
            connection = None;
        }
        reads.push(Read {
            sent_s: (sent - run.start).as_secs_f64(),
            latency_ms: sent.elapsed().as_secs_f64() * 1000.0,
            status,
            retry_after,
            category,
        });
    }
    reads
}

/// Schedules `rate` changes a second on the products of `changing` until the end of the
/// run, handing each to a writer, and waits for the writers.
async fn write_changes(run: Arc<Run>, changing: Vec<i32>) {
    let args = &run.args;
    let mut senders = Vec::new();
    let mut writers = JoinSet::new();
    for _ in 0..args.writers.max(1) {
        // One change in hand and one waiting at most: a writer that is slower than its
        // share of the rate skips changes rather than queueing them.
        let (sender, receiver) = mpsc::channel(1);
        senders.push(sender);
        writers.spawn(writer(run.clone(), receiver));
    }
    let mut rng = Rng::new(args.seed);
    let total = (args.rate * args.seconds).round() as usize;
    for i in 0..total {
        let due = run.start + Duration::from_secs_f64(i as f64 / args.rate);
        if due >= run.end {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let product = {
            let mut in_flight = run.in_flight.lock().expect("in-flight lock");
            let mut chosen = None;
            for _ in 0..32 {
                let candidate = changing[rng.below(changing.len())];
                if in_flight.insert(candidate) {
                    chosen = Some(candidate);
                    break;
                }
            }
            chosen
        };
        let Some(product) = product else {
            continue;
        };
        let kind = if i % 2 == 0 { Kind::Name } else { Kind::Price };
        let index = {
            let mut changes = run.changes.lock().expect("changes lock");
            changes.push(Change {
                token: args.token_base + i as i32,
                product,
                kind,
                due_s: run.now_s(),
                outcome: Outcome::Pending,
            });
            changes.len() - 1
        };
        if senders[i % senders.len()].try_send(index).is_err() {
            run.set_outcome(index, Outcome::Skipped);
            run.release(product);
        }
    }
    drop(senders);
    while writers.join_next().await.is_some() {}
}

/// One writer connection: commits the changes it is handed, reconnecting through the
/// multi-host URL whenever it has no working connection.
async fn writer(run: Arc<Run>, mut changes: mpsc::Receiver<usize>) {
    let mut client: Option<Client> = None;
    while let Some(index) = changes.recv().await {
        let change = run.changes.lock().expect("changes lock")[index].clone();
        let (sql, path, needle) = change.kind.change(change.product, change.token);
        if client.as_ref().is_none_or(Client::is_closed) {
            client = connect(&run.url).await.ok();
        }
        let Some(connection) = client.as_ref() else {
            run.set_outcome(
                index,
                Outcome::Failed {
                    in_doubt: false,
                    reason: "no connection".into(),
                },
            );
            run.release(change.product);
            continue;
        };
        let executed = tokio::time::timeout(
            Duration::from_secs(5),
            connection.execute(sql, &[&change.token, &change.product]),
        )
        .await;
        match executed {
            Ok(Ok(1)) => {
                let at_s = run.now_s();
                run.set_outcome(
                    index,
                    Outcome::Acknowledged {
                        at_s,
                        visible_ms: Vec::new(),
                    },
                );
                let poller = poll(run.clone(), index, change.product, path, needle);
                run.pollers_running
                    .lock()
                    .expect("pollers lock")
                    .spawn(poller);
            }
            Ok(Ok(_)) => {
                run.set_outcome(
                    index,
                    Outcome::Failed {
                        in_doubt: false,
                        reason: "nothing to change".into(),
                    },
                );
                run.release(change.product);
            }
            Ok(Err(error)) => {
                // An error PostgreSQL sent (with a SQLSTATE) rolled the statement back;
                // a connection that broke without an answer may have committed it.
                let in_doubt = error.code().is_none();
                run.set_outcome(
                    index,
                    Outcome::Failed {
                        in_doubt,
                        reason: error.to_string(),
                    },
                );
                run.release(change.product);
                client = None;
            }
            Err(_) => {
                run.set_outcome(
                    index,
                    Outcome::Failed {
                        in_doubt: true,
                        reason: "no answer within 5 s".into(),
                    },
                );
                run.release(change.product);
                client = None;
            }
        }
    }
}

/// Asks each instance for the changed path until it holds the change.
async fn poll(run: Arc<Run>, index: usize, product: i32, path: String, needle: String) {
    let committed = Instant::now();
    let at_s = (committed - run.start).as_secs_f64();
    let mut waits = JoinSet::new();
    for (instance, pool) in run.pollers.iter().enumerate() {
        let (pool, path, needle) = (pool.clone(), path.clone(), needle.clone());
        let poll_every = Duration::from_millis(run.args.poll_ms);
        waits.spawn(async move {
            let seen = loop {
                let body = pool.get(&path).await.map(|answer| answer.body);
                let now = Instant::now();
                if body.is_some_and(|body| {
                    body.windows(needle.len())
                        .any(|window| window == needle.as_bytes())
                }) {
                    break Some((now - committed).as_secs_f64() * 1000.0);
                }
                if now - committed > GIVE_UP {
                    break None;
                }
                tokio::time::sleep(poll_every.max((now - committed) / 5)).await;
            };
            (instance, seen)
        });
    }
    let mut visible_ms = vec![None; run.pollers.len()];
    while let Some(Ok((instance, seen))) = waits.join_next().await {
        visible_ms[instance] = seen;
    }
    run.set_outcome(index, Outcome::Acknowledged { at_s, visible_ms });
    run.release(product);
}

/// Kills the primary at `--kill-at`: when the holder said it was killed and when the
/// monitor reported the other node primary, in seconds from the start.
async fn kill_primary(run: Arc<Run>) -> Result<Value, String> {
    if run.args.kill_at < 0.0 {
        return Ok(Value::Null);
    }
    tokio::time::sleep_until((run.start + Duration::from_secs_f64(run.args.kill_at)).into()).await;
    let asked_s = run.now_s();
    let mut killed = None;
    let start = run.start;
    let answer = control::command(&run.args.dir, "kill-primary", |event| {
        if event["event"] == "killed" {
            killed = Some((start.elapsed().as_secs_f64(), event["node"].clone()));
        }
    })
    .await?;
    let promoted_s = run.now_s();
    let (killed_s, node) = killed.ok_or("the holder did not say it killed the primary")?;
    eprintln!(
        "failover: killed node {node} at {killed_s:.2} s; node {} promoted {:.2} s later",
        answer["node"], answer["engine_failover_s"]
    );
    Ok(json!({
        "asked_s": asked_s,
        "killed_s": killed_s,
        "killed_node": node,
        "promoted_node": answer["node"],
        "promoted_s": promoted_s,
        "engine_failover_s": answer["engine_failover_s"],
    }))
}

/// The counters read from each instance's /metrics; the last, a sum over the requests
/// family, is the instance's own 503s (nginx retries them on the other instance, so
/// clients may never see them).
const SAMPLED: [&str; 8] = [
    "atelier_cache_hits_total",
    "atelier_cache_misses_total",
    "atelier_cache_entries",
    "atelier_notify_catch_ups_total",
    "atelier_notify_cache_drops_total",
    "atelier_notify_caught_up_notices_total",
    "atelier_db_errors_total",
    "503",
];
/// The line prefix of [`SAMPLED`]'s last entry, with `status="503"` in its labels.
const REQUESTS_FAMILY: &str = "atelier_http_requests_total{";

/// One /metrics reading: seconds from the start, then [`SAMPLED`] (None: not exposed).
type Sample = (f64, [Option<f64>; SAMPLED.len()]);

/// Reads every instance's /metrics every [`SAMPLE_EVERY`] until the end of the run.
async fn sample_metrics(run: Arc<Run>) -> Vec<Vec<Sample>> {
    let mut connections: Vec<Option<Http>> = run.args.instances.iter().map(|_| None).collect();
    let mut samples = vec![Vec::new(); run.args.instances.len()];
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    while Instant::now() < run.end {
        tick.tick().await;
        for (i, server) in run.args.instances.iter().enumerate() {
            let t = run.now_s();
            let Some(answer) = http::get(&mut connections[i], server, "/metrics").await else {
                continue;
            };
            let text = String::from_utf8_lossy(&answer.body);
            let mut values = [None; SAMPLED.len()];
            let mut unavailable = 0.0;
            for line in text.lines() {
                let mut parts = line.split_whitespace();
                let (Some(name), Some(value)) = (parts.next(), parts.next()) else {
                    continue;
                };
                if name.starts_with(REQUESTS_FAMILY) && name.contains("status=\"503\"") {
                    unavailable += value.parse::<f64>().unwrap_or(0.0);
                } else if let Some(slot) = SAMPLED.iter().position(|wanted| *wanted == name) {
                    values[slot] = value.parse().ok();
                }
            }
            values[SAMPLED.len() - 1] = Some(unavailable);
            samples[i].push((t, values));
        }
    }
    samples
}

/// Waits (up to a minute) until the follower has taken every queued change; how long
/// that took, or None if it did not.
async fn wait_for_empty_queue(client: &Client) -> Option<f64> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if let Ok(row) = client
            .query_one("SELECT count(*) FROM document_queue", &[])
            .await
            && row.get::<_, i64>(0) == 0
        {
            return Some(started.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Compares each instance's answers for every changed product (its three documents and
/// the list page holding it) with what materialize builds from the catalog now.
async fn final_check(
    args: &DriveArgs,
    client: &Client,
    changes: &[Change],
) -> Result<Value, String> {
    let mut products: Vec<i32> = changes
        .iter()
        .filter(|c| !matches!(c.outcome, Outcome::Skipped))
        .map(|c| c.product)
        .collect();
    products.sort_unstable();
    products.dedup();
    let build = format!(
        "SELECT product_id, list_entry::text, product::text, styles::text, related::text \
         FROM ({}) b",
        listed_documents_sql()
    );
    let campus = DEFAULT_CAMPUS;
    let mut built: HashMap<i32, [String; 4]> = HashMap::new();
    for chunk in products.chunks(2000) {
        for row in client
            .query(&build, &[&campus, &chunk])
            .await
            .map_err(|e| e.to_string())?
        {
            built.insert(row.get(0), [row.get(1), row.get(2), row.get(3), row.get(4)]);
        }
    }
    // The pages (of PAGE_COUNT) holding a sample of the changed products: their ids by
    // the server's own page query.
    let page_ids_sql = PAGE_SQL.replacen("SELECT d.list_entry", "SELECT d.product_id", 1);
    assert_ne!(
        page_ids_sql, PAGE_SQL,
        "the page query selects list entries"
    );
    let step = (products.len() / args.pages.max(1)).max(1);
    let mut pages: Vec<(String, String)> = Vec::new();
    let mut seen_pages = HashSet::new();
    for &product in products.iter().step_by(step).take(args.pages) {
        let rank: i32 = client
            .query_one(RANK_SQL, &[&product])
            .await
            .map_err(|e| e.to_string())?
            .get(0);
        let page = (rank - 1) / PAGE_COUNT + 1;
        if !seen_pages.insert(page) {
            continue;
        }
        let first = (page - 1) * PAGE_COUNT + 1;
        let ids: Vec<i32> = client
            .query(&page_ids_sql, &[&first, &(first + PAGE_COUNT - 1)])
            .await
            .map_err(|e| e.to_string())?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let mut entries: Vec<(i32, String)> = client
            .query(&build, &[&campus, &ids])
            .await
            .map_err(|e| e.to_string())?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        entries.sort_by_key(|(id, _)| *id);
        let expected = format!(
            "[{}]",
            entries
                .iter()
                .map(|(_, entry)| entry.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
        pages.push((
            format!("/products?page={page}&count={PAGE_COUNT}"),
            expected,
        ));
    }
    let mut expected: Vec<(String, String)> = Vec::new();
    for product in &products {
        let Some(docs) = built.get(product) else {
            continue;
        };
        for (index, suffix) in [(1, ""), (2, "/styles"), (3, "/related")] {
            expected.push((format!("/products/{product}{suffix}"), docs[index].clone()));
        }
    }
    let mut per_instance = Vec::new();
    let mut examples = Vec::new();
    let (mut stale_documents, mut stale_pages) = (0, 0);
    for server in &args.instances {
        let pool = Pool::new(server, 8);
        let check = async |list: &[(String, String)]| {
            let mut tasks = JoinSet::new();
            for chunk in list.chunks(list.len().div_ceil(8).max(1)) {
                let (chunk, pool) = (chunk.to_vec(), pool.clone());
                tasks.spawn(async move {
                    let mut stale = Vec::new();
                    for (path, body) in chunk {
                        let answer = pool.get(&path).await;
                        let fresh =
                            answer.is_some_and(|a| a.status == 200 && a.body == body.as_bytes());
                        if !fresh {
                            stale.push(path);
                        }
                    }
                    stale
                });
            }
            let mut stale = Vec::new();
            while let Some(Ok(part)) = tasks.join_next().await {
                stale.extend(part);
            }
            stale
        };
        let documents = check(&expected).await;
        let page_list = check(&pages).await;
        stale_documents += documents.len();
        stale_pages += page_list.len();
        for path in documents.iter().chain(&page_list).take(5) {
            examples.push(format!("{} {path}", pool.server()));
        }
        per_instance.push(json!({
            "instance": server,
            "stale_documents": documents.len(),
            "stale_pages": page_list.len(),
        }));
    }
    Ok(json!({
        "products": products.len(),
        "documents_compared": expected.len() * args.instances.len(),
        "pages_compared": pages.len() * args.instances.len(),
        "stale_documents": stale_documents,
        "stale_pages": stale_pages,
        "per_instance": per_instance,
        "examples": examples,
    }))
}

/// Every acknowledged change looked for in the log table, and each changed product's
/// name and first style's price compared with its last logged change.
async fn lost_check(client: &Client, changes: &[Change]) -> Result<Value, String> {
    let tokens: Vec<i32> = changes
        .iter()
        .filter(|c| !matches!(c.outcome, Outcome::Skipped))
        .map(|c| c.token)
        .collect();
    let logged: HashMap<i32, (i32, String)> = client
        .query(
            "SELECT token, product_id, kind FROM failover_change WHERE token = ANY($1)",
            &[&tokens],
        )
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2))))
        .collect();
    let mut lost = Vec::new();
    let (mut in_doubt, mut in_doubt_committed, mut refused_committed) = (0, 0, 0);
    for change in changes {
        match &change.outcome {
            Outcome::Acknowledged { .. } if !logged.contains_key(&change.token) => {
                lost.push(json!({"token": change.token, "product": change.product,
                                 "kind": change.kind.name()}));
            }
            Outcome::Failed { in_doubt: true, .. } => {
                in_doubt += 1;
                in_doubt_committed += usize::from(logged.contains_key(&change.token));
            }
            Outcome::Failed {
                in_doubt: false, ..
            } => {
                refused_committed += usize::from(logged.contains_key(&change.token));
            }
            _ => {}
        }
    }
    // The last logged token per product and kind: what the catalog must show now.
    let mut last: HashMap<(i32, &str), i32> = HashMap::new();
    for (token, (product, kind)) in &logged {
        let entry = last.entry((*product, kind.as_str())).or_insert(*token);
        *entry = (*entry).max(*token);
    }
    let products: Vec<i32> = {
        let mut p: Vec<i32> = last.keys().map(|(product, _)| *product).collect();
        p.sort_unstable();
        p.dedup();
        p
    };
    let rows = client
        .query(
            "SELECT p.id, p.name, (SELECT sale_price::text FROM style s WHERE s.product_id = p.id
                                   ORDER BY s.id LIMIT 1)
             FROM product p WHERE p.id = ANY($1)",
            &[&products],
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut mismatches = Vec::new();
    for row in rows {
        let product: i32 = row.get(0);
        let name: String = row.get(1);
        let price: Option<String> = row.get(2);
        if let Some(token) = last.get(&(product, "name"))
            && name != format!("Failover {token}")
        {
            mismatches.push(json!({"product": product, "kind": "name", "logged": token,
                                   "catalog": name}));
        }
        if let Some(token) = last.get(&(product, "price"))
            && price.as_deref() != Some(format!("{token}.00").as_str())
        {
            mismatches.push(json!({"product": product, "kind": "price", "logged": token,
                                   "catalog": price}));
        }
    }
    Ok(json!({
        "acknowledged_lost": lost.len(),
        "lost_examples": lost.iter().take(10).collect::<Vec<_>>(),
        "in_doubt": in_doubt,
        "in_doubt_committed": in_doubt_committed,
        "refused_but_committed": refused_committed,
        "catalog_mismatches": mismatches.len(),
        "mismatch_examples": mismatches.iter().take(10).collect::<Vec<_>>(),
    }))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((p / 100.0) * (sorted.len() - 1) as f64).round() as usize]
}

fn summary(values: &mut [f64]) -> Value {
    values.sort_by(f64::total_cmp);
    json!({
        "count": values.len(),
        "p50_ms": percentile(values, 50.0),
        "p90_ms": percentile(values, 90.0),
        "p99_ms": percentile(values, 99.0),
        "max_ms": values.last().copied().unwrap_or(0.0),
    })
}

fn writes_summary(changes: &[Change], kill_s: Option<f64>) -> Value {
    let count = |f: &dyn Fn(&Change) -> bool| changes.iter().filter(|c| f(c)).count();
    let acked = |c: &Change| match c.outcome {
        Outcome::Acknowledged { at_s, .. } => Some(at_s),
        _ => None,
    };
    let mut failures: HashMap<String, usize> = HashMap::new();
    for change in changes {
        if let Outcome::Failed { reason, .. } = &change.outcome {
            // The reason's first words: connection errors differ only in addresses.
            let short: String = reason.split([':', '(']).next().unwrap_or("").to_string();
            *failures.entry(short).or_default() += 1;
        }
    }
    let (mut last_before, mut first_after) = (None, None);
    if let Some(kill) = kill_s {
        for change in changes {
            let Some(at) = acked(change) else { continue };
            if at < kill {
                last_before = Some(last_before.map_or(at, |l: f64| l.max(at)));
            } else if change.due_s >= kill {
                first_after = Some(first_after.map_or(at, |f: f64| f.min(at)));
            }
        }
    }
    json!({
        "scheduled": changes.len(),
        "acknowledged": count(&|c| acked(c).is_some()),
        "failed": count(&|c| matches!(c.outcome, Outcome::Failed { .. })),
        "failed_in_doubt": count(&|c| matches!(c.outcome, Outcome::Failed { in_doubt: true, .. })),
        "skipped": count(&|c| matches!(c.outcome, Outcome::Skipped)),
        "failures": failures,
        "last_acknowledged_before_kill_s": last_before,
        "first_acknowledged_after_kill_s": first_after,
        "writes_back_after_kill_s": first_after.zip(kill_s).map(|(f, k)| f - k),
    })
}

/// Commit→visible (on every instance) per change, over the run and per second of commit,
/// and when, after the kill, every window's p99 is back under the goal.
fn visibility_summary(args: &DriveArgs, changes: &[Change], kill_s: Option<f64>) -> Value {
    let seconds = args.seconds.ceil() as usize + 1;
    let mut windows: Vec<(Vec<f64>, usize, Option<f64>)> = vec![(Vec::new(), 0, None); seconds];
    let mut all = Vec::new();
    let mut by_kind: HashMap<&str, Vec<f64>> = HashMap::new();
    let mut never = 0;
    let mut per_instance_never = vec![0; args.instances.len()];
    for change in changes {
        let Outcome::Acknowledged { at_s, visible_ms } = &change.outcome else {
            continue;
        };
        let window = &mut windows[(*at_s as usize).min(seconds - 1)];
        window.2 = Some(window.2.map_or(*at_s, |first: f64| first.min(*at_s)));
        for (i, seen) in visible_ms.iter().enumerate() {
            if seen.is_none() {
                per_instance_never[i] += 1;
            }
        }
        let everywhere = if visible_ms.iter().all(Option::is_some) && !visible_ms.is_empty() {
            visible_ms.iter().flatten().copied().reduce(f64::max)
        } else {
            None
        };
        match everywhere {
            Some(ms) => {
                all.push(ms);
                by_kind.entry(change.kind.name()).or_default().push(ms);
                window.0.push(ms);
            }
            None => {
                never += 1;
                window.1 += 1;
            }
        }
    }
    let mut rows = Vec::new();
    for (second, (latencies, never_seen, first_at)) in windows.iter_mut().enumerate() {
        latencies.sort_by(f64::total_cmp);
        rows.push(json!({
            "t_s": second,
            "changes": latencies.len() + *never_seen,
            "never_seen": never_seen,
            "p50_ms": (!latencies.is_empty()).then(|| percentile(latencies, 50.0)),
            "p99_ms": (!latencies.is_empty()).then(|| percentile(latencies, 99.0)),
            "max_ms": latencies.last().copied(),
            "first_commit_s": first_at,
        }));
    }
    // The first of SUSTAINED windows in a row after the kill that each have changes, all
    // of them seen, with p99 within the goal: the time from the kill to its first
    // commit; and how many windows after those missed the goal all the same.
    let good = |w: &(Vec<f64>, usize, Option<f64>)| {
        !w.0.is_empty() && w.1 == 0 && percentile(&w.0, 99.0) <= VISIBLE_GOAL_MS
    };
    let last = (args.seconds.floor() as usize).saturating_sub(1);
    let back = kill_s.and_then(|kill| {
        (kill.floor() as usize..=last.saturating_sub(SUSTAINED - 1))
            .find(|&w| windows[w..w + SUSTAINED].iter().all(good))
    });
    let recovered = back
        .zip(kill_s)
        .and_then(|(w, kill)| windows[w].2.map(|first| (first - kill).max(0.0)));
    let missed_later = back.map(|w| {
        windows[w + SUSTAINED..=last]
            .iter()
            .filter(|window| !window.0.is_empty() || window.1 > 0)
            .filter(|window| !good(window))
            .count()
    });
    let by_kind: serde_json::Map<String, Value> = by_kind
        .iter_mut()
        .map(|(kind, values)| (kind.to_string(), summary(values)))
        .collect();
    json!({
        "latency": summary(&mut all),
        "by_kind": by_kind,
        "never_seen": never,
        "never_seen_per_instance": per_instance_never,
        "windows": rows,
        "p99_back_within_goal_after_kill_s": recovered,
        "sustained_windows": SUSTAINED,
        "windows_over_goal_later": missed_later,
        "goal_ms": VISIBLE_GOAL_MS,
    })
}

/// Counts of answers by outcome.
#[derive(Default, Clone, Copy)]
struct Tally {
    count: usize,
    ok: usize,
    unavailable: usize,
    unavailable_retry_after: usize,
    other_status: usize,
    errors: usize,
}

impl Tally {
    fn add(&mut self, read: &Read) {
        self.count += 1;
        match read.status {
            200 => self.ok += 1,
            503 => {
                self.unavailable += 1;
                self.unavailable_retry_after += usize::from(read.retry_after);
            }
            0 => self.errors += 1,
            _ => self.other_status += 1,
        }
    }

    fn json(&self) -> Value {
        json!({
            "count": self.count, "ok": self.ok, "unavailable_503": self.unavailable,
            "unavailable_503_with_retry_after": self.unavailable_retry_after,
            "other_status": self.other_status, "errors": self.errors,
            "not_ok": self.count - self.ok,
        })
    }
}

fn tallies(reads: &[&Read]) -> Value {
    let mut by_category = serde_json::Map::new();
    for category in Category::ALL {
        let mut tally = Tally::default();
        for read in reads.iter().filter(|r| r.category == category) {
            tally.add(read);
        }
        by_category.insert(category.name().into(), tally.json());
    }
    let mut all = Tally::default();
    for read in reads {
        all.add(read);
    }
    json!({"all": all.json(), "by_category": by_category})
}

fn reads_summary(reads: &[Read], kill_s: Option<f64>, back_s: Option<f64>, seconds: f64) -> Value {
    let everything: Vec<&Read> = reads.iter().collect();
    let kill = kill_s.unwrap_or(f64::INFINITY);
    let gap_end = back_s.map_or(seconds, |back| kill + back);
    let before: Vec<&Read> = reads.iter().filter(|r| r.sent_s < kill).collect();
    let after: Vec<&Read> = reads.iter().filter(|r| r.sent_s >= kill).collect();
    let gap: Vec<&Read> = reads
        .iter()
        .filter(|r| r.sent_s >= kill && r.sent_s < gap_end)
        .collect();
    let mut windows = Vec::new();
    for second in 0..seconds.ceil() as usize {
        let window: Vec<&Read> = reads
            .iter()
            .filter(|r| r.sent_s as usize == second)
            .collect();
        let mut tally = Tally::default();
        let mut steady = Tally::default();
        let mut latencies: Vec<f64> = Vec::with_capacity(window.len());
        for read in &window {
            tally.add(read);
            if read.category == Category::Steady {
                steady.add(read);
            }
            latencies.push(read.latency_ms);
        }
        latencies.sort_by(f64::total_cmp);
        windows.push(json!({
            "t_s": second, "count": tally.count, "ok": tally.ok,
            "unavailable_503": tally.unavailable,
            "unavailable_503_with_retry_after": tally.unavailable_retry_after,
            "other_status": tally.other_status, "errors": tally.errors,
            "steady_not_ok": steady.count - steady.ok,
            "p50_ms": percentile(&latencies, 50.0), "p99_ms": percentile(&latencies, 99.0),
            "max_ms": latencies.last().copied().unwrap_or(0.0),
        }));
    }
    let mut latencies: Vec<f64> = reads.iter().map(|r| r.latency_ms).collect();
    let mut after_latencies: Vec<f64> = after.iter().map(|r| r.latency_ms).collect();
    let mut gap_latencies: Vec<f64> = gap.iter().map(|r| r.latency_ms).collect();
    let steady_failed_after = after
        .iter()
        .filter(|r| r.category == Category::Steady && r.status != 200)
        .count();
    let steady_failed_before = before
        .iter()
        .filter(|r| r.category == Category::Steady && r.status != 200)
        .count();
    json!({
        "total": tallies(&everything),
        "before_kill": tallies(&before),
        "after_kill": tallies(&after),
        "gap": tallies(&gap),
        "gap_s": [kill_s, kill_s.map(|_| gap_end)],
        "cached_failed_after_kill": steady_failed_after,
        "cached_failed_before_kill": steady_failed_before,
        "latency": summary(&mut latencies),
        "latency_after_kill": summary(&mut after_latencies),
        "latency_gap": summary(&mut gap_latencies),
        "windows": windows,
    })
}

/// Per instance: its /metrics samples, when its LISTEN reconnected after the kill, and
/// its cache miss rate in the [`AFTER_RECONNECT`] seconds after that and in as many
/// seconds before the kill.
fn instances_summary(args: &DriveArgs, samples: &[Vec<Sample>], kill_s: Option<f64>) -> Value {
    const HITS: usize = 0;
    const MISSES: usize = 1;
    const ENTRIES: usize = 2;
    const CATCH_UPS: usize = 3;
    const DROPS: usize = 4;
    const NOTICES: usize = 5;
    const DB_ERRORS: usize = 6;
    const UNAVAILABLE: usize = 7;
    let mut out = Vec::new();
    for (server, series) in args.instances.iter().zip(samples) {
        let value = |sample: &Sample, slot: usize| sample.1[slot];
        // The sample at or right after `t`.
        let at = |t: f64| series.iter().find(|s| s.0 >= t);
        let miss_rate = |from: f64, to: f64| -> Option<f64> {
            let (a, b) = (at(from)?, at(to).or(series.last())?);
            let hits = value(b, HITS)? - value(a, HITS)?;
            let misses = value(b, MISSES)? - value(a, MISSES)?;
            (hits + misses > 0.0).then(|| misses / (hits + misses))
        };
        let reconnect = kill_s.and_then(|kill| {
            let before = series.iter().rev().find(|s| s.0 < kill)?;
            let reconnects = |s: &Sample| Some(value(s, CATCH_UPS)? + value(s, DROPS)?);
            if let Some(base) = reconnects(before) {
                let found = series
                    .iter()
                    .find(|s| s.0 >= kill && reconnects(s).is_some_and(|n| n > base))?;
                return Some((found.0, "notify counters"));
            }
            // Without the counters: the reconnect dropped the whole cache.
            let entries = value(before, ENTRIES)?;
            let found = series
                .iter()
                .find(|s| s.0 >= kill && value(s, ENTRIES).is_some_and(|e| e < entries * 0.5))?;
            Some((found.0, "cache entries fell by half"))
        });
        let counters_now = series.last().map(|s| {
            json!({
                "catch_ups": value(s, CATCH_UPS),
                "cache_drops": value(s, DROPS),
                "caught_up_notices": value(s, NOTICES),
            })
        });
        // What a counter gained from the last sample before the kill to the last one.
        let since_kill = |slot: usize| -> Option<f64> {
            let kill = kill_s?;
            let before = series.iter().rev().find(|s| s.0 < kill)?;
            Some(value(series.last()?, slot)? - value(before, slot)?)
        };
        out.push(json!({
            "instance": server,
            "listen_reconnected_s": reconnect.map(|r| r.0),
            "reconnect_seen_by": reconnect.map(|r| r.1),
            "miss_rate_after_reconnect": reconnect
                .and_then(|(t, _)| miss_rate(t, t + AFTER_RECONNECT)),
            "miss_rate_before_kill": kill_s
                .and_then(|kill| miss_rate((kill - AFTER_RECONNECT).max(0.0), kill)),
            "window_s": AFTER_RECONNECT,
            "counters_at_end": counters_now,
            "unavailable_503_after_kill": since_kill(UNAVAILABLE),
            "db_errors_after_kill": since_kill(DB_ERRORS),
            "samples": series.iter().map(|s| {
                json!([
                    s.0,
                    s.1[HITS],
                    s.1[MISSES],
                    s.1[ENTRIES],
                    s.1[CATCH_UPS],
                    s.1[DROPS],
                    s.1[DB_ERRORS],
                    s.1[UNAVAILABLE]
                ])
            }).collect::<Vec<_>>(),
        }));
    }
    json!(out)
}
