//! The storefront's view: a product page in one request (`/products/:id/page`),
//! several products in one (`/products?ids=`), both joined from the cached documents
//! in either coding, and reads from other origins (CORS).

use std::process::Stdio;
use std::time::{Duration, Instant};

use atelier::http::Settings;
use atelier::materialize::{self, Plan};
use serde_json::{Value, json};

use crate::compression::gunzip;
use crate::serving::{Reply, Server, eventually, request, seed_catalog, stored};
use crate::support::TestDb;

const BROWSER: &str = "gzip, deflate, br, zstd";

/// A seeded catalog of 40 products (every seventh missing) where product 3's related
/// list holds, in order: 2, itself, 2 again, 7 (no such product) and 10 (no styles);
/// product 4 has no related products.
pub async fn storefront_catalog() -> TestDb {
    let db = TestDb::new().await;
    seed_catalog(&db.url, 40).await;
    let client = db.client().await;
    // The catalog's foreign keys keep related ids pointing at products; with their
    // triggers off, one points at none, as a document built before its product went
    // would.
    client
        .batch_execute(
            "SET session_replication_role = replica;
             DELETE FROM related WHERE product_id IN (3, 4);
             INSERT INTO related (id, product_id, related_product_id) VALUES
               (1001, 3, 2), (1002, 3, 3), (1003, 3, 2), (1004, 3, 7), (1005, 3, 10);
             SET session_replication_role = origin;",
        )
        .await
        .unwrap();
    materialize::materialize(
        &db.url,
        Plan::Products(vec![3, 4]),
        &materialize::Settings::default(),
    )
    .await
    .unwrap();
    db
}

async fn get(server: &Server, path: &str, accept: Option<&str>) -> Reply {
    let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept-Encoding", a)).into_iter().collect();
    request(server.addr, "GET", path, &headers).await
}

/// The body, decoded when it came in gzip.
fn decoded(reply: &Reply) -> Vec<u8> {
    match reply.header("content-encoding") {
        Some("gzip") => gunzip(&reply.body),
        None => reply.body.clone(),
        Some(other) => panic!("unexpected coding {other}"),
    }
}

/// Stored document `column` of `id` as bytes, or `null`.
async fn part(client: &tokio_postgres::Client, column: &str, id: i32) -> Vec<u8> {
    let exists = client
        .query_opt("SELECT 1 FROM document WHERE product_id = $1", &[&id])
        .await
        .unwrap()
        .is_some();
    match exists {
        true => stored(client, column, id).await,
        false => b"null".to_vec(),
    }
}

/// `{"id":id,"product":…,"styles":…}` from the stored documents.
async fn entry(client: &tokio_postgres::Client, id: i32) -> Vec<u8> {
    let mut out = format!("{{\"id\":{id},\"product\":").into_bytes();
    out.extend(part(client, "product", id).await);
    out.extend_from_slice(b",\"styles\":");
    out.extend(part(client, "styles", id).await);
    out.push(b'}');
    out
}

#[tokio::test]
async fn a_product_page_is_its_documents_and_its_related_products_joined_byte_for_byte() {
    let db = storefront_catalog().await;
    let client = db.client().await;
    let server = Server::start(&db.url, Settings::default()).await;
    let mut expected = b"{\"product\":".to_vec();
    expected.extend(stored(&client, "product", 3).await);
    expected.extend_from_slice(b",\"styles\":");
    expected.extend(stored(&client, "styles", 3).await);
    expected.extend_from_slice(b",\"related\":[");
    for (index, id) in [2, 3, 2, 7, 10].into_iter().enumerate() {
        if index > 0 {
            expected.push(b',');
        }
        expected.extend(entry(&client, id).await);
    }
    expected.extend_from_slice(b"]}");
    // Cold (every part a miss), then warm, in both codings.
    for accept in [None, Some(BROWSER), None, Some(BROWSER)] {
        let reply = get(&server, "/products/3/page", accept).await;
        assert_eq!(reply.status, 200, "{accept:?}");
        assert_eq!(
            reply.header("content-encoding").is_some(),
            accept.is_some(),
            "{accept:?}"
        );
        assert_eq!(
            String::from_utf8(decoded(&reply)).unwrap(),
            String::from_utf8(expected.clone()).unwrap()
        );
    }
    let page: Value = serde_json::from_slice(&expected).unwrap();
    assert_eq!(
        page["related"][3],
        json!({"id": 7, "product": null, "styles": null})
    );
    // A product without related products, and one without styles.
    let lonely: Value = get(&server, "/products/4/page", None).await.json();
    assert_eq!(lonely["related"], json!([]));
    let unstyled: Value = get(&server, "/products/10/page", None).await.json();
    assert_eq!(unstyled["styles"]["results"], json!([]));
    // No such product: 404 with the JSON message, like /products/7.
    let missing = get(&server, "/products/7/page", None).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["message"], "no product with id 7");
    assert_eq!(get(&server, "/products/x/page", None).await.status, 400);
    server.stop().await;
}

#[tokio::test]
async fn several_products_come_in_the_order_asked_with_null_for_unknown_ids() {
    let db = storefront_catalog().await;
    let client = db.client().await;
    let server = Server::start(&db.url, Settings::default()).await;
    let mut expected = b"[".to_vec();
    for (index, id) in [5, 1, 7, 2].into_iter().enumerate() {
        if index > 0 {
            expected.push(b',');
        }
        expected.extend(part(&client, "product", id).await);
    }
    expected.push(b']');
    let mut with_styles = b"[".to_vec();
    for (index, id) in [5, 1, 7, 2].into_iter().enumerate() {
        if index > 0 {
            with_styles.push(b',');
        }
        with_styles.extend(entry(&client, id).await);
    }
    with_styles.push(b']');
    for accept in [None, Some(BROWSER)] {
        let reply = get(&server, "/products?ids=5,1,7,2", accept).await;
        assert_eq!(reply.status, 200);
        assert_eq!(decoded(&reply), expected, "{accept:?}");
        let reply = get(
            &server,
            "/products?ids=5%2C1%2C7%2C2&include=styles",
            accept,
        )
        .await;
        assert_eq!(decoded(&reply), with_styles, "{accept:?}");
    }
    // page/count keep working as before.
    let page = get(&server, "/products?page=1&count=2", None).await.json();
    assert_eq!(page.as_array().unwrap().len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn bad_id_lists_get_a_400_with_a_json_message() {
    let db = storefront_catalog().await;
    let server = Server::start(&db.url, Settings::default()).await;
    let too_many: Vec<String> = (1..=101).map(|id| id.to_string()).collect();
    let too_many = format!("/products?ids={}", too_many.join(","));
    let cases = [
        ("/products?ids=", "ids must name at least one product id"),
        ("/products?ids=1,x", "got \"x\""),
        ("/products?ids=1,,2", "got \"\""),
        ("/products?ids=0", "got \"0\""),
        ("/products?ids=3,4,3", "ids names product 3 twice"),
        (too_many.as_str(), "at most 100 products, got 101"),
        ("/products?ids=1&page=2", "it takes no page or count"),
        (
            "/products?ids=1&include=reviews",
            "include takes \"styles\"",
        ),
    ];
    for (path, message) in cases {
        let reply = get(&server, path, None).await;
        assert_eq!(reply.status, 400, "{path}");
        let text = reply.json()["message"].as_str().unwrap().to_string();
        assert!(text.contains(message), "{path}: {text}");
    }
    server.stop().await;
}

#[tokio::test]
async fn joined_answers_have_validators_per_coding_304s_and_heads() {
    let db = storefront_catalog().await;
    let server = Server::start(&db.url, Settings::default()).await;
    for path in ["/products/3/page", "/products?ids=1,2&include=styles"] {
        let mut etags = Vec::new();
        for accept in [None, Some(BROWSER)] {
            let fresh = get(&server, path, accept).await;
            let etag = fresh.header("etag").expect("an ETag").to_string();
            assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
            assert_eq!(fresh.header("vary"), Some("Accept-Encoding"));
            assert_eq!(
                fresh.header("cache-control"),
                Some("public, max-age=0, s-maxage=1")
            );
            let mut headers = vec![("If-None-Match", etag.as_str())];
            if let Some(accept) = accept {
                headers.push(("Accept-Encoding", accept));
            }
            let again = request(server.addr, "GET", path, &headers).await;
            assert_eq!(again.status, 304, "{path} {accept:?}");
            assert!(again.body.is_empty());
            let head = request(server.addr, "HEAD", path, &headers[1..]).await;
            assert_eq!(head.status, 200);
            assert!(head.body.is_empty());
            assert_eq!(
                head.header("content-length"),
                Some(fresh.body.len().to_string().as_str())
            );
            etags.push(etag);
        }
        assert_ne!(
            etags[0], etags[1],
            "{path}: one validator per representation"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_change_to_a_related_product_is_served_in_the_page_within_a_second() {
    let db = storefront_catalog().await;
    let client = db.client().await;
    let server = Server::start_listening(&db.url, Settings::default()).await;
    let stop = tokio_util_stop();
    let url = db.url.clone();
    let follower = tokio::spawn(async move {
        materialize::follow::follow(&url, &materialize::Settings::default(), stop.1).await;
    });
    for accept in [None, Some(BROWSER)] {
        let page: Value =
            serde_json::from_slice(&decoded(&get(&server, "/products/3/page", accept).await))
                .unwrap();
        assert_eq!(page["related"][0]["product"]["name"], "Product 2");
    }
    client
        .batch_execute("UPDATE product SET name = 'Renamed 2' WHERE id = 2")
        .await
        .unwrap();
    let changed = Instant::now();
    for accept in [None, Some(BROWSER)] {
        eventually(10, "the page shows the change", || async {
            let page: Value =
                serde_json::from_slice(&decoded(&get(&server, "/products/3/page", accept).await))
                    .unwrap();
            page["related"][0]["product"]["name"] == "Renamed 2"
                && page["related"][2]["product"]["name"] == "Renamed 2"
        })
        .await;
    }
    assert!(
        changed.elapsed() < Duration::from_secs(1),
        "{:?}",
        changed.elapsed()
    );
    let _ = stop.0.send(());
    follower.await.unwrap();
    server.stop().await;
}

/// A stop signal for a follower: send to stop it.
fn tokio_util_stop() -> (
    tokio::sync::oneshot::Sender<()>,
    impl std::future::Future<Output = ()>,
) {
    let (send, receive) = tokio::sync::oneshot::channel::<()>();
    (send, async move {
        let _ = receive.await;
    })
}

#[tokio::test]
async fn other_clients_decode_the_joined_gzip_answer() {
    let db = storefront_catalog().await;
    let server = Server::start(&db.url, Settings::default()).await;
    let url = format!("http://{}/products/3/page", server.addr);
    let identity = get(&server, "/products/3/page", None).await.body;
    // Run without blocking: the server answers on this test's runtime.
    let curl = tokio::process::Command::new("curl")
        .args(["--silent", "--fail", "--compressed", &url])
        .output()
        .await
        .expect("curl runs");
    assert!(curl.status.success());
    assert_eq!(curl.stdout, identity, "curl --compressed");
    let python = tokio::process::Command::new("python3")
        .args([
            "-c",
            "import gzip, sys, urllib.request; \
             r = urllib.request.urlopen(urllib.request.Request(sys.argv[1], \
                 headers={'Accept-Encoding': 'gzip'})); \
             assert r.headers['Content-Encoding'] == 'gzip'; \
             sys.stdout.buffer.write(gzip.decompress(r.read()))",
            &url,
        ])
        .stderr(Stdio::inherit())
        .output()
        .await
        .expect("python3 runs");
    assert!(python.status.success());
    assert_eq!(python.stdout, identity, "python's gzip");
    server.stop().await;
}

#[tokio::test]
async fn pages_on_other_origins_may_read_and_their_preflights_are_answered() {
    let db = storefront_catalog().await;
    let server = Server::start(&db.url, Settings::default()).await;
    let origin = ("Origin", "http://shop.example:8080");
    let read = request(server.addr, "GET", "/products/3/page", &[origin]).await;
    assert_eq!(read.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        read.header("access-control-expose-headers"),
        Some("ETag, Content-Encoding")
    );
    // Errors too, so that a page can read their message.
    let missing = request(server.addr, "GET", "/products/7", &[origin]).await;
    assert_eq!(missing.header("access-control-allow-origin"), Some("*"));
    let preflight = request(
        server.addr,
        "OPTIONS",
        "/products/3/page",
        &[
            origin,
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "authorization"),
        ],
    )
    .await;
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("GET, HEAD")
    );
    let allowed = preflight.header("access-control-allow-headers").unwrap();
    assert!(allowed.contains("Authorization") && allowed.contains("If-None-Match"));
    assert_eq!(preflight.header("access-control-max-age"), Some("86400"));
    server.stop().await;

    // Narrowed to a list: the listed origin is named back, others are not.
    let listed = Server::start(
        &db.url,
        Settings {
            cors_origins: vec!["http://shop.example:8080".to_string()],
            ..Settings::default()
        },
    )
    .await;
    let read = request(listed.addr, "GET", "/products/3", &[origin]).await;
    assert_eq!(
        read.header("access-control-allow-origin"),
        Some("http://shop.example:8080")
    );
    assert!(
        read.headers
            .iter()
            .any(|(name, value)| name == "vary" && value == "Origin")
    );
    let other = request(
        listed.addr,
        "GET",
        "/products/3",
        &[("Origin", "http://evil.example")],
    )
    .await;
    assert_eq!(other.status, 200);
    assert_eq!(other.header("access-control-allow-origin"), None);
    listed.stop().await;
}
