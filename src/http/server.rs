//! The connection loop: accepts clients up to a limit, serves each over HTTP/1.1 with
//! keep-alive and a header-read timeout, and on shutdown stops accepting and lets
//! in-flight requests finish within a bounded drain.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{AppState, notify, router};
use crate::Result;

/// Pause after a failed accept (e.g. out of file descriptors) before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `listener` until `shutdown` completes, then drains. Also keeps the cache in
/// step with the database's change notifications while it runs.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let invalidation = tokio::spawn(notify::listen_for_changes(state.clone()));
    let limits = state.limits;
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    // Held so that connections still open when the drain times out can be cut off.
    let mut tasks = JoinSet::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        // Holding a permit before accepting leaves excess clients in the backlog.
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => {
                permit.expect("the connection semaphore is never closed")
            }
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        while tasks.try_join_next().is_some() {}
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let service = service_fn(move |request| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(router::handle(&state, request).await) }
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tasks.spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "client connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    state.draining.store(true, Ordering::SeqCst);
    tracing::info!("shutting down: draining in-flight requests");
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "drain took longer than {:?}; closing the remaining connections",
            limits.drain_timeout
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    invalidation.abort();
    Ok(())
}
