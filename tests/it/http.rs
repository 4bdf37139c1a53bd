//! Tests of `http`: every rule of the API contract over a real socket and a real
//! PostgreSQL, the cache's single flight and invalidation, and graceful shutdown.

use std::time::{Duration, Instant};

use atelier::http::Settings;
use atelier::http::catch_up::MissedChanges;
use atelier::materialize::{self, Plan};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::golden::{Body, assert_genuine_answers};
use crate::serving::{
    Server, eventually, read_reply, request, seed_catalog, seeded_own_cluster, send, stored,
};
use crate::support::{TestDb, terminate_listen_connections};

/// Products in the synthetic catalog (ids 1..=40 without multiples of 7: 35 products).
const PRODUCTS: i32 = 40;

async fn catalog() -> TestDb {
    let db = TestDb::new().await;
    seed_catalog(&db.url, PRODUCTS).await;
    db
}

fn ids_of(page: &serde_json::Value) -> Vec<i64> {
    page.as_array()
        .expect("a page is an array")
        .iter()
        .map(|entry| entry["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn documents_are_the_stored_bytes_with_validators() {
    let db = catalog().await;
    let client = db.client().await;
    let server = Server::start(
        &db.url,
        Settings {
            max_age: 123,
            shared_max_age: None,
            ..Settings::default()
        },
    )
    .await;
    for (path, column) in [
        ("/products/8", "product"),
        ("/products/8/styles", "styles"),
        ("/products/8/related", "related"),
    ] {
        let reply = server.get(path).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.body, stored(&client, column, 8).await, "{path}");
        assert_eq!(
            reply.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        assert_eq!(reply.header("cache-control"), Some("public, max-age=123"));
        let etag = reply.header("etag").expect("an ETag");
        assert!(
            etag.len() == 18 && etag.starts_with('"') && etag.ends_with('"'),
            "{etag}"
        );
    }
    // A list page is the list entries of its positions joined into an array.
    let reply = server.get("/products?page=2&count=3").await;
    let mut expected = b"[".to_vec();
    for (index, id) in [4, 5, 6].into_iter().enumerate() {
        if index > 0 {
            expected.push(b',');
        }
        expected.extend(stored(&client, "list_entry", id).await);
    }
    expected.push(b']');
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, expected);
    server.stop().await;
}

#[tokio::test]
async fn pages_hold_positions_in_id_order_and_end_empty() {
    let db = catalog().await;
    let server = Server::start(&db.url, Settings::default()).await;
    assert_eq!(
        ids_of(&server.get("/products").await.json()),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(
        ids_of(&server.get("/products?page=2").await.json()),
        [6, 8, 9, 10, 11]
    );
    // Ids 7 and 14 are missing: positions 11..=15 are ids 12, 13, 15, 16, 17.
    assert_eq!(
        ids_of(&server.get("/products?count=5&page=3").await.json()),
        [12, 13, 15, 16, 17]
    );
    let everything = ids_of(&server.get("/products?count=1000").await.json());
    let expected: Vec<i64> = (1..=i64::from(PRODUCTS)).filter(|id| id % 7 != 0).collect();
    assert_eq!(everything, expected);
    // The last page is short; past it, and far past it, pages are empty.
    assert_eq!(
        ids_of(&server.get("/products?page=4&count=10").await.json()),
        [36, 37, 38, 39, 40]
    );
    for path in [
        "/products?page=5&count=10",
        "/products?page=200000&count=1000",
        "/products?page=2147483647&count=1000",
        "/products?page=2147483648",
        "/products?page=99999999999999999999999&count=1000",
    ] {
        let reply = server.get(path).await;
        assert_eq!((reply.status, reply.text().as_str()), (200, "[]"), "{path}");
        assert!(reply.header("etag").is_some());
    }
    // Each entry has exactly the list fields, with the formats of the contract.
    let entry = &server.get("/products?count=1").await.json()[0];
    let mut keys: Vec<&str> = entry
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "campus",
            "category",
            "created_at",
            "default_price",
            "description",
            "id",
            "name",
            "slogan",
            "updated_at"
        ]
    );
    assert_eq!(entry["default_price"], "101.00");
    assert_eq!(entry["campus"], "hr-rfp");
    server.stop().await;
}

#[tokio::test]
async fn malformed_ids_and_parameters_are_400_naming_the_value() {
    let db = catalog().await;
    let server = Server::start(&db.url, Settings::default()).await;
    for id in [
        "abc",
        "-1",
        "0",
        "1.5",
        "1e3",
        "+1",
        "99999999999",
        "2147483648",
        "01",
        "%31",
    ] {
        for suffix in ["", "/styles", "/related"] {
            let reply = server.get(&format!("/products/{id}{suffix}")).await;
            assert_eq!(reply.status, 400, "{id}{suffix}");
            assert_eq!(
                reply.header("content-type"),
                Some("application/json; charset=utf-8")
            );
            let message = reply.json()["message"].as_str().unwrap().to_string();
            assert!(message.contains(&format!("\"{id}\"")), "{message}");
        }
    }
    // An empty id segment.
    assert_eq!(server.get("/products//styles").await.status, 400);
    for (query, name, range) in [
        ("page=0", "page", "1 up"),
        ("page=-2", "page", "1 up"),
        ("page=abc", "page", "1 up"),
        ("page=", "page", "1 up"),
        ("page=1.5", "page", "1 up"),
        ("count=0", "count", "1 to 1000"),
        ("count=1001", "count", "1 to 1000"),
        ("count=x&page=1", "count", "1 to 1000"),
    ] {
        let reply = server.get(&format!("/products?{query}")).await;
        assert_eq!(reply.status, 400, "{query}");
        let message = reply.json()["message"].as_str().unwrap().to_string();
        assert!(
            message.starts_with(name) && message.contains(range),
            "{message}"
        );
        let value = query.split('&').next().unwrap().split_once('=').unwrap().1;
        assert!(message.ends_with(&format!("got \"{value}\"")), "{message}");
    }
    server.stop().await;
}

#[tokio::test]
async fn unknown_products_paths_and_methods_are_json_errors() {
    let db = catalog().await;
    let server = Server::start(&db.url, Settings::default()).await;
    for path in [
        "/products/7",
        "/products/7/styles",
        "/products/7/related",
        "/products/2147483647",
    ] {
        let reply = server.get(path).await;
        assert_eq!(reply.status, 404, "{path}");
        let id = path.split('/').nth(2).unwrap();
        assert_eq!(
            reply.json(),
            json!({ "message": format!("no product with id {id}") })
        );
    }
    for path in [
        "/",
        "/reviews/1",
        "/reviews/meta?product_id=1",
        "/qa/questions",
        "/cart",
        "/products/1/x",
    ] {
        let reply = server.get(path).await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(
            reply.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        assert!(
            reply.json()["message"]
                .as_str()
                .unwrap()
                .starts_with("no such path")
        );
    }
    // OPTIONS is answered (a browser's preflight): tests/it/storefront.rs.
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        for path in [
            "/products",
            "/products/1",
            "/products/1/styles",
            "/products/1/related",
            "/healthz",
        ] {
            let reply = request(server.addr, method, path, &[("Content-Length", "0")]).await;
            assert_eq!(reply.status, 405, "{method} {path}");
            assert_eq!(reply.header("allow"), Some("GET, HEAD"));
            assert!(reply.json()["message"].as_str().unwrap().contains(method));
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn trailing_slashes_queries_and_authorization_change_nothing() {
    let db = catalog().await;
    let server = Server::start(&db.url, Settings::default()).await;
    for base in [
        "/products/3",
        "/products/3/styles",
        "/products/3/related",
        "/products",
    ] {
        let plain = server.get(base).await;
        assert_eq!(plain.status, 200);
        for variant in [format!("{base}/"), format!("{base}?page=9&x=1")] {
            if base == "/products" && variant.contains('?') {
                continue;
            }
            let reply = server.get(&variant).await;
            assert_eq!((reply.status, &reply.body), (200, &plain.body), "{variant}");
        }
        let authorized = request(
            server.addr,
            "GET",
            base,
            &[("Authorization", "ghp_not_checked")],
        )
        .await;
        assert_eq!((authorized.status, &authorized.body), (200, &plain.body));
    }
    server.stop().await;
}

#[tokio::test]
async fn if_none_match_gives_304_and_head_gives_headers_only() {
    let db = catalog().await;
    let server = Server::start(&db.url, Settings::default()).await;
    let first = server.get("/products/2/styles").await;
    let etag = first.header("etag").unwrap().to_string();
    for header in [
        etag.clone(),
        format!("\"x\", {etag}"),
        format!("W/{etag}"),
        "*".into(),
    ] {
        let reply = request(
            server.addr,
            "GET",
            "/products/2/styles",
            &[("If-None-Match", &header)],
        )
        .await;
        assert_eq!(reply.status, 304, "{header}");
        assert!(reply.body.is_empty());
        assert_eq!(reply.header("etag"), Some(etag.as_str()));
        assert_eq!(
            reply.header("cache-control"),
            Some("public, max-age=0, s-maxage=1")
        );
    }
    let other = request(
        server.addr,
        "GET",
        "/products/2/styles",
        &[("If-None-Match", "\"0\"")],
    )
    .await;
    assert_eq!((other.status, &other.body), (200, &first.body));
    // Another document has another validator.
    assert_ne!(
        server.get("/products/3/styles").await.header("etag"),
        Some(etag.as_str())
    );

    for path in [
        "/products/2/styles",
        "/products?page=2",
        "/products/7",
        "/products/x",
        "/healthz",
    ] {
        let get = server.get(path).await;
        let head = request(server.addr, "HEAD", path, &[]).await;
        assert_eq!(head.status, get.status, "{path}");
        assert_eq!(
            head.header("content-length"),
            Some(get.body.len().to_string().as_str())
        );
        assert_eq!(head.header("content-type"), get.header("content-type"));
        assert_eq!(head.header("etag"), get.header("etag"));
    }
    // A HEAD answer really has no body: the next answer on the connection follows it.
    let mut stream = BufReader::new(TcpStream::connect(server.addr).await.unwrap());
    send(&mut stream, "HEAD", "/products/2", &[], false).await;
    send(&mut stream, "GET", "/products/3", &[], false).await;
    assert_eq!(read_reply(&mut stream, true).await.status, 200);
    let next = read_reply(&mut stream, false).await;
    assert_eq!(next.json()["id"], 3);
    server.stop().await;
}

#[tokio::test]
async fn keep_alive_serves_many_requests_on_one_connection() {
    let db = catalog().await;
    let server = Server::start(&db.url, Settings::default()).await;
    let mut stream = BufReader::new(TcpStream::connect(server.addr).await.unwrap());
    for id in 1..=6 {
        send(
            &mut stream,
            "GET",
            &format!("/products/{id}/related"),
            &[],
            false,
        )
        .await;
        let reply = read_reply(&mut stream, false).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("connection"), None, "kept open");
    }
    server.stop().await;
}

#[tokio::test]
async fn concurrent_misses_on_one_key_read_the_database_once() {
    let db = catalog().await;
    let server = Server::start_listening(&db.url, Settings::default()).await;
    assert_eq!(server.metric("atelier_cache_misses_total").await, 0.0);
    let addr = server.addr;
    let requests: Vec<_> = (0..64)
        .map(|_| tokio::spawn(async move { request(addr, "GET", "/products/5/styles", &[]).await }))
        .collect();
    let mut bodies = Vec::new();
    for handle in requests {
        let reply = handle.await.unwrap();
        assert_eq!(reply.status, 200);
        bodies.push(reply.body);
    }
    assert!(bodies.windows(2).all(|pair| pair[0] == pair[1]));
    assert_eq!(server.metric("atelier_cache_misses_total").await, 1.0);
    assert_eq!(server.metric("atelier_cache_hits_total").await, 63.0);
    server.stop().await;
}

#[tokio::test]
async fn concurrent_misses_on_many_keys_go_out_together_and_each_gets_its_own() {
    let db = catalog().await;
    let server = Server::start_listening(&db.url, Settings::default()).await;
    let addr = server.addr;
    // Every document twice, by a client that takes gzip and by one that does not.
    let reads: Vec<(String, bool)> = (1..=PRODUCTS)
        .flat_map(|id| ["", "/styles", "/related"].map(|tail| format!("/products/{id}{tail}")))
        .flat_map(|path| [(path.clone(), false), (path, true)])
        .collect();
    // Held behind a lock, every read queues: the first batches wait on the database,
    // all the others for a slot.
    let mut holder = atelier::db::connect(&db.url).await.unwrap();
    let lock = holder.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE document IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let requests: Vec<_> = reads
        .iter()
        .cloned()
        .map(|(path, gzip)| {
            tokio::spawn(async move {
                let accept: &[(&str, &str)] = match gzip {
                    true => &[("Accept-Encoding", "gzip")],
                    false => &[],
                };
                request(addr, "GET", &path, accept).await
            })
        })
        .collect();
    eventually(10, "every read queued", || async {
        server.metric("atelier_db_reads_in_flight").await == reads.len() as f64
    })
    .await;
    lock.rollback().await.unwrap();
    let client = db.client().await;
    let mut compressed = 0;
    for ((path, gzip), handle) in reads.iter().zip(requests) {
        let reply = handle.await.unwrap();
        let mut parts = path.trim_start_matches("/products/").split('/');
        let id: i32 = parts.next().unwrap().parse().unwrap();
        if id % 7 == 0 {
            assert_eq!(reply.status, 404, "{path}");
            continue;
        }
        let column = match parts.next() {
            None => "product",
            Some(kind) => kind,
        };
        assert_eq!(reply.status, 200, "{path}");
        let body = match reply.header("content-encoding") {
            Some(_) => {
                assert!(
                    gzip,
                    "{path} compressed for a client that does not take gzip"
                );
                compressed += 1;
                crate::compression::gunzip(&reply.body)
            }
            None => reply.body.clone(),
        };
        assert_eq!(
            body,
            stored(&client, column, id).await,
            "{path} got another read's body"
        );
    }
    assert!(compressed > 0, "no document large enough to compress");
    let batches = server.metric("atelier_db_read_batches_total").await;
    assert_eq!(
        server.metric("atelier_db_batched_reads_total").await,
        reads.len() as f64
    );
    // Two slots held by the first reads, then the other 238 in batches of at most 64.
    assert!(
        batches <= 6.0,
        "{batches} batches for {} reads",
        reads.len()
    );
    server.stop().await;
}

#[tokio::test]
async fn unknown_ids_are_remembered_briefly() {
    let db = catalog().await;
    let server = Server::start_listening(
        &db.url,
        Settings {
            not_found_ttl: Duration::from_secs(2),
            ..Settings::default()
        },
    )
    .await;
    for _ in 0..5 {
        assert_eq!(server.get("/products/700").await.status, 404);
    }
    assert_eq!(server.metric("atelier_cache_misses_total").await, 1.0);
    // A document that appears without a notification is found once the absence expires.
    db.client()
        .await
        .execute(
            "INSERT INTO document (product_id, list_entry, product, styles, related) \
             SELECT 700, list_entry, product, styles, related FROM document WHERE product_id = 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(server.get("/products/700").await.status, 404);
    eventually(5, "product 700 is served", || async {
        server.get("/products/700").await.status == 200
    })
    .await;
    assert_eq!(server.metric("atelier_cache_misses_total").await, 2.0);
    server.stop().await;
}

#[tokio::test]
async fn rematerialize_invalidates_every_running_instance() {
    let db = catalog().await;
    let client = db.client().await;
    let first = Server::start_listening(&db.url, Settings::default()).await;
    let second = Server::start_listening(&db.url, Settings::default()).await;
    for server in [&first, &second] {
        // Read more than once, so that the later reads are answered from the front of
        // the cache (filled by a cache hit), which the notification must reach too.
        for _ in 0..3 {
            assert_eq!(server.get("/products/2").await.json()["name"], "Product 2");
        }
        assert_eq!(
            server.get("/products?count=2").await.json()[1]["name"],
            "Product 2"
        );
        assert_eq!(server.get("/products/3").await.json()["name"], "Product 3");
    }
    let misses_before = first.metric("atelier_cache_misses_total").await;
    // A direct change without NOTIFY stays invisible: the documents are cached.
    client
        .batch_execute(
            "UPDATE product SET name = 'Renamed' WHERE id IN (2, 3); \
             UPDATE document SET product = jsonb_set(product, '{name}', '\"Sneaky\"'), \
             product_gzip = NULL WHERE product_id = 3",
        )
        .await
        .unwrap();
    assert_eq!(first.get("/products/3").await.json()["name"], "Product 3");
    materialize::materialize(
        &db.url,
        Plan::Products(vec![2]),
        &materialize::Settings::default(),
    )
    .await
    .unwrap();
    for server in [&first, &second] {
        eventually(5, "the renamed product is served", || async {
            server.get("/products/2").await.json()["name"] == "Renamed"
        })
        .await;
        assert_eq!(
            server.get("/products?count=2").await.json()[1]["name"],
            "Renamed"
        );
        // Product 3 was not in the notification: its cached document stays.
        assert_eq!(server.get("/products/3").await.json()["name"], "Product 3");
    }
    assert!(first.metric("atelier_cache_misses_total").await > misses_before);
    // A full materialize drops everything.
    materialize::materialize(&db.url, Plan::Everything, &materialize::Settings::default())
        .await
        .unwrap();
    for server in [&first, &second] {
        eventually(5, "the full rebuild is served", || async {
            server.get("/products/3").await.json()["name"] == "Renamed"
        })
        .await;
    }
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn with_missed_changes_dropped_a_lost_listen_connection_drops_the_cache_on_reconnect() {
    let db = catalog().await;
    let client = db.client().await;
    let settings = Settings {
        missed_changes: MissedChanges::Drop,
        ..Settings::default()
    };
    let server = Server::start_listening(&db.url, settings).await;
    assert_eq!(server.get("/products/4").await.json()["name"], "Product 4");
    // Cut the LISTEN connection, then change a document with no one listening and no
    // notice sent at all.
    let cut = terminate_listen_connections(&client).await;
    assert_eq!(cut, 1);
    client
        .execute(
            // As materialize rewrites a body: its gzip form goes in the same statement.
            "UPDATE document SET product = jsonb_set(product, '{name}', '\"Missed\"'), \
             product_gzip = NULL WHERE product_id = 4",
            &[],
        )
        .await
        .unwrap();
    server
        .wait_for_metric("atelier_notify_listening", 0.0)
        .await;
    server
        .wait_for_metric("atelier_notify_listening", 1.0)
        .await;
    assert_eq!(server.get("/products/4").await.json()["name"], "Missed");
    assert_eq!(server.metric("atelier_notify_cache_drops_total").await, 2.0);
    assert_eq!(server.metric("atelier_notify_catch_ups_total").await, 0.0);
    server.stop().await;
}

#[tokio::test]
async fn a_lost_listen_connection_catches_up_on_exactly_what_it_missed() {
    let db = catalog().await;
    let client = db.client().await;
    let server = Server::start_listening(&db.url, Settings::default()).await;
    // The reconnection waits a second: a change rebuilt in that time is announced to no
    // one. A machine too slow for that gets another go with the next product.
    let mut missed = None;
    for id in [4, 5, 6] {
        assert_eq!(
            server.get(&format!("/products/{id}")).await.json()["name"],
            format!("Product {id}")
        );
        assert_eq!(server.get("/products/3").await.json()["name"], "Product 3");
        assert_eq!(terminate_listen_connections(&client).await, 1);
        client
            .execute("UPDATE product SET name = 'Missed' WHERE id = $1", &[&id])
            .await
            .unwrap();
        materialize::materialize(
            &db.url,
            Plan::Products(vec![id]),
            &materialize::Settings::default(),
        )
        .await
        .unwrap();
        let listening = server.metric("atelier_notify_listening").await;
        server
            .wait_for_metric("atelier_notify_listening", 1.0)
            .await;
        if listening == 0.0 {
            missed = Some(id);
            break;
        }
    }
    let id = missed.expect("a change committed while the server was not listening");
    assert_eq!(
        server.get(&format!("/products/{id}")).await.json()["name"],
        "Missed"
    );
    // Nothing else was dropped: the product cached before the cut is still a hit.
    let (hits, misses) = (
        server.metric("atelier_cache_hits_total").await,
        server.metric("atelier_cache_misses_total").await,
    );
    assert_eq!(server.get("/products/3").await.json()["name"], "Product 3");
    assert_eq!(server.metric("atelier_cache_hits_total").await, hits + 1.0);
    assert_eq!(server.metric("atelier_cache_misses_total").await, misses);
    assert_eq!(server.metric("atelier_notify_cache_drops_total").await, 1.0);
    assert!(server.metric("atelier_notify_catch_ups_total").await >= 1.0);
    assert!(
        server
            .metric("atelier_notify_caught_up_notices_total")
            .await
            >= 1.0
    );
    server.stop().await;
}

#[tokio::test]
async fn readyz_needs_a_materialized_catalog() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, Settings::default()).await;
    assert_eq!(
        server.get("/healthz").await.json(),
        json!({ "status": "ok" })
    );
    let not_ready = server.get("/readyz").await;
    assert_eq!(not_ready.status, 503);
    assert_eq!(
        not_ready.json(),
        json!({ "message": "no materialized catalog yet" })
    );
    seed_catalog(&db.url, 3).await;
    let ready = server.get("/readyz").await;
    assert_eq!(
        (ready.status, ready.json()),
        (200, json!({ "status": "ready" }))
    );
    server.stop().await;
}

#[tokio::test]
async fn metrics_report_requests_cache_and_pool() {
    let db = catalog().await;
    let server = Server::start_listening(
        &db.url,
        Settings {
            pool_size: 3,
            ..Settings::default()
        },
    )
    .await;
    server.get("/products/1").await;
    server.get("/products/1").await;
    server.get("/products/7").await;
    server.get("/nowhere").await;
    let reply = server.get("/metrics").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = reply.text();
    for line in [
        "atelier_http_requests_total{route=\"get_product\",status=\"200\"} 2",
        "atelier_http_requests_total{route=\"get_product\",status=\"404\"} 1",
        "atelier_http_requests_total{route=\"unmatched\",status=\"404\"} 1",
        "atelier_http_request_duration_seconds_count{route=\"get_product\"} 3",
        "atelier_cache_hits_total 1",
        "atelier_cache_misses_total 2",
        "atelier_cache_entries 2",
        "atelier_db_pool_max_connections 3",
        "atelier_db_errors_total 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from\n{text}"
        );
    }
    assert!(server.metric("atelier_cache_bytes").await > 0.0);
    assert!(server.metric("atelier_db_pool_connections").await >= 1.0);
    // Every sample line is `name{labels} value` with a number for value.
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
    server.stop().await;
}

#[tokio::test]
async fn shutdown_lets_requests_in_flight_finish_within_the_drain() {
    let db = catalog().await;
    let mut server = Server::start(
        &db.url,
        Settings {
            drain_timeout: Duration::from_millis(10000),
            ..Settings::default()
        },
    )
    .await;
    assert_eq!(server.get("/products/1").await.status, 200);
    let lock = HeldDocuments::hold(&db).await;
    let addr = server.addr;
    let in_flight = tokio::spawn(async move { request(addr, "GET", "/products/2", &[]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!in_flight.is_finished());
    server.begin_shutdown();
    eventually(5, "new connections are refused", || async {
        TcpStream::connect(addr).await.is_err()
    })
    .await;
    assert!(
        !in_flight.is_finished(),
        "the request in flight still waits"
    );
    lock.release().await;
    let reply = in_flight.await.unwrap();
    assert_eq!((reply.status, reply.json()["id"].as_i64()), (200, Some(2)));
    server.finished().await.unwrap();
}

/// The document table held locked by a transaction of its own, so that a cache miss
/// waits inside the database until [`HeldDocuments::release`] (or the drop).
struct HeldDocuments(tokio_postgres::Client);

impl HeldDocuments {
    async fn hold(db: &TestDb) -> HeldDocuments {
        let client = db.client().await;
        client
            .batch_execute("BEGIN; LOCK TABLE document IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        HeldDocuments(client)
    }

    async fn release(self) {
        self.0.batch_execute("ROLLBACK").await.unwrap();
    }
}

/// Reads from `stream` until the server closes it; fails if that takes over `limit`.
async fn closed_within(stream: &mut BufReader<TcpStream>, limit: Duration) -> Vec<u8> {
    let mut rest = Vec::new();
    tokio::time::timeout(limit, stream.read_to_end(&mut rest))
        .await
        .expect("the server closes the connection")
        .expect("a clean close");
    rest
}

#[tokio::test]
async fn shutdown_closes_idle_keep_alive_connections_at_once() {
    let db = catalog().await;
    let mut server = Server::start(
        &db.url,
        Settings {
            drain_timeout: Duration::from_millis(10000),
            ..Settings::default()
        },
    )
    .await;
    let mut idle = BufReader::new(TcpStream::connect(server.addr).await.unwrap());
    send(&mut idle, "GET", "/products/1", &[], false).await;
    assert_eq!(read_reply(&mut idle, false).await.status, 200);
    let mut never_asked = BufReader::new(TcpStream::connect(server.addr).await.unwrap());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    server.begin_shutdown();
    server.finished().await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(500), "{took:?}");
    assert_eq!(closed_within(&mut idle, Duration::from_secs(1)).await, b"");
    assert_eq!(
        closed_within(&mut never_asked, Duration::from_secs(1)).await,
        b""
    );
}

#[tokio::test]
async fn shutdown_answers_the_request_in_flight_while_idle_connections_close() {
    let db = catalog().await;
    let mut server = Server::start(
        &db.url,
        Settings {
            drain_timeout: Duration::from_millis(10000),
            ..Settings::default()
        },
    )
    .await;
    let mut idle = BufReader::new(TcpStream::connect(server.addr).await.unwrap());
    send(&mut idle, "GET", "/products/1", &[], false).await;
    assert_eq!(read_reply(&mut idle, false).await.status, 200);
    let lock = HeldDocuments::hold(&db).await;
    let mut busy = BufReader::new(TcpStream::connect(server.addr).await.unwrap());
    send(&mut busy, "GET", "/products/2", &[], false).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.begin_shutdown();
    // The idle connection goes at once, while the request in flight still waits.
    assert_eq!(closed_within(&mut idle, Duration::from_secs(1)).await, b"");
    lock.release().await;
    let reply = read_reply(&mut busy, false).await;
    assert_eq!((reply.status, reply.json()["id"].as_i64()), (200, Some(2)));
    assert_eq!(closed_within(&mut busy, Duration::from_secs(1)).await, b"");
    tokio::time::timeout(Duration::from_secs(1), server.finished())
        .await
        .expect("serve returns once the request is answered")
        .unwrap();
}

#[tokio::test]
async fn shutdown_gives_up_on_requests_after_the_drain_timeout() {
    let db = catalog().await;
    let mut server = Server::start(
        &db.url,
        Settings {
            drain_timeout: Duration::from_millis(500),
            query_timeout: Duration::from_millis(20000),
            ..Settings::default()
        },
    )
    .await;
    assert_eq!(server.get("/products/1").await.status, 200);
    let lock = HeldDocuments::hold(&db).await;
    let mut stuck = TcpStream::connect(server.addr).await.unwrap();
    stuck
        .write_all(b"GET /products/2 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    server.begin_shutdown();
    server.finished().await.unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // The stuck request was cut off: its connection closed without an answer.
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), stuck.read_to_end(&mut answer))
        .await
        .expect("the stuck connection is closed at the drain limit");
    assert!(read.is_err() || answer.is_empty(), "got {answer:?}");
    lock.release().await;
}

#[tokio::test]
async fn database_outage_serves_the_cache_answers_503_and_recovers() {
    let (own, url) = seeded_own_cluster(PRODUCTS).await;
    let bounded = Settings {
        pool_timeout: Duration::from_millis(300),
        query_timeout: Duration::from_millis(1000),
        ..Settings::default()
    };
    let server = Server::start_listening(&url, bounded.clone()).await;
    let cached = server.get("/products/1").await;
    assert_eq!(cached.status, 200);
    assert_eq!(server.get("/readyz").await.status, 200);

    tokio::task::spawn_blocking({
        let cluster = own.cluster.clone();
        move || cluster.stop()
    })
    .await
    .unwrap()
    .unwrap();
    // Cached documents are still served; others fail fast with 503 and a message.
    let again = server.get("/products/1").await;
    assert_eq!((again.status, &again.body), (200, &cached.body));
    let started = Instant::now();
    let unavailable = server.get("/products/2").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(unavailable.status, 503);
    assert_eq!(unavailable.header("retry-after"), Some("1"));
    assert_eq!(
        unavailable.json(),
        json!({ "message": "the catalog database is unavailable; retry shortly" })
    );
    assert_eq!(server.get("/readyz").await.status, 503);
    assert_eq!(server.get("/healthz").await.status, 200);
    assert!(server.metric("atelier_db_errors_total").await >= 1.0);
    server
        .wait_for_metric("atelier_notify_listening", 0.0)
        .await;

    // A server also starts while its database is down.
    let late = Server::start(&url, bounded).await;
    assert_eq!(late.get("/healthz").await.status, 200);
    assert_eq!(late.get("/products/2").await.status, 503);
    assert_eq!(late.get("/readyz").await.status, 503);

    tokio::task::spawn_blocking({
        let cluster = own.cluster.clone();
        move || cluster.start()
    })
    .await
    .unwrap()
    .unwrap();
    for instance in [&server, &late] {
        eventually(30, "the server recovers", || async {
            instance.get("/products/2").await.status == 200
                && instance.get("/readyz").await.status == 200
        })
        .await;
        instance
            .wait_for_metric("atelier_notify_listening", 1.0)
            .await;
    }
    // Invalidation works again on the new LISTEN connection.
    let client = atelier::db::connect(&url).await.unwrap();
    client
        .batch_execute("UPDATE product SET name = 'Back' WHERE id = 2")
        .await
        .unwrap();
    materialize::materialize(
        &url,
        Plan::Products(vec![2]),
        &materialize::Settings::default(),
    )
    .await
    .unwrap();
    for instance in [&server, &late] {
        eventually(5, "the change is served", || async {
            instance.get("/products/2").await.json()["name"] == "Back"
        })
        .await;
    }
    server.stop().await;
    late.stop().await;
}

#[tokio::test]
async fn genuine_samples_are_served_as_the_legacy_api_answered() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let rejects = tempfile::tempdir().unwrap();
    atelier::load::load_catalog(
        &mut client,
        &crate::support::sample("sara-2023"),
        &rejects.path().join("rejects.csv"),
        false,
    )
    .await
    .expect("load the genuine samples");
    materialize::materialize(&db.url, Plan::Everything, &materialize::Settings::default())
        .await
        .unwrap();
    let server = Server::start(&db.url, Settings::default()).await;

    let reader = &server;
    assert_genuine_answers(|body, id| async move {
        let path = body.path(id);
        let reply = reader.get(&path).await;
        assert_eq!(reply.status, 200, "{path}");
        match body {
            Body::ListEntry => reply.json()[0].clone(),
            _ => reply.json(),
        }
    })
    .await;
    let reply = server.get("/products/10/related").await;
    assert_eq!(
        (reply.status, reply.json()),
        (200, json!([])),
        "related of 10"
    );

    let styles = server.get("/products/1/styles").await.json();
    let results = styles["results"].as_array().unwrap();
    let style_ids: Vec<i64> = results
        .iter()
        .map(|s| s["style_id"].as_i64().unwrap())
        .collect();
    assert_eq!(style_ids, [1, 2, 3, 4, 5, 6]);
    let photos = results[0]["photos"].as_array().unwrap();
    assert_eq!(photos.len(), 6);
    let photo_prefix = "https://images.unsplash.com/photo-1501088430049-71c79fa3283e?";
    assert!(photos[0]["url"].as_str().unwrap().starts_with(photo_prefix));
    assert!(photos[0]["url"].as_str().unwrap().ends_with("&w=668&q=80"));
    assert!(
        photos[0]["thumbnail_url"]
            .as_str()
            .unwrap()
            .ends_with("&w=300&q=80")
    );
    assert_eq!(results[2]["default?"], json!(false));
    // Style 5 has skus but no photos; style 7 (product 2) has neither.
    assert_eq!(
        results[4]["photos"],
        json!([{ "thumbnail_url": null, "url": null }])
    );
    let product_2_styles = server.get("/products/2/styles").await.json();
    let style_7 = &product_2_styles["results"][0];
    assert_eq!(style_7["style_id"], 7);
    assert_eq!(
        style_7["skus"],
        json!({ "null": { "quantity": null, "size": null } })
    );
    assert_eq!(
        style_7["photos"],
        json!([{ "thumbnail_url": null, "url": null }])
    );

    let page = server.get("/products?count=3").await.json();
    assert_eq!(ids_of(&page), [1, 2, 3]);
    assert_eq!(server.get("/products?page=2&count=10").await.text(), "[]");
    assert_eq!(server.get("/products/11").await.status, 404);
    server.stop().await;
}
