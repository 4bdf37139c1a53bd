//! The HTTP error type and the one place that turns it into a status and a JSON body.
//! Messages name the offending value; internals (database errors, SQL) never reach the
//! client: they are logged where they happen, once.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ALLOW, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, RETRY_AFTER, VARY};
use hyper::{Method, Response, StatusCode};

use super::composite::IdsError;
use super::head::{MAX_HEAD_BYTES, MAX_HEADER_FIELDS};
use super::headers;
use super::store::StoreError;

/// Offending values are echoed up to this many characters.
const MAX_ECHO: usize = 100;

/// Everything a request can fail with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// No endpoint has this path.
    NoSuchPath(String),
    /// The path exists but not for this method.
    MethodNotAllowed { method: Method, path: String },
    /// A product id segment that is not a canonical integer in 1..=2147483647.
    InvalidProductId(String),
    /// A query parameter out of its range or not an integer.
    InvalidParameter {
        name: &'static str,
        value: String,
        range: &'static str,
    },
    /// An `ids` list that is empty, malformed, repeats an id or names too many.
    InvalidIds(IdsError),
    /// `ids` given with `page` or `count`.
    IdsWithPage,
    /// An `include` other than `styles`.
    InvalidInclude(String),
    /// A well-formed id that names no product.
    NoSuchProduct(i32),
    /// `Accept-Encoding` refuses identity and every coding the document has.
    NotAcceptable,
    /// The database could not answer in time.
    Unavailable,
    /// The database answers but holds no materialized catalog yet (`/readyz`).
    NotMaterialized,
    /// Shutdown has begun (`/readyz`), so load balancers should look elsewhere.
    ShuttingDown,
    /// A request head that does not parse as HTTP/1.1 (hyper's verdict).
    Malformed,
    /// A request target (path and query) that alone is over [`MAX_HEAD_BYTES`].
    UriTooLong,
    /// A request head over [`MAX_HEAD_BYTES`] or [`MAX_HEADER_FIELDS`].
    HeadTooLarge,
}

impl HttpError {
    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            HttpError::NoSuchPath(_) | HttpError::NoSuchProduct(_) => StatusCode::NOT_FOUND,
            HttpError::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            HttpError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            HttpError::InvalidProductId(_)
            | HttpError::InvalidParameter { .. }
            | HttpError::InvalidIds(_)
            | HttpError::IdsWithPage
            | HttpError::InvalidInclude(_)
            | HttpError::Malformed => StatusCode::BAD_REQUEST,
            HttpError::UriTooLong => StatusCode::URI_TOO_LONG,
            HttpError::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            HttpError::Unavailable | HttpError::NotMaterialized | HttpError::ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// What the client is told.
    pub fn message(&self) -> String {
        match self {
            HttpError::NoSuchPath(path) => format!("no such path: {}", echo(path)),
            HttpError::MethodNotAllowed { method, path } => format!(
                "method {} is not allowed on {}; use GET or HEAD",
                echo(method.as_str()),
                echo(path)
            ),
            HttpError::InvalidProductId(value) => format!(
                "product id must be an integer from 1 to 2147483647, got \"{}\"",
                echo(value)
            ),
            HttpError::InvalidParameter { name, value, range } => {
                format!(
                    "{name} must be an integer from {range}, got \"{}\"",
                    echo(value)
                )
            }
            HttpError::InvalidIds(error) => error.to_string(),
            HttpError::IdsWithPage => {
                "ids names the products to answer: it takes no page or count".to_string()
            }
            HttpError::InvalidInclude(value) => {
                format!("include takes \"styles\", got \"{}\"", echo(value))
            }
            HttpError::NoSuchProduct(id) => format!("no product with id {id}"),
            HttpError::NotAcceptable => {
                "Accept-Encoding refuses identity and every coding this document has".to_string()
            }
            HttpError::Unavailable => {
                "the catalog database is unavailable; retry shortly".to_string()
            }
            HttpError::NotMaterialized => "no materialized catalog yet".to_string(),
            HttpError::ShuttingDown => "the server is shutting down".to_string(),
            HttpError::Malformed => "the request is not valid HTTP/1.1".to_string(),
            HttpError::UriTooLong => {
                format!("the request target (path and query) is over {MAX_HEAD_BYTES} bytes")
            }
            HttpError::HeadTooLarge => format!(
                "the request head is too large: at most {MAX_HEAD_BYTES} bytes of request \
                 line and header fields, and {MAX_HEADER_FIELDS} header fields"
            ),
        }
    }

    /// The body: `{"message": ...}`.
    pub fn body(&self) -> Bytes {
        let body = serde_json::to_vec(&serde_json::json!({ "message": self.message() }))
            .expect("a JSON object of one string serializes");
        Bytes::from(body)
    }

    /// The response: status, `{"message": ...}`, and the headers the status calls for.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(self.body()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, headers::JSON);
        headers.insert(CACHE_CONTROL, headers::NO_STORE);
        match self {
            HttpError::MethodNotAllowed { .. } => {
                headers.insert(ALLOW, headers::ALLOWED_METHODS);
            }
            HttpError::NotAcceptable => {
                headers.insert(VARY, headers::VARY_ENCODING);
            }
            HttpError::Unavailable | HttpError::NotMaterialized | HttpError::ShuttingDown => {
                headers.insert(RETRY_AFTER, headers::RETRY_AFTER_SECONDS);
            }
            // Whatever follows such a head on the connection is not worth reading.
            HttpError::Malformed | HttpError::UriTooLong | HttpError::HeadTooLarge => {
                headers.insert(CONNECTION, headers::CLOSE);
            }
            _ => {}
        }
        response
    }
}

/// The store logged the failure where it happened; the client learns only that the
/// database is unavailable.
impl From<Arc<StoreError>> for HttpError {
    fn from(_: Arc<StoreError>) -> Self {
        HttpError::Unavailable
    }
}

impl From<StoreError> for HttpError {
    fn from(_: StoreError) -> Self {
        HttpError::Unavailable
    }
}

fn echo(value: &str) -> String {
    value.chars().take(MAX_ECHO).collect()
}
