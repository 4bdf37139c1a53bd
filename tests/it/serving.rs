//! A running `atelier serve` for tests (bound to port 0, stopped on demand), a small
//! synthetic catalog materialized through the real pipeline, and a minimal HTTP/1.1
//! client that shows exactly what went over the socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use atelier::http::{AppState, Settings, serve};
use atelier::materialize::{self, Plan};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::support::OwnCluster;

/// A server on a loopback port of its own.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<atelier::Result<()>>>,
}

impl Server {
    /// Serves the database at `url` with `settings`.
    pub async fn start(url: &str, settings: Settings) -> Server {
        let state: Arc<AppState> = AppState::new(&settings, url).expect("server state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, state, async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Starts and waits until the server listens for invalidations (it drops its cache
    /// when it begins to, so cache counts are stable from then on).
    pub async fn start_listening(url: &str, settings: Settings) -> Server {
        let server = Server::start(url, settings).await;
        server
            .wait_for_metric("atelier_notify_listening", 1.0)
            .await;
        server
    }

    /// Begins a graceful shutdown; `finished` awaits its end.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits for `serve` to return after `begin_shutdown`.
    pub async fn finished(&mut self) -> atelier::Result<()> {
        self.task
            .take()
            .expect("awaited once")
            .await
            .expect("serve panicked")
    }

    /// Shuts down and waits.
    pub async fn stop(mut self) {
        self.begin_shutdown();
        self.finished().await.expect("serve ends cleanly");
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        request(self.addr, "GET", path, &[]).await
    }

    /// The value of an unlabelled sample in `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics").await.text();
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no sample {name} in\n{text}"))
            .parse()
            .unwrap()
    }

    /// Polls `/metrics` until sample `name` equals `value` (10 s at most).
    pub async fn wait_for_metric(&self, name: &str, value: f64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.metric(name).await != value {
            assert!(Instant::now() < deadline, "{name} never became {value}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Polls `check` every 50 ms until it holds (`seconds` at most).
pub async fn eventually<F, Fut>(seconds: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One HTTP response as received.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Every value of the header `name` (lower case) among `headers`, in order.
pub fn header_values<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
        .collect()
}

impl Reply {
    /// The first header called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request on a new connection (`Connection: close`) and reads the answer.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let stream = TcpStream::connect(addr)
        .await
        .expect("connect to the server");
    let mut stream = BufReader::new(stream);
    send(&mut stream, method, path, headers, true).await;
    read_reply(&mut stream, method == "HEAD").await
}

/// Writes a request head.
pub async fn send(
    stream: &mut BufReader<TcpStream>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    close: bool,
) {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    stream.get_mut().write_all(head.as_bytes()).await.unwrap();
}

/// Reads one response; the body is `Content-Length` bytes (none for `HEAD` and 304).
pub async fn read_reply(stream: &mut BufReader<TcpStream>, head_request: bool) -> Reply {
    let mut line = String::new();
    stream.read_line(&mut line).await.unwrap();
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not a status line: {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        stream.read_line(&mut line).await.unwrap();
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed.split_once(':').expect("a header line");
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let mut reply = Reply {
        status,
        headers,
        body: Vec::new(),
    };
    let length: usize = reply
        .header("content-length")
        .map_or(0, |length| length.parse().unwrap());
    if !head_request && status != 304 {
        reply.body.resize(length, 0);
        stream.read_exact(&mut reply.body).await.unwrap();
    }
    reply
}

/// A synthetic catalog: ids 1..=`products` without the multiples of 7, so
/// positions and ids differ. Each has a style or none, a feature and a related row.
pub async fn seed_catalog(url: &str, products: i32) {
    let client = atelier::db::connect(url)
        .await
        .expect("connect to seed the catalog");
    const SEED_SQL: &str = "
        INSERT INTO product (id, name, slogan, description, category, default_price)
        SELECT id, 'Product ' || id, 'Slogan ' || id, 'Description  of ' || id || '''s kind',
               'Jackets', 100 + id
        FROM generate_series(1, $1::int) id WHERE id % 7 <> 0;
        INSERT INTO style (id, product_id, name, sale_price, original_price, default_style)
        SELECT id, id, 'Style ' || id, CASE WHEN id % 2 = 0 THEN 80 END, 140, id % 3 <> 0
        FROM product WHERE id % 5 <> 0;
        INSERT INTO sku (id, style_id, size, quantity) SELECT id, id, 'XL', 8 FROM style WHERE id % 4 <> 0;
        INSERT INTO photo (id, style_id, url, thumbnail_url)
        SELECT id, id, 'https://example.com/' || id, 'https://example.com/t' || id FROM style WHERE id % 3 <> 0;
        INSERT INTO feature (id, product_id, feature, value)
        SELECT id, id, 'Fabric', CASE WHEN id % 2 = 0 THEN 'Canvas' END FROM product;
        INSERT INTO related (id, product_id, related_product_id)
        SELECT id, id, (SELECT min(id) FROM product) FROM product;";
    // Parameters cannot go into a multi-statement batch; the count is an integer.
    let sql = SEED_SQL.replace("$1::int", &products.to_string());
    client
        .batch_execute(&sql)
        .await
        .expect("seed the catalog tables");
    materialize::materialize(url, Plan::Everything, &materialize::Settings::default())
        .await
        .expect("materialize the catalog");
}

/// A started cluster of the test's own (one it may stop, kill or restart), its
/// `postgres` database holding the schema and [`seed_catalog`]'s `products`; and that
/// database's URL.
pub async fn seeded_own_cluster(products: i32) -> (OwnCluster, String) {
    let own = OwnCluster::new();
    own.cluster
        .ensure_running(atelier::db::embedded::Durability::Throwaway)
        .unwrap();
    let url = own.cluster.url("postgres").unwrap();
    atelier::db::apply_schema(&atelier::db::connect(&url).await.unwrap())
        .await
        .unwrap();
    seed_catalog(&url, products).await;
    (own, url)
}

/// The stored JSON text of a document column for one product, as PostgreSQL prints it.
pub async fn stored(client: &Client, column: &str, product_id: i32) -> Vec<u8> {
    let sql = format!("SELECT {column}::text FROM document WHERE product_id = $1");
    let text: String = client.query_one(&sql, &[&product_id]).await.unwrap().get(0);
    text.into_bytes()
}
