//! The writer and pollers of the freshness benchmark (`bench/run freshness`).
//!
//! Commits product changes at a fixed rate, as another application would (plain SQL
//! UPDATEs, one per transaction), each to a product of its own and carrying a unique
//! token; after each commit a poller asks the server for the changed URL every
//! `--poll-ms` (or a fifth of the time waited so far, if longer) until the answer holds
//! the token, and the time from commit to that answer is the change's latency. Once
//! every change is visible (or given up on), it checks that the server's answers for
//! every changed product, and for a sample of the list pages holding them, are byte for
//! byte what materialize would build from the catalog now (the library's
//! [`atelier::materialize::listed_documents_sql`], run without writing). Writes one JSON
//! object to `--out`.
//!
//! With `--bare 1` the same changes are made with triggers off
//! (`session_replication_role = replica`) and nothing is polled or checked: the WAL of
//! the changes alone, for telling what capture and rebuilds add.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use atelier::materialize::{DEFAULT_CAMPUS, listed_documents_sql};
use clap::Parser;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

/// The product ids at 1-based ranks $1 ..= $2 of the list: the server's page query
/// (`atelier::documents::PAGE_SQL`), selecting ids where that selects list entries.
const PAGE_IDS_SQL: &str = "
    SELECT d.product_id FROM document d
    WHERE d.product_id >= (
        SELECT x.product_id
        FROM (SELECT first_id, start FROM list_block WHERE start < $1
              ORDER BY start DESC, first_id DESC LIMIT 1) b
        CROSS JOIN LATERAL (SELECT product_id FROM document WHERE product_id >= b.first_id
                            ORDER BY product_id OFFSET $1 - b.start - 1 LIMIT 1) x)
    ORDER BY d.product_id
    LIMIT $2 - $1 + 1";

/// The 1-based list rank of product $1.
const RANK_SQL: &str = "
    SELECT (b.start + (SELECT count(*) FROM document d
                       WHERE d.product_id >= b.first_id AND d.product_id <= $1))::int
    FROM list_block b WHERE b.first_id <= $1 ORDER BY b.first_id DESC LIMIT 1";

/// Entries per list page in the page check (the storefront's page size).
const PAGE_COUNT: i32 = 5;

/// How long a poller waits for its change before giving up on it.
const GIVE_UP: Duration = Duration::from_secs(30);

/// Commits product changes at a fixed rate and times each until the server serves it.
#[derive(Clone, Parser)]
struct Args {
    /// The catalog's database, written to as another application would.
    #[arg(long)]
    database_url: String,
    /// The `atelier serve` to poll, as HOST:PORT.
    #[arg(long)]
    server: String,
    /// Changes committed per second.
    #[arg(long)]
    rate: f64,
    /// Seconds of committing changes.
    #[arg(long)]
    seconds: f64,
    /// Seeds the choice of products, so that a run can be repeated.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Connections committing changes, each change in a transaction of its own.
    #[arg(long, default_value_t = 16)]
    writers: usize,
    /// Milliseconds between polls of a change not yet seen, at first.
    #[arg(long, default_value_t = 20)]
    poll_ms: u64,
    /// List pages holding changed products compared once the changes are seen.
    #[arg(long, default_value_t = 2000)]
    pages: usize,
    /// The first change's token; each later one adds one. Tokens must not be in the
    /// catalog already, or a change would look visible at once.
    #[arg(long, default_value_t = 1_000_000)]
    token_base: i32,
    /// 1 to commit the changes with triggers off and neither poll nor check: the WAL of
    /// the changes alone.
    #[arg(
        long,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new(),
        num_args = 0..=1,
        default_value = "0",
        default_missing_value = "1",
        hide_possible_values = true
    )]
    bare: bool,
    /// Where the result goes, as one JSON object.
    #[arg(long)]
    out: String,
}

impl Args {
    fn poll(&self) -> Duration {
        Duration::from_millis(self.poll_ms)
    }
}

/// The kinds of change, taken in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Stock,
    Price,
    Photo,
    Name,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Stock, Kind::Price, Kind::Photo, Kind::Name];

    fn name(self) -> &'static str {
        match self {
            Kind::Stock => "stock (sku quantity)",
            Kind::Price => "price (style sale price)",
            Kind::Photo => "photo URL",
            Kind::Name => "product name",
        }
    }

    /// The UPDATE ($1 the token, $2 the product), the URL that shows it, and what that
    /// URL's body holds once it does.
    fn change(self, product: i32, token: i32) -> (&'static str, String, String) {
        match self {
            Kind::Stock => (
                "UPDATE sku SET quantity = $1::int WHERE id = (
                     SELECT k.id FROM style s JOIN sku k ON k.style_id = s.id
                     WHERE s.product_id = $2 ORDER BY k.id LIMIT 1)",
                format!("/products/{product}/styles"),
                format!("\"quantity\": {token}"),
            ),
            Kind::Price => (
                "UPDATE style SET sale_price = $1::int WHERE id = (
                     SELECT id FROM style WHERE product_id = $2 ORDER BY id LIMIT 1)",
                format!("/products/{product}/styles"),
                format!("\"sale_price\": \"{token}.00\""),
            ),
            Kind::Photo => (
                "UPDATE photo SET url = 'https://example.com/fresh/' || $1::int WHERE id = (
                     SELECT ph.id FROM style s JOIN photo ph ON ph.style_id = s.id
                     WHERE s.product_id = $2 ORDER BY ph.id LIMIT 1)",
                format!("/products/{product}/styles"),
                format!("fresh/{token}\""),
            ),
            Kind::Name => (
                "UPDATE product SET name = 'Fresh ' || $1::int WHERE id = $2",
                format!("/products/{product}"),
                format!("\"Fresh {token}\""),
            ),
        }
    }
}

/// What happened to one change.
struct Outcome {
    kind: Kind,
    product: i32,
    /// Seconds from the start of the run to the commit.
    committed_s: f64,
    /// Commit to the first answer holding the change; `None` if never seen.
    latency: Option<Duration>,
    polls: u32,
}

/// A keep-alive HTTP/1.1 connection to the server.
struct Http {
    stream: BufReader<TcpStream>,
}

impl Http {
    async fn connect(server: &str) -> std::io::Result<Http> {
        let stream = TcpStream::connect(server).await?;
        stream.set_nodelay(true)?;
        Ok(Http {
            stream: BufReader::new(stream),
        })
    }

    /// GET `path`: the status and body.
    async fn get(&mut self, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
        let head = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        self.stream.get_mut().write_all(head.as_bytes()).await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut length = 0;
        loop {
            line.clear();
            self.stream.read_line(&mut line).await?;
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            if let Some((name, value)) = trimmed.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        Ok((status, body))
    }
}

/// Polls in flight at once, each on a keep-alive connection of its own. Bounded, so that
/// a backlog of changes waiting to be seen queues here rather than opening connections
/// without end (past the server's limit, new ones would wait unaccepted); at 1,000
/// changes/s seen within a second about 30 are in flight.
const POLL_CONNECTIONS: usize = 128;

/// Keep-alive connections shared by the pollers: a poll takes one and puts it back.
#[derive(Clone)]
struct Pool {
    idle: Arc<std::sync::Mutex<Vec<Http>>>,
    slots: Arc<tokio::sync::Semaphore>,
}

impl Default for Pool {
    fn default() -> Pool {
        Pool {
            idle: Arc::default(),
            slots: Arc::new(tokio::sync::Semaphore::new(POLL_CONNECTIONS)),
        }
    }
}

impl Pool {
    async fn get(&self, server: &str, path: &str) -> (u16, Vec<u8>) {
        let _slot = self
            .slots
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let mut http = self.idle.lock().expect("pool lock").pop();
        let reply = get(&mut http, server, path).await;
        if let Some(http) = http {
            self.idle.lock().expect("pool lock").push(http);
        }
        reply
    }
}

/// A GET on a fresh connection if `http` broke.
async fn get(http: &mut Option<Http>, server: &str, path: &str) -> (u16, Vec<u8>) {
    for _ in 0..3 {
        if http.is_none() {
            *http = Http::connect(server).await.ok();
        }
        if let Some(connection) = http.as_mut() {
            match connection.get(path).await {
                Ok(reply) => return reply,
                Err(_) => *http = None,
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (0, Vec::new())
}

/// A small, seeded, portable random stream (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to the database");
    tokio::spawn(connection);
    client
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[index]
}

fn summary(latencies_ms: &mut [f64]) -> serde_json::Value {
    latencies_ms.sort_by(f64::total_cmp);
    let mean = latencies_ms.iter().sum::<f64>() / latencies_ms.len().max(1) as f64;
    serde_json::json!({
        "count": latencies_ms.len(),
        "p50_ms": percentile(latencies_ms, 50.0),
        "p90_ms": percentile(latencies_ms, 90.0),
        "p99_ms": percentile(latencies_ms, 99.0),
        "max_ms": latencies_ms.last().copied().unwrap_or(0.0),
        "mean_ms": mean,
    })
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let client = connect(&args.database_url).await;
    let mut ids: Vec<i32> = client
        .query("SELECT id FROM product ORDER BY id", &[])
        .await
        .expect("read the product ids")
        .iter()
        .map(|row| row.get(0))
        .collect();
    let changes = (args.rate * args.seconds).round() as usize;
    // Each change on a product of its own: a second change of the same field could
    // overwrite the first before anyone saw it.
    let mut rng = Rng(args.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    for i in 0..changes.min(ids.len()) {
        let j = i + (rng.next() % (ids.len() - i) as u64) as usize;
        ids.swap(i, j);
    }
    ids.truncate(changes);
    let mut writers = Vec::new();
    for _ in 0..args.writers {
        let writer = connect(&args.database_url).await;
        if args.bare {
            writer
                .batch_execute("SET session_replication_role = replica")
                .await
                .expect("turn triggers off (needs a superuser)");
        }
        writers.push(Arc::new(Mutex::new(writer)));
    }
    let wal_before: String = client
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);

    let pool = Pool::default();
    eprintln!("freshness: {changes} changes at {}/s", args.rate);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(changes);
    for (i, &product) in ids.iter().enumerate() {
        let due = started + Duration::from_secs_f64(i as f64 / args.rate);
        tokio::time::sleep_until(due.into()).await;
        let writer = writers[i % writers.len()].clone();
        let args = args.clone();
        let kind = Kind::ALL[i % Kind::ALL.len()];
        let token = args.token_base + i as i32;
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let (mut kind, mut sql, mut path, mut needle) = {
                let (sql, path, needle) = kind.change(product, token);
                (kind, sql, path, needle)
            };
            let mut updated = writer
                .lock()
                .await
                .execute(sql, &[&token, &product])
                .await
                .expect("a change");
            if updated == 0 {
                // The product has no sku, style or photo: its name changes instead.
                kind = Kind::Name;
                (sql, path, needle) = kind.change(product, token);
                updated = writer
                    .lock()
                    .await
                    .execute(sql, &[&token, &product])
                    .await
                    .expect("a change");
            }
            assert_eq!(updated, 1, "product {product}");
            let committed = Instant::now();
            if args.bare {
                return Outcome {
                    kind,
                    product,
                    committed_s: (committed - started).as_secs_f64(),
                    latency: None,
                    polls: 0,
                };
            }
            let mut polls = 0;
            let latency = loop {
                let (_, body) = pool.get(&args.server, &path).await;
                polls += 1;
                let seen = Instant::now();
                if body
                    .windows(needle.len())
                    .any(|window| window == needle.as_bytes())
                {
                    break Some(seen - committed);
                }
                if seen - committed > GIVE_UP {
                    break None;
                }
                // Every --poll-ms at first, then a fifth of the time waited so far: a
                // change that takes long is timed to within 20 %, and a backlog of them
                // does not turn into a flood of polls on the server.
                tokio::time::sleep(args.poll().max((seen - committed) / 5)).await;
            };
            Outcome {
                kind,
                product,
                committed_s: (committed - started).as_secs_f64(),
                latency,
                polls,
            }
        }));
    }
    let writing = started.elapsed();
    let wal_after: String = client
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let mut outcomes = Vec::with_capacity(changes);
    for task in tasks {
        outcomes.push(task.await.expect("a change task"));
    }
    let polled = started.elapsed();
    let wal_bytes: f64 = client
        .query_one(
            "SELECT pg_wal_lsn_diff($1::text::pg_lsn, $2::text::pg_lsn)::float8",
            &[&wal_after, &wal_before],
        )
        .await
        .unwrap()
        .get(0);
    let check = if args.bare {
        // The changes went behind the triggers' back: queued here, so that the
        // documents follow the catalog again.
        client
            .execute(
                "INSERT INTO document_queue (product_id) SELECT unnest($1::int[])",
                &[&ids],
            )
            .await
            .expect("queue the changed products");
        serde_json::Value::Null
    } else {
        eprintln!("freshness: all changes seen or given up; checking the served documents");
        final_check(&args, &client, &outcomes).await
    };

    let mut all: Vec<f64> = outcomes
        .iter()
        .filter_map(|o| o.latency)
        .map(|l| l.as_secs_f64() * 1000.0)
        .collect();
    let mut by_kind = serde_json::Map::new();
    for kind in Kind::ALL {
        let mut latencies: Vec<f64> = outcomes
            .iter()
            .filter(|o| o.kind == kind)
            .filter_map(|o| o.latency)
            .map(|l| l.as_secs_f64() * 1000.0)
            .collect();
        by_kind.insert(kind.name().to_string(), summary(&mut latencies));
    }
    // Latency over the run, per second of commit: the median and the worst.
    let mut per_second: Vec<Vec<f64>> = vec![Vec::new(); args.seconds.ceil() as usize + 1];
    let last = per_second.len() - 1;
    for outcome in &outcomes {
        if let Some(latency) = outcome.latency {
            per_second[(outcome.committed_s as usize).min(last)]
                .push(latency.as_secs_f64() * 1000.0);
        }
    }
    let timeline: Vec<serde_json::Value> = per_second
        .iter_mut()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(second, latencies)| {
            latencies.sort_by(f64::total_cmp);
            serde_json::json!({"t_s": second, "p50_ms": percentile(latencies, 50.0),
                               "max_ms": latencies.last().copied().unwrap_or(0.0)})
        })
        .collect();
    let never = outcomes.iter().filter(|o| o.latency.is_none()).count();
    let polls: u64 = outcomes.iter().map(|o| u64::from(o.polls)).sum();
    let result = serde_json::json!({
        "rate_per_s": args.rate,
        "seconds": args.seconds,
        "writing_s": writing.as_secs_f64(),
        "achieved_rate_per_s": changes as f64 / writing.as_secs_f64(),
        "changes": changes,
        "never_seen": never,
        "polls": polls,
        "polls_per_s": polls as f64 / polled.as_secs_f64(),
        "poll_interval_ms": args.poll().as_secs_f64() * 1000.0,
        "latency": summary(&mut all),
        "by_kind": by_kind,
        "timeline": timeline,
        "wal_bytes": wal_bytes,
        "wal_bytes_per_change": wal_bytes / changes.max(1) as f64,
        "final_check": check,
    });
    std::fs::write(&args.out, serde_json::to_string_pretty(&result).unwrap())
        .expect("write the result");
    eprintln!("freshness: wrote {}", args.out);
}

/// Compares what the server answers for every changed product, and for up to
/// `args.pages` list pages holding them, with what materialize builds from the catalog
/// now.
async fn final_check(args: &Args, client: &Client, outcomes: &[Outcome]) -> serde_json::Value {
    let mut products: Vec<i32> = outcomes.iter().map(|o| o.product).collect();
    products.sort_unstable();
    // The documents as text: the server sends jsonb's text form, byte for byte.
    let build = format!(
        "SELECT product_id, list_entry::text, product::text, styles::text, related::text \
         FROM ({}) b",
        listed_documents_sql()
    );
    let campus = DEFAULT_CAMPUS;
    let mut built: HashMap<i32, [String; 4]> = HashMap::new();
    for chunk in products.chunks(2000) {
        for row in client.query(&build, &[&campus, &chunk]).await.unwrap() {
            built.insert(row.get(0), [row.get(1), row.get(2), row.get(3), row.get(4)]);
        }
    }
    let mut compared = 0;
    let mut stale = Vec::new();
    let server = args.server.clone();
    let jobs: Vec<_> = products
        .chunks(products.len().div_ceil(8).max(1))
        .map(|chunk| {
            let chunk = chunk.to_vec();
            let server = server.clone();
            tokio::spawn(async move {
                let mut http = None;
                let mut answers = Vec::new();
                for product in chunk {
                    for (index, suffix) in [(1, ""), (2, "/styles"), (3, "/related")] {
                        let path = format!("/products/{product}{suffix}");
                        let (status, body) = get(&mut http, &server, &path).await;
                        answers.push((product, index, path, status, body));
                    }
                }
                answers
            })
        })
        .collect();
    for job in jobs {
        for (product, index, path, status, body) in job.await.unwrap() {
            compared += 1;
            let expected = built.get(&product).map(|docs| docs[index].as_bytes());
            if status != 200 || expected != Some(body.as_slice()) {
                stale.push(path);
            }
        }
    }
    // Pages: the one of PAGE_COUNT entries holding each sampled product.
    let mut pages_compared = 0;
    let mut stale_pages = Vec::new();
    let step = (products.len() / args.pages.max(1)).max(1);
    let mut http = None;
    for &product in products.iter().step_by(step).take(args.pages) {
        let rank: i32 = client
            .query_one(RANK_SQL, &[&product])
            .await
            .unwrap()
            .get(0);
        let page = (rank - 1) / PAGE_COUNT + 1;
        let first = (page - 1) * PAGE_COUNT + 1;
        let ids: Vec<i32> = client
            .query(PAGE_IDS_SQL, &[&first, &(first + PAGE_COUNT - 1)])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        let mut entries = Vec::new();
        for row in client.query(&build, &[&campus, &ids]).await.unwrap() {
            entries.push((row.get::<_, i32>(0), row.get::<_, String>(1)));
        }
        entries.sort_by_key(|(id, _)| *id);
        let expected = format!(
            "[{}]",
            entries
                .iter()
                .map(|(_, entry)| entry.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
        let path = format!("/products?page={page}&count={PAGE_COUNT}");
        let (status, body) = get(&mut http, &args.server, &path).await;
        pages_compared += 1;
        if status != 200 || body != expected.as_bytes() {
            stale_pages.push(path);
        }
    }
    serde_json::json!({
        "products": products.len(),
        "documents_compared": compared,
        "stale_documents": stale.len(),
        "pages_compared": pages_compared,
        "stale_pages": stale_pages.len(),
        "examples": stale.iter().chain(&stale_pages).take(10).collect::<Vec<_>>(),
    })
}
