//! The signals that stop a long-running command (`serve`, `materialize --follow`).

use std::future::Future;

use crate::{Error, Result};

/// Installs the SIGTERM and SIGINT handlers at once, so that a signal sent as soon as
/// the command says it runs is not fatal; the future completes on the first of them.
pub fn signal() -> Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let install = |kind| {
        signal(kind).map_err(|source| Error::Io {
            context: "install a signal handler".into(),
            source,
        })
    };
    let mut terminate = install(SignalKind::terminate())?;
    let mut interrupt = install(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
