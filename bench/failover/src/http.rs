//! A keep-alive HTTP/1.1 client just big enough for the driver: GET, the status, the
//! body (by Content-Length or chunked) and whether the answer carried `Retry-After`.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest an answer may take before the connection is given up (nginx's own upstream
/// timeouts are 10 s).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// One answer.
pub struct Answer {
    pub status: u16,
    pub retry_after: bool,
    pub body: Vec<u8>,
}

/// A keep-alive connection to one server.
pub struct Http {
    stream: TcpStream,
    /// Bytes read past the last answer.
    buffer: Vec<u8>,
    /// The server said it closes the connection after this answer.
    closing: bool,
}

impl Http {
    pub async fn connect(server: &str) -> std::io::Result<Http> {
        let stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(server))
            .await
            .map_err(|_| std::io::Error::other("connect timed out"))??;
        stream.set_nodelay(true)?;
        Ok(Http {
            stream,
            buffer: Vec::with_capacity(16 * 1024),
            closing: false,
        })
    }

    /// Whether the connection can carry another request.
    pub fn reusable(&self) -> bool {
        !self.closing
    }

    /// GET `path`, bounded by [`ANSWER_TIMEOUT`].
    pub async fn get(&mut self, path: &str) -> std::io::Result<Answer> {
        tokio::time::timeout(ANSWER_TIMEOUT, self.get_now(path))
            .await
            .map_err(|_| std::io::Error::other("no answer in time"))?
    }

    async fn get_now(&mut self, path: &str) -> std::io::Result<Answer> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        self.stream.write_all(request.as_bytes()).await?;
        // The head.
        let (head_len, status, retry_after, length, chunked) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            match response
                .parse(&self.buffer)
                .map_err(|e| std::io::Error::other(format!("bad answer head: {e}")))?
            {
                httparse::Status::Complete(head_len) => {
                    let mut length = None;
                    let mut chunked = false;
                    let mut retry_after = false;
                    for header in response.headers.iter() {
                        let value = std::str::from_utf8(header.value).unwrap_or("").trim();
                        if header.name.eq_ignore_ascii_case("content-length") {
                            length = value.parse::<usize>().ok();
                        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                            chunked = value.eq_ignore_ascii_case("chunked");
                        } else if header.name.eq_ignore_ascii_case("retry-after") {
                            retry_after = true;
                        } else if header.name.eq_ignore_ascii_case("connection") {
                            self.closing |= value.eq_ignore_ascii_case("close");
                        }
                    }
                    let status = response.code.unwrap_or(0);
                    break (head_len, status, retry_after, length, chunked);
                }
                httparse::Status::Partial => self.fill().await?,
            }
        };
        self.buffer.drain(..head_len);
        let body = if chunked {
            self.read_chunked().await?
        } else {
            let length = length.unwrap_or(0);
            while self.buffer.len() < length {
                self.fill().await?;
            }
            self.buffer.drain(..length).collect()
        };
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }

    async fn read_chunked(&mut self) -> std::io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(at) = self.buffer.windows(2).position(|w| w == b"\r\n") {
                    break at;
                }
                self.fill().await?;
            };
            let size_text = std::str::from_utf8(&self.buffer[..line_end]).unwrap_or("");
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| std::io::Error::other("bad chunk size"))?;
            self.buffer.drain(..line_end + 2);
            if size == 0 {
                // No trailers are sent here: the last chunk ends with an empty line.
                while self.buffer.len() < 2 {
                    self.fill().await?;
                }
                self.buffer.drain(..2);
                return Ok(body);
            }
            while self.buffer.len() < size + 2 {
                self.fill().await?;
            }
            body.extend_from_slice(&self.buffer[..size]);
            self.buffer.drain(..size + 2);
        }
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let read = self.stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        self.buffer.extend_from_slice(&chunk[..read]);
        Ok(())
    }
}

/// GET `path` on `http`, (re)connecting when it is missing or broke; `None` after three
/// failed tries (connection errors, not statuses).
pub async fn get(http: &mut Option<Http>, server: &str, path: &str) -> Option<Answer> {
    for _ in 0..3 {
        if http.is_none() {
            *http = Http::connect(server).await.ok();
        }
        if let Some(connection) = http.as_mut() {
            match connection.get(path).await {
                Ok(answer) => {
                    if !connection.reusable() {
                        *http = None;
                    }
                    return Some(answer);
                }
                Err(_) => *http = None,
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// Keep-alive connections to one server shared by many tasks: a GET takes one and puts it
/// back; at most `limit` are in use at once.
#[derive(Clone)]
pub struct Pool {
    server: String,
    idle: std::sync::Arc<std::sync::Mutex<Vec<Http>>>,
    slots: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Pool {
    pub fn new(server: &str, limit: usize) -> Pool {
        Pool {
            server: server.to_string(),
            idle: Default::default(),
            slots: std::sync::Arc::new(tokio::sync::Semaphore::new(limit)),
        }
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    pub async fn get(&self, path: &str) -> Option<Answer> {
        let _slot = self.slots.acquire().await.expect("never closed");
        let mut http = self.idle.lock().expect("pool lock").pop();
        let answer = get(&mut http, &self.server, path).await;
        if let Some(http) = http {
            self.idle.lock().expect("pool lock").push(http);
        }
        answer
    }
}
