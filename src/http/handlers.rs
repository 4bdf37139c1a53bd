//! The endpoints: the four product documents and the operational answers.

use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE};

use super::cache::Document;
use super::composite;
use super::encoding::Coding;
use super::error::HttpError;
use super::store::Key;
use super::{AppState, headers, metrics};
use crate::documents::{Kind, MAX_PAGE_COUNT, PAGE_COUNT_RANGE};

/// Entries per page when `count` is not given.
const DEFAULT_COUNT: u32 = 5;

/// `GET /products?page=P&count=C`: the entries at positions (P-1)*C+1 ..= P*C
/// ([`page_and_count`] reads P and C).
pub async fn list_products(
    state: &AppState,
    page: u32,
    count: u32,
    coding: Coding,
    now: Instant,
) -> Result<Document, HttpError> {
    let page = state
        .cache
        .get(Key::Page { page, count }, coding, now)
        .await?;
    Ok(page.unwrap_or_else(|| state.empty_page.clone()))
}

/// Whether a `GET /products` query names products by id (`ids=`).
pub fn names_ids(query: &str) -> bool {
    query_pairs(query).any(|(name, _)| name == "ids")
}

/// A query string's `name=value` pairs, as they are (nothing is percent-decoded); a
/// name without `=` has an empty value.
fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// What a `GET /products?ids=1,2,3[&include=styles]` query asks for.
#[derive(Debug, PartialEq, Eq)]
pub struct IdsQuery {
    pub ids: Vec<i32>,
    pub with_styles: bool,
}

impl IdsQuery {
    pub fn parse(query: &str) -> Result<IdsQuery, HttpError> {
        let mut ids = None;
        let mut with_styles = false;
        for (name, value) in query_pairs(query) {
            match name {
                "ids" => ids = ids.or(Some(value)),
                "include" if value == "styles" => with_styles = true,
                "include" => return Err(HttpError::InvalidInclude(value.to_string())),
                "page" | "count" => return Err(HttpError::IdsWithPage),
                _ => {}
            }
        }
        let ids = composite::parse_ids(ids.unwrap_or("")).map_err(HttpError::InvalidIds)?;
        Ok(IdsQuery { ids, with_styles })
    }
}

/// `GET /products?ids=…`: those products' documents, in order ([`composite::products`]).
pub async fn products_by_id(
    state: &AppState,
    query: &IdsQuery,
    coding: Coding,
    now: Instant,
) -> Result<Document, HttpError> {
    composite::products(state, &query.ids, query.with_styles, coding, now).await
}

/// `GET /products/:id`, `/styles` or `/related`: product `id`'s document of `kind`, in
/// `coding` where it has that form; 404 when the catalog has no such product.
pub async fn product_document(
    state: &AppState,
    kind: Kind,
    id: i32,
    coding: Coding,
    now: Instant,
) -> Result<Document, HttpError> {
    state
        .cache
        .get(Key::Document { kind, id }, coding, now)
        .await?
        .ok_or(HttpError::NoSuchProduct(id))
}

/// `GET /healthz`: the process serves.
pub fn healthz() -> Response<Full<Bytes>> {
    operational(Bytes::from_static(br#"{"status":"ok"}"#), headers::JSON)
}

/// `GET /readyz`: the database answers and holds a materialized catalog, and the
/// process is not shutting down.
pub async fn readyz(state: &AppState) -> Result<Response<Full<Bytes>>, HttpError> {
    if state.draining.load(Ordering::SeqCst) {
        return Err(HttpError::ShuttingDown);
    }
    match state.store.is_ready().await? {
        true => Ok(operational(
            Bytes::from_static(br#"{"status":"ready"}"#),
            headers::JSON,
        )),
        false => Err(HttpError::NotMaterialized),
    }
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(state: &AppState) -> Response<Full<Bytes>> {
    operational(
        Bytes::from(
            metrics::render(
                &state.metrics,
                &state.cache,
                &state.store,
                state.listening.is_working(),
                &state.reconnections,
                state.draining.load(Ordering::SeqCst),
            )
            .await,
        ),
        headers::PROMETHEUS_TEXT,
    )
}

fn operational(body: Bytes, content_type: hyper::header::HeaderValue) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    response.headers_mut().insert(CONTENT_TYPE, content_type);
    response
        .headers_mut()
        .insert(CACHE_CONTROL, headers::NO_STORE);
    response
}

/// `page` and `count` from a query string; other parameters are ignored and the
/// first occurrence of each counts.
pub fn page_and_count(query: &str) -> Result<(u32, u32), HttpError> {
    let mut page = None;
    let mut count = None;
    for (name, value) in query_pairs(query) {
        match name {
            "page" => page = page.or(Some(value)),
            "count" => count = count.or(Some(value)),
            _ => {}
        }
    }
    let page = match page {
        None => 1,
        Some(value) => page_number(value)?,
    };
    let count = match count {
        None => DEFAULT_COUNT,
        Some(value) => parameter("count", value, MAX_PAGE_COUNT, PAGE_COUNT_RANGE)?,
    };
    Ok((page, count))
}

/// `page`: any canonical integer from 1 up. Pages past the catalog are simply empty, so
/// numbers too large for a `u32` are read as the last `u32` page, which is past it too.
fn page_number(value: &str) -> Result<u32, HttpError> {
    let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    if !digits || value.starts_with('0') {
        return Err(HttpError::InvalidParameter {
            name: "page",
            value: value.to_string(),
            range: "1 up",
        });
    }
    Ok(value.parse().unwrap_or(u32::MAX))
}

fn parameter(
    name: &'static str,
    value: &str,
    max: u32,
    range: &'static str,
) -> Result<u32, HttpError> {
    canonical_integer(value)
        .filter(|n| (1..=u64::from(max)).contains(n))
        .map(|n| n as u32)
        .ok_or_else(|| HttpError::InvalidParameter {
            name,
            value: value.to_string(),
            range,
        })
}

/// A product id from a path segment: a canonical decimal integer in 1..=2147483647
/// (no sign, no leading zero, no exponent or fraction).
pub fn product_id(segment: &str) -> Result<i32, HttpError> {
    canonical_integer(segment)
        .and_then(|n| i32::try_from(n).ok())
        .filter(|&n| n >= 1)
        .ok_or_else(|| HttpError::InvalidProductId(segment.to_string()))
}

/// The value of a string of ASCII digits without a leading zero, if it fits in u64.
fn canonical_integer(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    if bytes.is_empty() || (bytes.len() > 1 && bytes[0] == b'0') {
        return None;
    }
    bytes.iter().try_fold(0u64, |value, &byte| {
        let digit = byte.wrapping_sub(b'0');
        (digit <= 9).then_some(())?;
        value.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_ids_are_canonical_positive_i32() {
        assert_eq!(product_id("1"), Ok(1));
        assert_eq!(product_id("2147483647"), Ok(i32::MAX));
        for bad in [
            "abc",
            "-1",
            "0",
            "1.5",
            "1e3",
            "+1",
            "99999999999",
            "",
            "01",
            " 1",
            "2147483648",
            "１",
        ] {
            assert_eq!(
                product_id(bad),
                Err(HttpError::InvalidProductId(bad.into())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn page_and_count_default_and_are_bounded() {
        assert_eq!(page_and_count(""), Ok((1, 5)));
        assert_eq!(page_and_count("page=3"), Ok((3, 5)));
        assert_eq!(
            page_and_count("count=1000&page=200000"),
            Ok((200_000, 1000))
        );
        assert_eq!(page_and_count("page=2&page=9&x=y&count=7"), Ok((2, 7)));
        assert_eq!(page_and_count("&&page=2&"), Ok((2, 5)));
        let count_error = |value: &str| HttpError::InvalidParameter {
            name: "count",
            value: value.into(),
            range: "1 to 1000",
        };
        assert_eq!(page_and_count("count=1001"), Err(count_error("1001")));
        assert_eq!(page_and_count("count=0"), Err(count_error("0")));
        assert_eq!(page_and_count("count"), Err(count_error("")));
        let page_error = |value: &str| HttpError::InvalidParameter {
            name: "page",
            value: value.into(),
            range: "1 up",
        };
        for bad in ["0", "-1", "abc", "1.5", "01", ""] {
            assert_eq!(page_and_count(&format!("page={bad}")), Err(page_error(bad)));
        }
        assert_eq!(page_and_count("page=2147483648"), Ok((2_147_483_648, 5)));
        assert_eq!(
            page_and_count("page=99999999999999999999999"),
            Ok((u32::MAX, 5))
        );
    }
}
