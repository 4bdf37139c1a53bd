//! Tests of `materialize`: document formats, partial rebuilds, the atomic switch under
//! concurrent reads, and the NOTIFY that tells servers what changed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use atelier::documents;
use atelier::materialize::{self, MaterializeReport, Plan, Settings};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_postgres::{AsyncMessage, Client, NoTls};

use crate::support::TestDb;

/// Products 1 and 2 of the genuine samples, cut down to what the formats need: product 1
/// has a style with photos and skus (XL twice, ids out of file order) and one with
/// neither; product 2 has a null feature value and no default style; product 3 has
/// nothing but its row.
const CATALOG_SQL: &str = r#"
INSERT INTO product (id, name, slogan, description, category, default_price, created_at, updated_at) VALUES
 (1, 'Camo Onesie', 'Blend in to your crowd', 'The So Fatigues will wake you up.', 'Jackets', 140,
  '2021-08-13T14:38:44.509Z', '2021-08-13T14:38:44.509Z'),
 (2, 'Bright Future Sunglasses', 'You''ve got to wear shades', 'Where you''re going  you might not need roads.', 'Accessories', 69,
  '2021-08-13T14:38:44.509Z', '2022-01-02T03:04:05.006Z'),
 (3, 'Morning Joggers', 'Make yourself a morning person', 'Whether you''re a morning person or not.', 'Pants', 40,
  '2021-08-13T14:38:44.509Z', '2021-08-13T14:38:44.509Z');
INSERT INTO style (id, product_id, name, sale_price, original_price, default_style) VALUES
 (3, 1, 'Ocean Blue & Grey', 100, 140, false),
 (1, 1, 'Forest Green & Black', NULL, 140, true),
 (7, 2, 'Black Lenses & Black Frame', NULL, 69, false);
INSERT INTO feature (id, product_id, feature, value) VALUES
 (1, 1, 'Fabric', 'Canvas'), (2, 1, 'Buttons', 'Brass'),
 (3, 2, 'Lenses', 'Ultrasheen'), (4, 2, 'UV Protection', NULL), (5, 2, 'Frames', 'LightCompose');
INSERT INTO photo (id, style_id, url, thumbnail_url) VALUES
 (2, 1, 'https://example.com/b-668', 'https://example.com/b-300'),
 (1, 1, 'https://example.com/a-668', 'https://example.com/a-300');
INSERT INTO sku (id, style_id, size, quantity) VALUES
 (10, 1, 'XXL', 6), (8, 1, 'XS', 8), (9, 1, 'XL', 15), (11, 1, 'XL', 4);
INSERT INTO related (id, product_id, related_product_id) VALUES
 (1, 1, 2), (2, 1, 3), (3, 1, 2), (4, 1, 1);
"#;

async fn catalog_db() -> (TestDb, Client) {
    let db = TestDb::new().await;
    let client = db.client().await;
    client.batch_execute(CATALOG_SQL).await.unwrap();
    (db, client)
}

async fn documents(client: &Client, id: i32) -> [String; 4] {
    let row = client
        .query_one(
            "SELECT list_entry::text, product::text, styles::text, related::text \
             FROM document WHERE product_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    [row.get(0), row.get(1), row.get(2), row.get(3)]
}

fn settings(campus: String) -> Settings {
    Settings {
        campus,
        ..Settings::default()
    }
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[tokio::test]
async fn documents_follow_the_contract() {
    let (db, client) = catalog_db().await;
    let report = materialize::materialize(&db.url, Plan::Everything, &settings("hr-rfp".into()))
        .await
        .unwrap();
    assert_eq!(
        report,
        MaterializeReport {
            documents: 3,
            removed: 0,
            unknown: vec![]
        }
    );

    let [list_entry, product, styles, related] = documents(&client, 1).await;
    let entry = json!({
        "id": 1, "campus": "hr-rfp", "name": "Camo Onesie", "slogan": "Blend in to your crowd",
        "description": "The So Fatigues will wake you up.", "category": "Jackets",
        "default_price": "140.00",
        "created_at": "2021-08-13T14:38:44.509Z", "updated_at": "2021-08-13T14:38:44.509Z"
    });
    assert_eq!(parse(&list_entry), entry);
    let mut with_features = entry.clone();
    with_features["features"] = json!([
        {"feature": "Fabric", "value": "Canvas"}, {"feature": "Buttons", "value": "Brass"}
    ]);
    assert_eq!(parse(&product), with_features);
    assert_eq!(
        parse(&styles),
        json!({"product_id": "1", "results": [
            {"style_id": 1, "name": "Forest Green & Black", "original_price": "140.00",
             "sale_price": null, "default?": true,
             "photos": [{"thumbnail_url": "https://example.com/a-300", "url": "https://example.com/a-668"},
                        {"thumbnail_url": "https://example.com/b-300", "url": "https://example.com/b-668"}],
             "skus": {"8": {"quantity": 8, "size": "XS"}, "9": {"quantity": 15, "size": "XL"},
                      "10": {"quantity": 6, "size": "XXL"}, "11": {"quantity": 4, "size": "XL"}}},
            {"style_id": 3, "name": "Ocean Blue & Grey", "original_price": "140.00",
             "sale_price": "100.00", "default?": false,
             "photos": [{"thumbnail_url": null, "url": null}],
             "skus": {"null": {"quantity": null, "size": null}}}
        ]})
    );
    // Sku keys are serialised in ascending numeric order, not text order.
    let order: Vec<usize> = ["\"8\"", "\"9\"", "\"10\"", "\"11\""]
        .iter()
        .map(|key| styles.find(key).unwrap())
        .collect();
    assert!(order.is_sorted(), "sku keys out of order in {styles}");
    assert_eq!(parse(&related), json!([2, 3, 2, 1]));

    let [_, product, styles, related] = documents(&client, 2).await;
    assert_eq!(
        parse(&product)["features"],
        json!([{"feature": "Lenses", "value": "Ultrasheen"},
               {"feature": "UV Protection", "value": null},
               {"feature": "Frames", "value": "LightCompose"}])
    );
    assert_eq!(
        parse(&product)["description"],
        "Where you're going  you might not need roads."
    );
    assert_eq!(parse(&product)["updated_at"], "2022-01-02T03:04:05.006Z");
    assert_eq!(parse(&styles)["results"][0]["default?"], false);
    assert_eq!(parse(&related), json!([]));

    let [_, product, styles, related] = documents(&client, 3).await;
    assert_eq!(parse(&product)["features"], json!([]));
    assert_eq!(parse(&styles), json!({"product_id": "3", "results": []}));
    assert_eq!(parse(&related), json!([]));

    assert_eq!(page_ids(&client, 1, 10).await, [1, 2, 3]);
    assert_eq!(page_ids(&client, 2, 2).await, [2]);
    assert_eq!(page_ids(&client, 4, 8).await, [0; 0]);
}

/// The ids of the list entries at ranks `first..=last`, read as servers read pages.
async fn page_ids(client: &Client, first: i32, last: i32) -> Vec<i64> {
    client
        .query(documents::PAGE_SQL, &[&first, &last])
        .await
        .unwrap()
        .iter()
        .map(|row| parse(row.get::<_, JsonbText>(0).0)["id"].as_i64().unwrap())
        .collect()
}

/// A jsonb value's text as PostgreSQL sends it (a version byte, then the text).
struct JsonbText<'a>(&'a str);

impl<'a> tokio_postgres::types::FromSql<'a> for JsonbText<'a> {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(JsonbText(std::str::from_utf8(&raw[1..])?))
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        *ty == tokio_postgres::types::Type::JSONB
    }
}

#[tokio::test]
async fn documents_keep_their_frequent_vacuum_across_full_rebuilds() {
    const RELOPTIONS: &str =
        "SELECT coalesce(reloptions, '{}') FROM pg_class WHERE oid = 'document'::regclass";
    let (db, client) = catalog_db().await;
    let expected = vec![
        "autovacuum_vacuum_scale_factor=0".to_string(),
        "autovacuum_vacuum_threshold=10000".to_string(),
    ];
    let before: Vec<String> = client.query_one(RELOPTIONS, &[]).await.unwrap().get(0);
    assert_eq!(before, expected);
    // A full rebuild swaps in a new table, made with LIKE, which does not copy them.
    materialize::materialize(&db.url, Plan::Everything, &Settings::default())
        .await
        .unwrap();
    let after: Vec<String> = client.query_one(RELOPTIONS, &[]).await.unwrap().get(0);
    assert_eq!(after, expected);
}

#[tokio::test]
async fn campus_comes_from_configuration() {
    let (db, client) = catalog_db().await;
    materialize::materialize(&db.url, Plan::Everything, &settings("hr-lax".into()))
        .await
        .unwrap();
    let [entry, ..] = documents(&client, 2).await;
    assert_eq!(parse(&entry)["campus"], "hr-lax");
}

#[tokio::test]
async fn partial_rebuild_touches_only_the_listed_products_and_renumbers() {
    let (db, client) = catalog_db().await;
    materialize::materialize(&db.url, Plan::Everything, &settings("hr-rfp".into()))
        .await
        .unwrap();
    client
        .batch_execute(
            "UPDATE product SET name = 'Renamed' WHERE id IN (1, 2);
             DELETE FROM related WHERE product_id = 1;
             DELETE FROM style WHERE product_id = 2; DELETE FROM feature WHERE product_id = 2;
             DELETE FROM product WHERE id = 2;
             INSERT INTO product (id, name, slogan, description, category, default_price)
             VALUES (0 + 5, 'New', 's', 'd', 'Pants', 12), (4, 'Also new', 's', 'd', 'Pants', 1);",
        )
        .await
        .unwrap();
    let report = materialize::materialize(
        &db.url,
        Plan::Products(vec![1, 2, 5]),
        &settings("hr-rfp".into()),
    )
    .await
    .unwrap();
    assert_eq!(
        report,
        MaterializeReport {
            documents: 2,
            removed: 1,
            unknown: vec![]
        }
    );
    let [_, product, _, related] = documents(&client, 1).await;
    assert_eq!(parse(&product)["name"], "Renamed");
    assert_eq!(parse(&related), json!([]));
    // Product 4 was not listed: it has no document yet; product 3 keeps its old one.
    let rows: Vec<(i32, String)> = client
        .query(
            "SELECT product_id, list_entry->>'name' FROM document ORDER BY product_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        rows,
        [
            (1, "Renamed".to_string()),
            (3, "Morning Joggers".to_string()),
            (5, "New".to_string())
        ]
    );
    assert_eq!(page_ids(&client, 1, 3).await, [1, 3, 5]);
    assert_eq!(page_ids(&client, 3, 3).await, [5]);
}

#[tokio::test]
async fn non_positive_ids_are_refused() {
    let (db, _client) = catalog_db().await;
    let error = materialize::materialize(
        &db.url,
        Plan::Products(vec![1, 0]),
        &settings("hr-rfp".into()),
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("positive"), "{error}");
}

#[tokio::test]
async fn unknown_ids_are_named_and_the_known_ones_rebuilt() {
    let (db, client) = catalog_db().await;
    materialize::materialize(&db.url, Plan::Everything, &settings("hr-rfp".into()))
        .await
        .unwrap();
    // Product 3 leaves the catalog: its document is removed, it is not unknown.
    client
        .batch_execute(
            "DELETE FROM related WHERE related_product_id = 3; DELETE FROM product WHERE id = 3",
        )
        .await
        .unwrap();
    let report = materialize::materialize(
        &db.url,
        Plan::Products(vec![99_999_999, 1, 3, 99_999_998, 99_999_999]),
        &settings("hr-rfp".into()),
    )
    .await
    .unwrap();
    assert_eq!(
        report,
        MaterializeReport {
            documents: 1,
            removed: 1,
            unknown: vec![99_999_998, 99_999_999]
        }
    );
}

#[tokio::test]
async fn a_list_of_only_unknown_ids_fails_and_changes_nothing() {
    let (db, client) = catalog_db().await;
    materialize::materialize(&db.url, Plan::Everything, &settings("hr-rfp".into()))
        .await
        .unwrap();
    let runs = "SELECT count(*) FROM catalog_run";
    let before: i64 = client.query_one(runs, &[]).await.unwrap().get(0);
    let error = materialize::materialize(
        &db.url,
        Plan::Products(vec![99_999_999, 99_999_998]),
        &settings("hr-rfp".into()),
    )
    .await
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "products 99999998, 99999999 are not in the catalog; nothing was materialized"
    );
    let after: i64 = client.query_one(runs, &[]).await.unwrap().get(0);
    assert_eq!(before, after);
}

/// A connection that LISTENs on the materialize channel and forwards each payload.
async fn listen(url: &str) -> (Client, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(note) = message {
                let _ = sender.send(note.payload().to_string());
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {}", documents::CHANNEL))
        .await
        .unwrap();
    (client, receiver)
}

#[tokio::test]
async fn completion_is_notified_with_what_changed() {
    let (db, client) = catalog_db().await;
    let (_listener, mut payloads) = listen(&db.url).await;
    materialize::materialize(&db.url, Plan::Everything, &settings("hr-rfp".into()))
        .await
        .unwrap();
    materialize::materialize(
        &db.url,
        Plan::Products(vec![3, 1]),
        &settings("hr-rfp".into()),
    )
    .await
    .unwrap();
    let within = std::time::Duration::from_secs(10);
    let first = tokio::time::timeout(within, payloads.recv())
        .await
        .unwrap()
        .unwrap();
    let second = tokio::time::timeout(within, payloads.recv())
        .await
        .unwrap()
        .unwrap();
    // Each names first the seq of its row in the notice log, which keeps the payload.
    let logged: Vec<(i64, String)> = client
        .query("SELECT seq, payload FROM document_notice ORDER BY seq", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(logged.len(), 2, "{logged:?}");
    let (first_seq, second_seq) = (logged[0].0, logged[1].0);
    assert!(
        first.starts_with(&format!("{{\"seq\":{first_seq},")),
        "{first}"
    );
    assert_eq!(parse(&first), json!({"seq": first_seq, "all": true}));
    assert_eq!(parse(&logged[0].1), json!({"all": true}));
    // The products, and the list ranks they hold: only the pages holding those change.
    assert_eq!(
        parse(&second),
        json!({"seq": second_seq, "products": [1, 3], "ranks": [1, 3]})
    );
    assert_eq!(
        parse(&logged[1].1),
        json!({"products": [1, 3], "ranks": [1, 3]})
    );
    let runs: i64 = client
        .query_one(
            "SELECT count(*) FROM catalog_run WHERE kind = 'materialize'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(runs, 2);
}

#[tokio::test]
async fn readers_see_all_old_or_all_new_documents_during_a_rebuild() {
    let (db, client) = catalog_db().await;
    client
        .batch_execute(
            "INSERT INTO product (id, name, slogan, description, category, default_price)
             SELECT g, 'P' || g, 's', 'd', 'Pants', g FROM generate_series(10, 3000) g;",
        )
        .await
        .unwrap();
    materialize::materialize(&db.url, Plan::Everything, &settings("campus-0".into()))
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..3 {
        let reader = db.client().await;
        let statement = reader
            .prepare(
                "SELECT count(*), count(DISTINCT list_entry->>'campus'), min(list_entry->>'campus') \
                 FROM document",
            )
            .await
            .unwrap();
        let stop = stop.clone();
        readers.push(tokio::spawn(async move {
            let mut seen = std::collections::BTreeSet::new();
            while !stop.load(Ordering::Relaxed) {
                let row = reader
                    .query_one(&statement, &[])
                    .await
                    .expect("read during swap");
                let (count, campuses, campus): (i64, i64, String) =
                    (row.get(0), row.get(1), row.get(2));
                assert_eq!(count, 2994, "a reader saw a partial document table");
                assert_eq!(campuses, 1, "a reader saw old and new documents mixed");
                seen.insert(campus);
            }
            seen
        }));
    }
    for round in 1..=5 {
        materialize::materialize(
            &db.url,
            Plan::Everything,
            &settings(format!("campus-{round}")),
        )
        .await
        .unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let mut seen = std::collections::BTreeSet::new();
    for reader in readers {
        seen.extend(reader.await.unwrap());
    }
    assert!(seen.len() >= 2, "readers only ever saw {seen:?}");
}

#[tokio::test]
async fn parts_built_on_several_connections_give_one_rank_per_product_in_id_order() {
    let (db, client) = catalog_db().await;
    client
        .batch_execute(
            "INSERT INTO product (id, name, slogan, description, category, default_price)
             SELECT g, 'P' || g, 's', 'd', 'Pants', g FROM generate_series(10, 500) g
             WHERE g % 7 <> 0;",
        )
        .await
        .unwrap();
    let products: i64 = client
        .query_one("SELECT count(*) FROM product", &[])
        .await
        .unwrap()
        .get(0);
    let settings = Settings {
        jobs: 4,
        ..Settings::default()
    };
    let report = materialize::materialize(&db.url, Plan::Everything, &settings)
        .await
        .unwrap();
    assert_eq!(report.documents, products as u64);
    let in_order: Vec<i64> = client
        .query("SELECT id FROM product ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| i64::from(row.get::<_, i32>(0)))
        .collect();
    assert_eq!(page_ids(&client, 1, 1000).await, in_order);
    for rank in [1, 2, 255, 256, 257, 300, products as i32] {
        let id = page_ids(&client, rank, rank).await;
        assert_eq!(id, [in_order[rank as usize - 1]], "rank {rank}");
    }
    let [_, _, styles, _] = documents(&client, 1).await;
    assert_eq!(parse(&styles)["results"].as_array().unwrap().len(), 2);
}

/// Every list entry in rank order, read page by page as servers read them.
async fn all_pages(client: &Client, count: i32) -> Vec<i64> {
    let mut ids = Vec::new();
    for first in (1..).step_by(count as usize) {
        let page = page_ids(client, first, first + count - 1).await;
        if page.is_empty() {
            return ids;
        }
        ids.extend(page);
    }
    unreachable!()
}

#[tokio::test]
async fn pages_keep_exact_ranks_as_products_come_and_go_mid_list() {
    let (db, client) = catalog_db().await;
    client
        .batch_execute(
            "INSERT INTO product (id, name, slogan, description, category, default_price)
             SELECT g * 3, 'P' || g, 's', 'd', 'Pants', g FROM generate_series(2, 700) g;",
        )
        .await
        .unwrap();
    materialize::materialize(&db.url, Plan::Everything, &settings("hr-rfp".into()))
        .await
        .unwrap();
    let blocks = "SELECT count(*) FROM list_block";
    let cut: i64 = client.query_one(blocks, &[]).await.unwrap().get(0);
    assert_eq!(cut, 3, "702 documents make blocks of 256, 256 and 190");
    // Removals and additions before, inside and between blocks, then a run of additions
    // that grows one block past twice the block size.
    let rounds = [
        "DELETE FROM related WHERE product_id = 1 OR related_product_id = 1;
         DELETE FROM feature WHERE product_id = 1; DELETE FROM sku WHERE style_id IN (1, 3);
         DELETE FROM photo WHERE style_id IN (1, 3); DELETE FROM style WHERE product_id = 1;
         DELETE FROM product WHERE id IN (1, 300, 768, 2100);",
        "INSERT INTO product (id, name, slogan, description, category, default_price)
         VALUES (1, 'back', 's', 'd', 'c', 1), (301, 'mid', 's', 'd', 'c', 1),
                (770, 'edge', 's', 'd', 'c', 1), (5000, 'end', 's', 'd', 'c', 1);",
        "INSERT INTO product (id, name, slogan, description, category, default_price)
         SELECT 1000 + g * 3 + 1, 'grown', 's', 'd', 'c', 1 FROM generate_series(0, 599) g;",
        "DELETE FROM product WHERE id % 5 = 0 AND id > 1500;",
    ];
    for (round, sql) in rounds.iter().enumerate() {
        client.batch_execute(sql).await.unwrap();
        materialize::materialize(&db.url, Plan::Queue, &settings("hr-rfp".into()))
            .await
            .unwrap();
        let want = product_ids(&client).await;
        assert_eq!(all_pages(&client, 7).await, want, "round {round}");
        for (rank, id) in want.iter().enumerate().step_by(37) {
            let first = rank as i32 + 1;
            assert_eq!(
                page_ids(&client, first, first).await,
                [*id],
                "round {round}"
            );
        }
    }
    let grown: i64 = client.query_one(blocks, &[]).await.unwrap().get(0);
    assert!(grown > cut, "the grown block was split ({grown} blocks)");
}

/// Every product id in the catalog, ascending.
async fn product_ids(client: &Client) -> Vec<i64> {
    client
        .query("SELECT id FROM product ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| i64::from(row.get::<_, i32>(0)))
        .collect()
}

#[tokio::test]
async fn a_large_partial_rebuild_is_built_on_several_connections_like_a_full_one() {
    let (db, client) = catalog_db().await;
    client
        .batch_execute(
            "INSERT INTO product (id, name, slogan, description, category, default_price)
             SELECT g, 'P' || g, 's', 'd', 'Pants', g FROM generate_series(10, 2500) g;
             INSERT INTO style (id, product_id, name, sale_price, original_price, default_style)
             SELECT g, g, 'S' || g, NULL, g, true FROM generate_series(10, 2500) g;
             INSERT INTO sku (id, style_id, size, quantity)
             SELECT g, g, 'M', g % 9 FROM generate_series(20, 2500) g;",
        )
        .await
        .unwrap();
    let settings = Settings {
        jobs: 2,
        ..Settings::default()
    };
    materialize::materialize(&db.url, Plan::Everything, &settings)
        .await
        .unwrap();
    let full: Vec<String> = client
        .query("SELECT styles::text FROM document ORDER BY product_id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    client
        .batch_execute(
            "UPDATE sku SET quantity = quantity + 1; DELETE FROM document WHERE product_id > 2400",
        )
        .await
        .unwrap();
    let ids: Vec<i32> = (1..=2500).collect();
    let report = materialize::materialize(&db.url, Plan::Products(ids), &settings)
        .await
        .unwrap();
    assert_eq!(report.documents, 2494);
    client
        .batch_execute("UPDATE sku SET quantity = quantity - 1")
        .await
        .unwrap();
    materialize::materialize(&db.url, Plan::Queue, &settings)
        .await
        .unwrap();
    let partial: Vec<String> = client
        .query("SELECT styles::text FROM document ORDER BY product_id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(partial, full);
    assert_eq!(all_pages(&client, 100).await, product_ids(&client).await);
    let leftover = "SELECT count(*) FROM pg_class WHERE relname = 'document_batch'";
    let tables: i64 = client.query_one(leftover, &[]).await.unwrap().get(0);
    assert_eq!(tables, 0);
}

/// The capture triggers in schema.sql and the registry of document kinds agree: a write
/// to each catalog table queues exactly the kinds built from it, and a TRUNCATE queues
/// every kind of every product.
#[tokio::test]
async fn the_capture_triggers_queue_the_kinds_the_registry_builds_from_each_table() {
    use atelier::catalog::FileKind;
    use atelier::documents::Kinds;
    let (_db, client) = catalog_db().await;
    let writes = [
        (
            FileKind::Product,
            "UPDATE product SET name = 'n' WHERE id = 1",
        ),
        (FileKind::Styles, "UPDATE style SET name = 'n' WHERE id = 1"),
        (
            FileKind::Features,
            "UPDATE feature SET value = 'v' WHERE id = 1",
        ),
        (FileKind::Photos, "UPDATE photo SET url = 'u' WHERE id = 1"),
        (FileKind::Skus, "UPDATE sku SET quantity = 1 WHERE id = 8"),
        (
            FileKind::Related,
            "UPDATE related SET related_product_id = 3 WHERE id = 1",
        ),
    ];
    let queued = || async {
        let rows = client
            .query(
                "DELETE FROM document_queue RETURNING product_id, parts",
                &[],
            )
            .await
            .unwrap();
        rows.iter()
            .map(|row| (row.get::<_, i32>(0), row.get::<_, i16>(1)))
            .collect::<Vec<_>>()
    };
    queued().await;
    for (file, write) in writes {
        client.batch_execute(write).await.unwrap();
        assert_eq!(
            queued().await,
            [(1, Kinds::touched_by(file).bits())],
            "{write}"
        );
    }
    client.batch_execute("TRUNCATE related").await.unwrap();
    assert_eq!(
        queued().await,
        [(documents::EVERY_PRODUCT, Kinds::ALL.bits())]
    );
}
