//! Header values the service sends, built once.

use hyper::header::HeaderValue;

/// Every product and error body.
pub const JSON: HeaderValue = HeaderValue::from_static("application/json; charset=utf-8");
/// `/metrics`.
pub const PROMETHEUS_TEXT: HeaderValue =
    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
/// Errors and operational endpoints: answers that must not be reused.
pub const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
/// The methods every path allows, for 405 answers.
pub const ALLOWED_METHODS: HeaderValue = HeaderValue::from_static("GET, HEAD");
/// Seconds a client should wait before retrying while the database is unavailable.
pub const RETRY_AFTER_SECONDS: HeaderValue = HeaderValue::from_static("1");
/// `Vary` of every document answer: it depends on the request's `Accept-Encoding`.
pub const VARY_ENCODING: HeaderValue = HeaderValue::from_static("Accept-Encoding");
/// `Content-Encoding` of a document sent in its gzip form.
pub const GZIP: HeaderValue = HeaderValue::from_static("gzip");
/// `Connection` of an answer after which the server closes the connection.
pub const CLOSE: HeaderValue = HeaderValue::from_static("close");
