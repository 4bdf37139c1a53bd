//! Hostile HTTP over raw sockets: malformed, oversized and smuggling-shaped requests,
//! encoded path traversal, HTTP/1.0 and pipelining, floods of idle and slowloris
//! connections, and clients that stop reading. Every attack gets a 4xx with the JSON
//! error body, or a closed connection, never a 5xx or a connection left hanging, and a
//! normal client keeps being answered meanwhile.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use atelier::http::Settings;
use futures_util::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::serving::{Reply, Server, read_reply, request, seed_catalog, send};
use crate::support::TestDb;

/// Header timeout of the servers under attack: slowloris is cut after it.
const HEADER_TIMEOUT: Duration = Duration::from_millis(1000);
/// An attacked connection still open this long after its last byte counts as stuck.
const CLOSE_WITHIN: Duration = Duration::from_secs(6);
/// Connections sending one case at once, so each case is a small flood of its own.
const ATTACKERS: usize = 8;
/// Each case is repeated for at least this long, so the normal client gets a sample.
const CASE_DURATION: Duration = Duration::from_millis(200);
/// Bound on the median latency of normal requests during an attack.
const MEDIAN_BOUND: Duration = Duration::from_millis(100);
/// Bound on every single normal request: generous, for a busy shared machine.
const WORST_BOUND: Duration = Duration::from_secs(3);

/// A server with a short header timeout over a small materialized catalog.
async fn target() -> (TestDb, Server) {
    let db = TestDb::new().await;
    seed_catalog(&db.url, 20).await;
    let settings = Settings {
        header_timeout: HEADER_TIMEOUT,
        ..Settings::default()
    };
    let server = Server::start(&db.url, settings).await;
    // Warm the document the normal client asks for, so it measures serving alone.
    assert_eq!(server.get("/products/1").await.status, 200);
    (db, server)
}

/// What an attack may be answered with; in every case the server must then close the
/// connection, and no answer may be a 5xx.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Answers with exactly these statuses, in order.
    Exactly(&'static [u16]),
    /// At most one answer, with this status: the server may close a connection that
    /// still has unread input before its answer gets through, which the client sees
    /// as a reset.
    AtMost(u16),
    /// No answer at all.
    Silent,
}

/// One hostile request: its bytes and what it must get. Every 4xx answer, whether the
/// router's or one to a head that does not parse, must be the JSON error body.
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    expect: Expect,
}

fn case(name: &'static str, bytes: impl Into<Vec<u8>>, expect: Expect) -> Case {
    Case {
        name,
        bytes: bytes.into(),
        expect,
    }
}

/// `GET target` asking for the connection to be closed after the answer.
fn get(target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
}

/// The malformed, oversized and smuggling-shaped requests.
fn protocol_cases() -> Vec<Case> {
    use Expect::{AtMost, Exactly, Silent};
    let long_query = format!("/products/1?q={}", "a".repeat(20_000));
    let many_headers: String = (0..150).map(|i| format!("X-Flood-{i}: 1\r\n")).collect();
    // The start of a real TLS 1.2 ClientHello, as a browser sends it to https://.
    let mut client_hello = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    client_hello.extend((0..=255u8).cycle().take(500));
    let with_head = |head: &str, rest: &str| format!("{head}\r\nHost: localhost\r\n{rest}");
    vec![
        case("request line garbage", "GARBAGE\r\n\r\n", Exactly(&[400])),
        case(
            "request line without target",
            "GET\r\n\r\n",
            Exactly(&[400]),
        ),
        case(
            "unknown HTTP version",
            "GET / HTTP/9.9\r\n\r\n",
            Exactly(&[400]),
        ),
        case(
            "HTTP/0.9 request",
            "GET /products/1\r\n\r\n",
            Exactly(&[400]),
        ),
        case(
            "request line with extra words",
            "GET /products/1 HTTP/1.1 extra\r\nHost: x\r\n\r\n",
            Exactly(&[400]),
        ),
        case(
            "binary junk",
            b"\x00\x01\x02\xff\xfe\x80 junk\r\n\r\n".to_vec(),
            Exactly(&[400]),
        ),
        case("TLS ClientHello", client_hello, Exactly(&[400])),
        case(
            "HTTP/2 preface",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
            Silent,
        ),
        case("blank lines only", "\r\n\r\n\r\n\r\n", Silent),
        case(
            "non-ASCII byte in the target",
            b"GET /products/\xff HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            Exactly(&[400]),
        ),
        // A target over the head limit arrives whole: it is the URL that is too long.
        case("oversized URL", get(&long_query), Exactly(&[414])),
        case(
            "URL just over the limit",
            get(&format!("/products/1?q={}", "a".repeat(16 * 1024 - 12))),
            Exactly(&[414]),
        ),
        case(
            "headers together over the limit",
            with_head(
                "GET /products/1?q=a HTTP/1.1",
                &format!(
                    "X-A: {}\r\nX-B: {}\r\nConnection: close\r\n\r\n",
                    "a".repeat(9_000),
                    "b".repeat(9_000)
                ),
            ),
            Exactly(&[431]),
        ),
        // Heads longer than twice the limit are not read to their end.
        case(
            "huge URL",
            get(&format!("/{}", "x".repeat(200_000))),
            AtMost(431),
        ),
        case(
            "huge method",
            format!("{} / HTTP/1.1\r\n\r\n", "A".repeat(40_000)),
            AtMost(431),
        ),
        case(
            "oversized header",
            with_head(
                "GET /products/1 HTTP/1.1",
                &format!("X-Big: {}\r\n\r\n", "b".repeat(20_000)),
            ),
            Exactly(&[431]),
        ),
        case(
            "huge header",
            with_head(
                "GET /products/1 HTTP/1.1",
                &format!("X-Big: {}\r\n\r\n", "b".repeat(100_000)),
            ),
            AtMost(431),
        ),
        case(
            "header flood",
            with_head("GET /products/1 HTTP/1.1", &format!("{many_headers}\r\n")),
            Exactly(&[431]),
        ),
        case(
            "header without a colon",
            with_head("GET /products/1 HTTP/1.1", "Bogus header\r\n\r\n"),
            Exactly(&[400]),
        ),
        case(
            "space in a header name",
            with_head("GET /products/1 HTTP/1.1", "Bad Name: x\r\n\r\n"),
            Exactly(&[400]),
        ),
        case(
            "folded header line",
            with_head("GET /products/1 HTTP/1.1", "X-A: 1\r\n folded\r\n\r\n"),
            Exactly(&[400]),
        ),
        case(
            "NUL in a header value",
            with_head("GET /products/1 HTTP/1.1", "X-A: a\0b\r\n\r\n"),
            Exactly(&[400]),
        ),
        case(
            "absurd Content-Length",
            with_head(
                "GET /products/1 HTTP/1.1",
                "Content-Length: 99999999999999999999999999\r\n\r\n",
            ),
            Exactly(&[400]),
        ),
        case(
            "negative Content-Length",
            with_head("GET /products/1 HTTP/1.1", "Content-Length: -1\r\n\r\n"),
            Exactly(&[400]),
        ),
        case(
            "conflicting Content-Lengths",
            with_head(
                "GET /products/1 HTTP/1.1",
                "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            ),
            Exactly(&[400]),
        ),
        // A body that never comes: the answer does not wait for it, and the
        // connection, whose framing is now unknown, is closed.
        case(
            "terabyte Content-Length",
            with_head(
                "GET /products/1 HTTP/1.1",
                "Content-Length: 1000000000000\r\n\r\n",
            ),
            Exactly(&[200]),
        ),
        // A body on a GET that has arrived is read past and ignored: the pipelined
        // request after it is answered, so it cannot be smuggled in as a body.
        case(
            "GET with a body, then a pipelined request",
            format!(
                "{}{}",
                with_head(
                    "GET /products/abc HTTP/1.1",
                    "Content-Length: 15\r\n\r\nGET /secret HTT"
                ),
                get("/products/1")
            ),
            Exactly(&[400, 200]),
        ),
        case(
            "Content-Length and chunked together",
            format!(
                "{}{}",
                with_head(
                    "GET /products/abc HTTP/1.1",
                    "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                ),
                get("/products/1")
            ),
            Exactly(&[400]),
        ),
        case(
            "chunk size not hexadecimal",
            with_head(
                "POST /products HTTP/1.1",
                "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            ),
            AtMost(405),
        ),
        case(
            "chunk size overflowing",
            with_head(
                "GET /products/abc HTTP/1.1",
                "Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffffff\r\nx\r\n",
            ),
            AtMost(400),
        ),
        case(
            "chunk cut short",
            with_head(
                "GET /products/abc HTTP/1.1",
                "Transfer-Encoding: chunked\r\n\r\n5\r\nab",
            ),
            AtMost(400),
        ),
        case(
            "chunked not the last coding",
            with_head(
                "GET /products/1 HTTP/1.1",
                "Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
            ),
            Exactly(&[400]),
        ),
        case(
            "unknown transfer coding",
            with_head(
                "GET /products/1 HTTP/1.1",
                "Transfer-Encoding: xchunked\r\n\r\n",
            ),
            Exactly(&[400]),
        ),
        case(
            "lower-case method",
            "get /products/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Exactly(&[405]),
        ),
        case(
            "CONNECT",
            "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\nConnection: close\r\n\r\n",
            Exactly(&[404]),
        ),
        case(
            "OPTIONS *",
            "OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Exactly(&[404]),
        ),
        case(
            "long id within the head limit",
            get(&format!("/products/{}", "9".repeat(10_000))),
            Exactly(&[400]),
        ),
        case(
            "deep path within the head limit",
            get(&"/a".repeat(5_000)),
            Exactly(&[404]),
        ),
        case(
            "HTTP/1.0",
            "GET /products/1 HTTP/1.0\r\n\r\n",
            Exactly(&[200]),
        ),
        case(
            "HTTP/1.0 keep-alive, pipelined",
            "GET /products/1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /products/0 HTTP/1.0\r\n\r\n",
            Exactly(&[200, 400]),
        ),
        case(
            "pipelined requests",
            format!(
                "GET /products/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /products/abc HTTP/1.1\r\nHost: x\r\n\r\n{}",
                get("/reviews/1")
            ),
            Exactly(&[200, 400, 404]),
        ),
        case(
            "fifty pipelined requests",
            format!(
                "{}{}",
                "GET /products/2/styles HTTP/1.1\r\nHost: x\r\n\r\n".repeat(49),
                get("/products/2/related")
            ),
            Exactly(&[200; 50]),
        ),
    ]
}

/// Path traversal in every encoding: each must be a 400 or 404 JSON error, never a file.
fn traversal_cases() -> Vec<Case> {
    use Expect::Exactly;
    let routed = [
        ("/products/..%2f..%2fetc/passwd", 404),
        ("/products/..%2f..%2f..%2fetc%2fpasswd", 400),
        ("/products/%2e%2e/%2e%2e/etc/passwd", 404),
        ("/products/%2e%2e%2f%2e%2e%2fetc%2fpasswd", 400),
        ("/products/%252e%252e%252fetc%252fpasswd", 400),
        ("/products/1/..%2f..%2f..%2fetc%2fpasswd", 404),
        ("/products/1%2f..%2f..%2fetc%2fpasswd", 400),
        ("/products/1/styles/../../../../etc/passwd", 404),
        ("/products/../../../etc/passwd", 404),
        ("/../../etc/passwd", 404),
        ("/%2e%2e/%2e%2e/etc/passwd", 404),
        ("//etc/passwd", 404),
        ("/etc/passwd", 404),
        ("/products/%c0%ae%c0%ae/etc/passwd", 404),
        ("/products/..%5c..%5cetc%5cpasswd", 400),
        ("/products/1%00", 400),
        ("/products/%00", 400),
        ("/products/1%00/styles", 400),
        ("/products/1/related%00", 404),
        ("/products/1;/../../etc/passwd", 404),
        ("/products?page=../../etc/passwd", 400),
        ("/products?count=%00", 400),
    ];
    let mut cases: Vec<Case> = routed
        .into_iter()
        .map(|(path, status)| {
            let statuses: &'static [u16] = if status == 400 { &[400] } else { &[404] };
            case(path, get(path), Exactly(statuses))
        })
        .collect();
    // Bytes that cannot stand in a request target at all: hyper refuses the head.
    cases.push(case(
        "raw NUL in the path",
        b"GET /products/1\0/../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        Exactly(&[400]),
    ));
    cases.push(case(
        "raw backslashes in the path",
        "GET /products/..\\..\\etc\\passwd HTTP/1.1\r\nHost: x\r\n\r\n",
        Exactly(&[400]),
    ));
    cases
}

/// What came back over one attacked connection.
struct Exchange {
    answers: Vec<Reply>,
    /// Whether the server closed (or reset) the connection within [`CLOSE_WITHIN`].
    closed: bool,
    raw: Vec<u8>,
}

/// Sends `bytes` on a new connection and reads until the server closes it.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Exchange {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // The server may close before reading everything; the answers still count.
    let _ = stream.write_all(bytes).await;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + CLOSE_WITHIN;
    let closed = loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => break false,
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(n)) => raw.extend_from_slice(&chunk[..n]),
        }
    };
    Exchange {
        answers: parse_answers(&raw),
        closed,
        raw,
    }
}

/// Splits the bytes a server sent into responses framed by `Content-Length`.
fn parse_answers(mut raw: &[u8]) -> Vec<Reply> {
    let mut answers = Vec::new();
    while !raw.is_empty() {
        let text = String::from_utf8_lossy(raw);
        let end = memchr::memmem::find(raw, b"\r\n\r\n")
            .unwrap_or_else(|| panic!("an incomplete response head: {text:?}"));
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|line| {
                line.strip_prefix("HTTP/1.1 ")
                    .or(line.strip_prefix("HTTP/1.0 "))
            })
            .and_then(|rest| rest.get(..3)?.parse().ok())
            .unwrap_or_else(|| panic!("not a response: {text:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.to_ascii_lowercase(), value.trim().to_string()))
            .collect();
        let length = headers
            .iter()
            .find(|(name, _)| name == "content-length")
            .map_or(0, |(_, value)| {
                value.parse().expect("a numeric Content-Length")
            });
        let body_start = end + 4;
        let body = raw
            .get(body_start..body_start + length)
            .unwrap_or_else(|| panic!("a truncated body: {text:?}"))
            .to_vec();
        raw = &raw[body_start + length..];
        answers.push(Reply {
            status,
            headers,
            body,
        });
    }
    answers
}

/// Checks one exchange against its case; the statuses seen, for the summary.
fn check(case: &Case, exchange: &Exchange) -> Vec<u16> {
    let name = case.name;
    let statuses: Vec<u16> = exchange.answers.iter().map(|a| a.status).collect();
    let raw = String::from_utf8_lossy(&exchange.raw[..exchange.raw.len().min(300)]);
    assert!(
        exchange.closed,
        "{name}: connection still open after {CLOSE_WITHIN:?}; got {raw:?}"
    );
    assert!(
        statuses.iter().all(|&status| status < 500),
        "{name}: a server error: {statuses:?}"
    );
    match case.expect {
        Expect::Exactly(expected) => assert_eq!(statuses, expected, "{name}: {raw:?}"),
        Expect::AtMost(status) => assert!(
            statuses.is_empty() || statuses == [status],
            "{name}: expected at most one {status}, got {statuses:?}"
        ),
        Expect::Silent => assert!(statuses.is_empty(), "{name}: got {statuses:?}"),
    }
    for answer in &exchange.answers {
        let text = answer.text();
        assert!(!text.contains("root:"), "{name}: a file was served: {text}");
        if answer.status >= 400 {
            assert_eq!(
                answer.header("content-type"),
                Some("application/json; charset=utf-8"),
                "{name}"
            );
            assert!(answer.json()["message"].is_string(), "{name}: {text}");
        }
    }
    statuses
}

/// A normal client running beside an attack: `GET /products/1` on a fresh connection
/// every 10 ms, timing each answer.
struct Probe {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Vec<Duration>>,
}

impl Probe {
    fn start(addr: SocketAddr) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut latencies = Vec::new();
                while !stop.load(Ordering::Relaxed) || latencies.len() < 5 {
                    let started = Instant::now();
                    let reply = tokio::time::timeout(
                        Duration::from_secs(20),
                        request(addr, "GET", "/products/1", &[]),
                    )
                    .await
                    .expect("a normal request got no answer within 20 s");
                    latencies.push(started.elapsed());
                    assert_eq!(reply.status, 200, "a normal request failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                latencies
            }
        });
        Probe { stop, task }
    }

    /// Stops the client and checks its latencies: the median within [`MEDIAN_BOUND`],
    /// every one within [`WORST_BOUND`]. Returns a summary line.
    async fn finish(self, during: &str) -> String {
        self.stop.store(true, Ordering::Relaxed);
        let mut latencies = self.task.await.expect("the normal client panicked");
        latencies.sort_unstable();
        let median = latencies[latencies.len() / 2];
        let p99 = latencies[(latencies.len() * 99).div_ceil(100) - 1];
        let max = *latencies.last().unwrap();
        assert!(
            median < MEDIAN_BOUND,
            "{during}: normal requests took {median:?} (median)"
        );
        assert!(max < WORST_BOUND, "{during}: a normal request took {max:?}");
        format!(
            "{during}: {} normal requests, median {median:.1?}, p99 {p99:.1?}, max {max:.1?}",
            latencies.len()
        )
    }
}

/// Runs every case from [`ATTACKERS`] connections at once, repeatedly for at least
/// [`CASE_DURATION`], while a normal client measures its latency.
async fn attack_with(server: &Server, cases: &[Case]) -> Vec<String> {
    let mut summary = Vec::new();
    for case in cases {
        let probe = Probe::start(server.addr);
        let started = Instant::now();
        let mut seen = Vec::new();
        while seen.is_empty() || started.elapsed() < CASE_DURATION {
            let exchanges =
                join_all((0..ATTACKERS).map(|_| exchange(server.addr, &case.bytes))).await;
            seen.extend(exchanges.iter().map(|exchange| check(case, exchange)));
        }
        seen.sort();
        seen.dedup();
        let latency = probe.finish(case.name).await;
        let seen: Vec<String> = seen.iter().map(|statuses| describe(statuses)).collect();
        summary.push(format!("{latency}; answers: {}", seen.join(" or ")));
    }
    summary
}

/// The statuses of one exchange, short: `[]`, `[400, 200]`, `[200 x50]`.
fn describe(statuses: &[u16]) -> String {
    match statuses {
        [first, rest @ ..] if rest.len() > 3 && rest.iter().all(|s| s == first) => {
            format!("[{first} x{}]", statuses.len())
        }
        _ => format!("{statuses:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_requests_get_4xx_or_a_close() {
    let (_db, server) = target().await;
    let summary = attack_with(&server, &protocol_cases()).await;
    println!("{}", summary.join("\n"));
    // Nothing above hurt the server: it still answers on a keep-alive connection.
    assert_eq!(server.get("/products/1").await.status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_path_traversal_is_a_json_error_never_a_file() {
    let (_db, server) = target().await;
    let summary = attack_with(&server, &traversal_cases()).await;
    println!("{}", summary.join("\n"));
    server.stop().await;
}

/// Raises this process's open-file limit to its hard limit: the flood below holds
/// both ends of hundreds of connections.
fn allow_many_open_files() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// How a flood connection behaves.
#[derive(Debug, Clone, Copy)]
enum Flooder {
    /// Connects and sends nothing.
    Idle,
    /// Sends a request head one header line at a time, never finishing it.
    Slowloris,
    /// Makes one request, reads its answer and stays connected.
    IdleKeepAlive,
}

/// One flood connection: behaves as `kind` until the server closes it; returns how long
/// that took, or `None` if it was still open after [`CLOSE_WITHIN`].
async fn flood_connection(addr: SocketAddr, kind: Flooder) -> Option<Duration> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    match kind {
        Flooder::Idle => {}
        Flooder::Slowloris => {
            let _ = stream
                .write_all(b"GET /products/1 HTTP/1.1\r\nHost: x\r\n")
                .await;
        }
        Flooder::IdleKeepAlive => {
            let mut reader = tokio::io::BufReader::new(stream);
            send(&mut reader, "GET", "/products/1", &[], false).await;
            assert_eq!(read_reply(&mut reader, false).await.status, 200);
            stream = reader.into_inner();
        }
    }
    let mut byte = [0u8; 1024];
    let mut trickle = tokio::time::interval(Duration::from_millis(100));
    while started.elapsed() < HEADER_TIMEOUT + CLOSE_WITHIN {
        tokio::select! {
            read = stream.read(&mut byte) => match read {
                Ok(0) | Err(_) => return Some(started.elapsed()),
                Ok(_) => panic!("{kind:?}: the server answered an unfinished request"),
            },
            _ = trickle.tick() => {
                if let Flooder::Slowloris = kind {
                    // Keeps the head growing slowly; a write error means it was closed.
                    if stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
                        return Some(started.elapsed());
                    }
                }
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slowloris_floods_are_cut_and_starve_no_one() {
    allow_many_open_files();
    let (_db, server) = target().await;
    let mut summary = Vec::new();
    for (kind, count) in [
        (Flooder::Idle, 300),
        (Flooder::Slowloris, 300),
        (Flooder::IdleKeepAlive, 100),
    ] {
        let probe = Probe::start(server.addr);
        let flood = (0..count).map(|_| flood_connection(server.addr, kind));
        let closed_after = join_all(flood).await;
        let latency = probe.finish(&format!("{count} {kind:?} connections")).await;
        let still_open = closed_after
            .iter()
            .filter(|closed| closed.is_none())
            .count();
        assert_eq!(
            still_open, 0,
            "{kind:?}: connections not closed by the header timeout"
        );
        let slowest = closed_after.iter().flatten().max().unwrap();
        // None may be cut before the timeout: a slow client is not a dead one.
        let fastest = closed_after.iter().flatten().min().unwrap();
        assert!(
            *fastest >= HEADER_TIMEOUT - Duration::from_millis(50),
            "{kind:?}: cut after {fastest:?}"
        );
        summary.push(format!("{latency}; cut after {fastest:.1?}..{slowest:.1?}"));
    }
    println!("{}", summary.join("\n"));
    assert_eq!(server.get("/products/1").await.status, 200);
    server.stop().await;
}

/// Requests a slow reader pipelines before it stops reading.
const PIPELINED: usize = 2000;

/// A client that pipelines [`PIPELINED`] list requests and then reads nothing for a
/// while. Returns how many answers it finally got before the server closed the
/// connection, or `None` if the server never closed it.
async fn slow_reader(addr: SocketAddr) -> Option<usize> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    // A small window fills at once, so the server's writes stall early.
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let requests = format!(
        "{}{}",
        "GET /products?count=1000 HTTP/1.1\r\nHost: x\r\n\r\n".repeat(PIPELINED - 1),
        get("/products?count=1000")
    );
    // Writing may block once the server stops reading too; it ends when it is closed.
    let writing = tokio::spawn(async move {
        let _ = writer.write_all(requests.as_bytes()).await;
        writer
    });
    tokio::time::sleep(HEADER_TIMEOUT + Duration::from_millis(1500)).await;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + CLOSE_WITHIN;
    let closed = loop {
        match tokio::time::timeout_at(deadline, reader.read(&mut chunk)).await {
            Err(_) => break false,
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(n)) => raw.extend_from_slice(&chunk[..n]),
        }
    };
    writing.abort();
    let answers = memchr::memmem::find_iter(&raw, b"HTTP/1.1 200 OK\r\n").count();
    closed.then_some(answers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stop_reading_are_cut_and_starve_no_one() {
    let (_db, server) = target().await;
    let probe = Probe::start(server.addr);
    let readers = join_all((0..20).map(|_| slow_reader(server.addr))).await;
    let latency = probe.finish("20 clients not reading").await;
    for answers in readers {
        let answers = answers.expect("a client that stopped reading was never cut off");
        // Had the server waited for it, every answer would have come once it read.
        assert!(answers < PIPELINED, "all {answers} answers were sent");
    }
    println!("{latency}");
    assert_eq!(server.get("/products/1").await.status, 200);
    server.stop().await;
}
