//! `atelier materialize`: builds the stored response documents from the catalog tables,
//! set-based in SQL, and switches servers to them atomically.
//!
//! Every rebuild is one [`Rebuilder::rebuild`] of a [`Plan`]. By default it rebuilds
//! only the products the change queue names (`document_queue` in schema.sql: a load
//! queues the products it added, changed or removed, and capture triggers queue every
//! other write), in one transaction that also takes those queue rows, so servers see
//! all of the rebuilt documents or none. A rebuild of everything (`--all`, or when the
//! queue names a large share of the catalog, or the documents were never built) fills a
//! new table and swaps it for the old one at commit: a reader sees all old or all new
//! documents, never a mix and never an empty table ([`parallel`]). `--products` rewrites
//! the listed products' rows. Every transaction ends with NOTIFYs telling servers which
//! cache entries are stale ([`documents::notice`](crate::documents::notice)). [`follow`]
//! takes the queue in small batches as it fills; [`list`] keeps the list's rank index in
//! step; [`compress`] stores the gzip forms of the bodies a rebuild wrote; [`sql`] holds the
//! statements.

mod compress;
pub mod follow;
pub mod list;
mod parallel;
mod rebuild;
mod sql;

use std::time::{Duration, Instant};

pub use rebuild::{BATCH, Extent, MaterializeReport, Plan, Rebuilder, Rebuilt};
pub use sql::listed_documents_sql;

use crate::Result;
use crate::db::Database;

/// The `campus` of every product when none is configured.
pub const DEFAULT_CAMPUS: &str = "hr-rfp";

/// Unknown ids named in a message at most; the rest are counted.
const MAX_NAMED_IDS: usize = 20;

/// What `atelier materialize` is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// One rebuild, then exit.
    Rebuild(Plan),
    /// Rebuild changed products as their changes commit, until stopped.
    Follow,
}

/// How documents are built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The `campus` value written into every product document.
    pub campus: String,
    /// Connections that build a large rebuild's documents at once.
    pub jobs: usize,
    /// Longest a follower waits on an empty queue for a notification before it looks
    /// again all the same: the safety net for rows queued with triggers off
    /// (`session_replication_role = replica`), and for a writer that commits long after
    /// its statement, past a working follower's promise to look again.
    pub follow_poll: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            campus: DEFAULT_CAMPUS.to_string(),
            jobs: std::thread::available_parallelism().map_or(1, usize::from),
            follow_poll: Duration::from_secs(1),
        }
    }
}

/// Rebuilds the documents `plan` names in the database at `url`, switches to them
/// atomically and notifies servers: one [`Rebuilder::rebuild`] on a connection of its
/// own.
pub async fn materialize(url: &str, plan: Plan, settings: &Settings) -> Result<MaterializeReport> {
    let mut rebuilder = Rebuilder::connect(url, settings).await?;
    Ok(rebuilder.rebuild(plan).await?.report)
}

/// "product 7 is not in the catalog", or "products 7, 9 are …", naming at most
/// [`MAX_NAMED_IDS`] of `ids`.
pub fn not_in_catalog(ids: &[i32]) -> String {
    let mut named = ids
        .iter()
        .take(MAX_NAMED_IDS)
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > MAX_NAMED_IDS {
        named.push_str(&format!(" and {} more", ids.len() - MAX_NAMED_IDS));
    }
    match ids.len() {
        1 => format!("product {named} is not in the catalog"),
        _ => format!("products {named} are not in the catalog"),
    }
}

/// A finished `atelier materialize`: what it did and how long it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub report: MaterializeReport,
    pub elapsed: Duration,
}

/// `atelier materialize`: one rebuild, or following the queue until SIGTERM or SIGINT
/// (then `None`).
pub async fn run(database: &Database, task: Task, settings: &Settings) -> Result<Option<Finished>> {
    let url = crate::db::resolve_url(database).await?;
    crate::db::apply_schema(&crate::db::connect(&url).await?).await?;
    let plan = match task {
        Task::Follow => {
            follow::run(&url, settings).await?;
            return Ok(None);
        }
        Task::Rebuild(plan) => plan,
    };
    let started = Instant::now();
    let report = materialize(&url, plan, settings).await?;
    if !report.unknown.is_empty() {
        tracing::warn!(
            "{}; materialized the others",
            not_in_catalog(&report.unknown)
        );
    }
    Ok(Some(Finished {
        report,
        elapsed: started.elapsed(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_ids_are_named_up_to_a_limit() {
        assert_eq!(not_in_catalog(&[7]), "product 7 is not in the catalog");
        assert_eq!(
            not_in_catalog(&[7, 9]),
            "products 7, 9 are not in the catalog"
        );
        let many: Vec<i32> = (1..=25).collect();
        assert!(not_in_catalog(&many).ends_with("19, 20 and 5 more are not in the catalog"));
    }
}
