//! Tests of the live catalog: change capture by triggers, materialize from the change
//! queue, `load --changes`, followers (racing writers, killed, across a database restart
//! and a full reload), and running servers serving every kind of change within a second,
//! with exactly what a full materialize would build and with only the moved list pages
//! dropped.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use atelier::db;
use atelier::http;
use atelier::materialize::{self, MaterializeReport, Plan, Settings, follow};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::serving::{Reply, Server, eventually, seed_catalog, seeded_own_cluster};
use crate::support::{
    FollowerProcess, OwnCluster, TestDb, assert_as_full_rebuild, documents, read_report, sample,
};

/// What "served within a second" allows: the bound every change must meet.
const BOUND: Duration = Duration::from_secs(1);

/// A follower running in this process until dropped.
struct Follower {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Follower {
    fn start(url: &str) -> Follower {
        Follower::start_with(url, Settings::default())
    }

    fn start_with(url: &str, settings: Settings) -> Follower {
        let (stop, stopped) = oneshot::channel::<()>();
        let url = url.to_string();
        let task = tokio::spawn(async move {
            let stopped = async {
                let _ = stopped.await;
            };
            follow::follow(&url, &settings, stopped).await;
        });
        Follower {
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().map(|stop| stop.send(()));
        (&mut self.task).await.unwrap();
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The queued product ids, distinct and ascending, then empties the queue.
async fn drain_queue(client: &Client) -> Vec<i32> {
    client
        .query(
            "WITH taken AS (DELETE FROM document_queue RETURNING product_id)
             SELECT DISTINCT product_id FROM taken ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Waits until the queue is empty and no follower holds a batch (5 s at most).
async fn wait_queue_empty(client: &Client) {
    eventually(5, "the queue is empty", || async {
        let row = client
            .query_one("SELECT count(*) FROM document_queue", &[])
            .await
            .unwrap();
        row.get::<_, i64>(0) == 0
    })
    .await;
}

/// A database of its own seeded with 60 products, its queue and its record of edited
/// products empty. Product n has style n (unless n % 5 == 0), sku n (unless n % 4 == 0),
/// photo n (unless n % 3 == 0), feature n and related row n.
async fn seeded_with_nothing_queued() -> Client {
    let db = TestDb::new().await;
    seed_catalog(&db.url, 60).await;
    let client = db.client().await;
    forget_writes(&client).await;
    client
}

/// Empties the queue and the record of products edited since the last full load, so
/// that what a test's write leaves there is all there is.
async fn forget_writes(client: &Client) {
    drain_queue(client).await;
    client
        .batch_execute("DELETE FROM product_edited")
        .await
        .unwrap();
}

/// The products recorded as edited since the last full load, ascending.
async fn edited(client: &Client) -> Vec<i32> {
    client
        .query("SELECT product_id FROM product_edited ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Runs `sql` and asserts that it queued exactly `products` (0 stands for every
/// product) and recorded exactly them as edited, so the next full load rebuilds them
/// [`assert_write_queues`] on a seeded catalog of its own with nothing queued.
async fn fresh_write_queues(sql: &str, expected: &[i32]) {
    let client = seeded_with_nothing_queued().await;
    assert_write_queues(&client, sql, expected).await;
}

/// whatever their fingerprint.
async fn assert_write_queues(client: &Client, sql: &str, products: &[i32]) {
    client.batch_execute(sql).await.unwrap();
    assert_eq!(drain_queue(client).await, products, "{sql}");
    assert_eq!(edited(client).await, products, "{sql}");
}

#[tokio::test]
async fn a_sku_quantity_update_queues_the_products_of_its_skus() {
    fresh_write_queues("UPDATE sku SET quantity = 3 WHERE id IN (1, 2)", &[1, 2]).await;
}

#[tokio::test]
async fn a_photo_url_update_queues_its_product() {
    fresh_write_queues("UPDATE photo SET url = 'https://x/y' WHERE id = 4", &[4]).await;
}

#[tokio::test]
async fn a_sale_price_update_queues_its_product() {
    fresh_write_queues("UPDATE style SET sale_price = 5 WHERE id = 6", &[6]).await;
}

/// A feature of product 8 that the seed does not have.
const INSERT_FEATURE_900: &str =
    "INSERT INTO feature (id, product_id, feature, value) VALUES (900, 8, 'Lining', 'Silk')";

#[tokio::test]
async fn a_feature_insert_queues_its_product() {
    fresh_write_queues(INSERT_FEATURE_900, &[8]).await;
}

#[tokio::test]
async fn a_feature_delete_queues_its_product() {
    let client = seeded_with_nothing_queued().await;
    client.batch_execute(INSERT_FEATURE_900).await.unwrap();
    forget_writes(&client).await;
    assert_write_queues(&client, "DELETE FROM feature WHERE id = 900", &[8]).await;
}

#[tokio::test]
async fn a_related_row_update_queues_its_product_not_the_one_it_names() {
    fresh_write_queues(
        "UPDATE related SET related_product_id = 2 WHERE id = 9",
        &[9],
    )
    .await;
}

#[tokio::test]
async fn a_product_rename_queues_the_product() {
    fresh_write_queues("UPDATE product SET name = 'Renamed' WHERE id = 11", &[11]).await;
}

#[tokio::test]
async fn a_sku_moved_to_another_products_style_queues_both_products() {
    fresh_write_queues("UPDATE sku SET style_id = 13 WHERE id = 17", &[13, 17]).await;
}

#[tokio::test]
async fn a_product_inserted_with_a_style_and_a_sku_queues_the_new_product() {
    fresh_write_queues(
        "INSERT INTO product (id, name, slogan, description, category, default_price)
             VALUES (70, 'New', 's', 'd', 'c', 1);
         INSERT INTO style (id, product_id, name, sale_price, original_price, default_style)
             VALUES (70, 70, 'S', NULL, 1, true);
         INSERT INTO sku (id, style_id, size, quantity) VALUES (70, 70, 'M', 1);",
        &[70],
    )
    .await;
}

#[tokio::test]
async fn a_product_deleted_with_all_its_rows_queues_the_product() {
    fresh_write_queues(
        "DELETE FROM sku WHERE style_id = 18; DELETE FROM photo WHERE style_id = 18;
         DELETE FROM style WHERE product_id = 18; DELETE FROM feature WHERE product_id = 18;
         DELETE FROM related WHERE product_id = 18; DELETE FROM product WHERE id = 18",
        &[18],
    )
    .await;
}

#[tokio::test]
async fn a_truncate_queues_every_product() {
    fresh_write_queues("TRUNCATE related", &[0]).await;
}

/// Each change says which documents it can touch: a stock, price or photo change only
/// the styles document.
#[tokio::test]
async fn each_queued_write_says_which_documents_it_can_touch() {
    let client = seeded_with_nothing_queued().await;
    client
        .batch_execute(
            "UPDATE sku SET quantity = 1 WHERE id = 1; UPDATE photo SET url = 'u' WHERE id = 2;
             UPDATE style SET name = 'n' WHERE id = 3; UPDATE product SET name = 'n' WHERE id = 4;
             UPDATE feature SET value = 'v' WHERE id = 5;
             INSERT INTO related (id, product_id, related_product_id) VALUES (901, 6, 1);",
        )
        .await
        .unwrap();
    let parts: Vec<(i32, i16)> = client
        .query(
            "SELECT product_id, parts FROM document_queue ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(parts, [(1, 4), (2, 4), (3, 4), (4, 1), (5, 2), (6, 8)]);
}

/// An application allowed to write a catalog table, and nothing else, is captured too.
#[tokio::test]
async fn a_write_by_an_application_allowed_only_a_catalog_table_is_queued() {
    let client = seeded_with_nothing_queued().await;
    client
        .batch_execute(
            "CREATE ROLE live_inventory_app; GRANT UPDATE, SELECT ON sku TO live_inventory_app;
             SET ROLE live_inventory_app; UPDATE sku SET quantity = 9 WHERE id = 6; RESET ROLE;
             DROP OWNED BY live_inventory_app; DROP ROLE live_inventory_app;",
        )
        .await
        .unwrap();
    assert_eq!(drain_queue(&client).await, [6]);
}

#[tokio::test]
async fn the_reader_may_not_queue_products() {
    let client = seeded_with_nothing_queued().await;
    let refused = client
        .batch_execute("SET ROLE atelier_reader; SELECT atelier_mark(ARRAY[1], 4::smallint)")
        .await;
    assert!(refused.is_err(), "the reader may not queue products");
}

/// The capture runs as the tables' owner: a writer's own functions and operators, put
/// first on its search_path, are never what it calls.
#[tokio::test]
async fn the_capture_never_calls_a_writers_own_functions_or_operators() {
    let client = seeded_with_nothing_queued().await;
    client
        .batch_execute(
            "CREATE ROLE live_intruder; GRANT UPDATE, SELECT ON sku, product TO live_intruder;
             CREATE SCHEMA live_intrusion AUTHORIZATION live_intruder;
             SET ROLE live_intruder;
             CREATE FUNCTION live_intrusion.unnest(integer[]) RETURNS SETOF integer
                 LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'hijacked unnest'; END $$;
             CREATE FUNCTION live_intrusion.eq(text, text) RETURNS boolean
                 LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'hijacked ='; END $$;
             CREATE OPERATOR live_intrusion.= (FUNCTION = live_intrusion.eq,
                                               LEFTARG = text, RIGHTARG = text);
             SET search_path = live_intrusion, pg_catalog, public;
             UPDATE public.sku SET quantity = 2 WHERE id = 6;
             UPDATE public.product SET name = 'x' WHERE id = 6;
             RESET search_path; RESET ROLE;
             DROP SCHEMA live_intrusion CASCADE; DROP OWNED BY live_intruder;
             DROP ROLE live_intruder;",
        )
        .await
        .unwrap();
    assert_eq!(drain_queue(&client).await, [6]);
}

/// A copy of the genuine sample `sara-2023` in a directory of its own, with `edit`
/// applied to the named file's text.
fn sara_with(edits: &[(&str, &str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::TempDir::new().unwrap();
    for file in atelier::catalog::FILE_NAMES {
        let mut text = std::fs::read_to_string(sample("sara-2023").join(file)).unwrap();
        for (name, from, to) in edits {
            if *name == file {
                assert!(text.contains(from), "{from} in {file}");
                text = text.replacen(from, to, 1);
            }
        }
        std::fs::write(dir.path().join(file), text).unwrap();
    }
    dir
}

async fn load(db: &TestDb, dir: &Path) -> atelier::load::LoadReport {
    let mut client = db.client().await;
    let rejects = dir.join("rejects.csv");
    atelier::load::load_catalog(&mut client, dir, &rejects, false)
        .await
        .unwrap()
}

async fn materialize_changed(url: &str) -> MaterializeReport {
    materialize::materialize(url, Plan::Queue, &Settings::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn materialize_after_a_reload_rebuilds_only_what_changed() {
    let db = TestDb::new().await;
    let original = sara_with(&[]);
    load(&db, original.path()).await;
    // Documents never built: the first run builds them all.
    assert_eq!(materialize_changed(&db.url).await.documents, 10);
    load(&db, original.path()).await;
    assert_eq!(
        materialize_changed(&db.url).await,
        MaterializeReport {
            documents: 0,
            ..MaterializeReport::default()
        }
    );

    // A sku quantity of product 1 changes in the files; product 10 goes, and with it
    // the related row of product 8 that names it.
    let changed = sara_with(&[("skus.csv", "2,1,\"S\",16", "2,1,\"S\",17")]);
    let lines: Vec<String> = std::fs::read_to_string(changed.path().join("product.csv"))
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with("10,"))
        .map(String::from)
        .collect();
    std::fs::write(changed.path().join("product.csv"), lines.join("\n")).unwrap();
    let report = load(&db, changed.path()).await;
    assert_eq!((report.products.changed, report.products.removed), (2, 1));
    assert_eq!(
        materialize_changed(&db.url).await,
        MaterializeReport {
            documents: 2,
            removed: 1,
            ..MaterializeReport::default()
        }
    );
    assert_as_full_rebuild(&db.url).await;

    // Product 2 renamed by another application; reloading files that still hold the old
    // name puts it back, though its fingerprint did not move.
    let client = db.client().await;
    client
        .batch_execute("UPDATE product SET name = 'Edited' WHERE id = 2")
        .await
        .unwrap();
    assert_eq!(materialize_changed(&db.url).await.documents, 1);
    let report = load(&db, changed.path()).await;
    assert_eq!((report.products.changed, report.products.unchanged), (1, 8));
    assert_eq!(materialize_changed(&db.url).await.documents, 1);
    let name: String = client
        .query_one(
            "SELECT product->>'name' FROM document WHERE product_id = 2",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "Bright Future Sunglasses");
    load(&db, changed.path()).await;
    assert_eq!(materialize_changed(&db.url).await.documents, 0);
}

/// Writes the files of a change set into a new directory.
fn changes(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::TempDir::new().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

async fn load_changes(db: &TestDb, dir: &Path) -> atelier::Result<atelier::load::LoadReport> {
    let mut client = db.client().await;
    let rejects = dir.join("rejects.csv");
    atelier::load::changes::load_changes(&mut client, dir, &rejects).await
}

#[tokio::test]
async fn changes_insert_replace_and_delete_in_one_transaction() {
    let db = TestDb::new().await;
    load(&db, sara_with(&[]).path()).await;
    materialize_changed(&db.url).await;
    let client = db.client().await;
    // Product 2's row exactly as loaded: replacing it changes nothing.
    let unchanged_row = std::fs::read_to_string(sample("sara-2023").join("product.csv"))
        .unwrap()
        .lines()
        .find(|line| line.starts_with("2,"))
        .unwrap()
        .to_string();
    let products = format!(
        "id,name,slogan,description,category,default_price\n\
         20,\"Rain Coat\",\"Stay dry\",\"Light and long.\",\"Jackets\",90\n\
         1,\"Camo Onesie II\",\"Blend in to your crowd\",\"Now in camo.\",\"Jackets\",150\n\
         {unchanged_row}\n"
    );
    let dir = changes(&[
        ("product.csv", &products),
        // The spaced variant.
        (
            "styles.csv",
            "id, product_id, name, sale_price, original_price, default_style\n\
             900, 20, \"Olive\", null, 90, 1\n\
             2, 1, \"Desert Brown & Tan\", 99, 140, 0\n\
             901, 4, \"Gone with its product\", null, 1, 0\n",
        ),
        (
            "skus.csv",
            "id,styleId,size,quantity\n\
             9000,900,\"M\",3\n\
             1,1,\"XS\",0\n\
             9001,123456,\"L\",1\n",
        ),
        (
            "photos.csv",
            "id,styleId,url,thumbnail_url\n9000,900,\"https://example.com/o\",\"https://example.com/o-t\"\n",
        ),
        (
            "features.csv",
            "id,product_id,feature,value\n900,20,\"Fabric\",\"Wax\"\n",
        ),
        (
            "related.csv",
            "id,current_product_id,related_product_id\n900,20,1\n901,20,4\n902,20,777\n",
        ),
        ("deleted.csv", "product_id\n4\n 999\nabc\n4\n"),
    ]);
    let report = load_changes(&db, dir.path()).await.unwrap();
    let counts: Vec<(&str, u64, u64, u64)> = report
        .files
        .iter()
        .map(|c| (c.file, c.read, c.loaded, c.rejected))
        .collect();
    assert_eq!(
        counts,
        [
            ("product.csv", 3, 3, 0),
            ("styles.csv", 3, 2, 1),
            ("features.csv", 1, 1, 0),
            ("photos.csv", 1, 1, 0),
            ("skus.csv", 3, 2, 1),
            ("related.csv", 3, 1, 2),
            ("deleted.csv", 4, 1, 3),
        ]
    );
    // 20 is new; 1 changed (name, a style's price, a sku); 2's row is as it was; 4 went,
    // and so did the related rows of 7 and 8 naming it.
    let p = report.products;
    assert_eq!((p.created, p.changed, p.unchanged, p.removed), (1, 3, 1, 1));
    let reasons: BTreeSet<String> = read_report(&report.rejects)
        .into_iter()
        .filter(|r| r.outcome == "rejected")
        .map(|r| format!("{} {}", r.file, r.reason))
        .collect();
    for expected in [
        "styles.csv product_id 4 names no loaded product",
        "skus.csv style_id 123456 names no loaded style",
        "related.csv related_product_id 4 names no loaded product",
        "related.csv related_product_id 777 names no loaded product",
        "deleted.csv product_id 999 names no product in the catalog",
        "deleted.csv product_id: no number in \"abc\"",
        "deleted.csv duplicate id 4",
    ] {
        assert!(reasons.contains(expected), "{expected} in {reasons:?}");
    }
    let touched = materialize_changed(&db.url).await;
    assert_eq!((touched.documents, touched.removed), (4, 1));
    let new: String = client
        .query_one(
            "SELECT styles::text FROM document WHERE product_id = 20",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(new.contains("Olive") && new.contains("\"9000\""), "{new}");
    assert_as_full_rebuild(&db.url).await;
}

#[tokio::test]
async fn a_change_set_that_fails_changes_nothing() {
    let db = TestDb::new().await;
    load(&db, sara_with(&[]).path()).await;
    materialize_changed(&db.url).await;
    let client = db.client().await;
    // A rule of this database that the files' checks know nothing of.
    client
        .batch_execute("ALTER TABLE product ADD CONSTRAINT no_boom CHECK (name <> 'Boom')")
        .await
        .unwrap();
    let before = documents(&client).await;
    let dir = changes(&[
        (
            "product.csv",
            "id,name,slogan,description,category,default_price\n1,\"Boom\",\"s\",\"d\",\"c\",1\n",
        ),
        ("skus.csv", "id,styleId,size,quantity\n1,1,\"XS\",0\n"),
        ("deleted.csv", "product_id\n4\n"),
    ]);
    let error = load_changes(&db, dir.path()).await.unwrap_err();
    assert!(error.to_string().contains("no_boom"), "{error}");
    let products: i64 = client
        .query_one("SELECT count(*) FROM product", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(products, 10);
    assert_eq!(drain_queue(&client).await, [0; 0]);
    assert_eq!(materialize_changed(&db.url).await.documents, 0);
    assert_eq!(documents(&client).await, before);
}

#[tokio::test]
async fn a_directory_without_change_files_is_refused() {
    let db = TestDb::new().await;
    load(&db, sara_with(&[]).path()).await;
    materialize_changed(&db.url).await;
    let empty = changes(&[("notes.txt", "nothing")]);
    let error = load_changes(&db, empty.path()).await.unwrap_err();
    assert!(error.to_string().contains("no change files"), "{error}");
}

/// Polls `path` every 5 ms until `done` holds for its answer; the time that took, and
/// the answer.
async fn until_served(
    server: &Server,
    path: &str,
    done: impl Fn(&Reply) -> bool,
) -> (Duration, Reply) {
    let started = Instant::now();
    loop {
        let reply = server.get(path).await;
        if done(&reply) {
            return (started.elapsed(), reply);
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{path} never changed: {}",
            reply.text()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A seeded catalog in a database of its own, served by a running server while a
/// follower rebuilds the documents of every change: where a change must be served within
/// a second, as a full rebuild builds it, dropping from the cache only what it moved.
struct ServedCatalog {
    db: TestDb,
    client: Client,
    server: Server,
    _follower: Follower,
    /// The paths whose answers a change moved, compared with a full rebuild's at the end.
    served: Vec<String>,
}

impl ServedCatalog {
    /// Seeds `products` products (ids that are multiples of 7 are left free), then starts
    /// the server, waiting until it listens for invalidations, and the follower.
    async fn start(products: i32) -> ServedCatalog {
        let db = TestDb::new().await;
        seed_catalog(&db.url, products).await;
        let client = db.client().await;
        let server = Server::start_listening(&db.url, http::Settings::default()).await;
        let _follower = Follower::start(&db.url);
        ServedCatalog {
            db,
            client,
            server,
            _follower,
            served: Vec::new(),
        }
    }

    /// Runs the update `sql` and asserts that `path`, found before it, serves something
    /// new within a second.
    async fn assert_update_served_within_a_second(&mut self, sql: &str, path: &str) {
        let before = self.server.get(path).await;
        assert_eq!(before.status, 200, "{path}");
        self.client.batch_execute(sql).await.unwrap();
        let (took, _) = until_served(&self.server, path, |reply| reply.body != before.body).await;
        assert!(took < BOUND, "{sql}: served after {took:?}");
        self.served.push(path.to_string());
    }

    /// Inserts a product with a style at `id` (ids that are multiples of 7 are free) and
    /// asserts that its styles, not found before, are served within a second, and that
    /// its list `page` then shows it.
    async fn assert_insert_served_within_a_second(&mut self, id: i32, page: &str) {
        let path = format!("/products/{id}/styles");
        assert_eq!(self.server.get(&path).await.status, 404);
        let page_before = self.server.get(page).await;
        self.client
            .batch_execute(&format!(
                "INSERT INTO product (id, name, slogan, description, category, default_price)
                     VALUES ({id}, 'New {id}', 's', 'd', 'Pants', 10);
                 INSERT INTO style (id, product_id, name, sale_price, original_price, default_style)
                     VALUES ({id}, {id}, 'Style', NULL, 10, true);"
            ))
            .await
            .unwrap();
        let (took, _) = until_served(&self.server, &path, |reply| reply.status == 200).await;
        assert!(took < BOUND, "insert of {id}: served after {took:?}");
        self.served.push(path);
        let (_, reply) =
            until_served(&self.server, page, |reply| reply.body != page_before.body).await;
        assert!(
            reply.text().contains(&format!("New {id}")),
            "{page}: {}",
            reply.text()
        );
        self.served.push(page.to_string());
    }

    /// Asserts that what is served at every path a change moved, once the follower is
    /// done, is what a full rebuild builds, as a server that never saw the changes
    /// serves it.
    async fn assert_served_as_a_full_rebuild_builds_it(self) {
        wait_queue_empty(&self.client).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut now = Vec::new();
        for path in &self.served {
            now.push((path.clone(), self.server.get(path).await.body));
        }
        self.server.stop().await;
        materialize::materialize(&self.db.url, Plan::Everything, &Settings::default())
            .await
            .unwrap();
        let fresh = Server::start(&self.db.url, http::Settings::default()).await;
        for (path, body) in now {
            let built = fresh.get(&path).await;
            assert_eq!(String::from_utf8_lossy(&body), built.text(), "{path}");
        }
        fresh.stop().await;
    }
}

/// Commits `write` to a served catalog of 300 products, and checks that `path` serves
/// it within a second and that everything served then is what a full rebuild builds.
async fn update_served_as_a_full_rebuild_builds_it(write: &str, path: &str) {
    let mut catalog = ServedCatalog::start(300).await;
    catalog
        .assert_update_served_within_a_second(write, path)
        .await;
    catalog.assert_served_as_a_full_rebuild_builds_it().await;
}

/// Inserts product `id` into a served catalog of 300 products, and checks that the list
/// page `path` serves it within a second and that everything served then is what a full
/// rebuild builds.
async fn insert_served_as_a_full_rebuild_builds_it(id: i32, path: &str) {
    let mut catalog = ServedCatalog::start(300).await;
    catalog.assert_insert_served_within_a_second(id, path).await;
    catalog.assert_served_as_a_full_rebuild_builds_it().await;
}

#[tokio::test]
async fn a_sku_quantity_change_is_served_within_a_second_as_a_full_rebuild_builds_it() {
    update_served_as_a_full_rebuild_builds_it(
        "UPDATE sku SET quantity = 99 WHERE id = 22",
        "/products/22/styles",
    )
    .await;
}

#[tokio::test]
async fn a_photo_url_change_is_served_within_a_second_as_a_full_rebuild_builds_it() {
    update_served_as_a_full_rebuild_builds_it(
        "UPDATE photo SET url = 'https://example.com/new' WHERE id = 23",
        "/products/23/styles",
    )
    .await;
}

#[tokio::test]
async fn a_sale_price_change_is_served_within_a_second_as_a_full_rebuild_builds_it() {
    update_served_as_a_full_rebuild_builds_it(
        "UPDATE style SET sale_price = 12 WHERE id = 24",
        "/products/24/styles",
    )
    .await;
}

#[tokio::test]
async fn a_feature_change_is_served_within_a_second_as_a_full_rebuild_builds_it() {
    update_served_as_a_full_rebuild_builds_it(
        "UPDATE feature SET value = 'Wool' WHERE id = 26",
        "/products/26",
    )
    .await;
}

#[tokio::test]
async fn a_related_row_change_is_served_within_a_second_as_a_full_rebuild_builds_it() {
    update_served_as_a_full_rebuild_builds_it(
        "UPDATE related SET related_product_id = 2 WHERE id = 27",
        "/products/27/related",
    )
    .await;
}

#[tokio::test]
async fn a_product_name_change_is_served_within_a_second_as_a_full_rebuild_builds_it() {
    update_served_as_a_full_rebuild_builds_it(
        "UPDATE product SET name = 'Renamed' WHERE id = 29",
        "/products/29",
    )
    .await;
}

#[tokio::test]
async fn a_slogan_change_is_served_on_its_list_page_within_a_second_as_a_full_rebuild_builds_it() {
    // Product 29 is at rank 25 (multiples of 7 are missing): page 5 of 5.
    update_served_as_a_full_rebuild_builds_it(
        "UPDATE product SET slogan = 'Again' WHERE id = 29",
        "/products?page=5&count=5",
    )
    .await;
}

#[tokio::test]
async fn a_product_appended_to_the_list_is_served_within_a_second_as_a_full_rebuild_builds_it() {
    insert_served_as_a_full_rebuild_builds_it(301, "/products?page=52&count=5").await;
}

#[tokio::test]
async fn a_product_inserted_mid_list_is_served_within_a_second_as_a_full_rebuild_builds_it() {
    insert_served_as_a_full_rebuild_builds_it(14, "/products?page=3&count=5").await;
}

#[tokio::test]
async fn a_deleted_product_answers_404_within_a_second_as_a_full_rebuild_builds_it() {
    let mut catalog = ServedCatalog::start(300).await;
    // Product 25 is at rank 22 (multiples of 7 are missing): page 5.
    let page = "/products?page=5&count=5";
    let page_before = catalog.server.get(page).await;
    assert!(
        page_before.text().contains("\"id\": 25,"),
        "{}",
        page_before.text()
    );
    catalog
        .client
        .batch_execute(
            "DELETE FROM sku WHERE style_id = 25; DELETE FROM photo WHERE style_id = 25;
             DELETE FROM style WHERE product_id = 25; DELETE FROM feature WHERE product_id = 25;
             DELETE FROM related WHERE product_id = 25 OR related_product_id = 25;
             DELETE FROM product WHERE id = 25",
        )
        .await
        .unwrap();
    let (took, _) =
        until_served(&catalog.server, "/products/25", |reply| reply.status == 404).await;
    assert!(took < BOUND, "delete: answered 404 after {took:?}");
    let (_, reply) = until_served(&catalog.server, page, |reply| {
        reply.body != page_before.body
    })
    .await;
    assert!(!reply.text().contains("\"id\": 25,"), "{}", reply.text());
    catalog.served.push(page.to_string());
    catalog.assert_served_as_a_full_rebuild_builds_it().await;
}

/// The bodies served at `paths`, read in order (each read fills the cache).
async fn read_all(server: &Server, paths: &[impl AsRef<str>]) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    for path in paths {
        bodies.push(server.get(path.as_ref()).await.body);
    }
    bodies
}

/// The first 20 list pages of 5 products, which a change to the first 100 products can
/// move.
fn first_list_pages() -> Vec<String> {
    (1..=20)
        .map(|page| format!("/products?page={page}&count=5"))
        .collect()
}

#[tokio::test]
async fn a_rename_drops_only_the_list_page_it_is_on() {
    let catalog = ServedCatalog::start(300).await;
    let (server, client) = (&catalog.server, &catalog.client);
    let pages = first_list_pages();
    let warm = read_all(server, &pages).await;
    let misses = server.metric("atelier_cache_misses_total").await;
    // Product 12 is at rank 11: page 3. Renaming it moves nothing else.
    client
        .batch_execute("UPDATE product SET name = 'Moved nothing' WHERE id = 12")
        .await
        .unwrap();
    until_served(server, &pages[2], |reply| reply.body != warm[2]).await;
    let after_update = read_all(server, &pages).await;
    assert_eq!(
        server.metric("atelier_cache_misses_total").await,
        misses + 1.0
    );
    for (page, (old, new)) in after_update.iter().zip(&warm).enumerate() {
        assert_eq!(old == new, page != 2, "page {}", page + 1);
    }
    catalog.server.stop().await;
}

#[tokio::test]
async fn an_insert_drops_only_its_own_list_page_and_those_after_it() {
    let catalog = ServedCatalog::start(300).await;
    let (server, client) = (&catalog.server, &catalog.client);
    let pages = first_list_pages();
    let warm = read_all(server, &pages).await;
    // Product 42 goes in at rank 37, on page 8: pages 8 to 20 move, 1 to 7 do not.
    let misses = server.metric("atelier_cache_misses_total").await;
    client
        .batch_execute(
            "INSERT INTO product (id, name, slogan, description, category, default_price)
             VALUES (42, 'Inserted', 's', 'd', 'Pants', 10)",
        )
        .await
        .unwrap();
    until_served(server, &pages[7], |reply| reply.body != warm[7]).await;
    let after_insert = read_all(server, &pages).await;
    assert_eq!(
        server.metric("atelier_cache_misses_total").await,
        misses + 13.0
    );
    for (page, (old, new)) in after_insert.iter().zip(&warm).enumerate() {
        assert_eq!(old == new, page < 7, "page {}", page + 1);
    }
    catalog.server.stop().await;
}

/// The three documents of product 11: product, styles, related.
const PRODUCT_11: [&str; 3] = [
    "/products/11",
    "/products/11/styles",
    "/products/11/related",
];

#[tokio::test]
async fn a_stock_change_drops_only_the_styles_document() {
    let catalog = ServedCatalog::start(30).await;
    let (server, client) = (&catalog.server, &catalog.client);
    let warm = read_all(server, &PRODUCT_11).await;
    let misses = server.metric("atelier_cache_misses_total").await;
    client
        .batch_execute("UPDATE sku SET quantity = 99 WHERE id = 11")
        .await
        .unwrap();
    until_served(server, PRODUCT_11[1], |reply| reply.text().contains("99")).await;
    let after_stock = read_all(server, &PRODUCT_11).await;
    // The styles document was read once more; the product and related ones stayed.
    assert_eq!(
        server.metric("atelier_cache_misses_total").await,
        misses + 1.0
    );
    assert_eq!(after_stock[0], warm[0]);
    assert_eq!(after_stock[2], warm[2]);
    catalog.server.stop().await;
}

/// A feature is in the product document: all three are dropped.
#[tokio::test]
async fn a_feature_change_drops_all_three_documents_of_its_product() {
    let catalog = ServedCatalog::start(30).await;
    let (server, client) = (&catalog.server, &catalog.client);
    read_all(server, &PRODUCT_11).await;
    let misses = server.metric("atelier_cache_misses_total").await;
    client
        .batch_execute("UPDATE feature SET value = 'Denim' WHERE product_id = 11")
        .await
        .unwrap();
    until_served(server, PRODUCT_11[0], |reply| {
        reply.text().contains("Denim")
    })
    .await;
    read_all(server, &PRODUCT_11).await;
    assert_eq!(
        server.metric("atelier_cache_misses_total").await,
        misses + 3.0
    );
    catalog.server.stop().await;
}

#[tokio::test]
async fn writers_racing_two_followers_lose_no_change() {
    let db = TestDb::new().await;
    seed_catalog(&db.url, 300).await;
    let followers = [Follower::start(&db.url), Follower::start(&db.url)];
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let url = db.url.clone();
            tokio::spawn(async move {
                let mut client = db::connect(&url).await.unwrap();
                for round in 0..60 {
                    // Products shared between writers, several per transaction.
                    let a = 1 + (writer * 37 + round * 11) % 290;
                    let b = 1 + (writer * 53 + round * 7) % 290;
                    let transaction = client.transaction().await.unwrap();
                    transaction
                        .batch_execute(&format!(
                            "UPDATE sku SET quantity = {round} WHERE style_id IN ({a}, {b});
                             UPDATE product SET name = 'W{writer} R{round}' WHERE id = {b};
                             UPDATE style SET sale_price = {round} WHERE id = {a};"
                        ))
                        .await
                        .unwrap();
                    transaction.commit().await.unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let client = db.client().await;
    wait_queue_empty(&client).await;
    for follower in followers {
        follower.stop().await;
    }
    assert_as_full_rebuild(&db.url).await;
}

/// Sessions of `application_name` waiting for a lock, and all of them.
async fn sessions(client: &Client, application: &str) -> (i64, i64) {
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE wait_event_type = 'Lock'), count(*)
             FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()",
            &[&application],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn a_follower_killed_mid_batch_loses_no_change() {
    let db = TestDb::new().await;
    seed_catalog(&db.url, 100).await;
    let client = db.client().await;
    let mut blocker = db.client().await;
    let mut follower = FollowerProcess::start(&db.url);
    eventually(10, "the follower connects", || async {
        sessions(&client, follow::APPLICATION_NAME).await.1 == 1
    })
    .await;
    // Documents locked against writes: the follower's batch takes its rows, rebuilds,
    // and waits to write them.
    let hold = blocker.transaction().await.unwrap();
    hold.batch_execute("LOCK TABLE document IN SHARE MODE")
        .await
        .unwrap();
    client
        .batch_execute("UPDATE product SET name = 'Survivor' WHERE id = 30")
        .await
        .unwrap();
    eventually(10, "the follower waits mid-batch", || async {
        sessions(&client, follow::APPLICATION_NAME).await.0 == 1
    })
    .await;
    follower.0.kill().await.unwrap();
    hold.rollback().await.unwrap();
    eventually(10, "the killed follower's session ends", || async {
        sessions(&client, follow::APPLICATION_NAME).await.1 == 0
    })
    .await;
    let queued: Vec<i32> = client
        .query("SELECT product_id FROM document_queue", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(queued, [30], "the change is still queued");
    let _next = FollowerProcess::start(&db.url);
    wait_queue_empty(&client).await;
    let name: String = client
        .query_one(
            "SELECT product->>'name' FROM document WHERE product_id = 30",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "Survivor");
}

#[tokio::test]
async fn following_goes_on_after_a_database_restart() {
    let (own, url) = seeded_own_cluster(50).await;
    let _follower = Follower::start(&url);
    let cluster = own.cluster.clone();
    tokio::task::spawn_blocking(move || {
        cluster.stop()?;
        cluster.start()
    })
    .await
    .unwrap()
    .unwrap();
    let client = db::connect(&url).await.unwrap();
    client
        .batch_execute("UPDATE product SET name = 'After the restart' WHERE id = 3")
        .await
        .unwrap();
    eventually(10, "the follower rebuilds after the restart", || async {
        let name: String = client
            .query_one(
                "SELECT product->>'name' FROM document WHERE product_id = 3",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        name == "After the restart"
    })
    .await;
}

#[tokio::test]
async fn a_full_reload_while_following_is_followed_and_captured_after() {
    let db = TestDb::new().await;
    load(&db, sara_with(&[]).path()).await;
    materialize_changed(&db.url).await;
    let client = db.client().await;
    let _follower = Follower::start(&db.url);
    let renamed = sara_with(&[("product.csv", "\"Camo Onesie\"", "\"Camo Onesie Reloaded\"")]);
    load(&db, renamed.path()).await;
    let name = |id: i32| {
        let client = &client;
        async move {
            client
                .query_one(
                    "SELECT product->>'name' FROM document WHERE product_id = $1",
                    &[&id],
                )
                .await
                .unwrap()
                .get::<_, String>(0)
        }
    };
    eventually(5, "the reload is followed", || async {
        name(1).await == "Camo Onesie Reloaded"
    })
    .await;
    // The swapped-in tables capture changes too.
    client
        .batch_execute("UPDATE product SET name = 'Captured' WHERE id = 2")
        .await
        .unwrap();
    eventually(5, "a write to the new tables is followed", || async {
        name(2).await == "Captured"
    })
    .await;
    wait_queue_empty(&client).await;
    assert_as_full_rebuild(&db.url).await;
}

#[tokio::test]
async fn the_embedded_default_follows_changes_by_itself() {
    let own = OwnCluster::new();
    let owner_url = db::resolve_url(&own.database()).await.unwrap();
    let mut owner = db::connect(&owner_url).await.unwrap();
    db::apply_schema(&owner).await.unwrap();
    let rejects = own.dir.path().join("rejects.csv");
    atelier::load::load_catalog(&mut owner, &sample("sara-2023"), &rejects, false)
        .await
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let database = own.database();
    let server = tokio::spawn(async move {
        atelier::http::run(
            listen,
            &database,
            &http::Settings::default(),
            &Settings::default(),
        )
        .await
    });
    let addr = listen;
    eventually(30, "the embedded default serves", || async {
        tokio::net::TcpStream::connect(addr).await.is_ok()
            && crate::serving::request(addr, "GET", "/readyz", &[])
                .await
                .status
                == 200
    })
    .await;
    owner
        .batch_execute("UPDATE sku SET quantity = 41 WHERE id = 1")
        .await
        .unwrap();
    eventually(5, "the change is served", || async {
        let reply = crate::serving::request(addr, "GET", "/products/1/styles", &[]).await;
        reply.json()["results"][0]["skus"]["1"]["quantity"] == 41
    })
    .await;
    server.abort();
}

/// Transactions committed in the test's database so far, as the statistics show them.
async fn commits(client: &Client) -> i64 {
    client
        .batch_execute("SELECT pg_stat_force_next_flush()")
        .await
        .unwrap();
    client
        .query_one(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn an_idle_follower_waits_for_commits_instead_of_polling() {
    let db = TestDb::new().await;
    seed_catalog(&db.url, 20).await;
    let client = db.client().await;
    materialize::materialize(&db.url, Plan::Queue, &Settings::default())
        .await
        .unwrap();
    // A safety poll far beyond the test: only the queue's notification can wake it.
    let settings = Settings {
        follow_poll: Duration::from_secs(3600),
        ..Settings::default()
    };
    let follower = Follower::start_with(&db.url, settings);
    eventually(10, "the follower listens", || async {
        sessions(&client, follow::APPLICATION_NAME).await.1 == 1
    })
    .await;
    wait_queue_empty(&client).await;

    // Idle: the follower's backend commits nothing while nothing is queued (the old
    // 20 ms poll committed about 150 statements in these 3 s).
    let before = commits(&client).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The statistics reads themselves and autovacuum's work after the seed commit a few
    // (up to 22 seen on a loaded machine); a follower polling every 20 ms would commit
    // some 150.
    let idle_commits = commits(&client).await - before;
    assert!(idle_commits <= 50, "{idle_commits} commits while idle");

    // Woken by a writer's commit, however long the safety poll.
    for (round, id) in [(1, 3), (2, 11), (3, 17)] {
        client
            .execute(
                "UPDATE product SET name = $1 WHERE id = $2",
                &[&format!("Woken {round}"), &id],
            )
            .await
            .unwrap();
        let expected = format!("Woken {round}");
        eventually(10, "the change is rebuilt", || async {
            let name: String = client
                .query_one(
                    "SELECT product->>'name' FROM document WHERE product_id = $1",
                    &[&id],
                )
                .await
                .unwrap()
                .get(0);
            name == expected
        })
        .await;
    }
    follower.stop().await;
}
