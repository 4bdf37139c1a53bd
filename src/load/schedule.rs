//! The order of a load's steps over one or two connections. With one, everything runs
//! in turn. With two, the files are read and copied in two lanes at once
//! ([`pipeline::plan`]), and the keys, indexes and foreign keys of the staging tables
//! are a shared queue: each connection, once done copying (the first also builds the
//! product table), takes the next statement whose tables are ready. So the second
//! connection builds the keys of the smaller tables while the first still copies
//! photos.csv.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use super::ids::IdMap;
use super::lanes::{Milestone, Reached, Shared};
use super::pipeline::{self, Job, LaneOutput, Source};
use super::rejects::{self, Part};
use super::staging::{self, Definition, ProductChanges, Step};
use super::{FileCounts, LoadReport};
use crate::catalog::FileKind;
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

/// The key, index and foreign-key statements not yet started, shared by the
/// connections that run them.
struct KeyQueue {
    state: Mutex<QueueState>,
}

struct QueueState {
    pending: Vec<Definition>,
    /// Per table, the key statements not yet finished.
    keys_left: HashMap<FileKind, usize>,
}

impl KeyQueue {
    /// A queue of `definitions`; tables without keys count as keyed at once.
    fn new(definitions: Vec<Definition>, shared: &Shared) -> KeyQueue {
        let mut keys_left: HashMap<FileKind, usize> = HashMap::new();
        for definition in definitions.iter().filter(|d| d.step == Step::Key) {
            *keys_left.entry(definition.table).or_default() += 1;
        }
        for kind in FileKind::ALL {
            if !keys_left.contains_key(&kind) {
                shared.reach(Milestone::Keyed(kind));
            }
        }
        let state = QueueState {
            pending: definitions,
            keys_left,
        };
        KeyQueue {
            state: Mutex::new(state),
        }
    }

    /// Runs statements on `client` until none is left to start.
    async fn work(&self, client: &Client, shared: &Shared) -> Result<()> {
        loop {
            let next = shared
                .wait_until(|reached| self.take_ready(reached))
                .await?;
            let definition = match next {
                Next::Run(definition) => definition,
                Next::Finished => return Ok(()),
            };
            staging::run(client, &definition.statement).await?;
            if definition.step == Step::Key {
                let mut state = self.state.lock().expect("key queue lock");
                let left = state.keys_left.entry(definition.table).or_default();
                *left -= 1;
                if *left == 0 {
                    shared.reach(Milestone::Keyed(definition.table));
                }
            }
        }
    }

    /// What to do now; `None` to wait for another milestone.
    fn take_ready(&self, reached: Reached) -> Option<Next> {
        let mut state = self.state.lock().expect("key queue lock");
        if state.pending.is_empty() {
            return Some(Next::Finished);
        }
        let index = ready(&state.pending, reached)?;
        Some(Next::Run(state.pending.remove(index)))
    }
}

/// What a worker does next.
enum Next {
    /// Run this statement.
    Run(Definition),
    /// Nothing is left to start.
    Finished,
}

/// The first of the statements that can run given the milestones reached, keys first.
fn ready(pending: &[Definition], reached: Reached) -> Option<usize> {
    let built = |kind: FileKind| match kind {
        FileKind::Product => reached.has(Milestone::ProductsBuilt),
        kind => reached.has(Milestone::Copied(kind)),
    };
    pending
        .iter()
        .enumerate()
        .filter(|(_, d)| built(d.table))
        .filter(|(_, d)| {
            d.references
                .is_none_or(|r| reached.has(Milestone::Keyed(r)))
        })
        .min_by_key(|(index, d)| (d.step, *index))
        .map(|(index, _)| index)
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
    let shared = Arc::new(Shared::default());
    let keys = KeyQueue::new(staging::definitions(client).await?, &shared);
    let context = Context {
        shared,
        bar: progress_bar(progress, sources.values().map(|s| s.size).sum()),
        rejects,
        started,
    };
    let (parsers, tables) = start_parsers(sources, lanes, &context)?;
    let mut tables = tables.into_iter();
    let (first_tables, second_tables) = (tables.next().expect("one lane at least"), tables.next());

    let first = async {
        let done = first_lane(client, first_tables, parsers, &keys, &context).await;
        done.inspect_err(|_| context.shared.abort())
    };
    let second = async {
        let (Some(second), Some(tables)) = (second, second_tables) else {
            return Ok(());
        };
        let done = second_lane(second, tables, &keys, &context.shared).await;
        done.inspect_err(|_| context.shared.abort())
    };
    let (files, products) = match tokio::join!(first, second) {
        (Ok(done), Ok(())) => done,
        (first, second) => {
            let errors = first.err().into_iter().chain(second.err());
            return Err(first_cause(errors.collect()).expect("a lane failed"));
        }
    };
    // An empty product table would empty the whole catalog: a header-only file, or one
    // whose every row was rejected, is not a catalog.
    if let Some(product) = files
        .iter()
        .find(|c| c.file == FileKind::Product.file_name())
        && product.loaded == 0
    {
        return Err(Error::InvalidInput(format!(
            "{}: no product could be loaded ({} records read, {} rejected; see {}); \
             the catalog is left as it was",
            product.file,
            product.read,
            product.rejected,
            rejects.display()
        )));
    }
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
/// builds the product table, then takes its share of the keys.
async fn first_lane(
    client: &mut Client,
    tables: Tables,
    parsers: Vec<Parser>,
    keys: &KeyQueue,
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
    keys.work(client, shared).await?;
    Ok((files, changes))
}

/// Copies the second lane's files, then takes its share of the keys.
async fn second_lane(
    client: &mut Client,
    tables: Tables,
    keys: &KeyQueue,
    shared: &Shared,
) -> Result<()> {
    pipeline::copy_lane(client, tables, shared).await?;
    keys.work(client, shared).await
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
    let stopped = |e: &Error| matches!(e, Error::LoadAborted);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn statements_wait_for_their_table_and_the_keys_they_reference() {
        use FileKind::*;
        let definition = |table, step, references, statement: &str| Definition {
            table,
            step,
            references,
            statement: statement.into(),
        };
        let shared = Shared::default();
        let queue = KeyQueue::new(
            vec![
                definition(Skus, Step::ForeignKey, Some(Styles), "sku foreign key"),
                definition(Skus, Step::Index, None, "sku index"),
                definition(Styles, Step::Key, None, "style key"),
                definition(Product, Step::Key, None, "product key"),
            ],
            &shared,
        );
        let next = || async {
            let reached = shared.wait_until(Some).await.unwrap();
            queue.take_ready(reached).map(|next| match next {
                Next::Run(definition) => Some(definition.statement),
                Next::Finished => None,
            })
        };
        assert_eq!(next().await, None);
        shared.reach(Milestone::Copied(Skus));
        assert_eq!(next().await, Some(Some("sku index".into())));
        assert_eq!(next().await, None);
        shared.reach(Milestone::Copied(Styles));
        assert_eq!(next().await, Some(Some("style key".into())));
        assert_eq!(next().await, None, "the foreign key waits for style's key");
        shared.reach(Milestone::Keyed(Styles));
        assert_eq!(next().await, Some(Some("sku foreign key".into())));
        shared.reach(Milestone::ProductsBuilt);
        assert_eq!(next().await, Some(Some("product key".into())));
        assert_eq!(next().await, Some(None));
    }
}
