//! `atelier materialize --follow`: takes the change queue in batches as writers commit,
//! rebuilds those products' documents and notifies servers, until stopped.
//!
//! One batch is one transaction: it locks up to [`BATCH`] queue rows (`FOR UPDATE SKIP
//! LOCKED`, so followers running side by side take different rows), takes a
//! transaction-scoped advisory lock per product (a product another follower is
//! rebuilding is left for the next round, since two rebuilds racing on one product could
//! commit the older document last), rebuilds the locked products, deletes exactly the
//! rows it rebuilt them for, NOTIFYs, and commits. Whatever stops a follower before that
//! commit (an error, a lost connection, SIGKILL) rolls it all back and the rows stay
//! queued. A row is visible only once its writer committed, and the rebuild reads with a
//! later snapshot than the one that found the row, so no change is rebuilt from data
//! older than itself.
//!
//! Batches start at most every `PACE` while the queue is short, so that changes
//! arriving together share one; a full batch is followed at once by the next. A follower
//! that finds the queue empty waits for the NOTIFY a trigger on the queue sends when a
//! writer commits rows to it (LISTENing before it first looks, so no commit falls
//! between), and looks at least every `Settings::follow_poll` (a second by default) all
//! the same. While it works, writers skip that NOTIFY, whose lock would serialize their
//! commits, and it looks every `QUIET_POLL` instead (`GRACE`). Where polling every 20 ms
//! cost an idle database 50 statements a second, an idle follower now costs it one.
//!
//! A batch first takes the catalog tables' ACCESS SHARE locks in the order a load's swap
//! takes its exclusive ones, so the two queue behind each other instead of deadlocking;
//! a batch after the swap reads the new tables. A queue holding a TRUNCATE, or a backlog
//! of a large share of the catalog (after a load of a new catalog), is rebuilt in full.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client};

use super::{MATERIALIZE_LOCK_KEY, Prepared, Scope, Settings};
use crate::Result;

/// Queue rows one batch takes at most. A batch holds one advisory lock per product, and
/// PostgreSQL's lock table holds 64 per connection by default (shared by all): 500
/// leaves room for several followers and everything else.
pub const BATCH: i64 = 500;

/// The channel a trigger on the queue NOTIFYs whenever rows enter it (schema.sql,
/// `atelier_wake_followers`): an idle follower waits on it rather than polling.
pub const QUEUE_CHANNEL: &str = "atelier_queue";

/// How long a follower at work promises to look at the queue again: it writes the
/// promise into `atelier_follower_awake` whenever it finds rows, and writers queuing
/// rows meanwhile skip their NOTIFY (schema.sql, `atelier_wake_followers`). So until
/// the promise runs out the follower looks at least every `QUIET_POLL` between
/// batches, and a look after it runs out finds whatever a writer that skipped queued.
const GRACE: Duration = Duration::from_secs(1);

/// The pause between looks while a promise holds.
const QUIET_POLL: Duration = Duration::from_millis(20);

/// Writes the promise: the time `GRACE` ($1 milliseconds) from now.
const AWAKE_SQL: &str = "SELECT setval('atelier_follower_awake', \
                         (extract(epoch FROM clock_timestamp()) * 1000)::bigint + $1)";

/// Least time from one batch's start to the next's while the queue is short: changes
/// arriving meanwhile share a batch, whose cost is mostly its own (statements, commit,
/// the servers' invalidation round) rather than its products'. Measured at 100 changes/s
/// on a million products, 50 ms batches cost the database twice the CPU per change of
/// 200 ms ones. A change arriving at an idle follower is taken when its notification
/// arrives; a full batch goes on at once.
const PACE: Duration = Duration::from_millis(200);

/// Pause after a batch found only products other followers hold.
const BUSY: Duration = Duration::from_millis(5);

/// Pause between attempts to reach the database.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// How often a follower that did something says so in the log.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// How the follower's connection names itself in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "atelier follow";

/// The first key of the per-product advisory locks (`pg_try_advisory_xact_lock(int,
/// int)`; the second key is the product id). Arbitrary and fixed: "at".
const PRODUCT_LOCK_CLASS: i32 = 0x6174;

/// What one batch found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Batch {
    /// Nothing queued.
    Empty,
    /// Every queued product was being rebuilt by another follower.
    Busy,
    /// Rebuilt this many documents (removals included); `full` if it took all it could.
    Rebuilt { documents: u64, full: bool },
    /// The queue asks for a full rebuild.
    Everything,
}

/// `atelier materialize --follow`: follows until SIGTERM or SIGINT.
pub async fn run(url: &str, settings: &Settings) -> Result<()> {
    tracing::info!("following catalog changes");
    follow(url, settings, stop_signal()).await;
    tracing::info!("stopped following catalog changes");
    Ok(())
}

/// Completes on the first SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate =
        signal(SignalKind::terminate()).expect("cannot install the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

/// Follows the change queue of the database at `url` until `stop` completes, reconnecting
/// whenever the database goes away. Stopping abandons a batch in flight, which rolls
/// back: its rows stay queued.
pub async fn follow(url: &str, settings: &Settings, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let mut failing = false;
    let mut totals = Totals::new();
    loop {
        let session = session(url, settings, &mut failing, &mut totals);
        let outcome = tokio::select! {
            outcome = session => outcome,
            () = &mut stop => return,
        };
        if let Err(error) = outcome
            && !std::mem::replace(&mut failing, true)
        {
            tracing::warn!(%error, "following catalog changes failed; retrying");
        }
        tokio::select! {
            () = tokio::time::sleep(RECONNECT_DELAY) => {}
            () = &mut stop => return,
        }
    }
}

/// Documents rebuilt since the last report.
struct Totals {
    since: Instant,
    documents: u64,
    batches: u64,
}

impl Totals {
    fn new() -> Totals {
        Totals {
            since: Instant::now(),
            documents: 0,
            batches: 0,
        }
    }

    fn add(&mut self, documents: u64) {
        self.documents += documents;
        self.batches += 1;
        if self.since.elapsed() >= REPORT_EVERY {
            let (products, batches) = (self.documents, self.batches);
            let interval_seconds = self.since.elapsed().as_secs();
            tracing::info!(
                products,
                batches,
                interval_seconds,
                "follower progress: rebuilt the documents of {products} product{} in \
                 {batches} batch{} over the last {interval_seconds} s",
                if products == 1 { "" } else { "s" },
                if batches == 1 { "" } else { "es" },
            );
            *self = Totals::new();
        }
    }
}

/// One connection's worth of batches; returns only on an error.
async fn session(
    url: &str,
    settings: &Settings,
    failing: &mut bool,
    totals: &mut Totals,
) -> Result<()> {
    let mut config: tokio_postgres::Config = url.parse()?;
    config.application_name(APPLICATION_NAME);
    // A connection that dies silently (a host gone, not closed) is noticed by TCP within
    // a minute or so rather than hours, as the pooled reads' connections are.
    config.keepalives_idle(Duration::from_secs(30));
    let (mut client, mut connection) = config.connect(tokio_postgres::NoTls).await?;
    // One pending wake is all a follower needs: it looks at the whole queue when woken.
    let (wake, mut woken) = mpsc::channel(1);
    // The connection must be polled for notifications to arrive; the task ends, and
    // closes the channel, when the connection does.
    let driver = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(_)) => {
                    if let Err(mpsc::error::TrySendError::Closed(())) = wake.try_send(()) {
                        break;
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "follower connection ended");
                    break;
                }
            }
        }
    });
    let outcome = async {
        client
            .batch_execute(&format!("LISTEN {QUEUE_CHANNEL}"))
            .await?;
        // Batches are small and their statements the same each time: a plan made once
        // serves them all, where PostgreSQL would otherwise plan the build query afresh
        // for each batch (its plans for one set of products look cheaper than a generic
        // one, so it keeps making them).
        client
            .batch_execute("SET plan_cache_mode = force_generic_plan; SET jit = off")
            .await?;
        let statements = Statements::prepare(&client).await?;
        // Until when this follower has promised to look again (a local clock read after
        // the promise was written, so never before the promised time).
        let mut awake_until: Option<tokio::time::Instant> = None;
        loop {
            // Notifications of rows this look will see anyway.
            while woken.try_recv().is_ok() {}
            // An empty queue is seen with one statement, without a transaction.
            let any: bool = client.query_one(&statements.queued, &[]).await?.get(0);
            if std::mem::replace(failing, false) {
                tracing::info!("following catalog changes again");
            }
            // While its promise holds, writers may not wake this follower: it looks.
            let poll = |awake_until: Option<tokio::time::Instant>| match awake_until {
                Some(until) if until > tokio::time::Instant::now() => QUIET_POLL,
                _ => settings.follow_poll,
            };
            if !any {
                wait_for_rows(&mut woken, poll(awake_until)).await;
                continue;
            }
            let grace = i64::try_from(GRACE.as_millis()).expect("a second fits");
            client.execute(&statements.awake, &[&grace]).await?;
            awake_until = Some(tokio::time::Instant::now() + GRACE);
            let started = tokio::time::Instant::now();
            match batch(&mut client, settings, &statements).await? {
                Batch::Empty => wait_for_rows(&mut woken, poll(awake_until)).await,
                Batch::Busy => tokio::time::sleep(BUSY).await,
                Batch::Rebuilt { documents, full } => {
                    totals.add(documents);
                    if !full {
                        tokio::time::sleep_until(started + PACE).await;
                    }
                }
                Batch::Everything => {
                    tracing::info!("the change queue asks for a full rebuild");
                    let report = super::materialize(url, Scope::Queued, settings).await?;
                    tracing::info!(documents = report.documents, "rebuilt the documents");
                    totals.add(report.documents);
                }
            }
        }
    }
    .await;
    driver.abort();
    outcome
}

/// Returns when a writer has committed rows to the queue, or after `poll`, or at once
/// when the connection that would carry the notification is gone (the next statement
/// then fails, and the follower reconnects).
async fn wait_for_rows(woken: &mut mpsc::Receiver<()>, poll: Duration) {
    let _ = tokio::time::timeout(poll, woken.recv()).await;
}

/// Locks up to $1 queue rows no other follower holds, oldest first.
const TAKE_SQL: &str = "SELECT id, product_id, parts FROM document_queue \
                        ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED";
/// Those of the products $1 no other follower is rebuilding, now held by this one.
const LOCK_PRODUCTS_SQL: &str =
    "SELECT id FROM unnest($1::int[]) id WHERE pg_try_advisory_xact_lock($2, id)";
/// Whether the queue is long enough for a full rebuild. The planner's estimate of the
/// catalog's size is close enough, and free.
const BACKLOG_SQL: &str = "
    SELECT (SELECT count(*) FROM document_queue)
           > greatest((SELECT reltuples FROM pg_class WHERE oid = 'product'::regclass)
                      * $1::float8, $2::bigint)";
/// Deletes the queue rows a batch rebuilt their products for.
const DONE_SQL: &str = "DELETE FROM document_queue WHERE id = ANY($1)";

/// A follower connection's statements, prepared once.
struct Statements {
    rebuild: Prepared,
    queued: tokio_postgres::Statement,
    awake: tokio_postgres::Statement,
    take: tokio_postgres::Statement,
    lock_products: tokio_postgres::Statement,
    done: tokio_postgres::Statement,
    notify: tokio_postgres::Statement,
}

impl Statements {
    async fn prepare(client: &Client) -> Result<Statements> {
        Ok(Statements {
            rebuild: Prepared::new(client).await?,
            queued: client
                .prepare("SELECT EXISTS (SELECT 1 FROM document_queue)")
                .await?,
            awake: client.prepare(AWAKE_SQL).await?,
            take: client.prepare(TAKE_SQL).await?,
            lock_products: client.prepare(LOCK_PRODUCTS_SQL).await?,
            done: client.prepare(DONE_SQL).await?,
            notify: client.prepare(super::NOTIFY_SQL).await?,
        })
    }
}

/// Takes and rebuilds one batch of the queue in one transaction.
async fn batch(client: &mut Client, settings: &Settings, statements: &Statements) -> Result<Batch> {
    let transaction = client.transaction().await?;
    transaction
        .batch_execute(&format!(
            "SELECT pg_advisory_xact_lock_shared({MATERIALIZE_LOCK_KEY});
             LOCK TABLE product, style, feature, photo, sku, related IN ACCESS SHARE MODE;"
        ))
        .await?;
    let rows = transaction.query(&statements.take, &[&BATCH]).await?;
    if rows.is_empty() {
        transaction.commit().await?;
        return Ok(Batch::Empty);
    }
    let taken: Vec<(i64, i32, i16)> = rows
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    if taken.iter().any(|&(_, product, _)| product == 0) {
        return Ok(Batch::Everything);
    }
    let full = taken.len() as i64 == BATCH;
    if full {
        let backlog: bool = transaction
            .query_one(
                BACKLOG_SQL,
                &[&super::FULL_REBUILD_SHARE, &super::FULL_REBUILD_MIN],
            )
            .await?
            .get(0);
        if backlog {
            return Ok(Batch::Everything);
        }
    }
    let mut ids: Vec<i32> = taken.iter().map(|&(_, product, _)| product).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut locked: Vec<i32> = transaction
        .query(&statements.lock_products, &[&ids, &PRODUCT_LOCK_CLASS])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    locked.sort_unstable();
    if locked.is_empty() {
        return Ok(Batch::Busy);
    }
    let mine: Vec<&(i64, i32, i16)> = taken
        .iter()
        .filter(|(_, product, _)| locked.binary_search(product).is_ok())
        .collect();
    let done: Vec<i64> = mine.iter().map(|&&(row, _, _)| row).collect();
    let changes: Vec<(i32, i16)> = mine
        .iter()
        .map(|&&(_, product, parts)| (product, parts))
        .collect();
    let prepared = Some(&statements.rebuild);
    let rebuilt = super::rebuild_changed(&transaction, &changes, settings, None, prepared).await?;
    transaction.execute(&statements.done, &[&done]).await?;
    super::announce(&transaction, &rebuilt.notice, &statements.notify).await?;
    transaction.commit().await?;
    let documents = rebuilt.report.documents + rebuilt.report.removed;
    tracing::debug!(products = locked.len(), documents, "batch rebuilt");
    Ok(Batch::Rebuilt { documents, full })
}
