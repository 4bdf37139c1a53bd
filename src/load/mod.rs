//! `atelier load`: the six CSV files of a directory become the new catalog.
//!
//! The files are checked and repaired record by record ([`reader`], [`rows`]), streamed
//! with COPY into fresh tables of a staging schema ([`pipeline`]), given the live
//! tables' keys and indexes, and swapped in for the live tables in one transaction
//! ([`staging`]). A load that fails at any point leaves the served catalog as it was.
//! Every rejected or repaired record is written to the rejects report ([`rejects`]).

mod binary;
mod ids;
mod pipeline;
mod reader;
mod rejects;
mod rows;
mod staging;

use std::collections::HashMap;
use std::fmt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;
use tokio_postgres::Client;

use crate::config::LoadArgs;
use crate::{Error, Result};
use ids::IdMap;
use pipeline::{Job, LaneOutput, Milestone, Shared, Source};
use rows::FileKind;
use staging::Step;

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
        })
    }
}

/// The per-file summary table printed by `atelier load`.
impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let row = |f: &mut fmt::Formatter<'_>, file: &str, read, loaded, repaired, rejected| {
            writeln!(f, "{file:<14}{read:>12}{loaded:>12}{repaired:>10}{rejected:>10}")
        };
        writeln!(f, "{:<14}{:>12}{:>12}{:>10}{:>10}", "file", "read", "loaded", "repaired", "rejected")?;
        let mut total = FileCounts::default();
        for c in &self.files {
            row(f, c.file, c.read, c.loaded, c.repaired, c.rejected)?;
            total.read += c.read;
            total.loaded += c.loaded;
            total.repaired += c.repaired;
            total.rejected += c.rejected;
        }
        row(f, "total", total.read, total.loaded, total.repaired, total.rejected)?;
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

/// `atelier load`.
pub async fn run(args: &LoadArgs) -> Result<()> {
    let mut client = crate::db::connect_with_schema(&args.db).await?;
    let mut second = crate::db::connect(&crate::db::resolve_url(&args.db).await?).await?;
    let rejects = match &args.rejects {
        Some(path) => path.clone(),
        None => args.db.data_dir.join("rejects.csv"),
    };
    if let Some(dir) = rejects.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    }
    let progress = std::io::stderr().is_terminal();
    let report = load_catalog_parallel(&mut client, &mut second, &args.dir, &rejects, progress).await?;
    print!("{report}");
    println!("rejects report: {}", rejects.display());
    Ok(())
}

async fn load(
    client: &mut Client,
    second: Option<&mut Client>,
    dir: &Path,
    rejects: &Path,
    progress: bool,
) -> Result<LoadReport> {
    let started = Instant::now();
    crate::db::apply_schema(client).await?;
    // Every file is opened and its header checked before the database is touched.
    let sources = FileKind::ALL
        .iter()
        .map(|&kind| Ok((kind, Source::open(dir, kind)?)))
        .collect::<Result<HashMap<_, _>>>()?;
    staging::lock(client).await?;
    let outcome = load_locked(client, second, sources, rejects, progress, started).await;
    if outcome.is_err() {
        let _ = staging::drop_schema(client).await;
        let parts: Vec<_> = FileKind::ALL
            .iter()
            .map(|kind| rejects::part_path(rejects, kind.file_name()))
            .collect();
        rejects::remove_parts(&parts);
    }
    let unlocked = staging::unlock(client).await;
    let report = outcome?;
    unlocked?;
    Ok(report)
}

async fn load_locked(
    client: &mut Client,
    second: Option<&mut Client>,
    mut sources: HashMap<FileKind, Source>,
    rejects: &Path,
    progress: bool,
    started: Instant,
) -> Result<LoadReport> {
    staging::reset(client).await?;
    staging::tune(client).await?;
    if let Some(second) = second.as_deref() {
        staging::tune(second).await?;
    }
    let mut definitions = staging::definitions(client).await?;
    let bar = progress_bar(progress, sources.values().map(|s| s.size).sum());

    let shared = Arc::new(Shared::default());
    let mut parsers = Vec::new();
    let mut copies = Vec::new();
    for lane in pipeline::plan(if second.is_some() { 2 } else { 1 }) {
        let mut jobs = Vec::new();
        let mut tables = Vec::new();
        for kind in lane {
            let (rows, receiver) = mpsc::channel(pipeline::CHANNEL_CHUNKS);
            let source = sources.remove(&kind).expect("every file is opened once");
            let report = rejects::Part::create(rejects, kind.file_name())?;
            jobs.push(Job { source, rows, report });
            tables.push((kind, receiver));
        }
        let (shared, bar) = (shared.clone(), bar.clone());
        parsers.push(tokio::task::spawn_blocking(move || {
            pipeline::parse_lane(jobs, &shared, &bar)
        }));
        copies.push(tables);
    }
    let second_tables_present = copies.len() > 1;
    let mut copies = copies.into_iter();
    let first_tables = copies.next().expect("at least one lane");
    let second_tables = copies.next();
    // With two lanes, the second one, done with its smaller files, builds the keys of
    // the tables that need neither photos.csv nor the product fingerprints while the
    // first one still copies photos.csv. Then photo's keys (which need style's) are
    // built on the first connection, and the rest (which need product's) on the second.
    let (early, last, rest) = match second {
        Some(_) => (
            definitions.take(|table, step, references| {
                ["feature", "related", "style", "sku"].contains(&table)
                    && (step != Step::ForeignKey || (table == "sku" && references == Some("style")))
            }),
            definitions.take(|table, _, references| table == "photo" && references != Some("product")),
            definitions.take(|_, _, _| true),
        ),
        None => (Vec::new(), definitions.take(|_, _, _| true), Vec::new()),
    };
    let first_lane = async {
        let copied = pipeline::copy_lane(client, first_tables, &shared).await;
        let parsed = join_parsers(parsers).await;
        bar.finish_and_clear();
        let (files, fingerprints) = match (copied, parsed) {
            (Ok(()), Ok(outputs)) => merge(outputs, rejects)?,
            (copied, parsed) => {
                let errors = copied.err().into_iter().chain(parsed.err().into_iter().flatten());
                return Err(first_cause(errors.collect()).expect("an error"));
            }
        };
        tracing::info!(seconds = started.elapsed().as_secs_f64(), "files copied");
        let products = shared.products().expect("product.csv was read");
        let changes = staging::build_products(client, &products, &fingerprints).await?;
        shared.reach(Milestone::ProductsBuilt);
        tracing::info!(seconds = started.elapsed().as_secs_f64(), "products built");
        if second_tables_present {
            shared.reached(Milestone::EarlyKeysBuilt).await?;
        }
        staging::run_all(client, &last).await?;
        Ok((files, changes))
    };
    let second_lane = async {
        let (Some(second), Some(tables)) = (second, second_tables) else {
            return Ok(());
        };
        pipeline::copy_lane(second, tables, &shared).await?;
        shared.reached(Milestone::Copied(FileKind::Styles)).await?;
        staging::run_all(second, &early).await?;
        shared.reach(Milestone::EarlyKeysBuilt);
        shared.reached(Milestone::ProductsBuilt).await?;
        staging::run_all(second, &rest).await
    };
    let (first, second) = tokio::join!(
        async { first_lane.await.inspect_err(|_| shared.abort()) },
        async { second_lane.await.inspect_err(|_| shared.abort()) }
    );
    let (files, changes) = match (first, second) {
        (Ok(done), Ok(())) => done,
        (first, second) => {
            let errors = first.err().into_iter().chain(second.err());
            return Err(first_cause(errors.collect()).expect("an error"));
        }
    };
    tracing::info!(seconds = started.elapsed().as_secs_f64(), "keys and indexes built");
    staging::analyze(client).await?;

    let mut report = LoadReport {
        files,
        products: changes,
        rejects: rejects.to_path_buf(),
        elapsed: Duration::ZERO,
    };
    report.elapsed = started.elapsed();
    staging::swap(client, &report.summary()).await?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Waits for every parser thread; their outputs, or all their errors.
async fn join_parsers(
    parsers: Vec<tokio::task::JoinHandle<Result<LaneOutput>>>,
) -> Result<Vec<LaneOutput>, Vec<Error>> {
    let mut outputs = Vec::new();
    let mut errors = Vec::new();
    for parser in parsers {
        match parser.await.expect("a parser thread panicked") {
            Ok(output) => outputs.push(output),
            Err(error) => errors.push(error),
        }
    }
    if errors.is_empty() { Ok(outputs) } else { Err(errors) }
}

/// The error that caused the others: a lane stopped because another failed reports
/// only that it was stopped.
fn first_cause(errors: Vec<Error>) -> Option<Error> {
    let stopped = |e: &Error| matches!(e, Error::InvalidInput(m) if m == pipeline::ABORTED);
    let (stops, causes): (Vec<_>, Vec<_>) = errors.into_iter().partition(stopped);
    causes.into_iter().next().or_else(|| stops.into_iter().next())
}

/// Joins the lanes' counts (in catalog order), report parts and fingerprints, and
/// writes the rejects report.
fn merge(outputs: Vec<LaneOutput>, rejects: &Path) -> Result<(Vec<FileCounts>, IdMap<u64>)> {
    let mut counts = HashMap::new();
    let mut parts = HashMap::new();
    let mut fingerprints: Option<IdMap<u64>> = None;
    for output in outputs {
        counts.extend(output.counts.into_iter().map(|c| (c.file, c)));
        parts.extend(output.parts);
        match &mut fingerprints {
            None => fingerprints = Some(output.fingerprints),
            Some(sum) => {
                for (id, value) in output.fingerprints.iter().filter(|(_, v)| *v != 0) {
                    let total = sum.get_mut(id);
                    *total = total.wrapping_add(value);
                }
            }
        }
    }
    let order = FileKind::ALL;
    let parts: Vec<PathBuf> = order.iter().filter_map(|kind| parts.remove(kind)).collect();
    rejects::assemble(rejects, &parts)?;
    let files = order
        .iter()
        .filter_map(|kind| counts.remove(kind.file_name()))
        .collect();
    Ok((files, fingerprints.unwrap_or_default()))
}

fn progress_bar(shown: bool, total: u64) -> ProgressBar {
    if !shown {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(
        "{spinner} reading {bar:40} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
    )
    .expect("a valid progress template");
    ProgressBar::new(total).with_style(style)
}
