//! `atelier materialize --follow`: takes the change queue in batches as writers commit,
//! rebuilds those products' documents and notifies servers, until stopped.
//!
//! One batch is one rebuild of [`Plan::QueueBatch`], one transaction: it locks up to
//! [`BATCH`](super::BATCH) queue rows (`FOR UPDATE SKIP
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
//! arriving together share one; a whole batch is followed at once by the next. A follower
//! that finds the queue empty waits for the NOTIFY a trigger on the queue sends when a
//! writer commits rows to it (LISTENing before it first looks, so no commit falls
//! between), and looks at least every `Settings::follow_poll` (a second by default) all
//! the same. While it works, writers skip that NOTIFY, whose lock would serialize their
//! commits, and it looks every `QUIET_POLL` instead (`GRACE`). Where polling every 20 ms
//! cost an idle database 50 statements a second, an idle follower now costs it one.
//!
//! A batch first takes the catalog tables' ACCESS SHARE locks in the one order a load's
//! swap takes its exclusive ones ([`crate::catalog::lock_catalog_sql`]), so the two queue
//! behind each other instead of deadlocking; a batch after the swap reads the new
//! tables. A queue holding a TRUNCATE, or a backlog of a large share of the catalog
//! (after a load of a new catalog), is rebuilt whole.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{Extent, Plan, Rebuilder, Settings};
use crate::Result;
use crate::db::connection::{Listening, Outage, open_listening, reconnecting};

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

/// Whether anything is queued: one statement, without a transaction.
const QUEUED_SQL: &str = "SELECT EXISTS (SELECT 1 FROM document_queue)";

/// Least time from one batch's start to the next's while the queue is short: changes
/// arriving meanwhile share a batch, whose cost is mostly its own (statements, commit,
/// the servers' invalidation round) rather than its products'. Measured at 100 changes/s
/// on a million products, 50 ms batches cost the database twice the CPU per change of
/// 200 ms ones. A change arriving at an idle follower is taken when its notification
/// arrives; a whole batch goes on at once.
const PACE: Duration = Duration::from_millis(200);

/// Pause after a batch found only products other followers hold.
const BUSY: Duration = Duration::from_millis(5);

/// How often a follower that did something says so in the log.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// How the follower's connection names itself in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "atelier follow";

/// `atelier materialize --follow`: follows until SIGTERM or SIGINT.
pub async fn run(url: &str, settings: &Settings) -> Result<()> {
    let stop = crate::shutdown::signal()?;
    tracing::info!("following catalog changes");
    follow(url, settings, stop).await;
    tracing::info!("stopped following catalog changes");
    Ok(())
}

/// Follows the change queue of the database at `url` until `stop` completes, reconnecting
/// whenever the database goes away. Stopping abandons a batch in flight, which rolls
/// back: its rows stay queued.
pub async fn follow(url: &str, settings: &Settings, stop: impl Future<Output = ()>) {
    let outage = Outage::new(
        "following catalog changes failed; retrying",
        "following catalog changes again",
    );
    // Kept across sessions; each session borrows it only to add a batch.
    let totals = Mutex::new(Totals::new());
    reconnecting(&outage, stop, || session(url, settings, &outage, &totals)).await;
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
    outage: &Outage,
    totals: &Mutex<Totals>,
) -> Result<()> {
    // Of several hosts, the primary: a standby takes no LISTEN and no writes.
    let mut config = crate::db::writer_config(url)?;
    config.application_name(APPLICATION_NAME);
    // A connection that dies silently (a host gone, not closed) is noticed by TCP within
    // a minute or so rather than hours, as the pooled reads' connections are.
    config.keepalives_idle(Duration::from_secs(30));
    // One pending wake is all a follower needs: it looks at the whole queue when woken.
    let (wake, mut woken) = mpsc::channel(1);
    let Listening { client, driver } = open_listening(&config, move |_| {
        !matches!(
            wake.try_send(()),
            Err(mpsc::error::TrySendError::Closed(()))
        )
    })
    .await?;
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
        let queued = client.prepare(QUEUED_SQL).await?;
        let awake = client.prepare(AWAKE_SQL).await?;
        let mut rebuilder = Rebuilder::on(client, url, settings).await?;
        // Until when this follower has promised to look again (a local clock read after
        // the promise was written, so never before the promised time).
        let mut awake_until: Option<tokio::time::Instant> = None;
        loop {
            // Notifications of rows this look will see anyway.
            while woken.try_recv().is_ok() {}
            let any: bool = rebuilder.client().query_one(&queued, &[]).await?.get(0);
            outage.works();
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
            rebuilder.client().execute(&awake, &[&grace]).await?;
            awake_until = Some(tokio::time::Instant::now() + GRACE);
            let started = tokio::time::Instant::now();
            let rebuilt = rebuilder.rebuild(Plan::QueueBatch).await?;
            let documents = rebuilt.report.documents + rebuilt.report.removed;
            match rebuilt.extent {
                Extent::Nothing => wait_for_rows(&mut woken, poll(awake_until)).await,
                Extent::HeldByOthers => tokio::time::sleep(BUSY).await,
                Extent::Queued { took_a_whole_batch } => {
                    tracing::debug!(documents, "batch rebuilt");
                    totals.lock().expect("follower totals").add(documents);
                    if !took_a_whole_batch {
                        tokio::time::sleep_until(started + PACE).await;
                    }
                }
                Extent::Everything | Extent::Listed { .. } => {
                    tracing::info!(
                        documents,
                        "the change queue asked for a rebuild of everything: rebuilt it"
                    );
                    totals.lock().expect("follower totals").add(documents);
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
