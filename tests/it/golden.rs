//! Golden tests: the genuine sample files of both variants, loaded and materialized,
//! give the documents the legacy API answered.

use std::future::Future;

use serde_json::{Value, json};

use crate::support::{TestDb, beck_with_related, sample};

/// One of the documents stored for a product.
#[derive(Debug, Clone, Copy)]
pub enum Body {
    Product,
    Styles,
    Related,
    ListEntry,
}

impl Body {
    /// Where product `id`'s `body` is served: a list entry on a page of one (products 1
    /// to 11 hold positions 1 to 11).
    pub fn path(self, id: i32) -> String {
        match self {
            Body::Product => format!("/products/{id}"),
            Body::Styles => format!("/products/{id}/styles"),
            Body::Related => format!("/products/{id}/related"),
            Body::ListEntry => format!("/products?page={id}&count=1"),
        }
    }
}

/// The stored document `body` of product `id`, read from the `document` table.
async fn document(db: &TestDb, body: Body, id: i32) -> Value {
    let column = match body {
        Body::Product => "product",
        Body::Styles => "styles",
        Body::Related => "related",
        Body::ListEntry => "list_entry",
    };
    let client = db.client().await;
    let text: String = client
        .query_one(
            &format!("SELECT {column}::text FROM document WHERE product_id = $1"),
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    serde_json::from_str(&text).unwrap()
}

/// What the genuine samples of both variants must give for products 1, 2, 3 and 5,
/// with each document got through `document` (from the table, or over HTTP).
pub async fn assert_genuine_answers<F, Fut>(document: F)
where
    F: Fn(Body, i32) -> Fut,
    Fut: Future<Output = Value>,
{
    let styles = document(Body::Styles, 1).await;
    assert_eq!(styles["product_id"], "1");
    let first = &styles["results"][0];
    assert_eq!(first["style_id"], 1);
    assert_eq!(first["name"], "Forest Green & Black");
    assert_eq!(first["original_price"], "140.00");
    assert_eq!(first["sale_price"], Value::Null);
    assert_eq!(first["default?"], true);
    assert_eq!(
        first["skus"],
        json!({"1": {"quantity": 8, "size": "XS"}, "2": {"quantity": 16, "size": "S"},
               "3": {"quantity": 17, "size": "M"}, "4": {"quantity": 10, "size": "L"},
               "5": {"quantity": 15, "size": "XL"}, "6": {"quantity": 4, "size": "XL"}})
    );
    assert_eq!(styles["results"][2]["sale_price"], "100.00");
    let style_ids: Vec<i64> = styles["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|style| style["style_id"].as_i64().unwrap())
        .collect();
    assert!(
        style_ids.is_sorted(),
        "styles out of id order: {style_ids:?}"
    );

    let product = document(Body::Product, 2).await;
    assert_eq!(product["name"], "Bright Future Sunglasses");
    assert_eq!(product["slogan"], "You've got to wear shades");
    assert_eq!(product["default_price"], "69.00");
    assert_eq!(product["campus"], "hr-rfp");
    assert_eq!(
        product["features"],
        json!([{"feature": "Lenses", "value": "Ultrasheen"},
               {"feature": "UV Protection", "value": null},
               {"feature": "Frames", "value": "LightCompose"}])
    );
    let timestamp = product["created_at"].as_str().unwrap();
    assert_eq!(
        timestamp.len(),
        "2021-08-13T14:38:44.509Z".len(),
        "{timestamp}"
    );
    assert!(
        timestamp.ends_with('Z') && timestamp.as_bytes()[19] == b'.',
        "{timestamp}"
    );

    let sunglasses = document(Body::Styles, 2).await;
    let results = sunglasses["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    assert_eq!(results[1]["default?"], true);
    assert!(
        results
            .iter()
            .any(|style| style["photos"] == json!([{"thumbnail_url": null, "url": null}])),
        "no style of product 2 has the photos placeholder: {sunglasses}"
    );
    assert!(
        results
            .iter()
            .any(|style| style["skus"] == json!({"null": {"quantity": null, "size": null}})),
        "no style of product 2 has the skus placeholder: {sunglasses}"
    );

    assert_eq!(document(Body::Related, 1).await, json!([2, 3, 8, 7]));
    assert_eq!(document(Body::Related, 3).await, json!([5, 9, 7, 2, 1]));
    assert_eq!(document(Body::Related, 5).await, json!([6, 6, 8, 9, 1, 3]));
    let entry = document(Body::ListEntry, 1).await;
    assert!(entry.get("features").is_none());
    assert_eq!(entry["name"], "Camo Onesie");
}

#[tokio::test]
async fn compact_sample_gives_the_legacy_answers() {
    let db = TestDb::with_catalog(&sample("sara-2023")).await;
    assert_genuine_answers(|body, id| document(&db, body, id)).await;
}

#[tokio::test]
async fn spaced_sample_gives_the_legacy_answers_with_every_photo() {
    let dir = beck_with_related();
    let db = TestDb::with_catalog(dir.path()).await;
    assert_genuine_answers(|body, id| document(&db, body, id)).await;
    let client = db.client().await;
    let photos: i64 = client
        .query_one("SELECT count(*) FROM photo", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        photos, 287,
        "every line of beck-2021's photos.csv is a photo"
    );
    // Photo 48 is one of the lines without a closing quote: its thumbnail ends cleanly.
    let thumbnail: String = client
        .query_one("SELECT thumbnail_url FROM photo WHERE id = 48", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        thumbnail.starts_with("https://") && thumbnail.ends_with("q=80"),
        "{thumbnail}"
    );
    let documents: i64 = client
        .query_one("SELECT count(*) FROM document", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(documents, 350);
}
