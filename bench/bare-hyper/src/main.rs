//! The ceiling for any HTTP server on this machine: hyper over HTTP/1.1 with
//! keep-alive, answering every request with the same JSON body of a given size, on the
//! same runtime setup as `atelier serve` (a multi-thread runtime sized by the CPUs the
//! process may use).
//!
//! Usage: `bare-hyper ADDRESS BODY_BYTES`.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(address), Some(size)) = (args.next(), args.next()) else {
        eprintln!("usage: bare-hyper ADDRESS BODY_BYTES");
        std::process::exit(2);
    };
    let address: SocketAddr = address.parse().expect("ADDRESS must be host:port");
    let size: usize = size.parse().expect("BODY_BYTES must be a number");
    let body = Bytes::from(json_body(size));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the async runtime");
    runtime.block_on(serve(address, body));
}

/// A JSON string of exactly `size` bytes (at least the two quotes).
fn json_body(size: usize) -> Vec<u8> {
    let mut body = vec![b'x'; size.max(2)];
    body[0] = b'"';
    *body.last_mut().expect("the body is never empty") = b'"';
    body
}

async fn serve(address: SocketAddr, body: Bytes) {
    let listener = TcpListener::bind(address).await.expect("cannot listen");
    let json = HeaderValue::from_static("application/json");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (body, json) = (body.clone(), json.clone());
        let service = service_fn(move |_request: Request<hyper::body::Incoming>| {
            let mut response = Response::new(Full::new(body.clone()));
            response.headers_mut().insert(CONTENT_TYPE, json.clone());
            async move { Ok::<_, Infallible>(response) }
        });
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
