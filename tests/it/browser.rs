//! The storefront in a real browser: headless Chromium loads a page from another origin
//! whose script reads the API as a storefront would, with a token (so every read is
//! preflighted), in the coding Chromium asks for (gzip) and through the browser's own
//! HTTP cache. The browser reaches the API through a relay that keeps a copy of what
//! went over the socket, so each test also sees the preflights, validators and gzip
//! bodies exchanged; Chromium's decoded reading ends up in the dumped DOM.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use atelier::http::Settings;
use atelier::materialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use crate::compression::gunzip;
use crate::serving::{Reply, Server, eventually, header_values, request};
use crate::storefront::storefront_catalog;

/// The storefront's script. It reads each API path named by a `read` parameter of the
/// page's address, in turn, as a storefront does (a token, the default cache mode),
/// parses the answer, and writes what it read into `<pre id="read">`: per path the
/// status, the `Content-Encoding` it was sent in, the decoded text, and the names of
/// the products it holds (a page's own product first), or the error met.
const STOREFRONT_SCRIPT: &str = r#"
function names(answer) {
  const name = (entry) =>
    entry === null ? null : 'product' in entry ? entry.product && entry.product.name : entry.name;
  return Array.isArray(answer)
    ? answer.map(name)
    : [answer.product.name, ...answer.related.map(name)];
}

async function read(path) {
  const response = await fetch(apiBase + path, {
    headers: {Authorization: 'Bearer storefront-token'},
  });
  const body = await response.text();
  return {
    path,
    status: response.status,
    encoding: response.headers.get('Content-Encoding'),
    body,
    names: names(JSON.parse(body)),
  };
}

(async () => {
  const results = [];
  for (const path of new URLSearchParams(location.search).getAll('read')) {
    results.push(await read(path).catch((error) => ({path, error: String(error)})));
  }
  document.getElementById('read').textContent = JSON.stringify(results);
})();
"#;

/// How long one Chromium run may take before the test gives up on it.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);

/// The storefront page, reading the API at `api`.
fn storefront_page(api: SocketAddr) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Storefront</title></head>\n\
         <body><pre id=\"read\"></pre>\n\
         <script>\nconst apiBase = 'http://{api}';\n{STOREFRONT_SCRIPT}</script></body></html>\n"
    )
}

/// Serves `html` at `/` (whatever its query) on a loopback port of its own: the
/// storefront's origin, another than the API's by its port.
async fn serve_storefront(html: String) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let html = Arc::new(html);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let html = html.clone();
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                let mut request_line = String::new();
                let _ = stream.read_line(&mut request_line).await;
                // The rest of the head, up to its empty line ("\r\n").
                let mut line = String::new();
                while stream.read_line(&mut line).await.unwrap_or(0) > 2 {
                    line.clear();
                }
                let target = request_line.split(' ').nth(1).unwrap_or("");
                let (status, body) = match target == "/" || target.starts_with("/?") {
                    true => ("200 OK", html.as_str()),
                    false => ("404 Not Found", ""),
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.get_mut().write_all(answer.as_bytes()).await;
                let _ = stream.get_mut().shutdown().await;
            });
        }
    });
    addr
}

/// The storefront's address with its script asked to read `paths`.
fn storefront_url(storefront: SocketAddr, paths: &[&str]) -> String {
    let query: Vec<String> = paths
        .iter()
        .map(|path| {
            let path = path
                .replace('%', "%25")
                .replace('&', "%26")
                .replace('=', "%3D")
                .replace('?', "%3F");
            format!("read={path}")
        })
        .collect();
    format!("http://{storefront}/?{}", query.join("&"))
}

/// Loads `url` in headless Chromium with its profile (cache included) in `profile`, and
/// returns the DOM once the page's scripts are done. Fails, rather than skips, when
/// Chromium is not installed.
async fn chromium(url: &str, profile: &Path) -> String {
    let run = tokio::process::Command::new("chromium")
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", url])
        .kill_on_drop(true)
        .output();
    // Awaited rather than run blocking: the servers it reads run on this test's runtime.
    let output = match tokio::time::timeout(CHROMIUM_TIMEOUT, run).await {
        Ok(Ok(output)) => output,
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::NotFound => panic!(
            "the browser tests run headless Chromium, which is not installed: \
             install the Debian package `chromium` (apt-get install chromium)"
        ),
        Ok(Err(error)) => panic!("cannot run chromium: {error}"),
        Err(_) => panic!("chromium did not finish within {CHROMIUM_TIMEOUT:?}"),
    };
    assert!(
        output.status.success(),
        "chromium failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("the DOM is UTF-8")
}

/// What the storefront's script wrote into the DOM, one entry per path it read.
fn storefront_reading(dom: &str) -> Vec<Value> {
    let text = dom
        .split_once("<pre id=\"read\">")
        .and_then(|(_, rest)| rest.split_once("</pre>"))
        .map(|(text, _)| text)
        .unwrap_or_else(|| panic!("no <pre id=\"read\"> in the DOM:\n{dom}"));
    // The serializer escapes these in text; `&` last, as it was escaped first.
    let text = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&");
    let reading: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the script wrote no reading ({e}):\n{dom}"));
    let reading = reading.as_array().expect("a list of readings").clone();
    for read in &reading {
        assert!(read.get("error").is_none(), "the storefront failed: {read}");
    }
    reading
}

/// A relay in front of the API that keeps a copy of the bytes each way, connection by
/// connection: what the browser sent and what the server answered, exactly as they
/// went over the socket.
struct Tap {
    addr: SocketAddr,
    connections: Arc<Mutex<Vec<Wire>>>,
}

/// The bytes of one relayed connection, each side's appended before it is passed on.
#[derive(Default, Clone)]
struct Wire {
    from_browser: Arc<Mutex<Vec<u8>>>,
    from_server: Arc<Mutex<Vec<u8>>>,
}

/// A message's headers, names lower-cased, in order.
type Headers = Vec<(String, String)>;

/// One request the browser sent and the answer it got.
struct Exchange {
    method: String,
    target: String,
    request_headers: Headers,
    reply: Reply,
}

impl Exchange {
    /// The first request header called `name` (lower case).
    fn request_header(&self, name: &str) -> Option<&str> {
        header_values(&self.request_headers, name).first().copied()
    }
}

impl Tap {
    /// Relays each connection to `server`.
    async fn start(server: SocketAddr) -> Tap {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(Mutex::new(Vec::new()));
        let recorded = connections.clone();
        tokio::spawn(async move {
            while let Ok((browser, _)) = listener.accept().await {
                let Ok(upstream) = TcpStream::connect(server).await else {
                    continue;
                };
                let wire = Wire::default();
                recorded.lock().unwrap().push(wire.clone());
                let (browser_read, browser_write) = browser.into_split();
                let (server_read, server_write) = upstream.into_split();
                tokio::spawn(relay(browser_read, server_write, wire.from_browser));
                tokio::spawn(relay(server_read, browser_write, wire.from_server));
            }
        });
        Tap { addr, connections }
    }

    /// The exchanges relayed since the last call, connection by connection, each
    /// connection's in order. Requests are taken to have no body (the browser only
    /// reads) and answers a `Content-Length` one, but for `204` and `304`.
    fn take_exchanges(&self) -> Vec<Exchange> {
        let connections = std::mem::take(&mut *self.connections.lock().unwrap());
        let mut exchanges = Vec::new();
        for wire in connections {
            let from_browser = wire.from_browser.lock().unwrap();
            let from_server = wire.from_server.lock().unwrap();
            let (mut requests, mut answers) = (&from_browser[..], &from_server[..]);
            while let Some((request_line, request_headers, rest)) = head(requests) {
                requests = rest;
                let (status_line, headers, rest) = head(answers)
                    .unwrap_or_else(|| panic!("no answer to {request_line:?} on the wire"));
                let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
                let length = match status {
                    204 | 304 => 0,
                    _ => header_values(&headers, "content-length")[0]
                        .parse()
                        .unwrap(),
                };
                let (body, rest) = rest.split_at(length);
                answers = rest;
                let mut words = request_line.split(' ');
                exchanges.push(Exchange {
                    method: words.next().unwrap().to_string(),
                    target: words.next().unwrap().to_string(),
                    request_headers,
                    reply: Reply {
                        status,
                        headers,
                        body: body.to_vec(),
                    },
                });
            }
        }
        exchanges
    }
}

/// Copies `from` to `to`, appending each piece to `copy` before passing it on.
async fn relay(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, copy: Arc<Mutex<Vec<u8>>>) {
    let mut buffer = vec![0; 64 * 1024];
    while let Ok(read @ 1..) = from.read(&mut buffer).await {
        copy.lock().unwrap().extend_from_slice(&buffer[..read]);
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// A message head at the start of `bytes`: its first line, its headers (names
/// lower-cased) and the bytes after it; `None` when no whole head is there.
fn head(bytes: &[u8]) -> Option<(String, Headers, &[u8])> {
    let end = bytes.windows(4).position(|window| window == b"\r\n\r\n")?;
    let text = std::str::from_utf8(&bytes[..end]).expect("a head is text");
    let mut lines = text.split("\r\n");
    let first = lines.next()?.to_string();
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':').expect("a header line");
            (name.to_ascii_lowercase(), value.trim().to_string())
        })
        .collect();
    Some((first, headers, &bytes[end + 4..]))
}

/// The relayed exchanges of `method` requests, in order.
fn with_method<'a>(exchanges: &'a [Exchange], method: &str) -> Vec<&'a Exchange> {
    exchanges
        .iter()
        .filter(|exchange| exchange.method == method)
        .collect()
}

/// The methods, targets and statuses of `exchanges`, one a line, for failure messages.
fn outline(exchanges: &[Exchange]) -> String {
    exchanges
        .iter()
        .map(|e| format!("{} {} -> {}\n", e.method, e.target, e.reply.status))
        .collect()
}

/// The one `GET` among `exchanges`.
fn only_read(exchanges: Vec<Exchange>) -> Exchange {
    let outline = outline(&exchanges);
    let mut reads: Vec<Exchange> = exchanges
        .into_iter()
        .filter(|exchange| exchange.method == "GET")
        .collect();
    assert_eq!(reads.len(), 1, "one read expected:\n{outline}");
    reads.remove(0)
}

/// Checks that `read` was a token-carrying cross-origin read from `origin` that the
/// server answered with a gzip body decoding to `identity`.
fn assert_read_in_gzip(read: &Exchange, origin: &str, identity: &[u8]) {
    let target = &read.target;
    let accepted = read.request_header("accept-encoding").unwrap_or("");
    assert!(accepted.contains("gzip"), "{target}: {accepted}");
    assert_eq!(read.request_header("origin"), Some(origin), "{target}");
    assert_eq!(
        read.request_header("authorization"),
        Some("Bearer storefront-token"),
        "{target}"
    );
    assert_eq!(read.reply.status, 200, "{target}");
    assert_eq!(
        read.reply.header("content-encoding"),
        Some("gzip"),
        "{target}"
    );
    assert!(read.reply.body.starts_with(&[0x1f, 0x8b]), "{target}");
    assert_eq!(gunzip(&read.reply.body), identity, "{target}");
}

/// The names the page of product 3 of the storefront catalog shows, product 2 named
/// `name_of_2`: its own, then its related products' (7 is no product).
fn page_names(name_of_2: &str) -> Value {
    json!([
        "Product 3",
        name_of_2,
        "Product 3",
        name_of_2,
        null,
        "Product 10"
    ])
}

#[tokio::test]
async fn a_storefront_on_another_origin_reads_the_api_through_preflights_in_gzip() {
    let db = storefront_catalog().await;
    let server = Server::start(&db.url, Settings::default()).await;
    let tap = Tap::start(server.addr).await;
    let storefront = serve_storefront(storefront_page(tap.addr)).await;
    let origin = format!("http://{storefront}");
    let paths = ["/products/3/page", "/products?ids=5,1,7,2"];
    let profile = tempfile::TempDir::new().unwrap();

    let dom = chromium(&storefront_url(storefront, &paths), profile.path()).await;

    let reading = storefront_reading(&dom);
    let mut identities = Vec::new();
    for (path, read) in paths.iter().zip(&reading) {
        let identity = server.get(path).await.body;
        assert_eq!(read["path"], *path);
        assert_eq!(read["status"], 200, "{path}");
        assert_eq!(read["encoding"], "gzip", "{path}");
        assert_eq!(
            read["body"].as_str().unwrap().as_bytes(),
            identity,
            "{path}"
        );
        identities.push(identity);
    }
    assert_eq!(reading.len(), paths.len());
    assert_eq!(reading[0]["names"], page_names("Product 2"));
    assert_eq!(
        reading[1]["names"],
        json!(["Product 5", "Product 1", null, "Product 2"])
    );

    // On the wire: each read preflighted for its token, then sent in gzip.
    let exchanges = tap.take_exchanges();
    let preflights = with_method(&exchanges, "OPTIONS");
    let reads = with_method(&exchanges, "GET");
    assert_eq!(
        preflights.iter().map(|e| &e.target).collect::<Vec<_>>(),
        paths,
        "{}",
        outline(&exchanges)
    );
    for preflight in &preflights {
        assert_eq!(preflight.request_header("origin"), Some(origin.as_str()));
        assert_eq!(
            preflight.request_header("access-control-request-headers"),
            Some("authorization")
        );
        assert_eq!(preflight.reply.status, 204);
        assert_eq!(
            preflight.reply.header("access-control-allow-origin"),
            Some("*")
        );
    }
    assert_eq!(
        reads.iter().map(|e| &e.target).collect::<Vec<_>>(),
        paths,
        "{}",
        outline(&exchanges)
    );
    for (read, identity) in reads.iter().zip(&identities) {
        assert_read_in_gzip(read, &origin, identity);
    }
    // The server took them for what they were.
    let requests = "atelier_http_requests_total";
    let preflighted = format!("{requests}{{route=\"preflight\",status=\"204\"}}");
    assert_eq!(server.metric(&preflighted).await, 2.0);
    for route in ["get_product_page", "get_products_by_id"] {
        // The browser's read and the test's own.
        let read = format!("{requests}{{route=\"{route}\",status=\"200\"}}");
        assert_eq!(server.metric(&read).await, 2.0, "{route}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_reload_revalidates_the_browsers_copy_and_shows_a_change_once_served() {
    let db = storefront_catalog().await;
    let client = db.client().await;
    let server = Server::start_listening(&db.url, Settings::default()).await;
    let (stop_follower, follower_stopped) = tokio::sync::oneshot::channel::<()>();
    let url = db.url.clone();
    let follower = tokio::spawn(async move {
        let stop = async {
            let _ = follower_stopped.await;
        };
        materialize::follow::follow(&url, &materialize::Settings::default(), stop).await;
    });
    let tap = Tap::start(server.addr).await;
    let storefront = serve_storefront(storefront_page(tap.addr)).await;
    let page_url = storefront_url(storefront, &["/products/3/page"]);
    // One profile for every load: the browser's HTTP cache lives there between runs.
    let profile = tempfile::TempDir::new().unwrap();

    // First load: nothing cached, the whole page.
    let first = storefront_reading(&chromium(&page_url, profile.path()).await);
    assert_eq!(first[0]["names"], page_names("Product 2"));
    let fetched = only_read(tap.take_exchanges());
    assert_eq!(fetched.request_header("if-none-match"), None);
    assert_eq!(fetched.reply.status, 200);
    let etag = fetched.reply.header("etag").expect("an ETag").to_string();
    let accepted = fetched
        .request_header("accept-encoding")
        .unwrap()
        .to_string();

    // Unchanged: the browser asks with its copy's validator and shows its copy on the 304.
    let again = storefront_reading(&chromium(&page_url, profile.path()).await);
    assert_eq!(again[0]["body"], first[0]["body"]);
    assert_eq!(again[0]["status"], 200);
    let revalidated = only_read(tap.take_exchanges());
    assert_eq!(
        revalidated.request_header("if-none-match"),
        Some(etag.as_str())
    );
    assert_eq!(revalidated.reply.status, 304);

    client
        .batch_execute("UPDATE product SET name = 'Renamed 2' WHERE id = 2")
        .await
        .unwrap();
    let changed = Instant::now();
    eventually(10, "the server serves the change", || async {
        let headers = [("Accept-Encoding", accepted.as_str())];
        let reply = request(server.addr, "GET", "/products/3/page", &headers).await;
        let page: Value = serde_json::from_slice(&gunzip(&reply.body)).unwrap();
        page["related"][0]["product"]["name"] == "Renamed 2"
    })
    .await;
    let served = changed.elapsed();
    // The follower's bound; a shared cache in front would add its s-maxage.
    assert!(
        served < Duration::from_secs(1),
        "served {served:?} after the commit"
    );

    // Changed: the same validator now gets the new page, which the browser shows at
    // its next load, however soon: its own cache asks every time. (Chromium's start-up
    // is most of a load's time here, so the reload's clock time is not asserted.)
    let reloaded = storefront_reading(&chromium(&page_url, profile.path()).await);
    assert_eq!(reloaded[0]["names"], page_names("Renamed 2"));
    let refetched = only_read(tap.take_exchanges());
    assert_eq!(
        refetched.request_header("if-none-match"),
        Some(etag.as_str())
    );
    assert_eq!(refetched.reply.status, 200);
    assert_ne!(refetched.reply.header("etag"), Some(etag.as_str()));
    let _ = stop_follower.send(());
    follower.await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn the_browser_decodes_the_joined_gzip_of_several_products_with_their_styles() {
    let db = storefront_catalog().await;
    let server = Server::start(&db.url, Settings::default()).await;
    let tap = Tap::start(server.addr).await;
    let storefront = serve_storefront(storefront_page(tap.addr)).await;
    let origin = format!("http://{storefront}");
    // Every product of the catalog and the ids between them that name none.
    let ids: Vec<String> = (1..=40).map(|id| id.to_string()).collect();
    let path = format!("/products?ids={}&include=styles", ids.join(","));
    let identity = server.get(&path).await.body;
    let profile = tempfile::TempDir::new().unwrap();

    let dom = chromium(&storefront_url(storefront, &[&path]), profile.path()).await;

    let reading = storefront_reading(&dom);
    assert_eq!(reading[0]["encoding"], "gzip");
    assert_eq!(reading[0]["body"].as_str().unwrap().as_bytes(), identity);
    let names: Vec<Value> = (1..=40)
        .map(|id| match id % 7 {
            0 => Value::Null,
            _ => json!(format!("Product {id}")),
        })
        .collect();
    assert_eq!(reading[0]["names"], Value::Array(names));
    let read = only_read(tap.take_exchanges());
    assert_eq!(read.target, path);
    assert_read_in_gzip(&read, &origin, &identity);
    server.stop().await;
}
