//! The load generator of the pageview benchmark (`bench/run pageview`): product page
//! views as a storefront makes them, each a sequence of GETs sent one after another on
//! one keep-alive HTTP/1.1 connection, the next when the answer before it has been read
//! whole.
//!
//! `--pages` holds page views, one a line, each the paths of its requests in order,
//! separated by spaces: today's 3 + 2N (`/products/:id`, `/styles`, `/related`, then
//! each related product and its styles) or the one `/products/:id/page`. Each of
//! `--connections` connections runs page views drawn at random from the file back to
//! back for `--seconds`. A page view's latency runs from writing its first request to
//! reading the last byte of its last answer; those still in flight at the end are not
//! counted. Prints one JSON object: page views and requests answered (all, and those of
//! the page views counted), the bytes of the page views on the wire, their latency
//! percentiles, and the answers that were not 2xx or never came.
//!
//! One thread (a current-thread runtime), as `wrk -t1`; bench/run pins it to the driver
//! CPU. wrk's Lua hooks do not say on which connection an answer came, so a script
//! cannot chain one page view's requests on many connections of one thread.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Drives page views, each a sequence of requests on one connection, and times them.
#[derive(Parser)]
struct Args {
    /// The server, as HOST:PORT.
    #[arg(long)]
    server: String,
    /// Page views, one a line: the paths of its requests, in order, separated by spaces.
    #[arg(long)]
    pages: PathBuf,
    /// Seconds of load.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Connections, each running one page view at a time.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// The `Accept-Encoding` of every request; none is sent without it.
    #[arg(long)]
    accept_encoding: Option<String>,
    /// Seeds each connection's draw of page views.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Every page view of the file, each as its requests' bytes.
type Pages = Vec<Vec<Box<[u8]>>>;

/// What one connection did.
#[derive(Default)]
struct Tally {
    page_views: u64,
    /// Page views with an answer that was not 2xx, or a connection that broke.
    failed_page_views: u64,
    /// Answers read whole, those of page views cut off at the end included.
    requests: u64,
    /// Answers of the page views counted.
    page_view_requests: u64,
    non_2xx: u64,
    /// Connections that failed, broke or answered what is not HTTP.
    errors: u64,
    /// Bytes read (heads and bodies) for the page views counted.
    wire_bytes: u64,
    latencies_us: Vec<u32>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.page_views += other.page_views;
        self.failed_page_views += other.failed_page_views;
        self.requests += other.requests;
        self.page_view_requests += other.page_view_requests;
        self.non_2xx += other.non_2xx;
        self.errors += other.errors;
        self.wire_bytes += other.wire_bytes;
        self.latencies_us.extend(other.latencies_us);
    }
}

/// One answer, read whole.
struct Answer {
    status: u16,
    /// Head and body as they came, chunk framing included.
    wire_bytes: usize,
    /// The server closes the connection after it.
    close: bool,
}

/// A keep-alive HTTP/1.1 connection, reading one answer at a time.
struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Connection {
    async fn open(server: &str) -> io::Result<Connection> {
        let stream = TcpStream::connect(server).await?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            buffer: Vec::with_capacity(64 * 1024),
        })
    }

    /// Sends `request` and reads its answer.
    async fn get(&mut self, request: &[u8]) -> io::Result<Answer> {
        self.stream.write_all(request).await?;
        self.buffer.clear();
        let (status, head, length, close) = loop {
            self.fill().await?;
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head) =
                response.parse(&self.buffer).map_err(invalid)?
            {
                let mut length = Some(0);
                let mut close = false;
                for header in response.headers.iter() {
                    if header.name.eq_ignore_ascii_case("content-length") {
                        length = std::str::from_utf8(header.value)
                            .ok()
                            .and_then(|value| value.trim().parse().ok());
                        if length.is_none() {
                            return Err(invalid("a bad Content-Length"));
                        }
                    } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                        // Chunked: the body ends at its last chunk.
                        length = None;
                    } else if header.name.eq_ignore_ascii_case("connection") {
                        close = header.value.eq_ignore_ascii_case(b"close");
                    }
                }
                break (response.code.unwrap_or(0), head, length, close);
            }
        };
        let end = match length {
            Some(length) => {
                while self.buffer.len() < head + length {
                    self.fill().await?;
                }
                head + length
            }
            None => self.chunks_end(head).await?,
        };
        if self.buffer.len() != end {
            return Err(invalid("bytes after the answer"));
        }
        Ok(Answer {
            status,
            wire_bytes: end,
            close,
        })
    }

    /// Reads a chunked body starting at `at`: where it ends (trailers are not expected).
    async fn chunks_end(&mut self, mut at: usize) -> io::Result<usize> {
        loop {
            match httparse::parse_chunk_size(&self.buffer[at..]).map_err(invalid)? {
                httparse::Status::Complete((used, size)) => {
                    let size = usize::try_from(size).map_err(invalid)?;
                    // The chunk, then its CRLF (after the last, empty chunk: the body's).
                    let next = at + used + size + 2;
                    while self.buffer.len() < next {
                        self.fill().await?;
                    }
                    if size == 0 {
                        return Ok(next);
                    }
                    at = next;
                }
                httparse::Status::Partial => self.fill().await?,
            }
        }
    }

    async fn fill(&mut self) -> io::Result<()> {
        if self.stream.read_buf(&mut self.buffer).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}

fn invalid(error: impl std::fmt::Debug) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{error:?}"))
}

/// A small, seeded, portable random stream (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The page views of `text`, each request with the same head: `Host` and, when given,
/// `Accept-Encoding`.
fn requests(text: &str, host: &str, accept_encoding: Option<&str>) -> Pages {
    let accept = accept_encoding
        .map(|value| format!("Accept-Encoding: {value}\r\n"))
        .unwrap_or_default();
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            line.split_whitespace()
                .map(|path| {
                    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{accept}\r\n")
                        .into_bytes()
                        .into_boxed_slice()
                })
                .collect()
        })
        .collect()
}

/// One page view on `connection` (opened afresh when there is none): whether every
/// answer was 2xx, and the bytes read.
async fn page_view(
    connection: &mut Option<Connection>,
    server: &str,
    page: &[Box<[u8]>],
    tally: &mut Tally,
) -> io::Result<(bool, u64)> {
    let (mut ok, mut bytes) = (true, 0);
    for request in page {
        let open = match connection {
            Some(open) => open,
            None => connection.insert(Connection::open(server).await?),
        };
        let answer = open.get(request).await?;
        tally.requests += 1;
        bytes += answer.wire_bytes as u64;
        if !(200..300).contains(&answer.status) {
            tally.non_2xx += 1;
            ok = false;
        }
        if answer.close {
            *connection = None;
        }
    }
    Ok((ok, bytes))
}

/// Page views on one connection until `deadline`.
async fn drive(
    mut connection: Option<Connection>,
    server: Arc<str>,
    pages: Arc<Pages>,
    deadline: tokio::time::Instant,
    mut rng: Rng,
) -> Tally {
    let mut tally = Tally::default();
    while tokio::time::Instant::now() < deadline {
        let page = &pages[(rng.next() % pages.len() as u64) as usize];
        let started = Instant::now();
        let done = tokio::time::timeout_at(
            deadline,
            page_view(&mut connection, &server, page, &mut tally),
        )
        .await;
        match done {
            // Cut off by the end of the run: not counted.
            Err(_) => break,
            Ok(Ok((true, bytes))) => {
                let latency = started.elapsed().as_micros();
                tally.page_views += 1;
                tally.page_view_requests += page.len() as u64;
                tally.wire_bytes += bytes;
                tally
                    .latencies_us
                    .push(u32::try_from(latency).unwrap_or(u32::MAX));
            }
            Ok(Ok((false, _))) => tally.failed_page_views += 1,
            Ok(Err(_)) => {
                tally.errors += 1;
                tally.failed_page_views += 1;
                connection = None;
                // A server that refuses connections is not asked again at once.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    tally
}

fn percentile_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    f64::from(sorted[index]) / 1000.0
}

async fn run(args: Args, pages: Pages) -> Tally {
    let server: Arc<str> = args.server.as_str().into();
    let pages = Arc::new(pages);
    // Every connection open before the clock starts, as wrk does.
    let mut connections = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        match Connection::open(&server).await {
            Ok(connection) => connections.push(connection),
            Err(error) => {
                eprintln!("pageview: cannot connect to {server}: {error}");
                std::process::exit(1);
            }
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(args.seconds);
    let tasks: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(index, connection)| {
            let seed = (args.seed ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1;
            tokio::spawn(drive(
                Some(connection),
                server.clone(),
                pages.clone(),
                deadline,
                Rng(seed),
            ))
        })
        .collect();
    let mut tally = Tally::default();
    for task in tasks {
        tally.add(task.await.expect("a connection's task"));
    }
    tally
}

fn main() {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.pages).unwrap_or_else(|error| {
        eprintln!("pageview: cannot read {}: {error}", args.pages.display());
        std::process::exit(2);
    });
    let pages = requests(&text, &args.server, args.accept_encoding.as_deref());
    if pages.is_empty() {
        eprintln!("pageview: {} holds no page view", args.pages.display());
        std::process::exit(2);
    }
    let seconds = args.seconds;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot start the async runtime");
    let mut tally = runtime.block_on(run(args, pages));
    tally.latencies_us.sort_unstable();
    let latencies = &tally.latencies_us;
    let result = serde_json::json!({
        "seconds": seconds,
        "page_views": tally.page_views,
        "failed_page_views": tally.failed_page_views,
        "requests": tally.requests,
        "page_view_requests": tally.page_view_requests,
        "non_2xx": tally.non_2xx,
        "errors": tally.errors,
        "wire_bytes": tally.wire_bytes,
        "p50_ms": percentile_ms(latencies, 50.0),
        "p90_ms": percentile_ms(latencies, 90.0),
        "p99_ms": percentile_ms(latencies, 99.0),
        "max_ms": latencies.last().map_or(0.0, |&us| f64::from(us) / 1000.0),
    });
    println!("{result}");
}
