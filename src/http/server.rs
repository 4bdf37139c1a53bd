//! The connection loop: accepts clients up to a limit, serves each over HTTP/1.1 with
//! keep-alive and a header-read timeout, and on shutdown stops accepting, closes idle
//! connections at once and lets in-flight requests finish within a bounded drain.
//!
//! What hostile clients get: a request head that does not parse (a bad request line,
//! TLS bytes, broken header syntax, a bad `Content-Length` or `Transfer-Encoding`) is
//! answered `400` and the connection is closed; a target over [`MAX_HEAD_BYTES`] gets
//! `414`, a longer head or one with more than 100 header fields `431`, each with the
//! JSON body of every error ([`head`]); HTTP/2 bytes are not answered; a head not
//! complete within the header timeout (slowloris), or a keep-alive
//! connection idle that long, is closed without an answer, and so is a client that
//! stops reading its answers for that long (a stalled write). No endpoint reads a
//! request body: one that has fully arrived with its head is discarded, otherwise the
//! connection is closed after the answer, so a body never desynchronizes a connection.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::head::{self, JsonAnswers, MAX_HEADER_FIELDS, READ_LIMIT};
use super::{AppState, access_log, notify, router};
use crate::Result;
use crate::in_flight::InFlightCount;

pub use super::head::MAX_HEAD_BYTES;

/// Connections the kernel queues until they are accepted (capped by
/// `net.core.somaxconn`). Listeners are usually bound with a backlog of 128: a burst of
/// more connects than that, such as a flood of idle clients, gets SYNs dropped, and
/// every client caught in it, normal ones included, waits a second for the retry.
const LISTEN_BACKLOG: libc::c_int = 4096;

/// Pause after a failed accept (e.g. out of file descriptors) before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `listener` until `shutdown` completes, then drains. Also keeps the cache in
/// step with the database's change notifications while it runs.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    widen_backlog(&listener);
    let invalidation = tokio::spawn(notify::listen_for_changes(state.clone()));
    let limits = state.limits;
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let in_flight = InFlightCount::default();
    // Held so that connections still open when the drain times out can be cut off.
    let mut tasks = JoinSet::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(READ_LIMIT)
        .max_headers(MAX_HEADER_FIELDS)
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
        let in_flight = in_flight.clone();
        let service = service_fn(move |request| {
            let state = state.clone();
            let counted = in_flight.enter();
            async move {
                // Off by default, when it costs this one test.
                let logged = limits
                    .access_log
                    .then(|| access_log::Entry::start(&request));
                let response = match head::check(&request) {
                    Some(error) => error.into_response(),
                    None => router::handle(&state, request).await,
                };
                if let Some(entry) = logged {
                    entry.finish(&response);
                }
                drop(counted);
                Ok::<_, Infallible>(response)
            }
        });
        let stream = JsonAnswers::new(StallLimit::new(stream, limits.header_timeout));
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
    // Idle connections close at once; those with a request in flight close after it.
    let stopping = Instant::now();
    let draining = in_flight.count();
    tracing::info!(
        in_flight = draining,
        "shutting down: no new connections; draining requests in flight"
    );
    let drained = tokio::time::timeout(limits.drain_timeout, graceful.shutdown()).await;
    let cut_off = match drained {
        Ok(()) => 0,
        Err(_) => {
            let cut_off = in_flight.count();
            tracing::warn!(
                cut_off,
                "drain took longer than {:?}; closing the remaining connections",
                limits.drain_timeout
            );
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            cut_off
        }
    };
    invalidation.abort();
    tracing::info!(
        drained = draining.saturating_sub(cut_off),
        elapsed = ?stopping.elapsed(),
        "server stopped"
    );
    Ok(())
}

/// Raises the listener's backlog to [`LISTEN_BACKLOG`]; a listening socket takes a new
/// backlog from a second `listen`.
fn widen_backlog(listener: &TcpListener) {
    use std::os::fd::AsRawFd;
    // SAFETY: listen(2) on a descriptor the borrowed listener keeps open.
    if unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
        let error = std::io::Error::last_os_error();
        tracing::warn!(%error, "cannot raise the listen backlog");
    }
}

/// A client connection whose writes fail once they have made no progress for `limit`:
/// a client that stops reading its answers cannot hold a connection, and its slot under
/// the connection limit, forever.
struct StallLimit {
    stream: TcpStream,
    limit: Duration,
    /// Runs while a write waits for the client to make room.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl StallLimit {
    fn new(stream: TcpStream, limit: Duration) -> Self {
        StallLimit {
            stream,
            limit,
            stalled: None,
        }
    }

    /// Passes on a write's outcome, turning a wait longer than the limit into an error.
    fn limit<T>(
        &mut self,
        cx: &mut Context<'_>,
        outcome: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if outcome.is_ready() {
            self.stalled = None;
            return outcome;
        }
        let limit = self.limit;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for StallLimit {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallLimit {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.limit(cx, outcome)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.limit(cx, outcome)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.stream).poll_flush(cx);
        this.limit(cx, outcome)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
