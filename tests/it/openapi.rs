//! `openapi.yaml` against real answers: every operation and status it documents is
//! produced by a running server, and each answer has the documented content type,
//! headers and a body valid against the documented schema.

use std::collections::BTreeSet;
use std::time::Duration;

use atelier::http::Settings;
use serde_json::{Value, json};

use crate::serving::{Reply, Server, request, seed_catalog};
use crate::support::TestDb;

/// The contract, parsed.
struct Spec {
    document: Value,
}

impl Spec {
    fn load() -> Spec {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");
        let text = std::fs::read_to_string(path).expect("read openapi.yaml");
        let document: Value = serde_norway::from_str(&text).expect("openapi.yaml is YAML");
        assert_eq!(document["openapi"], "3.1.0");
        Spec { document }
    }

    /// Follows a local `$ref`, if the value is one.
    fn resolve<'a>(&'a self, value: &'a Value) -> &'a Value {
        match value.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let pointer = reference.strip_prefix('#').expect("a local reference");
                self.resolve(
                    self.document
                        .pointer(pointer)
                        .expect("the reference exists"),
                )
            }
            None => value,
        }
    }

    /// The path template a concrete path (query and trailing slash removed) falls under.
    fn template(&self, path: &str) -> Option<String> {
        let path = path.split('?').next().unwrap();
        let path = path
            .strip_suffix('/')
            .filter(|p| !p.is_empty())
            .unwrap_or(path);
        let segments: Vec<&str> = path.split('/').collect();
        self.document["paths"]
            .as_object()
            .unwrap()
            .keys()
            .find_map(|template| {
                let parts: Vec<&str> = template.split('/').collect();
                let matches = parts.len() == segments.len()
                    && parts
                        .iter()
                        .zip(&segments)
                        .all(|(part, segment)| part.starts_with('{') || part == segment);
                matches.then(|| template.clone())
            })
    }

    /// Every (template, method, status) the document promises.
    fn promises(&self) -> BTreeSet<(String, String, String)> {
        let mut promises = BTreeSet::new();
        for (template, item) in self.document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                if method == "parameters" {
                    continue;
                }
                for status in operation["responses"].as_object().unwrap().keys() {
                    promises.insert((template.clone(), method.clone(), status.clone()));
                }
            }
        }
        promises
    }

    /// A validator for `schema`, whose references point into the document's components.
    fn validator(&self, schema: &Value) -> jsonschema::Validator {
        let mut root = schema.clone();
        if let Some(object) = root.as_object_mut() {
            object.insert("components".into(), self.document["components"].clone());
        }
        jsonschema::draft202012::new(&root).expect("a valid JSON Schema")
    }

    /// Checks one exchange against the document and returns what it covered.
    fn check(&self, method: &str, path: &str, reply: &Reply) -> (String, String, String) {
        let what = format!("{method} {path} → {}", reply.status);
        let template = self
            .template(path)
            .unwrap_or_else(|| panic!("{what}: undocumented path"));
        let method = method.to_ascii_lowercase();
        let operation = &self.document["paths"][&template][&method];
        assert!(operation.is_object(), "{what}: undocumented method");
        let status = reply.status.to_string();
        let response = self.resolve(&operation["responses"][&status]);
        assert!(response.is_object(), "{what}: undocumented status");
        for (name, header) in response["headers"].as_object().into_iter().flatten() {
            let value = reply
                .header(&name.to_ascii_lowercase())
                .unwrap_or_else(|| panic!("{what}: no {name} header"));
            let schema = &self.resolve(header)["schema"];
            let errors: Vec<String> = self
                .validator(schema)
                .iter_errors(&json!(value))
                .map(|e| e.to_string())
                .collect();
            assert!(
                errors.is_empty(),
                "{what}: header {name}: {value}: {errors:?}"
            );
        }
        match response["content"].as_object() {
            None => assert!(
                reply.body.is_empty(),
                "{what}: a body where none is documented"
            ),
            Some(content) => {
                let content_type = reply.header("content-type").unwrap_or_default();
                let media = content
                    .get(content_type)
                    .unwrap_or_else(|| panic!("{what}: undocumented content type {content_type}"));
                let body = if content_type.starts_with("application/json") {
                    reply.json()
                } else {
                    json!(reply.text())
                };
                let errors: Vec<String> = self
                    .validator(&media["schema"])
                    .iter_errors(&body)
                    .map(|e| format!("{} at {}", e, e.instance_path()))
                    .collect();
                assert!(errors.is_empty(), "{what}: {errors:?}\n{}", reply.text());
            }
        }
        (template, method, status)
    }
}

/// The exchanges of a run and what of the document they covered.
struct Coverage<'a> {
    spec: &'a Spec,
    covered: BTreeSet<(String, String, String)>,
}

impl Coverage<'_> {
    /// Sends one request and checks its answer against the document.
    async fn exchange(
        &mut self,
        server: &Server,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) {
        let reply = request(server.addr, method, path, headers).await;
        self.covered.insert(self.spec.check(method, path, &reply));
    }
}

#[tokio::test]
async fn real_answers_match_the_document_and_cover_it() {
    let spec = Spec::load();
    let db = TestDb::new().await;
    seed_catalog(&db.url, 40).await;
    let server = Server::start(&db.url, Settings::default()).await;
    // A server whose database never answers, for the 503s.
    let down = Server::start(
        "postgres://nobody@127.0.0.1:1/none",
        Settings {
            pool_timeout: Duration::from_millis(200),
            query_timeout: Duration::from_millis(400),
            ..Settings::default()
        },
    )
    .await;

    let mut run = Coverage {
        spec: &spec,
        covered: BTreeSet::new(),
    };
    for path in [
        "/products",
        "/products?page=2&count=7",
        "/products?count=1000",
        "/products?page=99",
        "/products?page=0",
        "/products?count=5000",
        // Products by id: known and unknown, with and without styles, and refused lists.
        "/products?ids=5,1,7,2",
        "/products?ids=7",
        "/products?ids=3%2C14%2C1&include=styles",
        "/products?ids=",
        "/products?ids=1,x",
        "/products?ids=4,5,4",
        "/products?ids=1&page=2",
        "/products?ids=1&include=reviews",
    ] {
        run.exchange(&server, "GET", path, &[]).await;
    }
    // Products with and without styles, photos, skus, sale prices and features.
    for id in 1..=13 {
        for suffix in ["", "/styles", "/related", "/page"] {
            run.exchange(&server, "GET", &format!("/products/{id}{suffix}"), &[])
                .await;
        }
    }
    for suffix in ["", "/styles", "/related", "/page"] {
        for id in ["7", "abc", "0", "1e3"] {
            run.exchange(&server, "GET", &format!("/products/{id}{suffix}"), &[])
                .await;
        }
        let path = format!("/products/2{suffix}");
        run.exchange(&server, "HEAD", &path, &[]).await;
        run.exchange(&down, "GET", &path, &[]).await;
        for method in ["POST", "PUT", "PATCH", "DELETE"] {
            run.exchange(&server, method, &path, &[]).await;
        }
    }
    run.exchange(&server, "HEAD", "/products", &[]).await;
    run.exchange(&down, "GET", "/products", &[]).await;
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        run.exchange(&server, method, "/products", &[]).await;
    }
    for path in ["/healthz", "/readyz", "/metrics"] {
        run.exchange(&server, "GET", path, &[]).await;
    }
    run.exchange(&down, "GET", "/readyz", &[]).await;
    // A browser's preflight, on every path.
    let preflight = [
        ("Origin", "https://shop.example"),
        ("Access-Control-Request-Method", "GET"),
        (
            "Access-Control-Request-Headers",
            "authorization, if-none-match",
        ),
    ];
    for path in [
        "/products",
        "/products/2",
        "/products/2/styles",
        "/products/2/related",
        "/products/2/page",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        run.exchange(&server, "OPTIONS", path, &preflight).await;
    }
    // Revalidation with the validator of a first answer.
    for path in [
        "/products",
        "/products/3",
        "/products/3/styles",
        "/products/3/related",
        "/products/3/page",
        "/products?ids=3,7,1&include=styles",
    ] {
        let etag = server.get(path).await.header("etag").unwrap().to_string();
        run.exchange(&server, "GET", path, &[("If-None-Match", &etag)])
            .await;
        // A client that refuses every coding.
        run.exchange(&server, "GET", path, &[("Accept-Encoding", "*;q=0")])
            .await;
    }

    let missing: Vec<_> = spec.promises().difference(&run.covered).cloned().collect();
    assert!(
        missing.is_empty(),
        "documented but never produced: {missing:?}"
    );
    server.stop().await;
    down.stop().await;
}

#[test]
fn the_validator_rejects_answers_that_break_the_contract() {
    let spec = Spec::load();
    let validator = spec.validator(&json!({ "$ref": "#/components/schemas/Product" }));
    let good = json!({
        "id": 1, "campus": "hr-rfp", "name": "Camo Onesie", "slogan": "Blend in",
        "description": "d", "category": "Jackets", "default_price": "140.00",
        "created_at": "2021-08-13T14:38:44.509Z", "updated_at": "2021-08-13T14:38:44.509Z",
        "features": [{ "feature": "Fabric", "value": null }]
    });
    assert!(validator.is_valid(&good));
    for (field, bad) in [
        ("default_price", json!(140)),
        ("default_price", json!("140")),
        ("created_at", json!("2021-08-13 14:38:44")),
        ("id", json!("1")),
        ("features", json!([{ "feature": "Fabric" }])),
    ] {
        let mut broken = good.clone();
        broken[field] = bad;
        assert!(!validator.is_valid(&broken), "{field} accepted");
    }
    let mut extra = good.clone();
    extra["extra"] = json!(1);
    assert!(!validator.is_valid(&extra));
    let mut without = good.clone();
    without.as_object_mut().unwrap().remove("features");
    assert!(!validator.is_valid(&without));
}
