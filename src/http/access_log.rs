//! The optional access log (`serve --access-log`): one line per request, through
//! `tracing` like every other line, so in the chosen `--log-format`. Off, the server
//! only tests a bool per request; on, each line costs its formatting and a write to
//! standard error (measured in `docs/figures.md`).

use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Body;
use hyper::{Method, Request, Response};

/// Longest request target logged: a hostile URL may be 16 KiB long.
const MAX_LOGGED_TARGET: usize = 1024;

/// A request seen, waiting for its answer.
pub struct Entry {
    method: Method,
    /// The request target as sent: path and query.
    target: String,
    started: Instant,
}

impl Entry {
    /// Notes `request` as it arrives.
    pub fn start<B>(request: &Request<B>) -> Entry {
        let uri = request.uri();
        let mut target = uri
            .path_and_query()
            .map_or_else(|| uri.to_string(), |target| target.as_str().to_string());
        // hyper takes only ASCII targets, so any byte is a character boundary.
        if target.len() > MAX_LOGGED_TARGET {
            target.truncate(MAX_LOGGED_TARGET);
            target.push_str("...");
        }
        Entry {
            method: request.method().clone(),
            target,
            started: Instant::now(),
        }
    }

    /// Logs the request with `response`, the answer it got.
    pub fn finish(self, response: &Response<Full<Bytes>>) {
        tracing::info!(
            target: "atelier::access",
            method = %self.method,
            path = %self.target,
            status = response.status().as_u16(),
            duration_us = self.started.elapsed().as_micros() as u64,
            bytes = response.body().size_hint().exact().unwrap_or(0),
            "request"
        );
    }
}
