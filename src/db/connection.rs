//! Opening connections and keeping them: every connection's I/O runs on a task of its
//! own; a connection that LISTENs hands its notifications to a callback; a component
//! that must stay connected (a follower, a server's LISTEN) reconnects in one loop that
//! logs an outage once, when it starts and when it ends, rather than at every attempt.

use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls, Notification};

use crate::error::database_message;

/// Pause between attempts to reach the database.
pub const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Opens one connection; its I/O runs on a spawned task until the client is dropped.
pub async fn open(config: &Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(error = %database_message(&error), "database connection ended");
        }
    });
    Ok(client)
}

/// A connection whose notifications go to a callback.
pub struct Listening {
    pub client: Client,
    /// The task polling the connection: it ends when the connection does (with the
    /// reason) or when the callback returns false.
    pub driver: JoinHandle<Result<(), tokio_postgres::Error>>,
}

/// Opens one connection and polls it on a spawned task, handing every notification it
/// receives to `on_notification`, which returns whether to go on. The caller still
/// issues the LISTEN.
pub async fn open_listening(
    config: &Config,
    mut on_notification: impl FnMut(Notification) -> bool + Send + 'static,
) -> Result<Listening, tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let driver = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let AsyncMessage::Notification(notification) = message?
                && !on_notification(notification)
            {
                break;
            }
        }
        Ok(())
    });
    Ok(Listening { client, driver })
}

/// Runs `session` again and again, [`RECONNECT_DELAY`] apart, until `stop` completes;
/// a session returns only when its connection failed or ended. Each end is reported to
/// `outage`, and the session reports to it when it works ([`Outage::works`]).
pub async fn reconnecting<F, S, E>(outage: &Outage, stop: impl Future<Output = ()>, mut session: F)
where
    F: FnMut() -> S,
    S: Future<Output = Result<(), E>>,
    E: Display,
{
    tokio::pin!(stop);
    loop {
        let outcome = tokio::select! {
            outcome = session() => outcome,
            () = &mut stop => return,
        };
        match outcome {
            Err(error) => outage.failed(&error),
            Ok(()) => outage.failed(&"the connection ended"),
        }
        tokio::select! {
            () = tokio::time::sleep(RECONNECT_DELAY) => {}
            () = &mut stop => return,
        }
    }
}

/// Whether something that needs the database works, logged once per change: a warning
/// when it stops working, a line when it works again, and nothing for each failed
/// attempt in between (they go to the debug log).
#[derive(Debug)]
pub struct Outage {
    /// What the log says when it stops working.
    failing: &'static str,
    /// What the log says when it works again.
    again: &'static str,
    state: AtomicU8,
}

/// Nothing has worked yet: a failure then is not news (the database may be starting).
const NEVER_WORKED: u8 = 0;
const WORKS: u8 = 1;
const FAILING: u8 = 2;

impl Outage {
    /// Starts as working: its first failure is logged.
    pub fn new(failing: &'static str, again: &'static str) -> Outage {
        Outage {
            failing,
            again,
            state: AtomicU8::new(WORKS),
        }
    }

    /// Starts as never having worked: failures are logged once it has worked.
    pub fn not_yet_working(failing: &'static str, again: &'static str) -> Outage {
        Outage {
            state: AtomicU8::new(NEVER_WORKED),
            ..Outage::new(failing, again)
        }
    }

    /// Notes a failure; logs it when it ends a time of working.
    pub fn failed(&self, error: &dyn Display) {
        match self.state.swap(FAILING, Ordering::SeqCst) {
            WORKS => tracing::warn!(%error, "{}", self.failing),
            _ => tracing::debug!(%error, "{}", self.failing),
        }
    }

    /// Notes that it works; logs it when that ends an outage.
    pub fn works(&self) {
        if self.state.swap(WORKS, Ordering::SeqCst) == FAILING {
            tracing::info!("{}", self.again);
        }
    }

    /// Whether it worked last.
    pub fn is_working(&self) -> bool {
        self.state.load(Ordering::SeqCst) == WORKS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_news_only_after_working() {
        let outage = Outage::not_yet_working("down", "up");
        assert!(!outage.is_working());
        outage.failed(&"refused");
        assert!(!outage.is_working());
        outage.works();
        assert!(outage.is_working());
        outage.failed(&"reset");
        assert!(!outage.is_working());
        assert!(Outage::new("down", "up").is_working());
    }
}
