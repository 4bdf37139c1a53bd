//! Tests of the embedded default's first run: an empty cluster gets the demo catalog, a
//! loaded but unmaterialized one is materialized, never replaced.

use atelier::db;

use crate::support::{OwnCluster, sample};

async fn names(url: &str) -> (i64, String) {
    let client = db::connect(url).await.unwrap();
    let row = client
        .query_one(
            "SELECT count(*), min(product->>'name') FILTER (WHERE product_id = 1) FROM document",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn a_loaded_catalog_is_materialized_not_replaced_by_the_demo() {
    let own = OwnCluster::new();
    let url = db::resolve_url(&own.database()).await.unwrap();
    let mut client = db::connect(&url).await.unwrap();
    db::apply_schema(&client).await.unwrap();
    let rejects = own.dir.path().join("rejects.csv");
    atelier::load::load_catalog(&mut client, &sample("sara-2023"), &rejects, false)
        .await
        .unwrap();

    let served = atelier::demo::prepare_database(&own.database())
        .await
        .unwrap()
        .read_url;
    assert_eq!(served, db::with_user(&url, db::READER_ROLE).unwrap());
    assert_eq!(names(&url).await, (10, "Camo Onesie".to_string()));
    assert!(!own.dir.path().join("demo-catalog").exists());
}

#[tokio::test]
async fn an_empty_cluster_gets_the_demo_catalog_once() {
    let own = OwnCluster::new();
    let url = atelier::demo::prepare_database(&own.database())
        .await
        .unwrap()
        .read_url;
    assert_eq!(names(&url).await, (10_000, "Camo Onesie".to_string()));
    // A second start finds the catalog and changes nothing.
    let client = db::connect(&url).await.unwrap();
    let runs = "SELECT count(*) FROM catalog_run";
    let before: i64 = client.query_one(runs, &[]).await.unwrap().get(0);
    atelier::demo::prepare_database(&own.database())
        .await
        .unwrap();
    let after: i64 = client.query_one(runs, &[]).await.unwrap().get(0);
    assert_eq!(before, after);
}
