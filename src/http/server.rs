//! The connection loop: accepts clients up to a limit, serves each over HTTP/1.1 with
//! keep-alive and a header-read timeout, and on shutdown stops accepting, closes idle
//! connections at once and lets in-flight requests finish within a bounded drain.
//!
//! What hostile clients get: a request head that does not parse (a bad request line,
//! TLS bytes, broken header syntax, a bad `Content-Length` or `Transfer-Encoding`) is
//! answered `400` and the connection is closed; a target over [`MAX_HEAD_BYTES`] gets
//! `414`, a longer head or one with more than 100 header fields `431`, each with the
//! JSON body of every error ([`head`](super::head)); HTTP/2 bytes are not answered; a head not
//! complete within the header timeout (slowloris), or a keep-alive
//! connection idle that long, is closed without an answer (within a quarter timeout
//! more: [`Timeouts`]), and so is a client that stops reading its answers for that long
//! (a stalled write). No endpoint reads a
//! request body: one that has fully arrived with its head is discarded, otherwise the
//! connection is closed after the answer, so a body never desynchronizes a connection.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::{HttpService, service_fn};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use super::head::{JsonAnswers, MAX_HEADER_FIELDS, READ_LIMIT};
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
    let drain = Arc::new(Notify::new());
    let in_flight = InFlightCount::default();
    // Held so that connections still open when the drain times out can be cut off.
    let mut tasks = JoinSet::new();
    let mut http = http1::Builder::new();
    // No timer for hyper: the head deadline is kept by `Timeouts`, more cheaply.
    http.max_header_size(READ_LIMIT)
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
        let activity = Arc::new(Activity::default());
        let (watched, drain_notice) = (state.clone(), drain.clone());
        let state = state.clone();
        let in_flight = in_flight.clone();
        let heads = activity.clone();
        let service = service_fn(move |request| {
            let state = state.clone();
            let counted = in_flight.enter();
            let answering = Answering::begin(&heads);
            // Off by default, when it costs this one test.
            let logged = limits
                .access_log
                .then(|| access_log::Entry::start(&request));
            // Read here, not in the future: the request is let go before hyper reads
            // the connection's next bytes into the buffer it points into.
            let asked = router::read(&state, request);
            async move {
                let response = router::respond(&state, asked).await;
                if let Some(entry) = logged {
                    entry.finish(&response);
                }
                drop(answering);
                drop(counted);
                Ok::<_, Infallible>(response)
            }
        });
        let stream = JsonAnswers::new(Timeouts::new(stream, limits.header_timeout, activity));
        let connection = http.serve_connection(TokioIo::new(stream), service);
        tasks.spawn(async move {
            if let Err(error) = until_drained(connection, watched, drain_notice).await {
                tracing::debug!(%error, "client connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    state.draining.store(true, Ordering::SeqCst);
    drain.notify_waiters();
    // Idle connections close at once; those with a request in flight close after it.
    let stopping = Instant::now();
    let draining = in_flight.count();
    tracing::info!(
        in_flight = draining,
        "shutting down: no new connections; draining requests in flight"
    );
    let drained = tokio::time::timeout(limits.drain_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
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
    // Awaited, so that the listener cannot log after the server says it stopped: an
    // abort does not stop a poll already running on another worker.
    invalidation.abort();
    let _ = invalidation.await;
    tracing::info!(
        drained = draining.saturating_sub(cut_off),
        elapsed = ?stopping.elapsed(),
        "server stopped"
    );
    Ok(())
}

/// Serves one connection until it ends; once the server is draining (`state.draining`
/// set, then `drain` notified), it finishes the request in flight, if any, and closes.
///
/// hyper-util's `GracefulShutdown` polls its watch on every poll of the connection,
/// some 220 instructions a request; here the notification is polled once, so that it
/// wakes the task, and after that only when the flag says a drain has begun.
async fn until_drained<C, S>(
    connection: http1::Connection<C, S>,
    state: Arc<AppState>,
    drain: Arc<Notify>,
) -> std::result::Result<(), hyper::Error>
where
    C: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
    S: HttpService<Incoming, ResBody = Full<Bytes>>,
{
    let draining = &state.draining;
    let notified = drain.notified();
    tokio::pin!(notified, connection);
    let mut watching = false;
    let mut closing = false;
    std::future::poll_fn(|cx| {
        if !closing && (!watching || draining.load(Ordering::SeqCst)) {
            watching = true;
            if notified.as_mut().poll(cx).is_ready() || draining.load(Ordering::SeqCst) {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
        connection.as_mut().poll(cx)
    })
    .await
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

/// What a connection's requests are doing, for its head deadline: heads taken and
/// answers finished, each written only by the connection's own task.
#[derive(Debug, Default)]
struct Activity {
    heads: AtomicU64,
    answered: AtomicU64,
}

impl Activity {
    /// Whether a request is being answered, and how many heads have come.
    fn now(&self) -> (bool, u64) {
        let heads = self.heads.load(Ordering::Relaxed);
        (heads != self.answered.load(Ordering::Relaxed), heads)
    }
}

/// One request being answered: counted from its head until its answer is made.
struct Answering(Arc<Activity>);

impl Answering {
    fn begin(activity: &Arc<Activity>) -> Answering {
        let heads = &activity.heads;
        heads.store(heads.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        Answering(activity.clone())
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        let answered = &self.0.answered;
        answered.store(answered.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

/// Looks at a waiting connection per header timeout: it is closed on the look that
/// finds it [`LOOKS`] looks in a row with no new head and no request being answered,
/// so between 1 and 1 + 1/`LOOKS` timeouts after it fell quiet.
const LOOKS: u32 = 4;

/// A client connection held to the header timeout: one whose writes make no progress
/// for that long fails (a client that stops reading its answers cannot hold a
/// connection, and its slot under the connection limit, forever), and one that sends
/// no complete request head for that long while nothing is being answered is closed
/// (a slowloris, or an idle keep-alive connection).
///
/// hyper can keep the head deadline itself, but it makes, polls and drops a timer
/// (`Sleep`) for every request, about 500 instructions of a cached answer. Here one
/// timer per connection looks every quarter of the timeout at what its requests did
/// ([`Activity`]), so a request costs two counter updates.
struct Timeouts {
    stream: TcpStream,
    limit: Duration,
    /// Runs while a write waits for the client to make room.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
    activity: Arc<Activity>,
    /// The timer of the next look at the connection's activity, once a read waited.
    look: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Heads seen at the last look, and looks in a row that found nothing new.
    heads_seen: u64,
    quiet_looks: u32,
}

impl Timeouts {
    fn new(stream: TcpStream, limit: Duration, activity: Arc<Activity>) -> Self {
        Timeouts {
            stream,
            limit,
            stalled: None,
            activity,
            look: None,
            heads_seen: 0,
            quiet_looks: 0,
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

    /// A read is waiting for the client: keeps the look timer running (it wakes this
    /// task) and, when it has run out, looks; an error when the connection is to close.
    fn waiting(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let period = self.limit / LOOKS;
        let look = match &mut self.look {
            Some(look) if !look.is_elapsed() => return Poll::Pending,
            Some(look) => look,
            None => self.look.insert(Box::pin(tokio::time::sleep(period))),
        };
        if look.is_elapsed() {
            let (answering, heads) = self.activity.now();
            if answering || heads != self.heads_seen {
                self.heads_seen = heads;
                self.quiet_looks = 0;
            } else {
                self.quiet_looks += 1;
                if self.quiet_looks >= LOOKS {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no request head within the header timeout",
                    )));
                }
            }
            look.as_mut().reset(tokio::time::Instant::now() + period);
        }
        // Registers this task's waker with the timer; it fires before the next look.
        match look.as_mut().poll(cx) {
            Poll::Ready(()) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Timeouts {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Pending => this.waiting(cx),
            ready => ready,
        }
    }
}

impl AsyncWrite for Timeouts {
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
