//! Path routing on arbitrary paths: `match_path` never panics, what it matches is
//! exactly the path it was given (one trailing slash aside), and a product id is
//! accepted only in its one canonical decimal spelling.

#![no_main]

use atelier::http::endpoint::Endpoint;
use atelier::http::handlers::product_id;
use atelier::http::router::match_path;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|path: &str| {
    let Some((endpoint, id)) = match_path(path) else {
        return;
    };
    let route = match endpoint {
        Endpoint::ListProducts => "/products".to_string(),
        Endpoint::GetProduct => format!("/products/{id}"),
        Endpoint::GetProductStyles => format!("/products/{id}/styles"),
        Endpoint::GetRelatedProducts => format!("/products/{id}/related"),
        Endpoint::GetProductPage => format!("/products/{id}/page"),
        Endpoint::Healthz => "/healthz".to_string(),
        Endpoint::Readyz => "/readyz".to_string(),
        Endpoint::Metrics => "/metrics".to_string(),
        // The query (`ids=`) or the method (`OPTIONS`) names these, never the path.
        Endpoint::GetProductsById | Endpoint::Preflight => {
            panic!("{path:?} was routed as {endpoint:?}")
        }
        Endpoint::Unmatched => panic!("match_path named no endpoint for {path:?}"),
    };
    assert!(
        path == route || path.strip_suffix('/') == Some(route.as_str()),
        "{path:?} was routed as {route:?}"
    );
    assert!(!id.contains('/'), "{path:?} gave the id segment {id:?}");
    if let Ok(id_value) = product_id(id) {
        assert!(id_value >= 1, "{id:?} accepted as {id_value}");
        assert_eq!(id_value.to_string(), id, "{id:?} is not canonical");
    }
});
