//! Header values the service sends, built once.

use hyper::header::{
    ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, ETAG, HeaderMap,
    HeaderValue, VARY,
};

use super::encoding::Coding;

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
/// `Access-Control-Allow-Origin` when every origin may read the API.
pub const ANY_ORIGIN: HeaderValue = HeaderValue::from_static("*");

/// Headers of a document answer at most: type, coding, validator, cache policy, `Vary`
/// and the two of CORS.
pub const DOCUMENT_HEADERS: usize = 8;

/// The headers of a document answer, `200` in each coding and `304`, built once and
/// cloned per answer with its ETag set: a clone copies a few fields, where inserting
/// each one hashes its name and probes the map.
#[derive(Debug, Clone)]
pub struct DocumentHeaders {
    identity: HeaderMap,
    gzip: HeaderMap,
    not_modified: HeaderMap,
}

impl DocumentHeaders {
    /// `vary`: whether answers vary on `Accept-Encoding`; `any_origin`: whether every
    /// answer allows every origin (CORS), so that header is there from the start.
    pub fn new(cache_control: &HeaderValue, vary: bool, any_origin: bool) -> DocumentHeaders {
        // A `304` has no body, so neither its type nor its coding.
        let build = |body: Option<Coding>| {
            let mut headers = HeaderMap::with_capacity(DOCUMENT_HEADERS);
            if let Some(coding) = body {
                headers.insert(CONTENT_TYPE, JSON);
                if coding == Coding::Gzip {
                    headers.insert(CONTENT_ENCODING, GZIP);
                }
            }
            // Set per answer.
            headers.insert(ETAG, HeaderValue::from_static("\"\""));
            headers.insert(CACHE_CONTROL, cache_control.clone());
            if vary {
                headers.insert(VARY, VARY_ENCODING);
            }
            // Here rather than added by `cors::Origins::decorate`: a clone has no room
            // past its fields, so adding one to it moves the map (without it, 14,835
            // instructions per identity hit against 14,405: bench/instructions.py).
            if any_origin {
                headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, ANY_ORIGIN);
            }
            headers
        };
        DocumentHeaders {
            identity: build(Some(Coding::Identity)),
            gzip: build(Some(Coding::Gzip)),
            not_modified: build(None),
        }
    }

    /// The headers of a `200` answer with the document's `coding` and `etag`.
    pub fn answer(&self, coding: Coding, etag: &HeaderValue) -> HeaderMap {
        let headers = match coding {
            Coding::Identity => &self.identity,
            Coding::Gzip => &self.gzip,
        };
        with_etag(headers, etag)
    }

    /// The headers of a `304` answer for the representation whose ETag is `etag`.
    pub fn not_modified(&self, etag: &HeaderValue) -> HeaderMap {
        with_etag(&self.not_modified, etag)
    }
}

/// A copy of `template` with `etag` in its ETag field.
fn with_etag(template: &HeaderMap, etag: &HeaderValue) -> HeaderMap {
    let mut headers = template.clone();
    if let Some(value) = headers.get_mut(ETAG) {
        *value = etag.clone();
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_answer_gets_its_own_etag_and_the_fields_of_its_coding() {
        let cache_control = HeaderValue::from_static("public, max-age=0");
        let headers = DocumentHeaders::new(&cache_control, true, true);
        let etag = HeaderValue::from_static("\"a\"");
        let identity = headers.answer(Coding::Identity, &etag);
        assert_eq!(identity[ETAG], etag);
        assert_eq!(identity[CONTENT_TYPE], JSON);
        assert_eq!(identity[CACHE_CONTROL], cache_control);
        assert_eq!(identity[VARY], VARY_ENCODING);
        assert_eq!(identity[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(!identity.contains_key(CONTENT_ENCODING));
        assert_eq!(identity.len(), 5);
        let other = HeaderValue::from_static("\"b\"");
        let gzip = headers.answer(Coding::Gzip, &other);
        assert_eq!(gzip[ETAG], other);
        assert_eq!(gzip[CONTENT_ENCODING], GZIP);
        // The templates are not changed by the answers made from them.
        assert_eq!(headers.answer(Coding::Identity, &other)[ETAG], other);
        let not_modified = headers.not_modified(&other);
        assert_eq!(not_modified[ETAG], other);
        assert_eq!(not_modified[CACHE_CONTROL], cache_control);
        assert_eq!(not_modified[VARY], VARY_ENCODING);
        assert!(!not_modified.contains_key(CONTENT_TYPE));
        assert!(!not_modified.contains_key(CONTENT_ENCODING));
        let plain =
            DocumentHeaders::new(&cache_control, false, false).answer(Coding::Identity, &etag);
        assert!(!plain.contains_key(VARY) && !plain.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN));
    }
}
