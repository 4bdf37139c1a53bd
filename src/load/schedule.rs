//! The order of a load's steps over one or two connections. One connection does
//! everything in turn. With two, files are read and copied in two lanes at once
//! ([`pipeline::plan`]); the second lane, done with its smaller files first, builds the
//! keys of the tables that need neither photos.csv nor the product fingerprints while
//! the first still copies photos.csv; then photo's keys (which need style's) are built
//! on the first connection while the second builds product's and every key that
//! references it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use super::ids::IdMap;
use super::pipeline::{self, Job, LaneOutput, Milestone, Shared, Source};
use super::rejects::{self, Part};
use super::rows::FileKind;
use super::staging::{self, Definitions, ProductChanges, Step};
use super::{FileCounts, LoadReport};
use crate::{Error, Result};

/// The tables a lane copies, each with the channel its rows arrive on.
type Tables = Vec<(FileKind, mpsc::Receiver<Bytes>)>;

/// A lane's parser thread.
type Parser = JoinHandle<Result<LaneOutput>>;

/// What the steps of one load share.
struct Context<'a> {
    shared: Arc<Shared>,
    bar: ProgressBar,
    rejects: &'a Path,
    started: Instant,
}

impl Context<'_> {
    fn log(&self, step: &str) {
        tracing::info!(seconds = self.started.elapsed().as_secs_f64(), "{step}");
    }
}

/// The key and index statements of each part of the schedule.
struct KeyPlan {
    /// Run by the second lane while the first copies photos.csv.
    early: Vec<String>,
    /// Run by the first lane once the product table is built.
    first: Vec<String>,
    /// Run by the second lane once the product table is built.
    second: Vec<String>,
}

impl KeyPlan {
    fn new(mut definitions: Definitions, lanes: usize) -> KeyPlan {
        if lanes < 2 {
            return KeyPlan {
                early: Vec::new(),
                first: definitions.take(|_, _, _| true),
                second: Vec::new(),
            };
        }
        let early = definitions.take(|table, step, references| {
            ["feature", "related", "style", "sku"].contains(&table)
                && (step != Step::ForeignKey || (table == "sku" && references == Some("style")))
        });
        let first = definitions
            .take(|table, _, references| table == "photo" && references != Some("product"));
        KeyPlan {
            early,
            first,
            second: definitions.take(|_, _, _| true),
        }
    }
}

/// Builds the new catalog in the staging schema and swaps it in (the caller holds the
/// load lock and cleans up after a failure).
pub async fn run(
    client: &mut Client,
    second: Option<&mut Client>,
    sources: HashMap<FileKind, Source>,
    rejects: &Path,
    progress: bool,
    started: Instant,
) -> Result<LoadReport> {
    staging::reset(client).await?;
    staging::tune(client).await?;
    if let Some(second) = second.as_deref() {
        staging::tune(second).await?;
    }
    let lanes = if second.is_some() { 2 } else { 1 };
    let keys = KeyPlan::new(staging::definitions(client).await?, lanes);
    let context = Context {
        shared: Arc::new(Shared::default()),
        bar: progress_bar(progress, sources.values().map(|s| s.size).sum()),
        rejects,
        started,
    };
    let (parsers, tables) = start_parsers(sources, lanes, &context)?;
    let mut tables = tables.into_iter();
    let (first_tables, second_tables) = (tables.next().expect("one lane at least"), tables.next());

    let first = async {
        let done = first_lane(client, first_tables, parsers, &keys.first, &context).await;
        done.inspect_err(|_| context.shared.abort())
    };
    let second = async {
        let done = match (second, second_tables) {
            (Some(second), Some(tables)) => second_lane(second, tables, &keys, &context).await,
            _ => {
                context.shared.reach(Milestone::EarlyKeysBuilt);
                Ok(())
            }
        };
        done.inspect_err(|_| context.shared.abort())
    };
    let (files, products) = match tokio::join!(first, second) {
        (Ok(done), Ok(())) => done,
        (first, second) => {
            let errors = first.err().into_iter().chain(second.err());
            return Err(first_cause(errors.collect()).expect("a lane failed"));
        }
    };
    context.log("keys and indexes built");
    staging::analyze(client).await?;

    let mut report = LoadReport {
        files,
        products,
        rejects: rejects.to_path_buf(),
        elapsed: Duration::ZERO,
    };
    report.elapsed = started.elapsed();
    staging::swap(client, &report.summary()).await?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Spawns one parser thread per lane; returns them and each lane's tables.
fn start_parsers(
    mut sources: HashMap<FileKind, Source>,
    lanes: usize,
    context: &Context<'_>,
) -> Result<(Vec<Parser>, Vec<Tables>)> {
    let mut parsers = Vec::new();
    let mut lane_tables = Vec::new();
    for lane in pipeline::plan(lanes) {
        let mut jobs = Vec::new();
        let mut tables = Vec::new();
        for kind in lane {
            let (rows, receiver) = mpsc::channel(pipeline::CHANNEL_CHUNKS);
            let source = sources.remove(&kind).expect("every file is opened once");
            let report = Part::create(context.rejects, kind.file_name())?;
            jobs.push(Job {
                source,
                rows,
                report,
            });
            tables.push((kind, receiver));
        }
        let (shared, bar) = (context.shared.clone(), context.bar.clone());
        parsers.push(tokio::task::spawn_blocking(move || {
            pipeline::parse_lane(jobs, &shared, &bar)
        }));
        lane_tables.push(tables);
    }
    Ok((parsers, lane_tables))
}

/// Copies the first lane's files, waits for every parser, writes the rejects report,
/// builds the product table, then runs its share of the keys.
async fn first_lane(
    client: &mut Client,
    tables: Tables,
    parsers: Vec<Parser>,
    keys: &[String],
    context: &Context<'_>,
) -> Result<(Vec<FileCounts>, ProductChanges)> {
    let shared = &context.shared;
    let copied = pipeline::copy_lane(client, tables, shared).await;
    let parsed = join_parsers(parsers).await;
    context.bar.finish_and_clear();
    let (files, fingerprints) = match (copied, parsed) {
        (Ok(()), Ok(outputs)) => merge(outputs, context.rejects)?,
        (copied, parsed) => {
            let errors = copied
                .err()
                .into_iter()
                .chain(parsed.err().into_iter().flatten());
            return Err(first_cause(errors.collect()).expect("a step failed"));
        }
    };
    context.log("files copied");
    let products = shared.products().expect("product.csv was read");
    let changes = staging::build_products(client, &products, &fingerprints).await?;
    shared.reach(Milestone::ProductsBuilt);
    context.log("products built");
    shared.reached(Milestone::EarlyKeysBuilt).await?;
    staging::run_all(client, keys).await?;
    Ok((files, changes))
}

/// Copies the second lane's files, builds the early keys, then, once the product table
/// is built, the rest.
async fn second_lane(
    client: &mut Client,
    tables: Tables,
    keys: &KeyPlan,
    context: &Context<'_>,
) -> Result<()> {
    let shared = &context.shared;
    pipeline::copy_lane(client, tables, shared).await?;
    shared.reached(Milestone::Copied(FileKind::Styles)).await?;
    staging::run_all(client, &keys.early).await?;
    shared.reach(Milestone::EarlyKeysBuilt);
    context.log("early keys built");
    shared.reached(Milestone::ProductsBuilt).await?;
    staging::run_all(client, &keys.second).await
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
    if errors.is_empty() {
        Ok(outputs)
    } else {
        Err(errors)
    }
}

/// The error that caused the others: a lane stopped because another failed reports
/// only that it was stopped.
fn first_cause(errors: Vec<Error>) -> Option<Error> {
    let stopped = |e: &Error| matches!(e, Error::InvalidInput(m) if m == pipeline::ABORTED);
    let (stops, causes): (Vec<_>, Vec<_>) = errors.into_iter().partition(stopped);
    causes
        .into_iter()
        .next()
        .or_else(|| stops.into_iter().next())
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
