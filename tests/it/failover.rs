//! Automatic failover on a real pg_auto_failover formation (`db::ha`): a monitor, a
//! primary and its synchronous standby on loopback, the primary's machine killed.

use std::net::TcpListener;

use atelier::db::{
    self,
    ha::{Formation, Node},
};

/// Three loopback ports nobody listens on right now.
pub fn free_ports() -> [u16; 3] {
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let port = |i: usize| listeners[i].local_addr().unwrap().port();
    [port(0), port(1), port(2)]
}

#[tokio::test]
async fn failover_promotes_the_standby_and_the_old_primary_rejoins_as_its_standby() {
    let dir = tempfile::TempDir::new().unwrap();
    let formation = Formation::create(dir.path(), free_ports(), "atelier")
        .await
        .unwrap();
    assert_eq!(formation.primary().await.unwrap(), Some(Node(0)));
    let writer = db::connect(&formation.url("atelier")).await.unwrap();
    writer
        .batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();

    formation.kill(Node(0)).await;
    assert_eq!(formation.promoted(Node(0)).await.unwrap(), Node(1));
    // The URL names both nodes: a new connection finds the one that takes writes.
    let writer = db::connect(&formation.url("atelier")).await.unwrap();
    writer
        .batch_execute("INSERT INTO t VALUES (2)")
        .await
        .unwrap();

    formation.rejoin(Node(0)).await.unwrap();
    formation.settled().await.unwrap();
    let old = db::connect(&formation.node_url(Node(0), "atelier"))
        .await
        .unwrap();
    let standby: bool = old
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(standby, "the old primary came back as a standby");
    let rows: Vec<i32> = old
        .query("SELECT x FROM t ORDER BY x", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(rows, [1, 2], "it follows the new primary");
}
