//! Tests of `load`: golden loads of the genuine samples, every dirt rule on small
//! hand-written files, files that stop a load, re-loads, and the loaded tables' shape.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use atelier::catalog::FILE_NAMES;
use atelier::load::{self, LoadReport};
use tempfile::TempDir;
use tokio_postgres::Client;

use crate::support::{Reject, TestDb, read_report, sample};

/// The six files of a small, clean, compact catalog.
const PRODUCT: &str = "id,name,slogan,description,category,default_price
1,\"Camo Onesie\",\"Blend in\",\"Fatigues.\",\"Jackets\",140
2,\"Bright Future Sunglasses\",\"You've got to wear shades\",\"Roads.\",\"Accessories\",69
3,\"Morning Joggers\",\"Make yourself a morning person\",\"Whether  you're up.\",\"Pants\",40";
const STYLES: &str = "id,productId,name,sale_price,original_price,default_style
1,1,\"Forest Green & Black\",null,140,1
2,1,\"Desert Brown & Tan\",100,140,0
3,2,\"Black Lenses\",null,69,1
4,3,\"Black\",null,40,1";
const FEATURES: &str = "id,product_id,feature,value
1,1,\"Fabric\",\"Canvas\"
2,2,\"UV Protection\",null
3,3,\"Fabric\",\"100% Cotton\"";
const PHOTOS: &str = "id,styleId,url,thumbnail_url
1,1,\"https://img/1?w=668\",\"https://img/1?w=300\"
2,2,\"https://img/2?w=668\",\"https://img/2?w=300\"
3,3,\"https://img/3?w=668\",\"https://img/3?w=300\"
4,4,\"https://img/4?w=668\",\"https://img/4?w=300\"";
const SKUS: &str = "id,styleId,size,quantity
1,1,\"XS\",8
2,1,\"S\",16
3,2,\"M\",17
4,3,\"One Size\",3
5,4,\"L\",9";
const RELATED: &str = "id,current_product_id,related_product_id
1,1,2
2,2,1
3,3,1";

/// A catalog directory: the small catalog with some files replaced.
fn catalog(replaced: &[(&str, &str)]) -> TempDir {
    let dir = TempDir::new().unwrap();
    let defaults = [PRODUCT, STYLES, FEATURES, PHOTOS, SKUS, RELATED];
    for (file, text) in FILE_NAMES.iter().zip(defaults) {
        let text = replaced
            .iter()
            .find(|(name, _)| name == file)
            .map_or(text, |(_, text)| *text);
        std::fs::write(dir.path().join(file), text).unwrap();
    }
    dir
}

/// A catalog directory holding copies of the given files.
fn copied(files: &[PathBuf]) -> TempDir {
    let dir = TempDir::new().unwrap();
    for file in files {
        std::fs::copy(file, dir.path().join(file.file_name().unwrap())).unwrap();
    }
    dir
}

/// Loads `dir` into `db`; returns the report and the rejects report's lines.
async fn load_dir(db: &TestDb, dir: &Path) -> (LoadReport, Vec<Reject>) {
    let mut client = db.client().await;
    // The report goes beside the test's own files, never into a sample directory.
    let out = TempDir::new().unwrap();
    let rejects = out.path().join("rejects.csv");
    let report = load::load_catalog(&mut client, dir, &rejects, false)
        .await
        .expect("the load succeeds");
    assert_eq!(report.rejects, rejects);
    (report, read_report(&rejects))
}

/// (file, line, outcome, reason) of each report line.
fn brief(rejects: &[Reject]) -> Vec<(&str, u64, &str, &str)> {
    rejects
        .iter()
        .map(|r| {
            (
                r.file.as_str(),
                r.line,
                r.outcome.as_str(),
                r.reason.as_str(),
            )
        })
        .collect()
}

/// (read, loaded, repaired, rejected) of `file`.
fn counts(report: &LoadReport, file: &str) -> (u64, u64, u64, u64) {
    let c = report
        .file(file)
        .unwrap_or_else(|| panic!("no counts for {file}"));
    (c.read, c.loaded, c.repaired, c.rejected)
}

async fn ids(client: &Client, table: &str) -> Vec<i32> {
    client
        .query(&format!("SELECT id FROM {table} ORDER BY id"), &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

async fn strings(client: &Client, sql: &str) -> Vec<Option<String>> {
    client
        .query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Every row of the six tables as text, by table.
async fn dump(client: &Client) -> BTreeMap<&'static str, Vec<String>> {
    let mut tables = BTreeMap::new();
    for table in ["product", "style", "feature", "photo", "sku", "related"] {
        let sql = format!("SELECT t::text FROM {table} t ORDER BY id");
        let rows = strings(client, &sql).await.into_iter().flatten().collect();
        tables.insert(table, rows);
    }
    tables
}

#[tokio::test]
async fn golden_load_of_the_compact_sample() {
    let db = TestDb::new().await;
    let (report, rejects) = load_dir(&db, &sample("sara-2023")).await;
    assert_eq!(rejects, []);
    let expected = [
        ("product.csv", 10),
        ("styles.csv", 52),
        ("features.csv", 27),
        ("photos.csv", 20),
        ("skus.csv", 40),
        ("related.csv", 50),
    ];
    for (file, rows) in expected {
        assert_eq!(counts(&report, file), (rows, rows, 0, 0), "{file}");
    }
    assert_eq!(report.products.created, 10);
    let client = db.client().await;
    let row = client
        .query_one(
            "SELECT name, slogan, default_price::text, created_at = updated_at, fingerprint <> 0 \
             FROM product WHERE id = 1",
            &[],
        )
        .await
        .unwrap();
    let product: (String, String, String, bool, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    assert_eq!(
        product,
        (
            "Camo Onesie".into(),
            "Blend in to your crowd".into(),
            "140.00".into(),
            true,
            true
        )
    );
    let description = strings(&client, "SELECT description FROM product WHERE id = 3").await;
    assert!(
        description[0]
            .as_deref()
            .unwrap()
            .contains("morning person or not.  Whether")
    );
    let slogan = strings(&client, "SELECT slogan FROM product WHERE id = 2").await;
    assert_eq!(slogan, [Some("You've got to wear shades".to_string())]);
    let uv = strings(
        &client,
        "SELECT value FROM feature WHERE product_id = 2 AND feature = 'UV Protection'",
    )
    .await;
    assert_eq!(uv, [None]);
    let sizes = strings(
        &client,
        "SELECT size FROM sku WHERE style_id = 1 ORDER BY id",
    )
    .await;
    let sizes: Vec<_> = sizes.into_iter().flatten().collect();
    assert_eq!(sizes, ["XS", "S", "M", "L", "XL", "XL"]);
    assert_eq!(
        ids(&client, "sku WHERE style_id = 1").await,
        [1, 2, 3, 4, 5, 6]
    );
    let style = client
        .query_one(
            "SELECT sale_price::text, original_price::text, default_style FROM style WHERE id = 3",
            &[],
        )
        .await
        .unwrap();
    let style: (Option<String>, String, bool) = (style.get(0), style.get(1), style.get(2));
    assert_eq!(style, (Some("100.00".into()), "140.00".into(), false));
}

#[tokio::test]
async fn golden_load_of_the_spaced_sample_repairs_every_photo() {
    let beck = sample("beck-2021");
    let files: Vec<PathBuf> = [
        "product.csv",
        "styles.csv",
        "features.csv",
        "photos.csv",
        "skus.csv",
    ]
    .iter()
    .map(|file| beck.join(file))
    .chain([sample("sara-2023").join("related.csv")])
    .collect();
    let dir = copied(&files);
    let db = TestDb::new().await;
    let (report, rejects) = load_dir(&db, dir.path()).await;
    assert_eq!(counts(&report, "photos.csv"), (287, 287, 10, 0));
    for file in ["product.csv", "styles.csv", "features.csv", "skus.csv"] {
        assert_eq!(counts(&report, file), (350, 350, 0, 0), "{file}");
    }
    assert_eq!(counts(&report, "related.csv"), (50, 50, 0, 0));
    let lines: Vec<_> = [49, 204, 218, 227, 235, 248, 254, 262, 270, 278]
        .into_iter()
        .map(|line| ("photos.csv", line, "repaired", "closing quote missing"))
        .collect();
    assert_eq!(brief(&rejects), lines);
    assert!(rejects[0].raw.starts_with("48,12,\"https://") && !rejects[0].raw.ends_with('"'));

    let client = db.client().await;
    assert_eq!(ids(&client, "photo").await.len(), 287);
    let thumbnail = strings(&client, "SELECT thumbnail_url FROM photo WHERE id = 48").await;
    let thumbnail = thumbnail[0].clone().unwrap();
    assert!(
        thumbnail.starts_with("https://images.unsplash.com/") && thumbnail.ends_with("&w=300&q=80")
    );
    let names = strings(
        &client,
        "SELECT name FROM product WHERE id IN (1, 2) ORDER BY id",
    )
    .await;
    assert_eq!(
        names,
        [
            Some("Camo Onesie".to_string()),
            Some("Bright Future Sunglasses".to_string())
        ]
    );
    let uv = strings(
        &client,
        "SELECT value FROM feature WHERE product_id = 2 AND feature = 'UV Protection'",
    )
    .await;
    assert_eq!(uv, [None]);
    let sizes = strings(
        &client,
        "SELECT size FROM sku WHERE style_id = 1 ORDER BY id",
    )
    .await;
    let sizes: Vec<_> = sizes.into_iter().flatten().collect();
    assert_eq!(sizes, ["XS", "S", "M", "L", "XL", "XL"]);
    assert_eq!(
        ids(&client, "sku WHERE style_id = 1").await,
        [1, 2, 3, 4, 5, 6]
    );

    // The rows both samples hold are the same rows.
    let sara = TestDb::new().await;
    load_dir(&sara, &sample("sara-2023")).await;
    let sara = sara.client().await;
    for (table, filter) in [
        ("product", "id <= 10"),
        ("style", "id <= 52"),
        ("feature", "id <= 27"),
        ("photo", "id <= 20"),
        ("sku", "id <= 40"),
    ] {
        let sql = format!(
            "SELECT (to_jsonb(t) - 'created_at' - 'updated_at' - 'fingerprint')::text \
             FROM {table} t WHERE {filter} ORDER BY id"
        );
        assert_eq!(
            strings(&client, &sql).await,
            strings(&sara, &sql).await,
            "{table}"
        );
    }
}

#[tokio::test]
async fn quoting_dirt_is_repaired_and_reported_by_line() {
    let photos = "id,styleId,url,thumbnail_url
1,1,\"https://img/1?w=6\"68\",\"https://img/1?w=300\"
2,2,\"https://img/2?w=668\",\"https://img/
2?w=300\"
3,3,\"https://img/3?w=668\",\"https://img/3?w=300
4,4,\"https://img/4?w=668\",\"https://img/4?w=300\"";
    let dir = catalog(&[("photos.csv", photos)]);
    let db = TestDb::new().await;
    let (report, rejects) = load_dir(&db, dir.path()).await;
    assert_eq!(counts(&report, "photos.csv"), (4, 4, 3, 0));
    assert_eq!(
        brief(&rejects),
        [
            ("photos.csv", 2, "repaired", "url: stray quote removed"),
            (
                "photos.csv",
                3,
                "repaired",
                "thumbnail_url: line break removed"
            ),
            ("photos.csv", 5, "repaired", "closing quote missing"),
        ]
    );
    assert_eq!(
        rejects[1].raw,
        "2,2,\"https://img/2?w=668\",\"https://img/\n2?w=300\""
    );
    let client = db.client().await;
    let urls = strings(
        &client,
        "SELECT url || ' ' || thumbnail_url FROM photo ORDER BY id",
    )
    .await;
    let urls: Vec<_> = urls.into_iter().flatten().collect();
    assert_eq!(
        urls,
        (1..=4)
            .map(|i| format!("https://img/{i}?w=668 https://img/{i}?w=300"))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn duplicate_ids_keep_the_first_row() {
    let photos = format!("{PHOTOS}\n4,1,\"https://img/again\",\"https://img/again\"");
    let skus = format!("{SKUS}\n1,2,\"XL\",1");
    let product = format!("{PRODUCT}\n2,\"Other\",\"s\",\"d\",\"c\",1");
    let dir = catalog(&[
        ("photos.csv", &photos),
        ("skus.csv", &skus),
        ("product.csv", &product),
    ]);
    let db = TestDb::new().await;
    let (report, rejects) = load_dir(&db, dir.path()).await;
    assert_eq!(counts(&report, "photos.csv"), (5, 4, 0, 1));
    assert_eq!(counts(&report, "skus.csv"), (6, 5, 0, 1));
    assert_eq!(counts(&report, "product.csv"), (4, 3, 0, 1));
    assert_eq!(
        brief(&rejects),
        [
            ("product.csv", 5, "rejected", "duplicate id 2"),
            ("photos.csv", 6, "rejected", "duplicate id 4"),
            ("skus.csv", 7, "rejected", "duplicate id 1"),
        ]
    );
    let client = db.client().await;
    let url = strings(&client, "SELECT url FROM photo WHERE id = 4").await;
    assert_eq!(url, [Some("https://img/4?w=668".to_string())]);
    let size = strings(&client, "SELECT size FROM sku WHERE id = 1").await;
    assert_eq!(size, [Some("XS".to_string())]);
    let name = strings(&client, "SELECT name FROM product WHERE id = 2").await;
    assert_eq!(name, [Some("Bright Future Sunglasses".to_string())]);
}

#[tokio::test]
async fn orphans_are_rejected_at_every_level_and_cascade() {
    // Product 2's price holds two numbers: it is rejected, and with it everything of it.
    let product = PRODUCT.replace("\"Accessories\",69", "\"Accessories\",6.9");
    let styles = format!("{STYLES}\n5,9,\"Nowhere\",null,10,0");
    let features = format!("{FEATURES}\n4,9,\"Cut\",\"Slim\"");
    let photos = format!("{PHOTOS}\n5,9,\"https://img/5\",\"https://img/5\"");
    let skus = format!("{SKUS}\n6,5,\"S\",1");
    let related = format!("{RELATED}\n4,1,0\n5,1,3\n6,9,1\n7,3,9\n8,3,3");
    let dir = catalog(&[
        ("product.csv", &product),
        ("styles.csv", &styles),
        ("features.csv", &features),
        ("photos.csv", &photos),
        ("skus.csv", &skus),
        ("related.csv", &related),
    ]);
    let db = TestDb::new().await;
    let (report, rejects) = load_dir(&db, dir.path()).await;
    assert_eq!(
        brief(&rejects),
        [
            (
                "product.csv",
                3,
                "rejected",
                "default_price: more than one number in \"6.9\""
            ),
            (
                "styles.csv",
                4,
                "rejected",
                "product_id 2 names no loaded product"
            ),
            (
                "styles.csv",
                6,
                "rejected",
                "product_id 9 names no loaded product"
            ),
            (
                "features.csv",
                3,
                "rejected",
                "product_id 2 names no loaded product"
            ),
            (
                "features.csv",
                5,
                "rejected",
                "product_id 9 names no loaded product"
            ),
            (
                "photos.csv",
                4,
                "rejected",
                "style_id 3 names no loaded style"
            ),
            (
                "photos.csv",
                6,
                "rejected",
                "style_id 9 names no loaded style"
            ),
            (
                "skus.csv",
                5,
                "rejected",
                "style_id 3 names no loaded style"
            ),
            (
                "skus.csv",
                7,
                "rejected",
                "style_id 5 names no loaded style"
            ),
            (
                "related.csv",
                2,
                "rejected",
                "related_product_id 2 names no loaded product"
            ),
            (
                "related.csv",
                3,
                "rejected",
                "current_product_id 2 names no loaded product"
            ),
            ("related.csv", 5, "rejected", "related_product_id is 0"),
            (
                "related.csv",
                7,
                "rejected",
                "current_product_id 9 names no loaded product"
            ),
            (
                "related.csv",
                8,
                "rejected",
                "related_product_id 9 names no loaded product"
            ),
        ]
    );
    assert_eq!(
        rejects[0].raw,
        "2,\"Bright Future Sunglasses\",\"You've got to wear shades\",\"Roads.\",\"Accessories\",6.9"
    );
    assert_eq!(counts(&report, "related.csv"), (8, 3, 0, 5));
    let client = db.client().await;
    assert_eq!(ids(&client, "product").await, [1, 3]);
    assert_eq!(ids(&client, "style").await, [1, 2, 4]);
    assert_eq!(ids(&client, "feature").await, [1, 3]);
    assert_eq!(ids(&client, "photo").await, [1, 2, 4]);
    assert_eq!(ids(&client, "sku").await, [1, 2, 3, 5]);
    // Self-references are data.
    assert_eq!(ids(&client, "related").await, [3, 5, 8]);
}

#[tokio::test]
async fn junk_numbers_wrong_field_counts_and_bare_nulls() {
    let product = "id,name,slogan,description,category,default_price
1,\"Camo Onesie\",\"Blend in\",\"Fatigues.\",\"Jackets\",default_price:140
2,\"Bright Future Sunglasses\",\"You've got to wear shades\",\"Roads.\",\"Accessories\",  69 
3,\"Morning Joggers\",\"Make yourself a morning person\",\"Whether  you're up.\",\"Pants\",4 0
4,null,\"s\",\"d\",\"c\",5
5,\"Five\",\"s\",\"d\",\"c\"";
    let styles = format!("{STYLES}\n5,1,\"x\",null,null,0\n6,1,\"y\",7,8,0,1");
    let skus = format!("{SKUS}\n6,1,null,3\n7,1,\"M\",-2\n8,1,\"M\",quantity: 5");
    let features = format!("{FEATURES}\n4,1,null,\"x\"");
    let dir = catalog(&[
        ("product.csv", product),
        ("styles.csv", &styles),
        ("skus.csv", &skus),
        ("features.csv", &features),
    ]);
    let db = TestDb::new().await;
    let (report, rejects) = load_dir(&db, dir.path()).await;
    assert_eq!(
        brief(&rejects),
        [
            (
                "product.csv",
                2,
                "repaired",
                "default_price: junk around the number removed from \"default_price:140\""
            ),
            (
                "product.csv",
                3,
                "repaired",
                "default_price: spaces around the number removed"
            ),
            (
                "product.csv",
                4,
                "rejected",
                "default_price: more than one number in \"4 0\""
            ),
            ("product.csv", 5, "rejected", "name: null is not allowed"),
            ("product.csv", 6, "rejected", "expected 6 fields, found 5"),
            (
                "styles.csv",
                5,
                "rejected",
                "product_id 3 names no loaded product"
            ),
            (
                "styles.csv",
                6,
                "rejected",
                "original_price: null is not allowed"
            ),
            ("styles.csv", 7, "rejected", "expected 6 fields, found 7"),
            (
                "features.csv",
                4,
                "rejected",
                "product_id 3 names no loaded product"
            ),
            (
                "features.csv",
                5,
                "rejected",
                "feature: null is not allowed"
            ),
            (
                "photos.csv",
                5,
                "rejected",
                "style_id 4 names no loaded style"
            ),
            (
                "skus.csv",
                6,
                "rejected",
                "style_id 4 names no loaded style"
            ),
            ("skus.csv", 7, "rejected", "size: null is not allowed"),
            (
                "skus.csv",
                8,
                "rejected",
                "quantity: -2 is outside 0..=2147483647"
            ),
            (
                "skus.csv",
                9,
                "repaired",
                "quantity: junk around the number removed from \"quantity: 5\""
            ),
            (
                "related.csv",
                4,
                "rejected",
                "current_product_id 3 names no loaded product"
            ),
        ]
    );
    assert_eq!(counts(&report, "product.csv"), (5, 2, 2, 3));
    assert_eq!(counts(&report, "skus.csv"), (8, 5, 1, 3));
    let client = db.client().await;
    let prices = strings(
        &client,
        "SELECT default_price::text FROM product ORDER BY id",
    )
    .await;
    assert_eq!(
        prices,
        [Some("140.00".to_string()), Some("69.00".to_string())]
    );
    let quantity = strings(&client, "SELECT quantity::text FROM sku WHERE id = 8").await;
    assert_eq!(quantity, [Some("5".to_string())]);
}

#[tokio::test]
async fn spaced_files_load_like_compact_ones() {
    let spaced = |text: &str| {
        text.lines()
            .map(|line| line.replace(",\"", ", \"").replace(",null", ", null"))
            .map(|line| {
                // Unquoted numbers after a comma get the separator's space too.
                let mut out = String::new();
                let mut quoted = false;
                for c in line.chars() {
                    out.push(c);
                    if c == '"' {
                        quoted = !quoted;
                    }
                    if c == ',' && !quoted && !out.ends_with(", ") {
                        out.push(' ');
                    }
                }
                out.replace(",  ", ", ")
            })
            .collect::<Vec<_>>()
            .join("\n")
            .replace("productId", "product_id")
            .replace("styleId", "style_id")
    };
    let spaced_files: Vec<(&str, String)> = [
        ("product.csv", PRODUCT),
        ("styles.csv", STYLES),
        ("features.csv", FEATURES),
        ("skus.csv", SKUS),
        ("related.csv", RELATED),
    ]
    .into_iter()
    .map(|(file, text)| (file, spaced(text)))
    .collect();
    assert!(
        spaced_files[1]
            .1
            .starts_with("id, product_id, name, sale_price")
    );
    assert!(
        spaced_files[1]
            .1
            .contains("\n1, 1, \"Forest Green & Black\", null, 140, 1\n")
    );
    let replaced: Vec<(&str, &str)> = spaced_files.iter().map(|(f, t)| (*f, t.as_str())).collect();
    let spaced_dir = catalog(&replaced);
    let compact_dir = catalog(&[]);
    let (spaced_db, compact_db) = (TestDb::new().await, TestDb::new().await);
    let (report, rejects) = load_dir(&spaced_db, spaced_dir.path()).await;
    assert_eq!(rejects, []);
    assert_eq!(counts(&report, "skus.csv"), (5, 5, 0, 0));
    load_dir(&compact_db, compact_dir.path()).await;
    let strip = |mut tables: BTreeMap<&'static str, Vec<String>>| {
        tables.remove("product");
        tables
    };
    let spaced_client = spaced_db.client().await;
    let compact_client = compact_db.client().await;
    assert_eq!(
        strip(dump(&spaced_client).await),
        strip(dump(&compact_client).await)
    );
    let sql = "SELECT name || '|' || description FROM product ORDER BY id";
    assert_eq!(
        strings(&spaced_client, sql).await,
        strings(&compact_client, sql).await
    );
}

#[tokio::test]
async fn bad_files_stop_the_load_and_leave_the_catalog_as_it_was() {
    let db = TestDb::new().await;
    load_dir(&db, &sample("sara-2023")).await;
    let client = db.client().await;
    let before = dump(&client).await;
    let runs = "SELECT count(*)::text FROM catalog_run";
    let runs_before = strings(&client, runs).await;

    let cases: Vec<(&str, Option<&[u8]>, &str)> = vec![
        (
            "styles.csv",
            Some(b"id,product,name\n1,1,\"x\""),
            "not a catalog styles.csv",
        ),
        (
            "photos.csv",
            Some(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00"),
            "not a catalog photos.csv",
        ),
        ("skus.csv", Some(b""), "the file is empty"),
        ("related.csv", None, "related.csv"),
    ];
    for (file, content, message) in cases {
        let dir = catalog(&[]);
        let path = dir.path().join(file);
        match content {
            Some(content) => std::fs::write(&path, content).unwrap(),
            None => std::fs::remove_file(&path).unwrap(),
        }
        let mut client = db.client().await;
        let rejects = dir.path().join("rejects.csv");
        let error = load::load_catalog(&mut client, dir.path(), &rejects, false)
            .await
            .expect_err("a bad file stops the load")
            .to_string();
        assert!(
            error.contains(file) && error.contains(message),
            "{file}: {error}"
        );
        assert_eq!(dump(&client).await, before, "{file}");
        assert_eq!(strings(&client, runs).await, runs_before);
        assert!(!rejects.exists());
    }
    let staging = "SELECT count(*)::text FROM pg_namespace WHERE nspname = 'atelier_load'";
    assert_eq!(strings(&client, staging).await, [Some("0".to_string())]);
}

#[tokio::test]
async fn a_product_file_with_no_loadable_row_stops_the_load() {
    let db = TestDb::new().await;
    load_dir(&db, &sample("sara-2023")).await;
    let client = db.client().await;
    let before = dump(&client).await;
    let header_only = "id,name,slogan,description,category,default_price";
    let all_rejected = "id,name,slogan,description,category,default_price\n\
                        x,\"A\",\"b\",\"c\",\"d\",1\n\
                        2,\"A\",\"b\",\"c\",\"d\"";
    for (content, read) in [(header_only, 0), (all_rejected, 2)] {
        let dir = catalog(&[("product.csv", content)]);
        let mut client = db.client().await;
        let rejects = dir.path().join("rejects.csv");
        let error = load::load_catalog(&mut client, dir.path(), &rejects, false)
            .await
            .expect_err("a catalog without products is refused")
            .to_string();
        assert!(
            error.contains("product.csv: no product could be loaded")
                && error.contains(&format!("{read} records read")),
            "{error}"
        );
        assert_eq!(dump(&client).await, before);
    }
}

#[tokio::test]
async fn a_load_failing_at_the_swap_leaves_the_catalog_and_documents_untouched() {
    let db = TestDb::new().await;
    load_dir(&db, &sample("sara-2023")).await;
    let client = db.client().await;
    client
        .batch_execute(
            "INSERT INTO document VALUES (1, '{}', '{}', '[]', '[]'); \
             CREATE VIEW product_names AS SELECT name FROM product",
        )
        .await
        .unwrap();
    let before = dump(&client).await;
    let dir = catalog(&[]);
    let mut loader = db.client().await;
    let error = load::load_catalog(&mut loader, dir.path(), &dir.path().join("r.csv"), false)
        .await
        .expect_err("the view keeps the live product table from being dropped");
    assert!(error.to_string().contains("database"), "{error}");
    assert_eq!(dump(&client).await, before);
    let staging = "SELECT count(*)::text FROM pg_namespace WHERE nspname = 'atelier_load'";
    assert_eq!(strings(&client, staging).await, [Some("0".to_string())]);

    client
        .batch_execute("DROP VIEW product_names")
        .await
        .unwrap();
    let (report, _) = load_dir(&db, dir.path()).await;
    assert_eq!(report.products.removed, 7);
    assert_eq!(ids(&client, "product").await, [1, 2, 3]);
    let documents = strings(&client, "SELECT product_id::text FROM document").await;
    assert_eq!(documents, [Some("1".to_string())]);
}

#[tokio::test]
async fn reload_replaces_the_catalog_and_moves_updated_at_only_where_data_changed() {
    let db = TestDb::new().await;
    load_dir(&db, catalog(&[]).path()).await;
    let client = db.client().await;
    let times = "SELECT id, created_at::text, updated_at::text FROM product ORDER BY id";
    let stamps = |rows: Vec<tokio_postgres::Row>| -> BTreeMap<i32, (String, String)> {
        rows.iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect()
    };
    let first = stamps(client.query(times, &[]).await.unwrap());

    // Product 3 and everything of it go; product 1 changes only in a sku (a grandchild);
    // product 2 stays as it was, its rows in another order; product 4 is new.
    let product = format!(
        "{}\n4,\"New\",\"s\",\"d\",\"c\",5",
        PRODUCT.lines().take(3).collect::<Vec<_>>().join("\n")
    );
    let styles = STYLES.lines().take(4).collect::<Vec<_>>().join("\n");
    let features =
        "id,product_id,feature,value\n2,2,\"UV Protection\",null\n1,1,\"Fabric\",\"Canvas\"";
    let photos = PHOTOS.lines().take(4).collect::<Vec<_>>().join("\n");
    let skus = SKUS
        .lines()
        .take(5)
        .collect::<Vec<_>>()
        .join("\n")
        .replace("\"XS\",8", "\"XS\",9");
    let related = RELATED.lines().take(3).collect::<Vec<_>>().join("\n");
    let dir = catalog(&[
        ("product.csv", &product),
        ("styles.csv", &styles),
        ("features.csv", features),
        ("photos.csv", &photos),
        ("skus.csv", &skus),
        ("related.csv", &related),
    ]);
    let (report, rejects) = load_dir(&db, dir.path()).await;
    assert_eq!(rejects, []);
    let changes = report.products;
    assert_eq!(
        (
            changes.created,
            changes.changed,
            changes.unchanged,
            changes.removed
        ),
        (1, 1, 1, 1)
    );
    let second = stamps(client.query(times, &[]).await.unwrap());
    assert_eq!(second.keys().copied().collect::<Vec<_>>(), [1, 2, 4]);
    assert_eq!(ids(&client, "style").await, [1, 2, 3]);
    assert_eq!(ids(&client, "sku").await, [1, 2, 3, 4]);
    assert_eq!(ids(&client, "related").await, [1, 2]);
    assert_eq!(
        second[&1].0, first[&1].0,
        "created_at of a kept product stays"
    );
    assert_ne!(second[&1].1, first[&1].1, "a sku change moves updated_at");
    assert_eq!(
        second[&2], first[&2],
        "an unchanged product keeps both times"
    );
    assert_eq!(second[&4].0, second[&4].1);
    assert_eq!(second[&4].1, second[&1].1, "both are the load's time");

    // A change in a related row alone moves its product's updated_at.
    let related = related.replace("2,2,1", "2,2,2");
    let dir = catalog(&[
        ("product.csv", &product),
        ("styles.csv", &styles),
        ("features.csv", features),
        ("photos.csv", &photos),
        ("skus.csv", &skus),
        ("related.csv", &related),
    ]);
    let (report, _) = load_dir(&db, dir.path()).await;
    assert_eq!((report.products.changed, report.products.unchanged), (1, 2));
    let third = stamps(client.query(times, &[]).await.unwrap());
    assert_ne!(third[&2].1, second[&2].1);
    assert_eq!(third[&2].0, first[&2].0);
    assert_eq!((&third[&1], &third[&4]), (&second[&1], &second[&4]));
}

#[tokio::test]
async fn loaded_tables_have_exactly_the_shape_schema_sql_gives_them() {
    let loaded = TestDb::new().await;
    load_dir(&loaded, &sample("sara-2023")).await;
    let fresh = TestDb::new().await;
    const SHAPE: [&str; 3] = [
        "SELECT c.relname || ' ' || con.conname || ' ' || pg_get_constraintdef(con.oid) \
         FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' ORDER BY 1",
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1",
        "SELECT concat_ws(' ', table_name, ordinal_position, column_name, data_type, \
         numeric_precision, numeric_scale, is_nullable, column_default) \
         FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1",
    ];
    let (loaded, fresh) = (loaded.client().await, fresh.client().await);
    for sql in SHAPE {
        let want = strings(&fresh, sql).await;
        assert!(want.len() > 5, "{sql}");
        assert_eq!(strings(&loaded, sql).await, want, "{sql}");
    }
    let tables = "SELECT string_agg(nspname, ',') FROM pg_namespace WHERE nspname = 'atelier_load'";
    assert_eq!(strings(&loaded, tables).await, [None]);
    let run = loaded
        .query_one(
            "SELECT kind, (summary -> 'files' -> 'photos.csv' ->> 'loaded')::int, \
             (summary -> 'products' ->> 'created')::int FROM catalog_run",
            &[],
        )
        .await
        .unwrap();
    let run: (String, i32, i32) = (run.get(0), run.get(1), run.get(2));
    assert_eq!(run, ("load".to_string(), 20, 10));
}

#[tokio::test]
async fn two_connections_load_the_same_catalog_as_one() {
    let dirt =
        format!("{PHOTOS}\n5,1,\"https://img/5?w=668\",\"https://img/5?w=300\n6,9,\"x\",\"y\"");
    let dir = catalog(&[("photos.csv", &dirt)]);
    let (one, two) = (TestDb::new().await, TestDb::new().await);
    let (single, single_rejects) = load_dir(&one, dir.path()).await;
    let mut client = two.client().await;
    let mut second = two.client().await;
    let rejects = dir.path().join("parallel.csv");
    let parallel =
        load::load_catalog_parallel(&mut client, &mut second, dir.path(), &rejects, false)
            .await
            .unwrap();
    assert_eq!(parallel.files, single.files);
    assert_eq!(read_report(&rejects), single_rejects);
    assert_eq!(single_rejects.len(), 2);
    let strip_times = "SELECT id, fingerprint, name FROM product ORDER BY id";
    let (one, two) = (one.client().await, two.client().await);
    let rows = |rows: Vec<tokio_postgres::Row>| -> Vec<(i32, i64, String)> {
        rows.iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    };
    assert_eq!(
        rows(one.query(strip_times, &[]).await.unwrap()),
        rows(two.query(strip_times, &[]).await.unwrap())
    );
    let mut tables = dump(&one).await;
    let mut other = dump(&two).await;
    tables.remove("product");
    other.remove("product");
    assert_eq!(tables, other);
}

#[tokio::test]
async fn a_generated_dirty_catalog_loads_as_its_clean_twin() {
    use atelier::catalog::Variant;
    use atelier::generate::Spec;
    let out = TempDir::new().unwrap();
    let generate = |name: &str, clean: bool, variant: Variant| {
        let args = Spec {
            products: 3000,
            seed: 7,
            out: out.path().join(name),
            clean,
            variant,
        };
        atelier::generate::generate(&args, false).unwrap();
        args.out
    };
    let dirty = generate("dirty", false, Variant::Spaced);
    let clean = generate("clean", true, Variant::Compact);
    let (dirty_db, clean_db) = (TestDb::new().await, TestDb::new().await);
    let (dirty_report, rejects) = load_dir(&dirty_db, &dirty).await;
    let (clean_report, clean_rejects) = load_dir(&clean_db, &clean).await;
    assert_eq!(clean_rejects, []);
    for reason in [
        "closing quote missing",
        "duplicate id",
        "names no loaded",
        "related_product_id is 0",
        "expected",
    ] {
        assert!(
            rejects.iter().any(|r| r.reason.contains(reason)),
            "no {reason:?} in the dirty catalog"
        );
    }
    for (dirty, clean) in dirty_report.files.iter().zip(&clean_report.files) {
        assert_eq!(dirty.loaded, clean.loaded, "{}", dirty.file);
        assert_eq!(dirty.read, dirty.loaded + dirty.rejected);
    }
    let total: u64 = dirty_report
        .files
        .iter()
        .map(|c| c.repaired + c.rejected)
        .sum();
    assert_eq!(total, rejects.len() as u64);
    // Every row, the fingerprints included, is what the clean catalog gives.
    let (dirty, clean) = (dirty_db.client().await, clean_db.client().await);
    for table in ["product", "style", "feature", "photo", "sku", "related"] {
        let sql = format!(
            "SELECT md5(string_agg((to_jsonb(t) - 'created_at' - 'updated_at')::text, ',' ORDER BY id)) \
             FROM {table} t"
        );
        assert_eq!(
            strings(&dirty, &sql).await,
            strings(&clean, &sql).await,
            "{table}"
        );
    }
}
