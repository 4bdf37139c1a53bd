//! Cache invalidation from materialize's NOTIFY messages, over a dedicated LISTEN
//! connection to the primary that reconnects by itself.
//!
//! Documents may be read from a streaming replica, which replays the primary's WAL with
//! some lag; dropping entries before it has replayed a change would let the next miss
//! cache the old document again. So each invalidation first notes the primary's WAL
//! position and waits, bounded, until the read side has replayed up to it. Notifications
//! that arrive together (a follower sends one or more per batch, many per second) share
//! one such wait, over a connection to the read side kept between invalidations.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::Client;

use super::AppState;
use super::catch_up::{LogPosition, logged_seq};
use crate::db::connection::{Listening, open, open_listening, reconnecting};
use crate::documents::{self, Notice};
use crate::error::database_message;

/// How the LISTEN connection names itself in `pg_stat_activity`.
pub const LISTEN_APPLICATION_NAME: &str = "atelier serve listen";
/// How often an idle LISTEN connection is checked, so a silently dead one is replaced,
/// and its place in the notice log moved on.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// How the connection that watches the read side's replay names itself.
pub const REPLAY_APPLICATION_NAME: &str = "atelier serve replay";
/// How long an invalidation waits at most for the read side to replay a change; past
/// it, entries are dropped anyway and the cache TTL bounds any staleness.
const REPLAY_WAIT: Duration = Duration::from_secs(15);
/// Pause between two looks at the read side's replay position.
const REPLAY_POLL: Duration = Duration::from_millis(20);

/// Listens for document changes until the task is aborted, invalidating `state`'s
/// cache for each one. Every (re)connection starts by catching up on what was announced
/// while nobody listened ([`catch_up`](super::catch_up)).
pub async fn listen_for_changes(state: Arc<AppState>) {
    let position = tokio::sync::Mutex::new(LogPosition::default());
    // The log names the cause with its SQLSTATE.
    let session = || async {
        listen(&state, &mut *position.lock().await)
            .await
            .map_err(|error| database_message(&error))
    };
    reconnecting(&state.listening, std::future::pending(), session).await;
}

/// One LISTEN session: returns when its connection is lost.
async fn listen(state: &AppState, position: &mut LogPosition) -> Result<(), tokio_postgres::Error> {
    let mut config = state.primary.clone();
    config.application_name(LISTEN_APPLICATION_NAME);
    let (sender, mut notifications) = mpsc::unbounded_channel();
    let Listening { client, driver } = open_listening(&config, move |notification| {
        sender.send(notification).is_ok()
    })
    .await?;
    let mut replay = None;
    let outcome = async {
        client
            .batch_execute(&format!("LISTEN {}", documents::CHANNEL))
            .await?;
        catch_up(state, &client, &mut replay, position, true).await?;
        state.listening.works();
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.reset();
        loop {
            tokio::select! {
                notification = notifications.recv() => match notification {
                    Some(notification) => {
                        let mut notices = Vec::new();
                        let mut next = Some(notification);
                        while let Some(notification) = next {
                            let payload = notification.payload();
                            let notice = Notice::parse(payload);
                            let new = logged_seq(payload)
                                .is_none_or(|seq| position.received(seq, &notice));
                            if new {
                                notices.push(notice);
                            }
                            next = notifications.try_recv().ok();
                        }
                        if !notices.is_empty() {
                            invalidate(state, &client, &mut replay, notices).await?;
                        }
                    }
                    // The connection closed: its driver says why.
                    None => return Ok(true),
                },
                _ = heartbeat.tick() => {
                    let step = catch_up(state, &client, &mut replay, position, false);
                    // The step may wait for the read side's replay of what it found.
                    match tokio::time::timeout(HEARTBEAT + REPLAY_WAIT, step).await {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => return Err(error),
                        Err(_) => return Ok(false),
                    }
                }
            }
        }
    }
    .await;
    match outcome {
        Ok(true) => driver.await.unwrap_or(Ok(())),
        Ok(false) => {
            driver.abort();
            tracing::warn!("the database LISTEN connection stopped answering");
            Ok(())
        }
        Err(error) => {
            driver.abort();
            Err(error)
        }
    }
}

/// One step through the notice log: drops what was announced and not received since
/// the last step, then moves the position on.
async fn catch_up(
    state: &AppState,
    primary: &Client,
    replay: &mut Option<Client>,
    position: &mut LogPosition,
    beginning: bool,
) -> Result<(), tokio_postgres::Error> {
    let mut step = position
        .step(primary, state.missed_changes, beginning)
        .await?;
    let notices = std::mem::take(&mut step.notices);
    if !notices.is_empty() {
        invalidate(state, primary, replay, notices).await?;
    }
    position.advance(step, &state.reconnections);
    Ok(())
}

/// Drops what `notices` name from the cache once the read side has replayed everything
/// the primary (reached through `primary`, the LISTEN connection) had written by now.
/// `replay` is the connection to the read side, opened when missing or broken.
async fn invalidate(
    state: &AppState,
    primary: &Client,
    replay: &mut Option<Client>,
    notices: Vec<Notice>,
) -> Result<(), tokio_postgres::Error> {
    // The insert position, not the write position: with synchronous_commit off, the
    // commit that preceded the notification may not be written out yet.
    const POSITION_SQL: &str = "SELECT pg_current_wal_insert_lsn()::text";
    let position: String = primary.query_one(POSITION_SQL, &[]).await?.get(0);
    let position = replay_target(&position);
    match tokio::time::timeout(REPLAY_WAIT, wait_for_replay(state, replay, &position)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            *replay = None;
            let error = database_message(&error);
            tracing::warn!(%error, "cannot check the read side's replay; invalidating now");
        }
        Err(_) => {
            *replay = None;
            tracing::warn!(
                %position,
                "the read side has not replayed the change within {REPLAY_WAIT:?}; invalidating now"
            );
        }
    }
    if notices.contains(&Notice::Everything) {
        state.cache.invalidate(&Notice::Everything).await;
    } else {
        for notice in &notices {
            state.cache.invalidate(notice).await;
        }
    }
    Ok(())
}

/// Returns once the database documents are read from has replayed the primary's WAL up
/// to `position`; at once when it is a primary itself.
async fn wait_for_replay(
    state: &AppState,
    replay: &mut Option<Client>,
    position: &str,
) -> Result<(), tokio_postgres::Error> {
    // A primary that once replayed WAL (after crash recovery, or a standby promoted)
    // still reports where that replay ended: only a server in recovery is behind.
    const REPLAYED_SQL: &str = "SELECT NOT pg_is_in_recovery() \
                                OR coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false)";
    if replay.as_ref().is_none_or(Client::is_closed) {
        // A connection of its own lands on the host a new pooled connection would.
        let mut config = state.database.clone();
        config.application_name(REPLAY_APPLICATION_NAME);
        *replay = Some(open(&config).await?);
    }
    let client = replay.as_ref().expect("connected above");
    loop {
        let replayed: bool = client.query_one(REPLAYED_SQL, &[&position]).await?.get(0);
        if replayed {
            return Ok(());
        }
        tokio::time::sleep(REPLAY_POLL).await;
    }
}

/// The replay position that covers everything written before the insert position
/// `position` (PostgreSQL's `X/Y` text). Right after a page boundary the insert position
/// points past the new page's header, while a replica that has replayed everything
/// reports the end of the last record: the boundary itself, so that is the target then.
fn replay_target(position: &str) -> String {
    /// Sizes of the short and the long (first in a segment) WAL page header.
    const PAGE_HEADERS: [u64; 2] = [24, 40];
    const PAGE: u64 = 8192;
    let parsed = position.split_once('/').and_then(|(high, low)| {
        Some((u64::from_str_radix(high, 16).ok()? << 32) | u64::from_str_radix(low, 16).ok()?)
    });
    match parsed {
        Some(lsn) if PAGE_HEADERS.contains(&(lsn % PAGE)) => {
            let boundary = lsn - lsn % PAGE;
            format!("{:X}/{:X}", boundary >> 32, boundary & 0xFFFF_FFFF)
        }
        _ => position.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_targets_step_back_over_a_page_header() {
        assert_eq!(replay_target("0/150156F8"), "0/150156F8");
        assert_eq!(replay_target("0/15016018"), "0/15016000");
        assert_eq!(replay_target("1/16000028"), "1/16000000");
        assert_eq!(replay_target("0/15016020"), "0/15016020");
        assert_eq!(replay_target("0/0"), "0/0");
        assert_eq!(replay_target("not a position"), "not a position");
    }
}
