//! Whole requests through the router, without a socket: any method, target and
//! `If-None-Match` get an answer the contract allows. The database is unreachable, so
//! every document read is a `503`; what is checked is that each request reaches the
//! answer its method, path and parameters call for (`ids` lists included), that
//! `OPTIONS` is answered without a body, and that every error is the JSON body with a
//! bounded message.
//!
//! Input: method, a line break, the request target, a line break, `If-None-Match`.

#![no_main]

use std::sync::{Arc, LazyLock};

use atelier::http::AppState;
use atelier::http::endpoint::Endpoint;
use atelier::http::handlers::product_id;
use atelier::http::router::{handle, match_path};
use http_body_util::BodyExt;
use hyper::header::{
    ACCESS_CONTROL_ALLOW_ORIGIN, ALLOW, CONTENT_LENGTH, CONTENT_TYPE, IF_NONE_MATCH, RETRY_AFTER,
};
use hyper::{Method, Request, StatusCode, Uri};
use libfuzzer_sys::fuzz_target;

/// Time stands still unless the runtime is idle, so a read's timeout fires at once.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a runtime")
});

/// Server state whose database is a closed port.
static STATE: LazyLock<Arc<AppState>> = LazyLock::new(|| {
    let settings = atelier::http::Settings {
        pool_timeout: std::time::Duration::from_millis(1),
        query_timeout: std::time::Duration::from_millis(1),
        ..atelier::http::Settings::default()
    };
    let _runtime = RUNTIME.enter();
    AppState::new(&settings, "postgres://nobody@127.0.0.1:1/none").expect("server state")
});

/// The status the contract gives a request when no document can be read.
fn expected_status(method: &Method, uri: &Uri) -> StatusCode {
    let Some((endpoint, id)) = match_path(uri.path()) else {
        return StatusCode::NOT_FOUND;
    };
    if method == Method::OPTIONS {
        return StatusCode::NO_CONTENT;
    }
    if method != Method::GET && method != Method::HEAD {
        return StatusCode::METHOD_NOT_ALLOWED;
    }
    let id_is_valid = product_id(id).is_ok();
    let query = uri.query().unwrap_or("");
    match endpoint {
        Endpoint::Healthz | Endpoint::Metrics => StatusCode::OK,
        Endpoint::GetProduct
        | Endpoint::GetProductStyles
        | Endpoint::GetRelatedProducts
        | Endpoint::GetProductPage
            if !id_is_valid =>
        {
            StatusCode::BAD_REQUEST
        }
        Endpoint::ListProducts if names_ids(query) && !valid_ids_query(query) => {
            StatusCode::BAD_REQUEST
        }
        Endpoint::ListProducts if !names_ids(query) && !valid_list_query(query) => {
            StatusCode::BAD_REQUEST
        }
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Whether a query names products by id: some parameter is called `ids`.
fn names_ids(query: &str) -> bool {
    query
        .split('&')
        .any(|pair| pair.split('=').next() == Some("ids"))
}

/// Whether an `ids` query is one the service answers: no `page` or `count`, `include`
/// only as `styles`, and the first `ids` 1 to 100 distinct canonical ids from 1 to
/// 2147483647, separated by `,` or `%2C` (either case).
fn valid_ids_query(query: &str) -> bool {
    let pairs: Vec<(&str, &str)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .collect();
    let others_ok = pairs.iter().all(|&(key, value)| match key {
        "page" | "count" => false,
        "include" => value == "styles",
        _ => true,
    });
    let value = pairs
        .iter()
        .find(|(key, _)| *key == "ids")
        .map_or("", |(_, value)| *value);
    let items: Vec<String> = value
        .replace("%2C", ",")
        .replace("%2c", ",")
        .split(',')
        .map(str::to_string)
        .collect();
    let ids: Vec<Option<u32>> = items
        .iter()
        .map(|item| {
            let canonical = !item.is_empty()
                && item.bytes().all(|b| b.is_ascii_digit())
                && !item.starts_with('0');
            canonical
                .then(|| item.parse::<u32>().ok())
                .flatten()
                .filter(|&id| id <= i32::MAX as u32)
        })
        .collect();
    let mut distinct = std::collections::HashSet::new();
    let ids_ok = !value.is_empty()
        && ids.len() <= 100
        && ids
            .iter()
            .all(|id| id.is_some_and(|id| distinct.insert(id)));
    others_ok && ids_ok
}

/// Whether `page` (an integer from 1 up) and `count` (1 to 1000), where the query
/// names them first, are valid: the contract's rule, restated independently.
fn valid_list_query(query: &str) -> bool {
    let first = |name: &str| {
        query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    };
    let canonical = |value: &str| {
        !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) && !value.starts_with('0')
    };
    let page_ok = first("page").is_none_or(canonical);
    let count_ok = first("count").is_none_or(|value| {
        canonical(value) && value.len() <= 4 && value.parse::<u32>().is_ok_and(|n| n <= 1000)
    });
    page_ok && count_ok
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return;
    };
    let (Ok(method), Ok(uri)) = (Method::from_bytes(method), Uri::try_from(target)) else {
        return;
    };
    let mut request = Request::builder().method(method.clone()).uri(uri.clone());
    if let Some(Ok(value)) = parts.next().map(hyper::header::HeaderValue::from_bytes) {
        request = request.header(IF_NONE_MATCH, value);
    }
    let Ok(request) = request.body(()) else {
        return;
    };
    let state: &AppState = &STATE;
    let response = RUNTIME.block_on(handle(state, request));
    let expected = expected_status(&method, &uri);
    assert_eq!(response.status(), expected, "{method} {uri}");
    let headers = response.headers().clone();
    let body = RUNTIME
        .block_on(response.into_body().collect())
        .expect("a full body")
        .to_bytes();
    if method == Method::HEAD {
        assert!(body.is_empty(), "HEAD {uri} has a body");
        assert!(
            headers.contains_key(CONTENT_LENGTH),
            "HEAD {uri} has no length"
        );
        return;
    }
    if expected.is_client_error() || expected.is_server_error() {
        assert_eq!(headers[CONTENT_TYPE], "application/json; charset=utf-8");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("a JSON error");
        let object = json.as_object().expect("an object");
        assert_eq!(object.len(), 1, "{json}");
        let message = object["message"].as_str().expect("a message");
        // An echoed value is cut at 100 characters: a message never grows with it.
        assert!(message.chars().count() <= 300, "{message}");
    }
    if expected == StatusCode::METHOD_NOT_ALLOWED {
        assert_eq!(headers[ALLOW], "GET, HEAD");
    }
    if expected == StatusCode::NO_CONTENT {
        assert!(body.is_empty(), "OPTIONS {uri} has a body");
        assert_eq!(headers[ALLOW], "GET, HEAD, OPTIONS");
    }
    // Every origin may read every answer (the default).
    assert_eq!(headers[ACCESS_CONTROL_ALLOW_ORIGIN], "*", "{method} {uri}");
    if expected == StatusCode::SERVICE_UNAVAILABLE {
        assert!(headers.contains_key(RETRY_AFTER));
    }
});
