//! Request heads the service does not take, each answered with the JSON error every
//! other error is: a target (path and query) that alone is over [`MAX_HEAD_BYTES`] gets
//! `414`, a head over it or with over [`MAX_HEADER_FIELDS`] fields `431`, and a head
//! that does not parse `400`; then the connection is closed.
//!
//! hyper reads a head into a buffer bounded by [`READ_LIMIT`], above our own limit so
//! that a head a little over it still arrives whole and [`check`] can tell a long
//! target (414) from long headers (431). What hyper cannot take at all (a head not
//! complete within the bound, too many fields, bytes that do not parse) it answers
//! itself, with an empty body; [`JsonAnswers`] rewrites those answers as they are
//! written, judging only writes that begin an answer (not the rest of one a client
//! took only part of).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use hyper::{Request, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::error::HttpError;

/// Largest request head (request line and header fields) taken; it bounds what a
/// slow or idle client can make the server hold, far above any URL the API has.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Header fields a request may have at most (hyper's limit, answered `431`).
pub const MAX_HEADER_FIELDS: usize = 100;

/// Bytes hyper buffers at most for one head; a head still incomplete there is
/// answered `431` unread. Twice our limit: a long target then still arrives whole, to
/// be answered `414`, while a client holds at most this much of the server's memory.
pub const READ_LIMIT: usize = 2 * MAX_HEAD_BYTES;

/// The error of a head hyper took that breaks our limits, if it does. The head's size
/// is counted from its parts, as the client wrote them save for optional spaces;
/// `field_bytes` is its header fields' share ([`RequestFields::bytes`]).
///
/// [`RequestFields::bytes`]: super::fields::RequestFields
pub fn check<B>(request: &Request<B>, field_bytes: usize) -> Option<HttpError> {
    let uri = request.uri();
    let target = uri
        .path_and_query()
        .map_or(0, |target| target.as_str().len())
        + uri
            .authority()
            .map_or(0, |authority| authority.as_str().len());
    if target > MAX_HEAD_BYTES {
        return Some(HttpError::UriTooLong);
    }
    // `METHOD TARGET HTTP/1.1\r\n`, then the fields, then `\r\n`.
    let head = request.method().as_str().len() + target + 12 + field_bytes + 2;
    (head > MAX_HEAD_BYTES).then_some(HttpError::HeadTooLarge)
}

/// A client connection whose bare error answers from hyper (a head it could not take)
/// go out as our JSON errors instead. Every answer the router makes has a
/// `content-type`; hyper's own have none, which is how they are told apart.
pub struct JsonAnswers<T> {
    inner: T,
    /// The answer being written in place of hyper's, how much of it is written, and
    /// the length of hyper's bytes it stands for.
    replacing: Option<(Bytes, usize, usize)>,
    /// Whether the last write took only part of what it was offered: the next one then
    /// goes on with the same answer, and its first bytes are not the start of one.
    continuing: bool,
}

impl<T> JsonAnswers<T> {
    pub fn new(inner: T) -> Self {
        JsonAnswers {
            inner,
            replacing: None,
            continuing: false,
        }
    }
}

/// The JSON error standing for hyper's answer `buf`, if `buf` is one: a whole `4xx`
/// response head with no `content-type`.
fn replacement(buf: &[u8]) -> Option<Bytes> {
    let status = buf.strip_prefix(b"HTTP/1.1 4")?;
    let end = memchr::memmem::find(buf, b"\r\n\r\n")?;
    // hyper writes header names in lower case.
    if memchr::memmem::find(&buf[..end], b"\r\ncontent-type:").is_some() {
        return None;
    }
    let error = match StatusCode::from_bytes(&[&b"4"[..], status.get(..2)?].concat()).ok()? {
        StatusCode::BAD_REQUEST => HttpError::Malformed,
        StatusCode::URI_TOO_LONG => HttpError::UriTooLong,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => HttpError::HeadTooLarge,
        _ => return None,
    };
    Some(answer(error))
}

/// `error` as the bytes of a whole HTTP/1.1 response.
fn answer(error: HttpError) -> Bytes {
    let body = error.body();
    let response = error.into_response();
    let status = response.status();
    let mut bytes = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or_default()
    )
    .into_bytes();
    for (name, value) in response.headers() {
        bytes.extend_from_slice(name.as_str().as_bytes());
        bytes.extend_from_slice(b": ");
        bytes.extend_from_slice(value.as_bytes());
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    bytes.extend_from_slice(&body);
    Bytes::from(bytes)
}

impl<T: AsyncWrite + Unpin> JsonAnswers<T> {
    /// Writes `buf`, or the JSON answer standing for it, reporting `buf` written only
    /// once all of its stand-in is.
    fn write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.replacing.is_none() {
            match (!self.continuing).then(|| replacement(buf)).flatten() {
                Some(answer) => self.replacing = Some((answer, 0, buf.len())),
                None => {
                    let written = ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
                    self.continuing = written < buf.len();
                    return Poll::Ready(Ok(written));
                }
            }
        }
        let (answer, written, stands_for) = self.replacing.as_mut().expect("set above");
        while *written < answer.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &answer[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        let stands_for = *stands_for;
        self.replacing = None;
        Poll::Ready(Ok(stands_for))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonAnswers<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonAnswers<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // hyper's answer is a head of its own, so a buffer of its own.
        match bufs.iter().find(|buf| !buf.is_empty()) {
            Some(first)
                if this.replacing.is_some()
                    || (!this.continuing && replacement(first).is_some()) =>
            {
                this.write(cx, first)
            }
            _ => {
                let written = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
                this.continuing = written < bufs.iter().map(|buf| buf.len()).sum();
                Poll::Ready(Ok(written))
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(target: &str, fields: &[(&str, String)]) -> Request<()> {
        let mut builder = Request::builder().uri(target);
        for (name, value) in fields {
            builder = builder.header(*name, value);
        }
        builder.body(()).unwrap()
    }

    fn check(request: &Request<()>) -> Option<HttpError> {
        let fields = super::super::fields::RequestFields::of(request.headers());
        super::check(request, fields.bytes)
    }

    #[test]
    fn a_long_target_is_414_and_long_fields_431() {
        assert_eq!(check(&request("/products/1", &[])), None);
        let long = format!("/products/1?q={}", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(check(&request(&long, &[])), Some(HttpError::UriTooLong));
        let within = format!("/products/1?q={}", "a".repeat(MAX_HEAD_BYTES - 100));
        assert_eq!(check(&request(&within, &[])), None);
        let big = [("x-big", "b".repeat(MAX_HEAD_BYTES))];
        assert_eq!(
            check(&request("/products/1", &big)),
            Some(HttpError::HeadTooLarge)
        );
        // Neither alone is over the limit; together they are.
        let half = [("x-half", "b".repeat(MAX_HEAD_BYTES / 2))];
        let other_half = format!("/products/1?q={}", "a".repeat(MAX_HEAD_BYTES / 2));
        assert_eq!(
            check(&request(&other_half, &half)),
            Some(HttpError::HeadTooLarge)
        );
    }

    /// A client socket that takes at most `max` bytes a write.
    struct Trickle {
        out: Vec<u8>,
        max: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            let n = buf.len().min(this.max);
            this.out.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn the_rest_of_a_partly_written_answer_is_never_replaced() {
        use tokio::io::AsyncWriteExt;
        // A body that happens to hold what looks like one of hyper's bare answers.
        let lookalike = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        let mut answer = b"HTTP/1.1 200 OK\r\ncontent-length: 54\r\n\r\n".to_vec();
        let split = answer.len() + 4;
        answer.extend_from_slice(b"abcd");
        answer.extend_from_slice(lookalike);
        let mut client = JsonAnswers::new(Trickle {
            out: Vec::new(),
            max: split,
        });
        let first = AsyncWriteExt::write(&mut client, &answer).await.unwrap();
        assert_eq!(first, split);
        client.inner.max = usize::MAX;
        // What is left starts like a bare 400, but it is the rest of the answer.
        let rest = AsyncWriteExt::write(&mut client, &answer[first..])
            .await
            .unwrap();
        assert_eq!(rest, lookalike.len());
        assert_eq!(client.inner.out, answer);
        // The next write begins an answer again, and hyper's bare one is replaced.
        AsyncWriteExt::write(&mut client, lookalike).await.unwrap();
        assert!(client.inner.out.len() > answer.len() + lookalike.len());
    }

    #[test]
    fn only_hyper_s_bare_error_heads_are_replaced() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\n\
                     content-length: 0\r\ndate: Wed, 02 Dec 2026 12:00:00 GMT\r\n\r\n";
        let replaced = replacement(bare).expect("replaced");
        let text = String::from_utf8(replaced.to_vec()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains("\r\ncontent-type: application/json; charset=utf-8"));
        assert!(head.contains("\r\nconnection: close"));
        assert!(head.ends_with(&format!("\r\ncontent-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["message"], HttpError::HeadTooLarge.message());

        let bad = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        assert!(replacement(bad).is_some());
        // Ours carry a content type; successes and other statuses pass untouched.
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
                     content-length: 2\r\n\r\n{}";
        assert!(replacement(ours).is_none());
        assert!(replacement(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(replacement(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").is_none());
        // Half a head is not judged.
        assert!(replacement(b"HTTP/1.1 431 Request Header").is_none());
    }
}
