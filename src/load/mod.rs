//! `atelier load`: the six CSV files of a directory become the new catalog.
//!
//! The files are checked and repaired record by record ([`reader`], [`rows`]), streamed
//! with COPY into fresh tables of a staging schema ([`pipeline`]), given the live
//! tables' keys and indexes, and swapped in for the live tables in one transaction
//! ([`staging`]); [`schedule`] orders these steps over one or two connections. A load that fails at any point leaves the served catalog as it was.
//! Every rejected or repaired record is written to the rejects report ([`rejects`]).

mod binary;
pub mod changes;
pub mod ids;
mod lanes;
mod pipeline;
mod rejects;
pub mod rows;
mod schedule;
mod staging;

use std::collections::HashMap;
use std::fmt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::catalog::FileKind;
use crate::db::Database;
use crate::{Error, Result};
use pipeline::Source;

/// How the loaded products compare with the catalog they replaced.
pub use staging::ProductChanges;

/// Counts for one file of a load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileCounts {
    /// The file's name, e.g. `photos.csv`.
    pub file: &'static str,
    /// Records read (the header excluded): `loaded + rejected`.
    pub read: u64,
    /// Records loaded, repaired ones included.
    pub loaded: u64,
    /// Records loaded after a repair.
    pub repaired: u64,
    /// Records not loaded.
    pub rejected: u64,
}

/// What a load did, file by file, and where its rejects report is.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// One entry per file, in the order product, styles, features, photos, skus, related.
    pub files: Vec<FileCounts>,
    /// How the loaded products compare with the catalog they replaced.
    pub products: ProductChanges,
    /// The rejects report.
    pub rejects: PathBuf,
    /// Wall-clock time of the load.
    pub elapsed: Duration,
}

impl LoadReport {
    /// The counts of file `file` (e.g. `"photos.csv"`).
    pub fn file(&self, file: &str) -> Option<&FileCounts> {
        self.files.iter().find(|counts| counts.file == file)
    }

    /// The summary recorded in `catalog_run`.
    fn summary(&self) -> serde_json::Value {
        let files: serde_json::Map<String, serde_json::Value> = self
            .files
            .iter()
            .map(|c| {
                let counts = serde_json::json!({
                    "read": c.read, "loaded": c.loaded, "repaired": c.repaired, "rejected": c.rejected,
                });
                (c.file.to_string(), counts)
            })
            .collect();
        let p = &self.products;
        serde_json::json!({
            "files": files,
            "products": {
                "created": p.created, "changed": p.changed,
                "unchanged": p.unchanged, "removed": p.removed,
            },
            "rejects": self.rejects.display().to_string(),
            "seconds": self.elapsed.as_secs_f64(),
            // Documents queued for materialize: those of the products added, changed or
            // removed (a load without this member predates the change queue).
            "queued": p.created + p.changed + p.removed,
        })
    }
}

/// The per-file summary table printed by `atelier load`.
impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let row = |f: &mut fmt::Formatter<'_>, file: &str, read, loaded, repaired, rejected| {
            writeln!(
                f,
                "{file:<14}{read:>12}{loaded:>12}{repaired:>10}{rejected:>10}"
            )
        };
        writeln!(
            f,
            "{:<14}{:>12}{:>12}{:>10}{:>10}",
            "file", "read", "loaded", "repaired", "rejected"
        )?;
        let mut total = FileCounts::default();
        for c in &self.files {
            row(f, c.file, c.read, c.loaded, c.repaired, c.rejected)?;
            total.read += c.read;
            total.loaded += c.loaded;
            total.repaired += c.repaired;
            total.rejected += c.rejected;
        }
        row(
            f,
            "total",
            total.read,
            total.loaded,
            total.repaired,
            total.rejected,
        )?;
        let p = &self.products;
        writeln!(
            f,
            "products: {} new, {} changed, {} unchanged, {} removed ({:.1} s)",
            p.created,
            p.changed,
            p.unchanged,
            p.removed,
            self.elapsed.as_secs_f64()
        )
    }
}

/// Replaces the catalog tables with the six files of `dir`, writing rejected and
/// repaired rows to `rejects`. `progress` shows a bar on a terminal.
pub async fn load_catalog(
    client: &mut Client,
    dir: &Path,
    rejects: &Path,
    progress: bool,
) -> Result<LoadReport> {
    load(client, None, dir, rejects, progress).await
}

/// [`load_catalog`] with a second connection to the same database, so that two files
/// are copied, and two tables indexed, at a time.
pub async fn load_catalog_parallel(
    client: &mut Client,
    second: &mut Client,
    dir: &Path,
    rejects: &Path,
    progress: bool,
) -> Result<LoadReport> {
    load(client, Some(second), dir, rejects, progress).await
}

/// The rejects report's file name when `--rejects` is not given: it is written beside
/// the catalog files it describes, so each catalog directory keeps its own.
pub const REJECTS_FILE: &str = "rejects.csv";

/// What `atelier load` did; its `Display` is what the command prints.
#[derive(Debug)]
pub struct Loaded {
    pub report: LoadReport,
    /// Where the rows repaired or rejected are reported.
    pub rejects: PathBuf,
}

impl std::fmt::Display for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.report)?;
        writeln!(f, "rejects report: {}", self.rejects.display())
    }
}

/// `atelier load`.
pub async fn run(database: &Database, request: &Request) -> Result<Loaded> {
    let dir = &request.dir;
    // What can be checked without the database is checked before a cluster starts.
    match request.changes {
        true => changes::check_files(dir)?,
        false => {
            check_catalog_dir(dir)?;
            check_headers(dir)?;
        }
    }
    let rejects = request
        .rejects
        .clone()
        .unwrap_or_else(|| dir.join(REJECTS_FILE));
    let rejects = std::path::absolute(&rejects).map_err(|e| Error::io("resolve", &rejects, e))?;
    check_report_writable(&rejects)?;
    let url = crate::db::resolve_url(database).await?;
    let mut client = crate::db::connect(&url).await?;
    let mut second = crate::db::connect(&url).await?;
    let progress = std::io::stderr().is_terminal();
    let report = if request.changes {
        changes::load_changes(&mut client, dir, &rejects).await?
    } else {
        load_catalog_parallel(&mut client, &mut second, dir, &rejects, progress).await?
    };
    Ok(Loaded { report, rejects })
}

/// What `atelier load` is asked to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The directory holding the files.
    pub dir: PathBuf,
    /// Where the rejects report goes; by default `rejects.csv` in `dir`.
    pub rejects: Option<PathBuf>,
    /// Whether the files are changes to apply to the live catalog ([`changes`]) rather
    /// than a whole new catalog.
    pub changes: bool,
}

/// Checks that `dir` is a directory holding all six catalog files, naming every one
/// that is missing, so one attempt tells the whole story.
pub fn check_catalog_dir(dir: &Path) -> Result<()> {
    check_dir(dir)?;
    let missing: Vec<&str> = FileKind::ALL
        .iter()
        .map(|kind| kind.file_name())
        .filter(|name| !dir.join(name).exists())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::InvalidInput(format!(
        "catalog directory {} lacks {} of the {} catalog files: {}",
        dir.display(),
        missing.len(),
        FileKind::ALL.len(),
        missing.join(", ")
    )))
}

/// Opens each of the six files and checks its header, naming the first that is not a
/// catalog file; the load opens them again to read them.
fn check_headers(dir: &Path) -> Result<()> {
    for kind in FileKind::ALL {
        Source::open(dir, kind)?;
    }
    Ok(())
}

/// Checks that `dir` exists and is a directory.
pub(crate) fn check_dir(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(Error::InvalidInput(
            format!("catalog directory {} does not exist", dir.display()),
        )),
        Err(error) => Err(Error::io("read catalog directory", dir, error)),
        Ok(metadata) if !metadata.is_dir() => Err(Error::InvalidInput(format!(
            "{} is not a directory: load takes the directory that holds the catalog files",
            dir.display()
        ))),
        Ok(_) => Ok(()),
    }
}

/// Fails now, rather than after the files have been read, when the report cannot be
/// written where it is to go; an existing report is left as it is until the load ends.
fn check_report_writable(report: &Path) -> Result<()> {
    let cannot = |source| Error::Io {
        context: format!(
            "cannot write the rejects report {} (--rejects PATH puts it elsewhere)",
            report.display()
        ),
        source,
    };
    if let Some(dir) = report.parent() {
        std::fs::create_dir_all(dir).map_err(cannot)?;
    }
    let existed = report.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(report)
        .map_err(cannot)?;
    if !existed {
        let _ = std::fs::remove_file(report);
    }
    Ok(())
}

async fn load(
    client: &mut Client,
    mut second: Option<&mut Client>,
    dir: &Path,
    rejects: &Path,
    progress: bool,
) -> Result<LoadReport> {
    let started = Instant::now();
    check_catalog_dir(dir)?;
    crate::db::apply_schema(client).await?;
    // Every file is opened and its header checked before the database is touched.
    let sources = FileKind::ALL
        .iter()
        .map(|&kind| Ok((kind, Source::open(dir, kind)?)))
        .collect::<Result<HashMap<_, _>>>()?;
    staging::lock(client).await?;
    let outcome = schedule::run(
        client,
        second.as_deref_mut(),
        sources,
        rejects,
        progress,
        started,
    )
    .await;
    if outcome.is_err() {
        let _ = staging::drop_schema(client).await;
        let parts: Vec<_> = FileKind::ALL
            .iter()
            .map(|kind| rejects::part_path(rejects, kind.file_name()))
            .collect();
        rejects::remove_parts(&parts);
    }
    let unlocked = staging::unlock(client).await;
    if let Some(second) = second {
        // The second connection may have failed with the load; its settings go with it.
        let _ = staging::untune(second).await;
    }
    let report = outcome?;
    unlocked?;
    Ok(report)
}
