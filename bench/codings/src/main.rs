//! Compares content codings over the documents of a catalog: for gzip levels (zlib-rs,
//! as the service uses it) and brotli qualities, the bytes against the stored ones, by
//! kind of document, and the CPU time to compress one document, so the choice of coding
//! and level rests on figures.
//!
//! Input on stdin, one document a line: `kind<TAB>json`, as exported by
//!
//! ```sh
//! psql URL -XAt -F $'\t' -c "SELECT 'product', product::text FROM document
//!   UNION ALL SELECT 'styles', styles::text FROM document
//!   UNION ALL SELECT 'related', related::text FROM document" | codings
//! ```
//!
//! A last line gives the time to decompress a document, what keeping only the gzip form
//! in the cache would cost each answer to a client that does not take gzip.
//!
//! As in the service, bodies under 256 bytes and those gzip shrinks by less than an eighth
//! are counted at their own size. CPU time is the process's user and system time (read
//! from /proc), so other work on the machine does not add to it.

use std::collections::BTreeMap;
use std::io::Read;

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

const MIN_BODY: usize = 256;
const KINDS: [&str; 3] = ["product", "styles", "related"];

/// CPU seconds this process has used.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // USER_HZ is 100 on Linux.
    ticks / 100.0
}

/// gzip with a deflate state reused across documents, as the service does.
fn gzip(deflate: &mut Compress, body: &[u8]) -> Vec<u8> {
    deflate.reset();
    let mut out = Vec::with_capacity(body.len() / 2 + 64);
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    loop {
        let consumed = deflate.total_in() as usize;
        match deflate.compress_vec(&body[consumed..], &mut out, FlushCompress::Finish) {
            Ok(Status::StreamEnd) => break,
            Ok(_) => out.reserve(out.capacity().max(256)),
            Err(error) => panic!("deflate: {error}"),
        }
    }
    let mut crc = Crc::new();
    crc.update(body);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out
}

/// gzip with a fresh state per document.
fn gzip_fresh(level: u32, body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), Compression::new(level));
    encoder.write_all(body).unwrap();
    encoder.finish().unwrap()
}

fn brotli(quality: i32, body: &[u8]) -> Vec<u8> {
    let params = brotli::enc::BrotliEncoderParams {
        quality,
        lgwin: 18,
        size_hint: body.len(),
        mode: brotli::enc::backward_references::BrotliEncoderMode::BROTLI_MODE_TEXT,
        ..Default::default()
    };
    let mut out = Vec::with_capacity(body.len() / 2 + 64);
    brotli::BrotliCompress(&mut &body[..], &mut out, &params).unwrap();
    out
}

/// Bytes of each kind of document, stored and compressed, and CPU µs per document.
fn measure(name: &str, documents: &[(&str, &[u8])], mut compress: impl FnMut(&[u8]) -> Vec<u8>) {
    let mut totals: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let started = cpu_seconds();
    for &(kind, body) in documents {
        let sent = if body.len() < MIN_BODY {
            body.len()
        } else {
            let compressed = compress(body).len();
            if compressed <= body.len() - body.len() / 8 { compressed } else { body.len() }
        };
        let total = totals.entry(kind).or_default();
        total.0 += body.len();
        total.1 += sent;
    }
    let micros = (cpu_seconds() - started) * 1e6 / documents.len() as f64;
    let (stored, sent) = totals.values().fold((0, 0), |a, t| (a.0 + t.0, a.1 + t.1));
    let share = |kind: &str| totals.get(kind).map_or(0.0, |t| t.1 as f64 / t.0 as f64);
    println!(
        "| {name} | {:.3} | {:.3} | {:.3} | {:.3} | {micros:.1} |",
        sent as f64 / stored as f64,
        share("product"),
        share("styles"),
        share("related")
    );
}

fn main() {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).expect("documents on stdin");
    let documents: Vec<(&str, &[u8])> = text
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .filter(|(kind, _)| KINDS.contains(kind))
        .map(|(kind, json)| (kind, json.as_bytes()))
        .collect();
    assert!(!documents.is_empty(), "no `kind<TAB>json` lines on stdin");
    let bytes: usize = documents.iter().map(|(_, body)| body.len()).sum();
    println!(
        "{} documents, {} bytes, mean {} bytes\n",
        documents.len(),
        bytes,
        bytes / documents.len()
    );
    println!("| coding | bytes vs stored | product | styles | related | CPU µs/document |");
    println!("|---|---|---|---|---|---|");
    for level in [1, 2, 4, 6, 9] {
        let mut deflate = Compress::new(Compression::new(level), false);
        measure(&format!("gzip {level}, state reused"), &documents, |body| {
            gzip(&mut deflate, body)
        });
    }
    measure("gzip 6, fresh state", &documents, |body| gzip_fresh(6, body));
    for quality in [4, 5, 6, 9] {
        measure(&format!("brotli {quality}"), &documents, |body| brotli(quality, body));
    }
    // What keeping only the gzip form would cost per answer to an identity client.
    let mut deflate = Compress::new(Compression::new(6), false);
    let compressed: Vec<(&str, Vec<u8>)> = documents
        .iter()
        .map(|&(kind, body)| (kind, gzip(&mut deflate, body)))
        .collect();
    let started = cpu_seconds();
    for (_, body) in &compressed {
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut plain)
            .unwrap();
        std::hint::black_box(plain);
    }
    let micros = (cpu_seconds() - started) * 1e6 / compressed.len() as f64;
    println!("| gunzip of gzip 6, per document | | | | | {micros:.1} |");
    // Quality 11 takes milliseconds per document: a sample is enough.
    let sample: Vec<_> = documents.iter().step_by(10).copied().collect();
    measure("brotli 11 (every 10th document)", &sample, |body| brotli(11, body));
}
