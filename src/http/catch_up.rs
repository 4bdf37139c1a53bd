//! Where a server is in the primary's notice log (`document_notice`, schema.sql), so
//! that a LISTEN connection that was down (a dropped connection, a restart, a failover)
//! costs only the notices it missed, not the whole cache.
//!
//! Every notice is logged by the transaction that sends it, and its payload names the
//! log row's `seq`. A server remembers a snapshot of the primary taken while it
//! listened (`pg_current_snapshot()`): every notice that snapshot shows as committed was
//! received or caught up on. On reconnecting it takes a new snapshot, after its LISTEN,
//! and replays the log rows the old snapshot does not show as committed and the new one
//! does; anything committed later arrives as a notification. Seq order is not commit
//! order, which is why snapshots and not seqs mark the position. It takes the same step
//! at every heartbeat, so a notification that was still on its way when a connection
//! died is not lost either.
//!
//! A primary that restarted (crash recovery with `synchronous_commit` off) or was
//! replaced (a promoted standby) may have lost transactions whose notices were already
//! delivered, and hands out their xids and seqs again (a follower that takes the same
//! queue rows again even sends the same notice under the same seq): the old snapshot and
//! the seqs received no longer describe it. Then the server drops again what it applied
//! in the last [`RECENT`] before the connection was lost (a lost transaction's documents
//! may be cached), and replays every notice logged from [`RECENT`] before its last
//! snapshot on. Away longer than the log
//! keeps notices, or never connected before, it drops the whole cache.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::documents::{NOTICE_RETENTION, Notice};

/// What a server does about the changes announced while its LISTEN connection was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissedChanges {
    /// Replays them from the notice log; drops the whole cache only when it was away
    /// longer than the log keeps notices.
    #[default]
    CatchUp,
    /// Drops the whole cache at every reconnection.
    Drop,
}

/// How a server's LISTEN sessions began, for /metrics.
#[derive(Debug, Default)]
pub struct Reconnections {
    /// Sessions that caught up from the log, dropping only what they missed.
    pub catch_ups: AtomicU64,
    /// Sessions that dropped the whole cache: the first one, every one with
    /// [`MissedChanges::Drop`] or after an outage longer than the log keeps, and those
    /// whose missed notices included a full rebuild.
    pub cache_drops: AtomicU64,
    /// Notices replayed from the log (or dropped again) when a session began.
    pub caught_up_notices: AtomicU64,
}

/// How long notices applied are remembered while listening, against a primary that
/// lost some of them, and the margin of a replay by time: far longer than a rebuild's
/// commit waits for its synchronous standby. Only what was applied that long before
/// the connection was lost is dropped again, not the whole cache.
pub const RECENT: Duration = Duration::from_secs(30);

/// The primary's snapshot and clock, and which run of which timeline it is.
const POSITION_SQL: &str = "SELECT pg_current_snapshot()::text, \
     extract(epoch FROM now())::float8, \
     substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8) \
         || ' ' || pg_postmaster_start_time()::text";
/// The notices committed after snapshot $1 and by snapshot $2.
const BETWEEN_SQL: &str = "SELECT seq, payload FROM document_notice \
     WHERE xid >= pg_snapshot_xmin($1::text::pg_snapshot) \
       AND NOT pg_visible_in_snapshot(xid, $1::text::pg_snapshot) \
       AND pg_visible_in_snapshot(xid, $2::text::pg_snapshot) ORDER BY seq";
/// The notices logged since $1 (seconds since the epoch) and committed by snapshot $2.
const SINCE_SQL: &str = "SELECT seq, payload FROM document_notice \
     WHERE sent_at >= to_timestamp($1) \
       AND pg_visible_in_snapshot(xid, $2::text::pg_snapshot) ORDER BY seq";

/// The primary as a server last caught up with it.
#[derive(Debug, Clone)]
struct Seen {
    /// `pg_current_snapshot()` as text.
    snapshot: String,
    /// The primary's clock then, in seconds since the epoch.
    at: f64,
    /// Its timeline and start time: a change means it may have lost transactions.
    incarnation: String,
}

/// A server's place in the notice log, kept across its LISTEN sessions.
#[derive(Debug, Default)]
pub struct LogPosition {
    seen: Option<Seen>,
    /// Notices applied within [`RECENT`], by seq, on the primary last seen.
    recent: HashMap<i64, Notice>,
    /// The same seqs, oldest first, with when they were applied.
    order: VecDeque<(Instant, i64)>,
}

/// What one step through the log found: what to drop, and where that leaves the server.
#[derive(Debug)]
pub struct Step {
    /// What the server must drop from its cache before taking the step.
    pub notices: Vec<Notice>,
    seen: Seen,
    /// The log rows replayed, to remember as applied.
    replayed: Vec<(i64, Notice)>,
    /// Whether the primary changed since the last step (the remembered seqs are void).
    new_incarnation: bool,
    /// How the session began, when the step begins one: counted once its notices are
    /// dropped, so that /metrics never shows a catch-up whose drops are still to come.
    began: Option<Began>,
}

/// How a LISTEN session began, for [`Reconnections`].
#[derive(Debug, Clone, Copy)]
enum Began {
    /// The whole cache was dropped.
    DroppedAll,
    /// The cache dropped the `notices` it missed (or lost, on a new primary); a full
    /// rebuild among them dropped it whole all the same.
    CaughtUp { notices: u64, everything: bool },
}

impl LogPosition {
    /// Notes that the notice logged as `seq` was received; false when it was applied
    /// already (caught up on before its notification arrived), so need not be again.
    pub fn received(&mut self, seq: i64, notice: &Notice) -> bool {
        self.forget_old();
        if self.recent.contains_key(&seq) {
            return false;
        }
        self.remember(seq, notice.clone());
        true
    }

    /// What to drop as a session begins (`beginning`) or at a heartbeat, read from the
    /// primary through `client`, which LISTENs already. Nothing changes until
    /// [`LogPosition::advance`] takes the step, once its notices are dropped.
    pub async fn step(
        &mut self,
        client: &Client,
        mode: MissedChanges,
        beginning: bool,
    ) -> Result<Step, tokio_postgres::Error> {
        // As a session begins, what was applied in the last moments of the one before
        // must still be there, however long the outage was.
        if !beginning {
            self.forget_old();
        }
        let row = client.query_one(POSITION_SQL, &[]).await?;
        let seen = Seen {
            snapshot: row.get(0),
            at: row.get(1),
            incarnation: row.get(2),
        };
        let everything = |seen| Step {
            notices: vec![Notice::Everything],
            seen,
            replayed: Vec::new(),
            new_incarnation: true,
            began: Some(Began::DroppedAll),
        };
        let Some(last) = &self.seen else {
            return Ok(everything(seen));
        };
        let away = seen.at - last.at;
        let kept = (NOTICE_RETENTION - RECENT).as_secs_f64();
        if beginning && (mode == MissedChanges::Drop || away > kept) {
            return Ok(everything(seen));
        }
        let new_incarnation = last.incarnation != seen.incarnation;
        let rows = if new_incarnation {
            let since = last.at - RECENT.as_secs_f64();
            client.query(SINCE_SQL, &[&since, &seen.snapshot]).await
        } else {
            client
                .query(BETWEEN_SQL, &[&last.snapshot, &seen.snapshot])
                .await
        };
        let rows = match rows {
            Ok(rows) => rows,
            // A database whose schema predates the log, or a role not allowed to read
            // it: all a server can do is drop everything as a session begins, and rely
            // on the notifications while it listens.
            Err(error)
                if [SqlState::UNDEFINED_TABLE, SqlState::INSUFFICIENT_PRIVILEGE]
                    .iter()
                    .any(|code| error.code() == Some(code)) =>
            {
                if !beginning {
                    return Ok(Step {
                        notices: Vec::new(),
                        seen,
                        replayed: Vec::new(),
                        new_incarnation,
                        began: None,
                    });
                }
                return Ok(everything(seen));
            }
            Err(error) => return Err(error),
        };
        let mut notices: Vec<Notice> = Vec::new();
        if new_incarnation {
            // What was applied recently may have been lost with the old primary.
            notices.extend(self.recent.values().cloned());
        }
        let mut replayed = Vec::new();
        for row in rows {
            let seq: i64 = row.get(0);
            if !new_incarnation && self.recent.contains_key(&seq) {
                continue;
            }
            let notice = Notice::parse(row.get(1));
            notices.push(notice.clone());
            replayed.push((seq, notice));
        }
        let began = beginning.then(|| Began::CaughtUp {
            notices: notices.len() as u64,
            everything: notices.contains(&Notice::Everything),
        });
        Ok(Step {
            notices,
            seen,
            replayed,
            new_incarnation,
            began,
        })
    }

    /// Takes `step`, whose notices have been dropped from the cache, and counts the
    /// session it began in `counts`.
    pub fn advance(&mut self, step: Step, counts: &Reconnections) {
        match step.began {
            None => {}
            Some(Began::DroppedAll) => {
                counts.cache_drops.fetch_add(1, Ordering::Relaxed);
            }
            Some(Began::CaughtUp {
                notices,
                everything,
            }) => {
                let counter = match everything {
                    true => &counts.cache_drops,
                    false => &counts.catch_ups,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                counts
                    .caught_up_notices
                    .fetch_add(notices, Ordering::Relaxed);
            }
        }
        if step.new_incarnation {
            self.recent.clear();
            self.order.clear();
        }
        for (seq, notice) in step.replayed {
            self.remember(seq, notice);
        }
        self.seen = Some(step.seen);
    }

    fn remember(&mut self, seq: i64, notice: Notice) {
        if self.recent.insert(seq, notice).is_none() {
            self.order.push_back((Instant::now(), seq));
        }
    }

    fn forget_old(&mut self) {
        while let Some(&(applied, seq)) = self.order.front() {
            if applied.elapsed() < RECENT {
                break;
            }
            self.order.pop_front();
            self.recent.remove(&seq);
        }
    }
}

/// The log seq a notification's payload names first (`{"seq":N,…}`); `None` for a
/// payload without one.
pub fn logged_seq(payload: &str) -> Option<i64> {
    let rest = payload.strip_prefix(r#"{"seq":"#)?;
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_names_its_seq_first() {
        assert_eq!(logged_seq(r#"{"seq":42,"products":[1]}"#), Some(42));
        assert_eq!(logged_seq(r#"{"seq":7,"all":true}"#), Some(7));
        assert_eq!(logged_seq(r#"{"products":[1]}"#), None);
        assert_eq!(logged_seq(r#"{"seq":"x"}"#), None);
        assert_eq!(logged_seq(r#"{"seq":12"#), None);
    }

    #[test]
    fn a_notice_received_after_its_catch_up_is_not_applied_twice() {
        let mut position = LogPosition::default();
        let notice = Notice::Everything;
        assert!(position.received(5, &notice));
        assert!(!position.received(5, &notice));
        assert!(position.received(6, &notice));
    }
}
