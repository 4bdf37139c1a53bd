//! Compressed documents over a real socket and a real PostgreSQL: every endpoint and
//! status with and without `Accept-Encoding`, the gzip form giving back the stored bytes,
//! validators and `304` per representation, `q=0`, `HEAD`, and the genuine samples read
//! through both codings.

use std::io::Read;

use atelier::http::Settings;

use crate::golden::{Body, assert_genuine_answers};
use crate::serving::{Reply, Server, header_values, request, stored};
use crate::support::{TestDb, assert_gzip_forms_made, sample};

/// What a browser sends.
const BROWSER: &str = "gzip, deflate, br, zstd";

/// The bytes of a gzip body.
pub fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut plain)
        .expect("a valid gzip body");
    plain
}

/// The body as the client reads it: decompressed when the answer says it is gzip.
fn decoded(reply: &Reply) -> Vec<u8> {
    match reply.header("content-encoding") {
        Some("gzip") => gunzip(&reply.body),
        Some(other) => panic!("unexpected content coding {other}"),
        None => reply.body.clone(),
    }
}

async fn get(server: &Server, path: &str, accept: Option<&str>) -> Reply {
    let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept-Encoding", a)).into_iter().collect();
    request(server.addr, "GET", path, &headers).await
}

/// Every `Vary` value of an answer.
fn vary(reply: &Reply) -> Vec<&str> {
    header_values(&reply.headers, "vary")
}

/// The genuine compact sample: products 1 to 11, with styles documents of several KiB.
async fn genuine() -> TestDb {
    TestDb::with_catalog(&sample("sara-2023")).await
}

#[tokio::test]
async fn every_endpoint_answers_in_the_coding_asked_for() {
    let db = genuine().await;
    let client = db.client().await;
    let server = Server::start(&db.url, Settings::default()).await;
    // (path, whether the document is large enough to be kept in gzip form)
    let documents = [
        ("/products/1/styles", true),
        ("/products/2/styles", true),
        ("/products/1", true),
        ("/products?count=11", true),
        ("/products/1/related", false),
        ("/products?page=99", false),
    ];
    for (path, compressible) in documents {
        let plain = get(&server, path, None).await;
        assert_eq!(plain.status, 200, "{path}");
        assert_eq!(plain.header("content-encoding"), None, "{path}");
        assert_eq!(vary(&plain), ["Accept-Encoding"], "{path}");
        for accept in ["gzip", "x-gzip", BROWSER, "gzip;q=0.5, br"] {
            let zipped = get(&server, path, Some(accept)).await;
            assert_eq!(zipped.status, 200, "{path} {accept}");
            assert_eq!(vary(&zipped), ["Accept-Encoding"], "{path} {accept}");
            assert_eq!(
                zipped.header("content-type"),
                Some("application/json; charset=utf-8")
            );
            assert_eq!(
                zipped.header("cache-control"),
                plain.header("cache-control")
            );
            if compressible {
                assert_eq!(zipped.header("content-encoding"), Some("gzip"), "{path}");
                assert_ne!(zipped.header("etag"), plain.header("etag"), "{path}");
                assert!(zipped.body.len() < plain.body.len(), "{path}");
            } else {
                assert_eq!(zipped.header("content-encoding"), None, "{path}");
                assert_eq!(zipped.header("etag"), plain.header("etag"), "{path}");
            }
            assert_eq!(decoded(&zipped), plain.body, "{path} {accept}");
        }
        // Clients that accept only identity, or codings the service does not make.
        for accept in [
            "identity",
            "",
            "br",
            "deflate, br, zstd",
            "gzip;q=0",
            "*;q=0, identity",
        ] {
            let reply = get(&server, path, Some(accept)).await;
            assert_eq!(reply.status, 200, "{path} {accept:?}");
            assert_eq!(reply.header("content-encoding"), None, "{path} {accept:?}");
            assert_eq!(
                reply.header("etag"),
                plain.header("etag"),
                "{path} {accept:?}"
            );
            assert_eq!(reply.body, plain.body, "{path} {accept:?}");
        }
    }
    // The identity bytes are the stored document, so the gzip ones decompress to it.
    let styles = get(&server, "/products/1/styles", Some("gzip")).await;
    assert_eq!(gunzip(&styles.body), stored(&client, "styles", 1).await);
    // Styles documents shrink most: to well under a third.
    assert!(styles.body.len() * 3 < stored(&client, "styles", 1).await.len());

    // Errors and the operational endpoints are never compressed.
    for (method, path, status) in [
        ("GET", "/products/999", 404),
        ("GET", "/products/999/styles", 404),
        ("GET", "/products/abc", 400),
        ("GET", "/products?count=0", 400),
        ("POST", "/products/1", 405),
        ("GET", "/reviews", 404),
        ("GET", "/healthz", 200),
        ("GET", "/readyz", 200),
        ("GET", "/metrics", 200),
    ] {
        for accept in [None, Some("gzip"), Some(BROWSER)] {
            let headers: Vec<(&str, &str)> =
                accept.map(|a| ("Accept-Encoding", a)).into_iter().collect();
            let reply = request(server.addr, method, path, &headers).await;
            assert_eq!(reply.status, status, "{method} {path} {accept:?}");
            assert_eq!(reply.header("content-encoding"), None, "{path} {accept:?}");
            assert!(!reply.body.is_empty(), "{path}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn validators_and_304s_are_per_representation() {
    let db = genuine().await;
    let server = Server::start(&db.url, Settings::default()).await;
    let path = "/products/1/styles";
    let plain = get(&server, path, None).await;
    let zipped = get(&server, path, Some("gzip")).await;
    let (plain_tag, zipped_tag) = (
        plain.header("etag").unwrap().to_string(),
        zipped.header("etag").unwrap().to_string(),
    );
    assert!(
        zipped_tag.starts_with('"') && zipped_tag.ends_with("-gzip\""),
        "{zipped_tag}"
    );

    let revalidate = |accept: Option<&'static str>, tags: String| {
        let addr = server.addr;
        async move {
            let mut headers = vec![("If-None-Match", tags.as_str())];
            headers.extend(accept.map(|a| ("Accept-Encoding", a)));
            request(addr, "GET", path, &headers).await
        }
    };
    // The tag of the representation the client would get: 304, with that tag.
    for (accept, tags, tag) in [
        (Some("gzip"), zipped_tag.clone(), &zipped_tag),
        (None, plain_tag.clone(), &plain_tag),
        (Some("gzip;q=0"), plain_tag.clone(), &plain_tag),
        // A cache holding both sends both; the tag answered names the one to use.
        (
            Some("gzip"),
            format!("{plain_tag}, {zipped_tag}"),
            &zipped_tag,
        ),
        (None, format!("{plain_tag}, {zipped_tag}"), &plain_tag),
        (Some("gzip"), format!("W/{zipped_tag}"), &zipped_tag),
    ] {
        let reply = revalidate(accept, tags.clone()).await;
        assert_eq!(reply.status, 304, "{accept:?} {tags}");
        assert_eq!(
            reply.header("etag"),
            Some(tag.as_str()),
            "{accept:?} {tags}"
        );
        assert_eq!(vary(&reply), ["Accept-Encoding"]);
        assert!(reply.body.is_empty());
    }
    // The tag of the other representation: the whole answer, in the coding asked for.
    let reply = revalidate(Some("gzip"), plain_tag.clone()).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-encoding"), Some("gzip"));
    assert_eq!(reply.body, zipped.body);
    let reply = revalidate(None, zipped_tag.clone()).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-encoding"), None);
    assert_eq!(reply.body, plain.body);

    // HEAD carries the headers GET does, in each coding.
    for accept in [None, Some("gzip")] {
        let headers: Vec<(&str, &str)> =
            accept.map(|a| ("Accept-Encoding", a)).into_iter().collect();
        let get = request(server.addr, "GET", path, &headers).await;
        let head = request(server.addr, "HEAD", path, &headers).await;
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        assert_eq!(
            head.header("content-length"),
            Some(get.body.len().to_string().as_str())
        );
        let without_date = |reply: &Reply| {
            let mut headers = reply.headers.clone();
            headers.retain(|(name, _)| name != "date");
            headers.sort();
            headers
        };
        assert_eq!(without_date(&head), without_date(&get), "{accept:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_refused_coding_is_never_sent() {
    let db = genuine().await;
    let server = Server::start(&db.url, Settings::default()).await;
    // Refusing identity still gets gzip where the document has it…
    for accept in ["gzip, identity;q=0", "gzip;q=1, *;q=0"] {
        let reply = get(&server, "/products/1/styles", Some(accept)).await;
        assert_eq!(reply.status, 200, "{accept}");
        assert_eq!(reply.header("content-encoding"), Some("gzip"), "{accept}");
    }
    // …and 406 where it has only the stored bytes, or gzip is refused too.
    for (path, accept) in [
        ("/products/1/related", "gzip, identity;q=0"),
        ("/products/1/related", "*;q=0"),
        ("/products/1/styles", "*;q=0"),
        ("/products/1/styles", "gzip;q=0, identity;q=0"),
        ("/products/1/styles", "br, identity;q=0"),
    ] {
        let reply = get(&server, path, Some(accept)).await;
        assert_eq!(reply.status, 406, "{path} {accept}");
        assert_eq!(reply.header("content-encoding"), None);
        assert_eq!(vary(&reply), ["Accept-Encoding"]);
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        let message = reply.json()["message"].as_str().unwrap().to_string();
        assert!(message.contains("Accept-Encoding"), "{message}");
    }
    server.stop().await;
}

#[tokio::test]
async fn the_genuine_samples_read_the_same_through_both_codings() {
    let db = genuine().await;
    let server = Server::start(&db.url, Settings::default()).await;
    for accept in [None, Some("gzip")] {
        let (server, db) = (&server, &db);
        assert_genuine_answers(|body, id| async move {
            let path = body.path(id);
            let reply = get(server, &path, accept).await;
            assert_eq!(reply.status, 200, "{path}");
            let bytes = decoded(&reply);
            // Byte for byte what is stored, whichever coding carried it.
            if !matches!(body, Body::ListEntry) {
                let column = match body {
                    Body::Product => "product",
                    Body::Styles => "styles",
                    _ => "related",
                };
                assert_eq!(
                    bytes,
                    stored(&db.client().await, column, id).await,
                    "{path}"
                );
            }
            let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            match body {
                Body::ListEntry => value[0].clone(),
                _ => value,
            }
        })
        .await;
    }
    server.stop().await;
}

#[tokio::test]
async fn the_cache_budget_counts_both_representations() {
    let db = genuine().await;
    let path = "/products/1/styles";
    // (entries, bytes, the answer's body and ETag length) after a gzip client's request,
    // and after an identity client's too.
    let mut held = Vec::new();
    for compression in ["gzip", "off"] {
        let settings = Settings {
            compress: compression == "gzip",
            ..Settings::default()
        };
        let server = Server::start_listening(&db.url, settings).await;
        let zipped = get(&server, path, Some("gzip")).await;
        assert_eq!(zipped.status, 200);
        if compression == "off" {
            // As before: the stored bytes for everyone, no Vary.
            assert_eq!(zipped.header("content-encoding"), None);
            assert!(vary(&zipped).is_empty());
            let identity_tag = zipped.header("etag").unwrap().to_string();
            assert_eq!(identity_tag.len(), 18, "{identity_tag}");
        } else {
            assert_eq!(zipped.header("content-encoding"), Some("gzip"));
        }
        let zipped_form = zipped.body.len() + zipped.header("etag").unwrap().len();
        held.push((
            server.metric("atelier_cache_entries").await,
            server.metric("atelier_cache_bytes").await as usize,
            zipped_form,
        ));
        assert_eq!(get(&server, path, None).await.status, 200);
        held.push((
            server.metric("atelier_cache_entries").await,
            server.metric("atelier_cache_bytes").await as usize,
            zipped_form,
        ));
        server.stop().await;
    }
    let [gzip_only, both, off, off_again] = held[..] else {
        unreachable!()
    };
    // A gzip client's request keeps the gzip form alone; an identity client's adds the
    // stored bytes, counted in full.
    assert_eq!(gzip_only.0, 1.0);
    assert_eq!(both.0, 2.0);
    assert_eq!(both.1 - gzip_only.1, off.1);
    assert!(gzip_only.1 < off.1);
    assert_eq!(off.1 - gzip_only.1, off.2 - gzip_only.2);
    // Without compression every client shares the one form.
    assert_eq!(off.0, 1.0);
    assert_eq!(off_again, off);
}

#[tokio::test]
async fn a_client_that_does_not_take_gzip_never_makes_a_gzip_form() {
    let db = genuine().await;
    let path = "/products/1/styles";
    let mut weights = Vec::new();
    for compress in [true, false] {
        let settings = Settings {
            compress,
            ..Settings::default()
        };
        let server = Server::start_listening(&db.url, settings).await;
        for _ in 0..3 {
            let plain = get(&server, path, Some("identity")).await;
            assert_eq!(plain.status, 200);
            assert_eq!(plain.header("content-encoding"), None);
        }
        assert_eq!(server.metric("atelier_cache_entries").await, 1.0);
        assert_eq!(server.metric("atelier_cache_misses_total").await, 1.0);
        weights.push(server.metric("atelier_cache_bytes").await);
        server.stop().await;
    }
    // Exactly what a server that never compresses holds: the stored bytes alone.
    assert_eq!(weights[0], weights[1]);
}

/// Product `id`'s stored body in `column`, as text.
async fn stored_text(client: &tokio_postgres::Client, column: &str, id: i32) -> String {
    client
        .query_one(
            &format!("SELECT {column}::text FROM document WHERE product_id = $1"),
            &[&id],
        )
        .await
        .unwrap()
        .get(0)
}

/// Product `id`'s stored gzip form in `column`.
async fn stored_form(client: &tokio_postgres::Client, column: &str, id: i32) -> Option<Vec<u8>> {
    client
        .query_one(
            &format!("SELECT {column} FROM document WHERE product_id = $1"),
            &[&id],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn gzip_clients_get_the_stored_gzip_forms_as_they_are() {
    let db = genuine().await;
    let client = db.client().await;
    // Materialize made every form, each the bytes a server makes of its body.
    assert_gzip_forms_made(&client).await;
    // Product 3's styles form stored as product 1's: a gzip client that gets it was
    // answered from the store, not by compressing product 1's body; a client that does
    // not take gzip gets what it inflates to, product 3's styles, for the form is
    // what every client's read takes.
    let planted = stored_form(&client, "styles_gzip", 3).await.unwrap();
    assert_ne!(
        Some(&planted),
        stored_form(&client, "styles_gzip", 1).await.as_ref()
    );
    // Product 2's styles form not made yet: the server makes it, the same bytes.
    let made = stored_form(&client, "styles_gzip", 2).await.unwrap();
    // Product 1's product document marked as not gaining from gzip: sent as it is.
    client
        .batch_execute(
            "UPDATE document SET styles_gzip = (SELECT styles_gzip FROM document WHERE product_id = 3) \
             WHERE product_id = 1;
             UPDATE document SET styles_gzip = NULL WHERE product_id = 2;
             UPDATE document SET product_gzip = '' WHERE product_id = 1;",
        )
        .await
        .unwrap();
    let server = Server::start(&db.url, Settings::default()).await;
    // Twice: from the store, then from the cache.
    for _ in 0..2 {
        let styles = get(&server, "/products/1/styles", Some(BROWSER)).await;
        assert_eq!(styles.header("content-encoding"), Some("gzip"));
        assert_eq!(styles.body, planted);
        let plain = get(&server, "/products/1/styles", None).await;
        assert_eq!(plain.text(), stored_text(&client, "styles", 3).await);
        let compressed_here = get(&server, "/products/2/styles", Some(BROWSER)).await;
        assert_eq!(compressed_here.body, made);
        let product = get(&server, "/products/1", Some(BROWSER)).await;
        assert_eq!(product.status, 200);
        assert_eq!(product.header("content-encoding"), None);
        assert_eq!(product.text(), stored_text(&client, "product", 1).await);
    }
    // Many products at once, through the statements that read several: the product
    // page joins the stored forms (product 1's styles are product 3's).
    for path in ["/products/1/page", "/products?ids=1,2,3&include=styles"] {
        let reply = get(&server, path, Some(BROWSER)).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.header("content-encoding"), Some("gzip"), "{path}");
        let page: serde_json::Value = serde_json::from_slice(&gunzip(&reply.body)).unwrap();
        let product_3_styles: serde_json::Value =
            serde_json::from_str(&stored_text(&client, "styles", 3).await).unwrap();
        let product_1_styles = match path {
            "/products/1/page" => &page["styles"],
            _ => &page[0]["styles"],
        };
        assert_eq!(product_1_styles, &product_3_styles, "{path}");
    }
    server.stop().await;
}

#[tokio::test]
async fn clients_without_gzip_are_answered_from_the_forms_and_a_damaged_one_is_passed_over() {
    let db = genuine().await;
    let client = db.client().await;
    // Product 2's styles form damaged in storage: a bit of its CRC-32 flipped, so that
    // it no longer checks against what it inflates to.
    let mut damaged = stored_form(&client, "styles_gzip", 2).await.unwrap();
    let at = damaged.len() - 8;
    damaged[at] ^= 1;
    client
        .execute(
            "UPDATE document SET styles_gzip = $1 WHERE product_id = 2",
            &[&damaged],
        )
        .await
        .unwrap();
    let server = Server::start(&db.url, Settings::default()).await;
    // Once it listens for changes, no catch-up drops what is read below.
    server
        .wait_for_metric("atelier_notify_listening", 1.0)
        .await;
    for id in [1, 2, 3] {
        let path = format!("/products/{id}/styles");
        let plain = get(&server, &path, None).await;
        assert_eq!(plain.status, 200, "{path}");
        assert_eq!(plain.header("content-encoding"), None, "{path}");
        assert_eq!(
            plain.text(),
            stored_text(&client, "styles", id).await,
            "{path}"
        );
    }
    // Noticed and counted with the failed reads, once: the JSON text read instead is
    // what the cache holds.
    assert_eq!(get(&server, "/products/2/styles", None).await.status, 200);
    assert_eq!(server.metric("atelier_db_errors_total").await, 1.0);
    server.stop().await;
    // The statement that reads several products passes it over the same way (a server
    // of its own: the first one's cache holds product 2's styles now).
    let server = Server::start(&db.url, Settings::default()).await;
    let page = get(&server, "/products/2/page", None).await;
    assert_eq!(page.status, 200);
    let page: serde_json::Value = serde_json::from_slice(&page.body).unwrap();
    let styles: serde_json::Value =
        serde_json::from_str(&stored_text(&client, "styles", 2).await).unwrap();
    assert_eq!(page["styles"], styles);
    assert!(server.metric("atelier_db_errors_total").await >= 1.0);
    server.stop().await;
}

#[tokio::test]
async fn a_database_without_the_gzip_form_columns_is_served_all_the_same() {
    // A server upgraded before its database's schema: the document table as it was
    // before materialize stored gzip forms.
    let db = genuine().await;
    let client = db.client().await;
    let made = stored_form(&client, "styles_gzip", 2).await.unwrap();
    client
        .batch_execute(
            "ALTER TABLE document DROP COLUMN product_gzip, DROP COLUMN styles_gzip, \
             DROP COLUMN related_gzip",
        )
        .await
        .unwrap();
    let server = Server::start(&db.url, Settings::default()).await;
    // The server compresses each body as it enters the cache: the bytes materialize
    // would have stored.
    let styles = get(&server, "/products/2/styles", Some(BROWSER)).await;
    assert_eq!(styles.status, 200);
    assert_eq!(styles.header("content-encoding"), Some("gzip"));
    assert_eq!(styles.body, made);
    let plain = get(&server, "/products/2/styles", None).await;
    assert_eq!(plain.text(), stored_text(&client, "styles", 2).await);
    for path in ["/products/1/page", "/products?ids=1,2,3&include=styles"] {
        let reply = get(&server, path, Some(BROWSER)).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.header("content-encoding"), Some("gzip"), "{path}");
        let plain = get(&server, path, None).await;
        assert_eq!(gunzip(&reply.body), plain.body, "{path}");
    }
    server.stop().await;
}
