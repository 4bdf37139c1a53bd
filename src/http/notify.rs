//! Cache invalidation from materialize's NOTIFY messages, over a dedicated LISTEN
//! connection that reconnects by itself.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use super::AppState;
use crate::materialize::{NOTIFY_CHANNEL, Scope};

/// How the LISTEN connection names itself in `pg_stat_activity`.
pub const LISTEN_APPLICATION_NAME: &str = "atelier serve listen";
/// Pause between attempts to reach the database.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// How often an idle LISTEN connection is checked, so a silently dead one is replaced.
const HEARTBEAT: Duration = Duration::from_secs(10);

/// Listens for document changes until the task is aborted, invalidating `state`'s
/// cache for each one. Every (re)connection starts by dropping the whole cache, since
/// notifications sent while nobody listened are lost.
pub async fn listen_for_changes(state: Arc<AppState>) {
    loop {
        let outcome = listen(&state).await;
        let was_listening = state.listening.swap(false, Ordering::SeqCst);
        match outcome {
            Err(error) if was_listening => {
                tracing::warn!(%error, "lost the database LISTEN connection; reconnecting");
            }
            Ok(()) if was_listening => {
                tracing::warn!("the database LISTEN connection ended; reconnecting");
            }
            // Failed attempts while the database stays down are not news.
            Err(error) => tracing::debug!(%error, "cannot LISTEN yet"),
            Ok(()) => {}
        }
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

/// How a LISTEN session's connection ended.
enum Ended {
    /// The connection closed (its driver knows why).
    Closed,
    /// The connection stopped answering heartbeats.
    Unresponsive,
}

/// One LISTEN session: returns when its connection is lost.
async fn listen(state: &AppState) -> Result<(), tokio_postgres::Error> {
    let mut config = state.database.clone();
    config.application_name(LISTEN_APPLICATION_NAME);
    let (client, mut connection) = config.connect(NoTls).await?;
    let (sender, mut notifications) = mpsc::unbounded_channel();
    // The connection must be polled for notifications to arrive; the task ends, and
    // closes the channel, when the connection does.
    let driver = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let AsyncMessage::Notification(notification) = message?
                && sender.send(notification).is_err()
            {
                break;
            }
        }
        Ok::<(), tokio_postgres::Error>(())
    });
    let outcome = async {
        client
            .batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}"))
            .await?;
        state.cache.invalidate(&Scope::All).await;
        state.listening.store(true, Ordering::SeqCst);
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        loop {
            tokio::select! {
                notification = notifications.recv() => match notification {
                    Some(notification) => {
                        state.cache.invalidate(&parse_payload(notification.payload())).await;
                    }
                    None => return Ok(Ended::Closed),
                },
                _ = heartbeat.tick() => {
                    match tokio::time::timeout(HEARTBEAT, client.simple_query("")).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(error)) => return Err(error),
                        Err(_) => return Ok(Ended::Unresponsive),
                    }
                }
            }
        }
    }
    .await;
    // When the connection ended by itself, its driver says why.
    match outcome {
        Ok(Ended::Closed) => driver.await.unwrap_or(Ok(())),
        Ok(Ended::Unresponsive) => {
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

/// What a notification says changed: `{"products":[1,2,3]}` names products; anything
/// else, `{"all":true}` included, is taken to mean everything.
pub fn parse_payload(payload: &str) -> Scope {
    let value: serde_json::Value = serde_json::from_str(payload).unwrap_or_default();
    let ids = value
        .get("products")
        .and_then(|ids| ids.as_array())
        .and_then(|ids| {
            ids.iter()
                .map(|id| id.as_i64().and_then(|id| i32::try_from(id).ok()))
                .collect::<Option<Vec<i32>>>()
        });
    match ids {
        Some(ids) => Scope::Products(ids),
        None => Scope::All,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_products_or_everything() {
        assert_eq!(
            parse_payload(r#"{"products":[1,2,3]}"#),
            Scope::Products(vec![1, 2, 3])
        );
        assert_eq!(parse_payload(r#"{"products":[]}"#), Scope::Products(vec![]));
        assert_eq!(parse_payload(r#"{"all":true}"#), Scope::All);
        assert_eq!(parse_payload("garbage"), Scope::All);
        assert_eq!(parse_payload(r#"{"products":["x"]}"#), Scope::All);
        assert_eq!(parse_payload(r#"{"products":[99999999999]}"#), Scope::All);
    }
}
