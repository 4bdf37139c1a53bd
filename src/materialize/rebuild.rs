//! The rebuilder: one connection with the statements of a rebuild prepared once, which
//! carries out a [`Plan`] in one transaction and announces what changed. Every rebuild,
//! `./materialize`'s, `--products`' and each of a follower's batches, goes through
//! [`Rebuilder::rebuild`].
//!
//! A queue row names a product and the kinds its change touched ([`Kinds`]). A product
//! whose stale kinds are exactly one that can be rebuilt alone ([`Kind::rebuilt_alone`]:
//! a change of stock, price or photos) gets that document alone, when it has one; every
//! other product gets all of its documents.

use std::collections::BTreeMap;
use std::time::Instant;

use tokio_postgres::{Client, Statement, Transaction};

use super::{Settings, compress, list, parallel, sql};
use crate::catalog::{LockMode, lock_catalog_sql};
use crate::documents::{self, EVERY_PRODUCT, Kind, Kinds, Notice, Pages};
use crate::{Error, Result};

/// Serialises rebuilds against each other (an arbitrary, fixed advisory-lock key).
/// Rebuilds of many products hold it exclusively; each batch of a follower holds it
/// shared, so followers run side by side and wait only for those.
const MATERIALIZE_LOCK_KEY: i64 = 0x6d61_7465_7269_616c;

/// The first key of the per-product advisory locks a follower's batch takes
/// (`pg_try_advisory_xact_lock(int, int)`; the second key is the product id).
/// Arbitrary and fixed: "at".
const PRODUCT_LOCK_CLASS: i32 = 0x6174;

/// A queue naming more than this share of the catalog's products is rebuilt whole: a
/// new table filled in ranges on several connections beats rewriting that many rows in
/// place (measured at a million products: partial rebuilds cost about 0.5 ms per product
/// against 0.25 ms for a rebuild of everything).
const EVERYTHING_SHARE: f64 = 0.25;

/// A queue naming at most this many products is rebuilt in place whatever the catalog's
/// size: a small catalog gains nothing from a new table.
const EVERYTHING_MIN: i64 = 1_000;

/// Past this many products a partial rebuild drops every list page rather than
/// computing which ones moved: the ranks cost more than they save then.
const MAX_RANKED_PRODUCTS: usize = 5_000;

/// A partial rebuild of at least this many products builds its documents on several
/// connections at once ([`parallel::build_batch`]) before writing them in its
/// transaction.
const PARALLEL_MIN: usize = 2_000;

/// Queue rows a follower's batch takes at most. A batch holds one advisory lock per
/// product, and PostgreSQL's lock table holds 64 per connection by default (shared by
/// all): 500 leaves room for several followers and everything else.
pub const BATCH: i64 = 500;

/// What to rebuild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Every product: a new document table swapped in atomically.
    Everything,
    /// The products the change queue names, taking its rows; everything when the queue
    /// names too many, holds a TRUNCATE, or the documents were never built.
    Queue,
    /// The oldest [`BATCH`] queue rows no other follower holds, leaving those of
    /// products another follower is rebuilding (a follower's batch); everything when
    /// the queue asks for it, as [`Plan::Queue`].
    QueueBatch,
    /// Only these products (documents of ids no longer in the catalog are removed).
    Products(Vec<i32>),
}

/// What a rebuild did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaterializeReport {
    /// Documents written (one per product, each holding a body per kind).
    pub documents: u64,
    /// Documents removed because their product left the catalog (partial rebuilds).
    pub removed: u64,
    /// Listed ids that are neither in the catalog nor among the documents, in order
    /// (partial rebuilds); when every listed id is unknown, materialize fails instead.
    pub unknown: Vec<i32>,
}

/// What a rebuild covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// Every product.
    Everything,
    /// The products the queue named (all of them, or a batch).
    Queued {
        /// Whether a batch took as many rows as it may: more may be waiting.
        took_a_whole_batch: bool,
    },
    /// The products listed, this many ids.
    Listed { products: usize },
    /// Nothing: the queue was empty.
    Nothing,
    /// Nothing: every queued product was being rebuilt by another follower.
    HeldByOthers,
}

/// A finished rebuild: what it did, and what servers were told (nothing when it
/// rebuilt nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuilt {
    pub report: MaterializeReport,
    pub extent: Extent,
    pub notice: Option<Notice>,
}

/// A connection that rebuilds documents, with its statements prepared.
pub struct Rebuilder {
    client: Client,
    statements: Statements,
    /// Where the extra connections of a large rebuild connect.
    url: String,
    settings: Settings,
}

/// The statements of a rebuild, prepared once on the rebuilder's connection: planning
/// the build query costs more than running it for a few products.
struct Statements {
    take_queue: Statement,
    lock_products: Statement,
    queue_done: Statement,
    delete_gone: Statement,
    upsert_listed: Statement,
    restyle: Statement,
    announce: Statement,
    prune_notices: Statement,
    record_run: Statement,
}

impl Statements {
    async fn prepare(client: &Client) -> Result<Statements> {
        Ok(Statements {
            take_queue: client.prepare(sql::TAKE_QUEUE).await?,
            lock_products: client.prepare(sql::LOCK_PRODUCTS).await?,
            queue_done: client.prepare(sql::QUEUE_DONE).await?,
            delete_gone: client.prepare(sql::DELETE_GONE).await?,
            upsert_listed: client.prepare(&sql::upsert_listed()).await?,
            restyle: client.prepare(&sql::restyle()).await?,
            announce: client.prepare(sql::ANNOUNCE).await?,
            prune_notices: client.prepare(sql::PRUNE_NOTICES).await?,
            record_run: client.prepare(&sql::record_run()).await?,
        })
    }
}

/// One queue row: a product whose documents of `kinds` are stale.
#[derive(Debug, Clone, Copy)]
struct QueueRow {
    id: i64,
    product: i32,
    kinds: Kinds,
}

impl From<&tokio_postgres::Row> for QueueRow {
    fn from(row: &tokio_postgres::Row) -> QueueRow {
        QueueRow {
            id: row.get(0),
            product: row.get(1),
            kinds: Kinds::from_bits(row.get(2)),
        }
    }
}

impl Rebuilder {
    /// A rebuilder on a connection of its own to `url`.
    pub async fn connect(url: &str, settings: &Settings) -> Result<Rebuilder> {
        Rebuilder::on(crate::db::connect(url).await?, url, settings).await
    }

    /// A rebuilder on `client`, a connection to `url`.
    pub async fn on(client: Client, url: &str, settings: &Settings) -> Result<Rebuilder> {
        let statements = Statements::prepare(&client).await?;
        Ok(Rebuilder {
            client,
            statements,
            url: url.to_string(),
            settings: settings.clone(),
        })
    }

    /// Its connection, for a caller's own statements between rebuilds.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Carries out `plan` in one transaction: servers see all of its documents or none,
    /// and are told what changed when it commits.
    pub async fn rebuild(&mut self, plan: Plan) -> Result<Rebuilt> {
        if let Plan::Products(ids) = &plan
            && ids.iter().any(|&id| id <= 0)
        {
            return Err(Error::InvalidInput(
                "--products takes positive product ids".into(),
            ));
        }
        let Rebuilder {
            client,
            statements,
            url,
            settings,
        } = self;
        let run = Run {
            transaction: client.transaction().await?,
            statements,
            url,
            settings,
        };
        let rebuilt = match plan {
            Plan::QueueBatch => match run.queue_batch().await? {
                Some(rebuilt) => rebuilt,
                // The queue asks for everything: not in a follower's shared lock.
                None => {
                    drop(run);
                    return Box::pin(self.rebuild(Plan::Queue)).await;
                }
            },
            // The other plans wait for every other rebuild and are recorded.
            Plan::Everything => {
                run.lock_exclusively().await?;
                run.recorded(run.everything().await?).await?
            }
            Plan::Queue => {
                run.lock_exclusively().await?;
                let rebuilt = match run.queue_asks_for_everything().await? {
                    true => run.everything().await?,
                    false => run.queue().await?,
                };
                run.recorded(rebuilt).await?
            }
            Plan::Products(ids) => {
                run.lock_exclusively().await?;
                run.recorded(run.products(&ids).await?).await?
            }
        };
        if let Some(notice) = &rebuilt.notice {
            run.announce(notice).await?;
        }
        run.transaction.commit().await?;
        Ok(rebuilt)
    }
}

/// What [`Run::write`] wrote.
struct Written {
    report: MaterializeReport,
    /// The products written or removed, sorted.
    ids: Vec<i32>,
    /// The list pages that moved.
    pages: Pages,
}

impl Written {
    /// The notice for these products and `restyled`, whose styles document alone was
    /// rebuilt (sorted).
    fn notice(self, restyled: Vec<i32>) -> Notice {
        let mut ids = self.ids;
        // A styles document is in no list page: no rank to name.
        ids.extend(&restyled);
        ids.sort_unstable();
        Notice::Products {
            ids,
            styles_only: restyled,
            pages: self.pages,
        }
    }
}

/// One rebuild's transaction and what it needs.
struct Run<'a> {
    transaction: Transaction<'a>,
    statements: &'a Statements,
    url: &'a str,
    settings: &'a Settings,
}

impl Run<'_> {
    /// Waits for every other rebuild, and holds off the others until this one ends.
    async fn lock_exclusively(&self) -> Result<()> {
        self.transaction
            .execute("SELECT pg_advisory_xact_lock($1)", &[&MATERIALIZE_LOCK_KEY])
            .await?;
        Ok(())
    }

    /// Whether the queue is better served by rebuilding everything: the documents were
    /// never built, a TRUNCATE emptied a catalog table, the last load predates the queue
    /// (it queued nothing), or the queue names a large share of the products.
    async fn queue_asks_for_everything(&self) -> Result<bool> {
        let row = self.transaction.query_one(&sql::queue_state(), &[]).await?;
        let (never, truncated, unqueued_load): (bool, bool, bool) =
            (row.get(0), row.get(1), row.get(2));
        let (queued, products): (i64, i64) = (row.get(3), row.get(4));
        if never || truncated || unqueued_load {
            return Ok(true);
        }
        let threshold = ((products as f64 * EVERYTHING_SHARE) as i64).max(EVERYTHING_MIN);
        if queued <= threshold {
            return Ok(false);
        }
        // Rows, not products: a product changed many times is queued many times.
        let distinct: i64 = self
            .transaction
            .query_one(sql::QUEUED_PRODUCTS, &[])
            .await?
            .get(0);
        Ok(distinct > threshold)
    }

    async fn everything(&self) -> Result<Rebuilt> {
        let documents =
            parallel::rebuild_everything(self.url, &self.transaction, self.settings).await?;
        Ok(Rebuilt {
            report: MaterializeReport {
                documents,
                ..MaterializeReport::default()
            },
            extent: Extent::Everything,
            notice: Some(Notice::Everything),
        })
    }

    /// Rebuilds the listed products, which must not all be unknown.
    async fn products(&self, ids: &[i32]) -> Result<Rebuilt> {
        let unknown: Vec<i32> = self
            .transaction
            .query_one(sql::UNKNOWN, &[&ids])
            .await?
            .get(0);
        let mut listed = ids.to_vec();
        listed.sort_unstable();
        listed.dedup();
        if unknown.len() == listed.len() {
            return Err(Error::InvalidInput(format!(
                "{}; nothing was materialized",
                super::not_in_catalog(&unknown)
            )));
        }
        let written = self.write(ids).await?;
        Ok(Rebuilt {
            report: MaterializeReport {
                unknown,
                ..written.report
            },
            extent: Extent::Listed {
                products: ids.len(),
            },
            notice: Some(written.notice(Vec::new())),
        })
    }

    /// Rebuilds whatever the queue names, taking all of its rows.
    async fn queue(&self) -> Result<Rebuilt> {
        let rows = self.transaction.query(sql::TAKE_WHOLE_QUEUE, &[]).await?;
        let rows: Vec<QueueRow> = rows.iter().map(QueueRow::from).collect();
        if rows.iter().any(|row| row.product == EVERY_PRODUCT) {
            // A TRUNCATE committed since the queue was looked at.
            return self.everything().await;
        }
        self.changed(&rows, false).await
    }

    /// A follower's batch: `None` when the queue asks for everything.
    async fn queue_batch(&self) -> Result<Option<Rebuilt>> {
        self.transaction
            .batch_execute(&format!(
                "SELECT pg_advisory_xact_lock_shared({MATERIALIZE_LOCK_KEY});
                 {};",
                lock_catalog_sql(LockMode::AccessShare)
            ))
            .await?;
        let taken = self.take_queue(BATCH).await?;
        let nothing = |extent| Rebuilt {
            report: MaterializeReport::default(),
            extent,
            notice: None,
        };
        if taken.is_empty() {
            return Ok(Some(nothing(Extent::Nothing)));
        }
        if taken.iter().any(|row| row.product == EVERY_PRODUCT) {
            return Ok(None);
        }
        let took_a_whole_batch = taken.len() as i64 == BATCH;
        if took_a_whole_batch {
            let backlog: bool = self
                .transaction
                .query_one(sql::BACKLOG, &[&EVERYTHING_SHARE, &EVERYTHING_MIN])
                .await?
                .get(0);
            if backlog {
                return Ok(None);
            }
        }
        let mut products: Vec<i32> = taken.iter().map(|row| row.product).collect();
        products.sort_unstable();
        products.dedup();
        // A product another follower is rebuilding is left for a later batch: two
        // rebuilds racing on one product could commit the older document last.
        let mut held: Vec<i32> = self
            .transaction
            .query(
                &self.statements.lock_products,
                &[&products, &PRODUCT_LOCK_CLASS],
            )
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        held.sort_unstable();
        if held.is_empty() {
            return Ok(Some(nothing(Extent::HeldByOthers)));
        }
        let mine: Vec<QueueRow> = taken
            .into_iter()
            .filter(|row| held.binary_search(&row.product).is_ok())
            .collect();
        let rebuilt = self.changed(&mine, took_a_whole_batch).await?;
        let ids: Vec<i64> = mine.iter().map(|row| row.id).collect();
        self.transaction
            .execute(&self.statements.queue_done, &[&ids])
            .await?;
        Ok(Some(rebuilt))
    }

    /// Locks up to `limit` queue rows no other transaction holds, oldest first.
    async fn take_queue(&self, limit: i64) -> Result<Vec<QueueRow>> {
        let rows = self
            .transaction
            .query(&self.statements.take_queue, &[&limit])
            .await?;
        Ok(rows.iter().map(QueueRow::from).collect())
    }

    /// Rebuilds what the queue rows `rows` ask for: the products whose stale kinds are
    /// one that is rebuilt alone get that document alone, when they have one; the
    /// others, all of theirs ([`Run::write`]).
    async fn changed(&self, rows: &[QueueRow], took_a_whole_batch: bool) -> Result<Rebuilt> {
        let mut stale: BTreeMap<i32, Kinds> = BTreeMap::new();
        for row in rows {
            *stale.entry(row.product).or_default() |= row.kinds;
        }
        // Only the styles document is rebuilt alone today (`sql::restyle`).
        let alone: Vec<i32> = stale
            .iter()
            .filter(|&(_, kinds)| kinds.stale().alone() == Some(Kind::Styles))
            .map(|(&id, _)| id)
            .collect();
        let restyled = self.restyle(&alone).await?;
        let whole: Vec<i32> = stale
            .keys()
            .copied()
            .filter(|id| restyled.binary_search(id).is_err())
            .collect();
        let mut written = self.write(&whole).await?;
        written.report.documents += restyled.len() as u64;
        Ok(Rebuilt {
            report: written.report.clone(),
            extent: Extent::Queued { took_a_whole_batch },
            notice: Some(written.notice(restyled)),
        })
    }

    /// Rewrites the styles documents of `ids` that have a document, with their gzip
    /// forms; returns those, sorted.
    async fn restyle(&self, ids: &[i32]) -> Result<Vec<i32>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .transaction
            .query(&self.statements.restyle, &[&ids])
            .await?;
        let mut restyled: Vec<i32> = rows.iter().map(|row| row.get(0)).collect();
        restyled.sort_unstable();
        compress::listed(&self.transaction, &restyled).await?;
        Ok(restyled)
    }

    /// Rewrites every document of `ids` (positive) in place with the gzip forms of the
    /// bodies that changed, removing those of vanished products, and keeps the list's
    /// blocks in step. Many products are built on
    /// `settings.jobs` connections at once; whatever connection builds them, they read
    /// the catalog after the transaction took its queue rows, so they hold every change
    /// those rows stand for.
    async fn write(&self, ids: &[i32]) -> Result<Written> {
        let transaction = &self.transaction;
        let started = Instant::now();
        // A few thousand products' statements can cost enough to be compiled, which takes
        // longer than it saves.
        transaction.batch_execute("SET LOCAL jit = off").await?;
        let removed: Vec<i32> = transaction
            .query(&self.statements.delete_gone, &[&ids])
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let rows = if ids.len() >= PARALLEL_MIN && self.settings.jobs > 1 {
            parallel::build_batch(self.url, ids, self.settings).await?;
            let rows = transaction.query(&sql::upsert_batch(), &[]).await?;
            transaction
                .batch_execute("DROP TABLE document_batch")
                .await?;
            rows
        } else {
            transaction
                .query(
                    &self.statements.upsert_listed,
                    &[&self.settings.campus, &ids],
                )
                .await?
        };
        let mut written = Vec::with_capacity(rows.len());
        let mut inserted = Vec::new();
        for row in &rows {
            let id: i32 = row.get(0);
            written.push(id);
            if row.get::<_, bool>(1) {
                inserted.push(id);
            }
        }
        let forms = compress::listed(transaction, &written).await?;
        let built = started.elapsed();
        list::lock(transaction).await?;
        let shift = list::apply(transaction, &inserted, &removed).await?;
        let listed = started.elapsed();
        let pages = if ids.len() > MAX_RANKED_PRODUCTS {
            Pages::Every
        } else {
            // Pages from the shift on are dropped whole: only ranks before it are needed.
            let mut ranks = list::ranks(transaction, &written).await?;
            if let Some(shift) = shift {
                ranks.retain(|&rank| rank < shift);
            }
            Pages::Ranks { ranks, shift }
        };
        tracing::debug!(
            products = ids.len(),
            gzip_forms = forms,
            built_s = built.as_secs_f64(),
            listed_s = listed.as_secs_f64(),
            ranked_s = started.elapsed().as_secs_f64(),
            "partial rebuild"
        );
        let mut named = ids.to_vec();
        named.sort_unstable();
        named.dedup();
        Ok(Written {
            report: MaterializeReport {
                documents: written.len() as u64,
                removed: removed.len() as u64,
                unknown: Vec::new(),
            },
            ids: named,
            pages,
        })
    }

    /// Records the rebuild in `catalog_run`, which makes a catalog ready.
    async fn recorded(&self, rebuilt: Rebuilt) -> Result<Rebuilt> {
        let scope = match rebuilt.extent {
            Extent::Everything => "all".to_string(),
            Extent::Queued { .. } | Extent::Nothing | Extent::HeldByOthers => "changed".into(),
            Extent::Listed { products } => format!("{products} products"),
        };
        let summary = serde_json::json!({
            "scope": scope,
            "documents": rebuilt.report.documents,
            "removed": rebuilt.report.removed,
        });
        self.transaction
            .execute(&self.statements.record_run, &[&summary.to_string()])
            .await?;
        Ok(rebuilt)
    }

    /// Sends `notice` on [`documents::CHANNEL`] and logs it in `document_notice`, which
    /// it prunes of what is older than [`documents::NOTICE_RETENTION`]; delivered and
    /// kept when the transaction commits.
    async fn announce(&self, notice: &Notice) -> Result<()> {
        let retention = documents::NOTICE_RETENTION.as_secs_f64();
        self.transaction
            .execute(&self.statements.prune_notices, &[&retention])
            .await?;
        for payload in notice.payloads() {
            self.transaction
                .execute(&self.statements.announce, &[&documents::CHANNEL, &payload])
                .await?;
        }
        Ok(())
    }
}
