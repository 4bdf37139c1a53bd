//! Routing: a request's method and path segments to a named handler, and the parts of
//! every answer that do not depend on the endpoint (validators, `304`, `HEAD`, metrics).
//! Generic over the request body, which no endpoint reads, so it runs without a socket.

use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Body;
use hyper::header::{CONTENT_LENGTH, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::AppState;
use super::cache::Document;
use super::composite;
use super::cors::CrossOrigin;
use super::encoding::{Accepted, Coding};
use super::endpoint::Endpoint;
use super::error::HttpError;
use super::fields::RequestFields;
use super::handlers::{self, IdsQuery, product_id};
use super::head;
use crate::documents::Kind;

/// Answers one request: [`read`], then [`respond`].
pub async fn handle<B>(state: &AppState, request: Request<B>) -> Response<Full<Bytes>> {
    respond(state, read(state, request)).await
}

/// A request as its answer needs it: the endpoint with its arguments, the coding to
/// send, the validators and what CORS adds, all owned, so the request can be let go
/// before its answer is made. hyper reads a connection's next bytes into the buffer a
/// request's fields and target still point into, and can reuse its space only once no
/// part of the request is alive; a request kept until its answer cost a buffer
/// allocated and two freed each time (about 450 instructions of a cached answer).
pub enum Asked {
    /// A head over the service's limits: answered as hyper answers the heads it
    /// cannot take, without CORS headers or a count in the metrics.
    OverLimits(HttpError),
    Routed(Routed),
}

/// A request within the limits, routed.
pub struct Routed {
    endpoint: Endpoint,
    work: Work,
    wanted: Wanted,
    head: bool,
    cross_origin: CrossOrigin,
}

/// What a request says of the document answer it wants.
struct Wanted {
    /// When the request began, against which cached documents' lifetimes are judged.
    started: Instant,
    /// What the client takes, when answers vary on it, and the coding to look a
    /// document up in ([`wanted_coding`]).
    accepted: Option<Accepted>,
    coding: Coding,
    /// The `If-None-Match` values, joined by commas.
    validators: Option<Bytes>,
}

/// What answering takes, once the request is read.
enum Work {
    /// The answer is known from the request alone: an error, a preflight, `/healthz`.
    Done(Result<Response<Full<Bytes>>, HttpError>),
    List {
        page: u32,
        count: u32,
    },
    ById(IdsQuery),
    Page(i32),
    Document(Kind, i32),
    Readyz,
    Metrics,
}

/// Reads `request` into what its answer needs, synchronously, and lets it go. A head
/// over the service's limits gets its error at once ([`head::check`]).
pub fn read<B>(state: &AppState, request: Request<B>) -> Asked {
    let fields = RequestFields::of(request.headers());
    if let Some(error) = head::check(&request, fields.bytes) {
        return Asked::OverLimits(error);
    }
    let started = Instant::now();
    let (endpoint, work) = route(state, &request);
    let (accepted, coding) = wanted_coding(state, &fields);
    Asked::Routed(Routed {
        endpoint,
        work,
        wanted: Wanted {
            started,
            accepted,
            coding,
            validators: joined(fields.if_none_match()),
        },
        head: request.method() == Method::HEAD,
        cross_origin: state.cors.for_origin(fields.origin),
    })
}

/// The answer to a request [`read`] before: the endpoint's, with what every answer
/// gets (CORS, `HEAD`'s empty body, its count and latency in the metrics).
pub async fn respond(state: &AppState, asked: Asked) -> Response<Full<Bytes>> {
    let asked = match asked {
        Asked::OverLimits(error) => return error.into_response(),
        Asked::Routed(asked) => asked,
    };
    let endpoint = asked.endpoint;
    let outcome = answer(state, asked.work, &asked.wanted).await;
    // Document answers carry CORS's `*` from their header templates already.
    let templated = outcome.is_ok() && endpoint.is_document();
    let mut response = outcome.unwrap_or_else(HttpError::into_response);
    // A preflight's answer carries its own CORS headers.
    if endpoint != Endpoint::Preflight {
        asked
            .cross_origin
            .decorate(response.headers_mut(), templated);
    }
    if asked.head {
        strip_body(&mut response);
    }
    state
        .metrics
        .record(endpoint, response.status(), asked.wanted.started.elapsed());
    response
}

/// The one routing table: (method, path segments) → what answering takes. Everything
/// the request names is parsed here, so that a bad id or query is answered at once.
fn route<B>(state: &AppState, request: &Request<B>) -> (Endpoint, Work) {
    let path = request.uri().path();
    let Some((endpoint, id)) = match_path(path) else {
        let error = HttpError::NoSuchPath(path.to_string());
        return (Endpoint::Unmatched, Work::Done(Err(error)));
    };
    if request.method() == Method::OPTIONS {
        let answer = preflight(state, request.headers());
        return (Endpoint::Preflight, Work::Done(Ok(answer)));
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let method = request.method().clone();
        let path = path.to_string();
        let error = HttpError::MethodNotAllowed { method, path };
        return (endpoint, Work::Done(Err(error)));
    }
    let query = request.uri().query();
    let endpoint = match endpoint {
        Endpoint::ListProducts if query.is_some_and(handlers::names_ids) => {
            Endpoint::GetProductsById
        }
        endpoint => endpoint,
    };
    let work = match endpoint {
        Endpoint::ListProducts => handlers::page_and_count(query.unwrap_or(""))
            .map(|(page, count)| Work::List { page, count }),
        Endpoint::GetProductsById => IdsQuery::parse(query.unwrap_or("")).map(Work::ById),
        Endpoint::GetProductPage => product_id(id).map(Work::Page),
        Endpoint::GetProduct => product_id(id).map(|id| Work::Document(Kind::Product, id)),
        Endpoint::GetProductStyles => product_id(id).map(|id| Work::Document(Kind::Styles, id)),
        Endpoint::GetRelatedProducts => product_id(id).map(|id| Work::Document(Kind::Related, id)),
        Endpoint::Healthz => Ok(Work::Done(Ok(handlers::healthz()))),
        Endpoint::Readyz => Ok(Work::Readyz),
        Endpoint::Metrics => Ok(Work::Metrics),
        Endpoint::Preflight | Endpoint::Unmatched => Err(HttpError::NoSuchPath(path.to_string())),
    };
    (
        endpoint,
        work.unwrap_or_else(|error| Work::Done(Err(error))),
    )
}

/// The endpoint's answer to `work`.
async fn answer(
    state: &AppState,
    work: Work,
    wanted: &Wanted,
) -> Result<Response<Full<Bytes>>, HttpError> {
    let (coding, now) = (wanted.coding, wanted.started);
    let document = match work {
        Work::Done(outcome) => return outcome,
        Work::Readyz => return handlers::readyz(state).await,
        Work::Metrics => return Ok(handlers::metrics(state).await),
        Work::List { page, count } => {
            handlers::list_products(state, page, count, coding, now).await?
        }
        Work::ById(query) => handlers::products_by_id(state, &query, coding, now).await?,
        Work::Page(id) => composite::product_page(state, id, coding, now).await?,
        Work::Document(kind, id) => {
            handlers::product_document(state, kind, id, coding, now).await?
        }
    };
    document_response(
        state,
        wanted.validators.as_deref(),
        wanted.accepted,
        document,
    )
}

/// A field's values as one, joined by commas (a list-valued field's meaning), copied
/// out of the request.
fn joined<'a>(mut values: impl Iterator<Item = &'a HeaderValue>) -> Option<Bytes> {
    let first = values.next()?;
    let mut all = first.as_bytes().to_vec();
    for value in values {
        all.push(b',');
        all.extend_from_slice(value.as_bytes());
    }
    Some(Bytes::from(all))
}

/// The endpoint a path names and the product-id segment it carries (`""` if none).
/// One trailing slash is accepted, as Express did. Matched by prefix and one search for
/// the slash after the id, rather than by splitting the path into segments: this runs
/// on every request.
pub fn match_path(path: &str) -> Option<(Endpoint, &str)> {
    let path = match path.strip_suffix('/') {
        Some(trimmed) if !trimmed.is_empty() => trimmed,
        _ => path,
    };
    if let Some(rest) = path.strip_prefix("/products") {
        if rest.is_empty() {
            return Some((Endpoint::ListProducts, ""));
        }
        let rest = rest.strip_prefix('/')?;
        let Some(slash) = rest.bytes().position(|b| b == b'/') else {
            return Some((Endpoint::GetProduct, rest));
        };
        let (id, tail) = rest.split_at(slash);
        return match tail {
            "/styles" => Some((Endpoint::GetProductStyles, id)),
            "/related" => Some((Endpoint::GetRelatedProducts, id)),
            "/page" => Some((Endpoint::GetProductPage, id)),
            _ => None,
        };
    }
    match path {
        "/healthz" => Some((Endpoint::Healthz, "")),
        "/readyz" => Some((Endpoint::Readyz, "")),
        "/metrics" => Some((Endpoint::Metrics, "")),
        _ => None,
    }
}

/// What the client takes, when answers vary on it (`None` when they do not), and the
/// coding to look the document up in: the one it prefers, identity when it refuses both.
fn wanted_coding(state: &AppState, fields: &RequestFields) -> (Option<Accepted>, Coding) {
    let accepted = state
        .compress
        .then(|| Accepted::from_values(fields.accept_encoding()));
    let coding = accepted
        .and_then(|accepted| accepted.choose(true))
        .unwrap_or(Coding::Identity);
    (accepted, coding)
}

/// `200` with the document, or `304` when the client's `If-None-Match` has it already.
/// The document comes in the coding the client prefers where it has that form (its
/// stored bytes, or their gzip form). Each form has its own ETag, so validators and
/// `304`s are per representation; `406` when the client refuses the one there is.
/// `accepted` is `None` when answers do not vary on `Accept-Encoding`; `validators`:
/// the request's `If-None-Match`.
fn document_response(
    state: &AppState,
    validators: Option<&[u8]>,
    accepted: Option<Accepted>,
    document: Document,
) -> Result<Response<Full<Bytes>>, HttpError> {
    if let Some(accepted) = accepted
        && !accepted.allows(document.coding())
    {
        return Err(HttpError::NotAcceptable);
    }
    let headers = &state.document_headers;
    if validators.is_some_and(|validators| if_none_match(validators, document.etag())) {
        let mut response = Response::new(Full::default());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        *response.headers_mut() = headers.not_modified(document.etag());
        return Ok(response);
    }
    let mut response = Response::new(Full::new(document.body().clone()));
    *response.headers_mut() = headers.answer(document.coding(), document.etag());
    Ok(response)
}

/// The answer to `OPTIONS`: `204` with what the path allows, and for a browser's
/// preflight from an allowed origin, what its cross-origin read may do.
fn preflight(state: &AppState, request_headers: &HeaderMap) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::default());
    *response.status_mut() = StatusCode::NO_CONTENT;
    state
        .cors
        .preflight(request_headers, response.headers_mut());
    response
}

/// Whether an `If-None-Match` list holds `etag` (weak comparison, as RFC 9110 asks
/// for this header) or is `*`.
fn if_none_match(validators: &[u8], etag: &HeaderValue) -> bool {
    validators.split(|&b| b == b',').any(|candidate| {
        let candidate = candidate.trim_ascii();
        let candidate = candidate.strip_prefix(b"W/").unwrap_or(candidate);
        candidate == b"*" || candidate == etag.as_bytes()
    })
}

/// A `HEAD` answer: the `GET` headers, its length included, and no body.
fn strip_body(response: &mut Response<Full<Bytes>>) {
    let length = response.body().size_hint().exact().unwrap_or(0);
    *response.body_mut() = Full::default();
    if response.status() != StatusCode::NOT_MODIFIED {
        response.headers_mut().insert(CONTENT_LENGTH, length.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::headers;
    use hyper::header::{CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, ETAG, IF_NONE_MATCH, VARY};

    #[test]
    fn paths_name_endpoints_with_an_optional_trailing_slash() {
        let cases = [
            ("/products", Some((Endpoint::ListProducts, ""))),
            ("/products/", Some((Endpoint::ListProducts, ""))),
            ("/products/7", Some((Endpoint::GetProduct, "7"))),
            ("/products/7/", Some((Endpoint::GetProduct, "7"))),
            ("/products/abc", Some((Endpoint::GetProduct, "abc"))),
            ("/products//", Some((Endpoint::GetProduct, ""))),
            (
                "/products/7/styles",
                Some((Endpoint::GetProductStyles, "7")),
            ),
            (
                "/products/7/styles/",
                Some((Endpoint::GetProductStyles, "7")),
            ),
            (
                "/products/7/related",
                Some((Endpoint::GetRelatedProducts, "7")),
            ),
            ("/healthz", Some((Endpoint::Healthz, ""))),
            ("/readyz/", Some((Endpoint::Readyz, ""))),
            ("/metrics", Some((Endpoint::Metrics, ""))),
            ("/", None),
            ("", None),
            ("/products/7/styles//", None),
            ("/products/7/other", None),
            ("/products/7/styles/1", None),
            ("/reviews/1", None),
            ("/qa/questions", None),
            ("/cart", None),
            ("/Products", None),
            ("/productsx", None),
            ("/products7", None),
            ("/products/7/stylesx", None),
            ("/products/7/related/x", None),
            ("/products/7/related//", None),
            ("/healthz/x", None),
            ("/metricsx", None),
            ("//products", None),
        ];
        for (path, expected) in cases {
            assert_eq!(match_path(path), expected, "{path:?}");
        }
    }

    /// State whose database is a closed port: only answers that need no database work.
    fn state_without_database() -> std::sync::Arc<AppState> {
        let settings = crate::http::Settings {
            pool_timeout: std::time::Duration::from_millis(200),
            query_timeout: std::time::Duration::from_millis(400),
            ..Default::default()
        };
        AppState::new(&settings, "postgres://nobody@127.0.0.1:1/none").unwrap()
    }

    async fn call(state: &AppState, method: Method, uri: &str) -> Response<Full<Bytes>> {
        let request = Request::builder().method(method).uri(uri).body(()).unwrap();
        handle(state, request).await
    }

    async fn body_bytes(response: Response<Full<Bytes>>) -> Bytes {
        use http_body_util::BodyExt;
        response.into_body().collect().await.unwrap().to_bytes()
    }

    async fn body_json(response: Response<Full<Bytes>>) -> serde_json::Value {
        serde_json::from_slice(&body_bytes(response).await).unwrap()
    }

    #[tokio::test]
    async fn errors_are_json_with_the_status_the_contract_names() {
        let state = state_without_database();
        let cases = [
            (
                Method::GET,
                "/reviews/1",
                StatusCode::NOT_FOUND,
                "no such path: /reviews/1",
            ),
            (Method::GET, "/", StatusCode::NOT_FOUND, "no such path: /"),
            (
                Method::POST,
                "/products/1",
                StatusCode::METHOD_NOT_ALLOWED,
                "method POST is not allowed on /products/1; use GET or HEAD",
            ),
            (
                Method::GET,
                "/products/1e3/styles",
                StatusCode::BAD_REQUEST,
                "product id must be an integer from 1 to 2147483647, got \"1e3\"",
            ),
            (
                Method::GET,
                "/products?count=0",
                StatusCode::BAD_REQUEST,
                "count must be an integer from 1 to 1000, got \"0\"",
            ),
        ];
        for (method, uri, status, message) in cases {
            let response = call(&state, method, uri).await;
            assert_eq!(response.status(), status, "{uri}");
            assert_eq!(response.headers()[CONTENT_TYPE], headers::JSON);
            if status == StatusCode::METHOD_NOT_ALLOWED {
                assert_eq!(response.headers()[hyper::header::ALLOW], "GET, HEAD");
            }
            assert_eq!(
                body_json(response).await,
                serde_json::json!({ "message": message })
            );
        }
    }

    #[tokio::test]
    async fn head_keeps_the_length_and_drops_the_body() {
        let state = state_without_database();
        let get = call(&state, Method::GET, "/products/abc").await;
        let head = call(&state, Method::HEAD, "/products/abc").await;
        assert_eq!(head.status(), StatusCode::BAD_REQUEST);
        let get_length = get.body().size_hint().exact().unwrap();
        assert!(get_length > 0);
        assert_eq!(
            head.headers()[CONTENT_LENGTH],
            get_length.to_string().as_str()
        );
        assert_eq!(head.body().size_hint().exact(), Some(0));
        assert_eq!(
            call(&state, Method::HEAD, "/healthz").await.status(),
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn a_document_without_its_database_is_503_within_the_bound() {
        let state = state_without_database();
        let started = Instant::now();
        let response = call(&state, Method::GET, "/products/7").await;
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[hyper::header::RETRY_AFTER], "1");
        assert_eq!(
            call(&state, Method::GET, "/readyz").await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            call(&state, Method::GET, "/healthz").await.status(),
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn readyz_fails_once_shutdown_begins() {
        let state = state_without_database();
        state
            .draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let response = call(&state, Method::GET, "/readyz").await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body_json(response).await,
            serde_json::json!({ "message": "the server is shutting down" })
        );
    }

    /// The answer to a request with `request_headers` for a document stored as `body`,
    /// made in the coding the router would look it up in.
    fn answer(
        state: &AppState,
        request_headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<Response<Full<Bytes>>, HttpError> {
        let fields = RequestFields::of(request_headers);
        let (accepted, coding) = wanted_coding(state, &fields);
        let document = match coding {
            Coding::Identity => Document::identity(body.clone()),
            Coding::Gzip => Document::gzip(body.clone()),
        };
        let validators = joined(fields.if_none_match());
        document_response(state, validators.as_deref(), accepted, document)
    }

    #[tokio::test]
    async fn documents_answer_304_to_a_matching_if_none_match() {
        let state = state_without_database();
        let body = Bytes::from_static(b"[1,2]");
        let mut request_headers = HeaderMap::new();
        let fresh = answer(&state, &request_headers, &body).unwrap();
        assert_eq!(fresh.status(), StatusCode::OK);
        assert_eq!(
            fresh.headers()[CACHE_CONTROL],
            "public, max-age=0, s-maxage=1"
        );
        request_headers.insert(IF_NONE_MATCH, fresh.headers()[ETAG].clone());
        let cached = answer(&state, &request_headers, &body).unwrap();
        assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(cached.headers()[ETAG], fresh.headers()[ETAG]);
        assert_eq!(cached.body().size_hint().exact(), Some(0));
    }

    fn accepting(value: &'static str) -> HeaderMap {
        let mut request_headers = HeaderMap::new();
        request_headers.insert(
            hyper::header::ACCEPT_ENCODING,
            hyper::header::HeaderValue::from_static(value),
        );
        request_headers
    }

    #[tokio::test]
    async fn each_representation_has_its_own_etag_and_304() {
        let state = state_without_database();
        let body: Vec<u8> = (0..100)
            .flat_map(|i| format!("{{\"style_id\":{i},\"name\":\"Forest Green\"}},").into_bytes())
            .collect();
        let body = Bytes::from(body);
        let gzip = Document::gzip(body.clone());
        assert_eq!(gzip.coding(), Coding::Gzip, "repetitive JSON compresses");
        let plain = answer(&state, &HeaderMap::new(), &body).unwrap();
        let zipped = answer(&state, &accepting("gzip"), &body).unwrap();
        assert_eq!(plain.headers().get(CONTENT_ENCODING), None);
        assert_eq!(zipped.headers()[CONTENT_ENCODING], "gzip");
        for response in [&plain, &zipped] {
            assert_eq!(response.headers()[VARY], "Accept-Encoding");
        }
        assert_eq!(zipped.headers()[ETAG], gzip.etag());
        assert_ne!(plain.headers()[ETAG], zipped.headers()[ETAG]);
        assert_eq!(body_bytes(plain).await, body);
        assert_eq!(body_bytes(zipped).await, gzip.body());

        // A validator matches only the representation it names.
        let mut request_headers = accepting("gzip");
        request_headers.insert(IF_NONE_MATCH, gzip.etag().clone());
        let again = answer(&state, &request_headers, &body).unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(again.headers()[ETAG], gzip.etag());
        assert_eq!(again.headers()[VARY], "Accept-Encoding");
        assert_eq!(again.headers().get(CONTENT_ENCODING), None);
        request_headers.remove(hyper::header::ACCEPT_ENCODING);
        let other = answer(&state, &request_headers, &body).unwrap();
        assert_eq!(other.status(), StatusCode::OK);
        assert_eq!(
            other.headers()[ETAG],
            Document::identity(body.clone()).etag()
        );

        // Refusing identity and gzip alike leaves nothing to send.
        let refused = answer(&state, &accepting("gzip;q=0, identity;q=0"), &body);
        assert_eq!(refused.unwrap_err(), HttpError::NotAcceptable);
        // Refusing identity where gzip does not gain leaves nothing either.
        let short = Bytes::from_static(b"[2,3,8,7]");
        let refused = answer(&state, &accepting("gzip, identity;q=0"), &short);
        assert_eq!(refused.unwrap_err(), HttpError::NotAcceptable);
    }

    #[tokio::test]
    async fn every_answer_is_counted_under_its_route() {
        let state = state_without_database();
        call(&state, Method::GET, "/products/x").await;
        call(&state, Method::DELETE, "/products").await;
        call(&state, Method::GET, "/cart").await;
        let text =
            String::from_utf8(body_bytes(handlers::metrics(&state).await).await.to_vec()).unwrap();
        for line in [
            "atelier_http_requests_total{route=\"get_product\",status=\"400\"} 1",
            "atelier_http_requests_total{route=\"list_products\",status=\"405\"} 1",
            "atelier_http_requests_total{route=\"unmatched\",status=\"404\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }

    #[test]
    fn if_none_match_accepts_lists_weak_tags_and_star() {
        let etag = hyper::header::HeaderValue::from_static("\"abc\"");
        let check = |value: &'static str| {
            let mut request_headers = HeaderMap::new();
            for value in value.split(';') {
                request_headers.append(
                    IF_NONE_MATCH,
                    hyper::header::HeaderValue::from_static(value),
                );
            }
            let validators = joined(request_headers.get_all(IF_NONE_MATCH).iter()).unwrap();
            if_none_match(&validators, &etag)
        };
        assert!(check("\"abc\""));
        assert!(check("\"x\", \"abc\""));
        assert!(check("W/\"abc\""));
        assert!(check("*"));
        assert!(!check("\"abd\""));
        assert!(!check("abc"));
        // Several fields are one list.
        assert!(check("\"x\";W/\"abc\""));
        assert!(!check("\"x\";\"y\""));
        assert_eq!(joined(HeaderMap::new().get_all(IF_NONE_MATCH).iter()), None);
    }
}
