//! Cross-origin reads (CORS): a storefront served from its own origin reads the API from
//! the browser. The catalog is public and read-only and no request carries credentials
//! the service honours, so by default every origin may read it (`*`); `--cors-origins`
//! narrows that to a list. A storefront's requests carry an `Authorization` header, so
//! browsers first send a preflight `OPTIONS`, answered here with the methods and
//! headers allowed and how long the browser may remember that.

use hyper::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_METHOD, ALLOW,
    HeaderMap, HeaderValue, ORIGIN, VARY,
};

use super::headers::ANY_ORIGIN;

/// Request headers a storefront may send: its token (ignored) and the validator.
const ALLOWED_HEADERS: HeaderValue =
    HeaderValue::from_static("Authorization, If-None-Match, Content-Type");
/// What a cross-origin read may do.
const ALLOWED_METHODS: HeaderValue = HeaderValue::from_static("GET, HEAD");
/// What `OPTIONS` answers allow.
const ALLOW_WITH_OPTIONS: HeaderValue = HeaderValue::from_static("GET, HEAD, OPTIONS");
/// Headers a page's script may read beyond the safelisted ones.
const EXPOSED_HEADERS: HeaderValue = HeaderValue::from_static("ETag, Content-Encoding");
/// How long a browser may keep a preflight's answer: a day, the longest Firefox keeps
/// one (Chromium keeps two hours at most).
const PREFLIGHT_MAX_AGE: HeaderValue = HeaderValue::from_static("86400");

/// Which origins may read the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origins {
    /// Every origin (`*`): answers do not depend on the request's `Origin`.
    Any,
    /// These origins (`https://shop.example`), each as a browser sends it.
    Listed(Vec<HeaderValue>),
}

impl Origins {
    /// `*` alone means every origin; otherwise the listed origins, trailing slashes
    /// dropped. An empty list allows none.
    pub fn from_list(origins: &[String]) -> Origins {
        if origins.iter().any(|origin| origin == "*") {
            return Origins::Any;
        }
        Origins::Listed(
            origins
                .iter()
                .filter_map(|origin| HeaderValue::from_str(origin.trim_end_matches('/')).ok())
                .collect(),
        )
    }

    /// What an answer to a request from `origin` (its `Origin` field) tells about
    /// cross-origin reads: decided as the request is read, so that nothing of the
    /// request is kept for its answer (the origin named back is the listed one).
    pub fn for_origin(&self, origin: Option<&HeaderValue>) -> CrossOrigin {
        match self {
            Origins::Any => CrossOrigin::Any {
                named: origin.is_some(),
            },
            Origins::Listed(_) => CrossOrigin::Listed(self.allowed(origin).cloned()),
        }
    }

    /// The headers of an answer to `OPTIONS`: what the path allows, and for a preflight
    /// from an allowed origin, what its read may do.
    pub fn preflight(&self, request_headers: &HeaderMap, response_headers: &mut HeaderMap) {
        response_headers.insert(ALLOW, ALLOW_WITH_OPTIONS);
        if let Origins::Listed(_) = self {
            response_headers.insert(VARY, HeaderValue::from_static("Origin"));
        }
        let method = request_headers.get(ACCESS_CONTROL_REQUEST_METHOD);
        let asks_to_read = method.is_some_and(|method| method == "GET" || method == "HEAD");
        let origin = match self {
            Origins::Any => Some(&ANY_ORIGIN),
            Origins::Listed(_) => self.allowed(request_headers.get(ORIGIN)),
        };
        if let (true, Some(origin)) = (asks_to_read, origin) {
            response_headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            response_headers.insert(ACCESS_CONTROL_ALLOW_METHODS, ALLOWED_METHODS);
            response_headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, ALLOWED_HEADERS);
            response_headers.insert(ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE);
        }
    }

    /// `origin`, a request's `Origin`, when it is listed.
    fn allowed<'a>(&'a self, origin: Option<&HeaderValue>) -> Option<&'a HeaderValue> {
        let Origins::Listed(listed) = self else {
            return None;
        };
        let origin = origin?;
        listed.iter().find(|listed| *listed == origin)
    }
}

/// The cross-origin headers one answer gets ([`Origins::for_origin`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrossOrigin {
    /// Every origin may read; `named`: the request named its origin.
    Any { named: bool },
    /// Listed origins may read: the request's, when it is one of them.
    Listed(Option<HeaderValue>),
}

impl CrossOrigin {
    /// Adds the headers of a cross-origin read to an answer. `templated`: the answer
    /// was made from the document header templates, which carry `*` already when every
    /// origin may read.
    pub fn decorate(self, response_headers: &mut HeaderMap, templated: bool) {
        match self {
            CrossOrigin::Any { named } => {
                if !templated {
                    response_headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, ANY_ORIGIN);
                }
                // Only scripts on other origins need the headers exposed, and their
                // requests always name their origin: a client that does not (curl, a
                // proxy's revalidation) is spared the header.
                if !named {
                    return;
                }
            }
            CrossOrigin::Listed(allowed) => {
                // The answer names the origin, so caches must keep one per origin.
                response_headers.append(VARY, HeaderValue::from_static("Origin"));
                let Some(origin) = allowed else {
                    return;
                };
                response_headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            }
        }
        response_headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSED_HEADERS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(origin: Option<&str>, method: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(origin) = origin {
            headers.insert(ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        if let Some(method) = method {
            headers.insert(
                ACCESS_CONTROL_REQUEST_METHOD,
                HeaderValue::from_str(method).unwrap(),
            );
        }
        headers
    }

    /// The CORS headers of an answer to a read from `origin`, with `allowed` origins.
    fn decorated(allowed: &[&str], origin: &str) -> HeaderMap {
        let allowed: Vec<String> = allowed.iter().map(|origin| origin.to_string()).collect();
        let mut answer = HeaderMap::new();
        let origin = HeaderValue::from_str(origin).unwrap();
        Origins::from_list(&allowed)
            .for_origin(Some(&origin))
            .decorate(&mut answer, false);
        answer
    }

    #[test]
    fn every_origin_reads_by_default_and_answers_do_not_vary_on_it() {
        let answer = decorated(&["*"], "https://shop.example");
        assert_eq!(answer[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(
            answer[ACCESS_CONTROL_EXPOSE_HEADERS],
            "ETag, Content-Encoding"
        );
        assert!(answer.get(VARY).is_none());
    }

    #[test]
    fn listed_origins_are_named_back_and_others_get_nothing() {
        let listed = ["https://shop.example/"];
        let answer = decorated(&listed, "https://shop.example");
        assert_eq!(answer[ACCESS_CONTROL_ALLOW_ORIGIN], "https://shop.example");
        assert_eq!(answer[VARY], "Origin");
        let other = decorated(&listed, "https://evil.example");
        assert!(other.get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        assert_eq!(other[VARY], "Origin");
    }

    #[test]
    fn preflights_allow_reads_with_a_token_and_a_validator() {
        let any = Origins::Any;
        let mut answer = HeaderMap::new();
        any.preflight(
            &request(Some("https://shop.example"), Some("GET")),
            &mut answer,
        );
        assert_eq!(answer[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(answer[ACCESS_CONTROL_ALLOW_METHODS], "GET, HEAD");
        assert_eq!(
            answer[ACCESS_CONTROL_ALLOW_HEADERS],
            "Authorization, If-None-Match, Content-Type"
        );
        assert_eq!(answer[ACCESS_CONTROL_MAX_AGE], "86400");
        let mut write = HeaderMap::new();
        any.preflight(
            &request(Some("https://shop.example"), Some("POST")),
            &mut write,
        );
        assert!(write.get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        assert_eq!(write[ALLOW], "GET, HEAD, OPTIONS");
    }
}
