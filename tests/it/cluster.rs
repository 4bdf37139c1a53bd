//! Tests of the embedded cluster and schema application.

use crate::support::{TestDb, cluster};
use atelier::db;

#[tokio::test]
async fn schema_applies_twice_and_creates_every_table() {
    let test_db = TestDb::new().await;
    let client = test_db.client().await;
    db::apply_schema(&client)
        .await
        .expect("second application is a no-op");
    let tables: Vec<String> = client
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'public' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        tables,
        [
            "catalog_run",
            "document",
            "document_queue",
            "feature",
            "list_block",
            "photo",
            "product",
            "product_edited",
            "related",
            "sku",
            "style"
        ]
    );
}

#[test]
fn cluster_listens_on_loopback_and_reports_running() {
    let cluster = cluster();
    assert!(cluster.is_running());
    assert!(
        cluster
            .url("x")
            .unwrap()
            .starts_with("postgres://postgres@127.0.0.1:")
    );
}
