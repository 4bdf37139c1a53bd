//! The ceiling for any HTTP server on this machine: hyper over HTTP/1.1 with
//! keep-alive, answering every request with the same JSON body of a given size, on the
//! same runtime setup as `atelier serve` (a multi-thread runtime sized by the CPUs the
//! process may use).
//!
//! Usage: `bare-hyper ADDRESS BODY_BYTES [--document-fields]`. With `--document-fields`
//! each answer carries the fields the service sends with a document (its type, an ETag,
//! `Cache-Control`, `Vary` and CORS's `*`), built once and cloned per answer: the
//! ceiling for a server that must send them, so that what those fields cost hyper can be
//! told from what the service's own work costs.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, CONTENT_TYPE, ETAG, HeaderMap, HeaderValue, VARY,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(address), Some(size)) = (args.next(), args.next()) else {
        eprintln!("usage: bare-hyper ADDRESS BODY_BYTES [--document-fields]");
        std::process::exit(2);
    };
    let document_fields = match args.next().as_deref() {
        None => None,
        Some("--document-fields") => Some(document_fields()),
        Some(other) => {
            eprintln!(
                "unknown argument {other}: usage: bare-hyper ADDRESS BODY_BYTES [--document-fields]"
            );
            std::process::exit(2);
        }
    };
    let address: SocketAddr = address.parse().expect("ADDRESS must be host:port");
    let size: usize = size.parse().expect("BODY_BYTES must be a number");
    let body = Bytes::from(json_body(size));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the async runtime");
    runtime.block_on(serve(address, body, document_fields));
}

/// The fields of a service's document answer, values of the same lengths.
fn document_fields() -> HeaderMap {
    let mut fields = HeaderMap::with_capacity(8);
    let fixed = [
        (CONTENT_TYPE, "application/json; charset=utf-8"),
        (ETAG, "\"5025f694ee1942fd\""),
        (CACHE_CONTROL, "public, max-age=0, s-maxage=1"),
        (VARY, "Accept-Encoding"),
        (ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
    ];
    for (name, value) in fixed {
        fields.insert(name, HeaderValue::from_static(value));
    }
    fields
}

/// A JSON string of exactly `size` bytes (at least the two quotes).
fn json_body(size: usize) -> Vec<u8> {
    let mut body = vec![b'x'; size.max(2)];
    body[0] = b'"';
    *body.last_mut().expect("the body is never empty") = b'"';
    body
}

/// Serves `body` with `document_fields` where given, else with a JSON content type alone.
async fn serve(address: SocketAddr, body: Bytes, document_fields: Option<HeaderMap>) {
    let listener = TcpListener::bind(address).await.expect("cannot listen");
    let json = HeaderValue::from_static("application/json");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        // Two services rather than one with a branch, so that the plain ceiling stays
        // the code it has always measured.
        match document_fields.clone() {
            None => {
                let json = json.clone();
                spawn_connection(stream, move |_request| {
                    let mut response = Response::new(Full::new(body.clone()));
                    response.headers_mut().insert(CONTENT_TYPE, json.clone());
                    response
                });
            }
            Some(fields) => spawn_connection(stream, move |_request| {
                let mut response = Response::new(Full::new(body.clone()));
                *response.headers_mut() = fields.clone();
                response
            }),
        }
    }
}

/// Serves one keep-alive connection, answering each request with `answer`'s response.
fn spawn_connection<F>(stream: TcpStream, answer: F)
where
    F: Fn(Request<Incoming>) -> Response<Full<Bytes>> + Send + 'static,
{
    let service = service_fn(move |request: Request<Incoming>| {
        let response = answer(request);
        async move { Ok::<_, Infallible>(response) }
    });
    tokio::spawn(async move {
        let _ = http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service)
            .await;
    });
}
