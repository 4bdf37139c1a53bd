//! Streaming the six files into their staging tables. Each lane is one parser thread
//! and one database connection: the thread checks the records of its files in turn and
//! sends their binary COPY tuples through a bounded channel to the connection, which
//! copies each file into a staging table created in the same transaction (so that the
//! COPY skips the WAL). Parsing and COPY overlap, and memory stays bounded whatever the
//! files' size.
//!
//! Children are checked against their parents' ids, so product.csv is read before
//! styles.csv, features.csv and related.csv, and styles.csv before photos.csv and
//! skus.csv; a lane waits for the ids another lane publishes.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::SinkExt;
use indicatif::ProgressBar;
use tokio::sync::mpsc;
use tokio_postgres::Client;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::FileCounts;
use super::binary;
use super::ids::{IdMap, IdSet};
use super::lanes::{Milestone, Shared};
use super::rejects::Part;
use super::rows::{self, Ids};
use super::staging::{self, CHUNK_BYTES};
use crate::catalog::FileKind;
use crate::catalog::reader::RecordReader;
use crate::{Error, Result};

/// Chunks that may wait in a channel: the parser's lead over COPY.
pub const CHANNEL_CHUNKS: usize = 16;
/// Read buffer of each file.
const READ_BUFFER: usize = 1 << 20;

/// A catalog file opened and its header checked.
pub struct Source {
    /// Which of the six files it is.
    pub kind: FileKind,
    /// Where it is.
    pub path: PathBuf,
    /// Its size in bytes, for the progress bar.
    pub size: u64,
    reader: RecordReader<BufReader<File>>,
}

impl Source {
    /// Opens `kind`'s file in `dir` and reads its header, which decides the variant.
    /// A missing, empty or unknown file is an error naming it.
    pub fn open(dir: &Path, kind: FileKind) -> Result<Source> {
        let path = dir.join(kind.file_name());
        let file = File::open(&path).map_err(|e| Error::io("open catalog file", &path, e))?;
        let size = file
            .metadata()
            .map_err(|e| Error::io("read", &path, e))?
            .len();
        let mut reader = RecordReader::new(BufReader::with_capacity(READ_BUFFER, file));
        let header = reader
            .header()
            .map_err(|e| Error::io("read", &path, e))?
            .ok_or_else(|| Error::InvalidInput(format!("{}: the file is empty", path.display())))?;
        let variant = kind
            .parse_header(header)
            .map_err(|reason| Error::InvalidInput(format!("{}: {reason}", path.display())))?;
        reader.set_variant(variant);
        Ok(Source {
            kind,
            path,
            size,
            reader,
        })
    }
}

impl Source {
    /// The record reader, past the header.
    pub fn into_reader(self) -> RecordReader<BufReader<File>> {
        self.reader
    }
}

/// The files each lane reads, in order; one lane per connection.
pub fn plan(lanes: usize) -> Vec<Vec<FileKind>> {
    use FileKind::*;
    if lanes >= 2 {
        vec![vec![Product, Styles, Photos], vec![Features, Related, Skus]]
    } else {
        vec![FileKind::ALL.to_vec()]
    }
}

/// What one lane's parser learnt.
#[derive(Default)]
pub struct LaneOutput {
    /// The counts of each file the lane read.
    pub counts: Vec<FileCounts>,
    /// The rejects report part of each file the lane read.
    pub parts: Vec<(FileKind, PathBuf)>,
    /// Per product id, the wrapping sum of the hashes of its rows read by this lane.
    pub fingerprints: IdMap<u64>,
}

/// One file for a lane's parser: where to read, where to send rows, where to report.
pub struct Job {
    /// The file, its header read.
    pub source: Source,
    /// Where its rows go: the connection copying them.
    pub rows: mpsc::Sender<Bytes>,
    /// Where its rejects and repairs are reported.
    pub report: Part,
}

/// Reads a lane's files in order (run it on a thread of its own). On failure every
/// other lane is stopped too.
pub fn parse_lane(jobs: Vec<Job>, shared: &Shared, progress: &ProgressBar) -> Result<LaneOutput> {
    let outcome = parse_jobs(jobs, shared, progress);
    if outcome.is_err() {
        shared.abort();
    }
    outcome
}

fn parse_jobs(jobs: Vec<Job>, shared: &Shared, progress: &ProgressBar) -> Result<LaneOutput> {
    let mut output = LaneOutput::default();
    for job in jobs {
        let kind = job.source.kind;
        let file = FileParse {
            job,
            fingerprints: &mut output.fingerprints,
            shared,
            progress,
        };
        let (counts, part) = match kind {
            FileKind::Product => {
                let mut products = IdSet::default();
                let counts = file.run(Ids::Product {
                    products: &mut products,
                })?;
                shared.publish(|p| p.products = Some(Arc::new(products)));
                counts
            }
            FileKind::Styles => {
                let products = shared.wait(|p| p.products.clone())?;
                let mut styles = IdMap::default();
                let counts = file.run(Ids::Styles {
                    products: &products,
                    styles: &mut styles,
                })?;
                shared.publish(|p| p.styles = Some(Arc::new(styles)));
                counts
            }
            FileKind::Features | FileKind::Related => {
                let products = shared.wait(|p| p.products.clone())?;
                file.run(Ids::ProductChild {
                    products: &products,
                    seen: &mut IdSet::default(),
                })?
            }
            FileKind::Photos | FileKind::Skus => {
                let styles = shared.wait(|p| p.styles.clone())?;
                file.run(Ids::StyleChild {
                    styles: &styles,
                    seen: &mut IdSet::default(),
                })?
            }
        };
        output.counts.push(counts);
        output.parts.push((kind, part));
    }
    Ok(output)
}

/// One file being read by a lane.
struct FileParse<'a> {
    job: Job,
    fingerprints: &'a mut IdMap<u64>,
    shared: &'a Shared,
    progress: &'a ProgressBar,
}

impl FileParse<'_> {
    /// Checks every record, sends the rows, reports rejects and repairs; returns the
    /// counts and the report part's path.
    fn run(self, mut ids: Ids<'_>) -> Result<(FileCounts, PathBuf)> {
        let FileParse {
            job,
            fingerprints,
            shared,
            progress,
        } = self;
        let Job {
            source,
            rows,
            mut report,
        } = job;
        let Source {
            kind,
            path,
            mut reader,
            ..
        } = source;
        // The file seeds the row hash, so that equal rows of two tables differ.
        let seed = kind as u64;
        let mut counts = FileCounts {
            file: kind.file_name(),
            ..FileCounts::default()
        };
        let mut out = BytesMut::with_capacity(CHUNK_BYTES * 2);
        let mut repairs = Vec::new();
        let mut reported_bytes = 0;
        let read_error = |e| Error::io("read", &path, e);
        while reader.next_record().map_err(read_error)? {
            counts.read += 1;
            repairs.clear();
            let mark = out.len();
            let checked = rows::check(kind, &reader, &mut ids, &mut out, &mut repairs);
            if let Some(owner) = report.tally(checked, &reader, &repairs, &mut counts)? {
                let hash = xxh3_64_with_seed(&out[mark..], seed);
                let sum = fingerprints.get_mut(owner);
                *sum = sum.wrapping_add(hash);
            }
            if out.len() >= CHUNK_BYTES {
                if shared.is_aborted() {
                    return Err(Error::LoadAborted);
                }
                rows.blocking_send(out.split().freeze())
                    .map_err(|_| Error::LoadAborted)?;
                let read = reader.bytes_read();
                progress.inc(read - reported_bytes);
                reported_bytes = read;
            }
        }
        if !out.is_empty() {
            rows.blocking_send(out.freeze())
                .map_err(|_| Error::LoadAborted)?;
        }
        progress.inc(reader.bytes_read() - reported_bytes);
        Ok((counts, report.finish()?))
    }
}

/// Copies a lane's files, in order, each into its staging table. On failure every other
/// lane is stopped too.
pub async fn copy_lane(
    client: &mut Client,
    tables: Vec<(FileKind, mpsc::Receiver<Bytes>)>,
    shared: &Shared,
) -> Result<()> {
    for (kind, rows) in tables {
        if let Err(error) = copy_table(client, kind, rows, shared).await {
            shared.abort();
            return Err(error);
        }
    }
    Ok(())
}

async fn copy_table(
    client: &mut Client,
    kind: FileKind,
    mut rows: mpsc::Receiver<Bytes>,
    shared: &Shared,
) -> Result<()> {
    let (create, copy) = staging::copy_statements(kind);
    let transaction = client.transaction().await?;
    transaction.batch_execute(&create).await?;
    let mut sink = pin!(transaction.copy_in(&copy).await?);
    sink.feed(Bytes::from_static(binary::HEADER)).await?;
    while let Some(chunk) = rows.recv().await {
        sink.send(chunk).await?;
    }
    if shared.is_aborted() {
        return Err(Error::LoadAborted);
    }
    sink.send(Bytes::from_static(binary::TRAILER)).await?;
    let rows = sink.as_mut().finish().await?;
    transaction.commit().await?;
    shared.reach(Milestone::Copied(kind));
    tracing::debug!(file = kind.file_name(), rows, "copied");
    Ok(())
}
