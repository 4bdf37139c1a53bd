//! `atelier load --changes DIR`: applies a set of changed rows to the live catalog in one
//! transaction, instead of replacing the whole catalog.
//!
//! DIR holds any subset of the six catalog files, in either variant, whose rows are
//! inserted, or replace the row of the same id, and optionally `deleted.csv`: a
//! `product_id` header, then one product id per line, each product to remove with every
//! row that belongs to it (its styles with their photos and skus, its features, its
//! related rows, and the related rows of other products that name it). Deletions apply
//! first, so a product both deleted and present in product.csv is replaced whole.
//!
//! Records are checked and repaired by the same rules as a full load and reported in the
//! same rejects report; a row naming a product or style that is neither in the catalog
//! (and not deleted) nor in the change files is rejected as unknown. Rows identical to
//! the live ones are left alone. The capture triggers queue the documents of every
//! product whose rows changed, and note them as edited since the last full load; their
//! `updated_at` becomes the load's time.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures_util::SinkExt;
use tokio_postgres::{Client, Transaction};

use super::ids::{IdMap, IdSet};
use super::pipeline::Source;
use super::rejects::{self, Outcome, Part};
use super::rows::{self, Ids};
use super::staging::{self, ProductChanges};
use super::{FileCounts, LoadReport, binary};
use crate::catalog::FileKind;
use crate::{Error, Result};

/// The file naming the products to delete.
pub const DELETED_FILE: &str = "deleted.csv";

/// One change file read and checked: its counts and the binary COPY data of its rows.
struct Checked {
    kind: FileKind,
    counts: FileCounts,
    rows: BytesMut,
}

/// Applies the change files of `dir` to the catalog, writing rejected and repaired rows
/// to `rejects`.
pub async fn load_changes(client: &mut Client, dir: &Path, rejects: &Path) -> Result<LoadReport> {
    let started = Instant::now();
    crate::db::apply_schema(client).await?;
    let (present, deletions) = open_files(dir)?;

    staging::lock(client).await?;
    let outcome = apply(client, dir, &present, deletions, rejects, started).await;
    if outcome.is_err() {
        let mut parts: Vec<PathBuf> = FileKind::ALL
            .iter()
            .map(|kind| rejects::part_path(rejects, kind.file_name()))
            .collect();
        parts.push(rejects::part_path(rejects, DELETED_FILE));
        rejects::remove_parts(&parts);
    }
    let unlocked = staging::unlock(client).await;
    let report = outcome?;
    unlocked?;
    Ok(report)
}

/// Checks what can be checked of the change files of `dir` without a database: that
/// it is a directory holding at least one, and every header.
pub fn check_files(dir: &Path) -> Result<()> {
    crate::load::check_dir(dir)?;
    open_files(dir).map(|_| ())
}

/// The catalog files present in `dir`, each opened and its header checked, and the
/// deletions of `deleted.csv` if there is one; at least one of them must be there.
fn open_files(dir: &Path) -> Result<(Vec<FileKind>, Option<Vec<Deletion>>)> {
    let present: Vec<FileKind> = FileKind::ALL
        .into_iter()
        .filter(|kind| dir.join(kind.file_name()).exists())
        .collect();
    let deleted_path = dir.join(DELETED_FILE);
    let has_deleted = deleted_path.exists();
    if present.is_empty() && !has_deleted {
        let names: Vec<&str> = FileKind::ALL.iter().map(|kind| kind.file_name()).collect();
        return Err(Error::InvalidInput(format!(
            "{}: no change files (any of {} or {DELETED_FILE})",
            dir.display(),
            names.join(", ")
        )));
    }
    // Every file is opened and its header checked before the database is touched.
    for &kind in &present {
        Source::open(dir, kind)?;
    }
    let deletions = match has_deleted {
        true => Some(read_deleted(&deleted_path)?),
        false => None,
    };
    Ok((present, deletions))
}

async fn apply(
    client: &mut Client,
    dir: &Path,
    present: &[FileKind],
    deletions: Option<Vec<Deletion>>,
    rejects: &Path,
    started: Instant,
) -> Result<LoadReport> {
    let transaction = client.transaction().await?;
    transaction
        .batch_execute("SET LOCAL client_min_messages = warning")
        .await?;

    // The live parents the change files name, and the products to delete.
    let (product_refs, style_refs) = referenced(dir, present)?;
    let mut deleted = IdSet::default();
    let mut parts = Vec::new();
    let mut deleted_counts = None;
    if let Some(deletions) = &deletions {
        let ids: Vec<i32> = deletions.iter().filter_map(|d| d.id.clone().ok()).collect();
        let live = live_products(&transaction, &ids).await?;
        let (counts, part) = report_deletions(deletions, &live, &mut deleted, rejects)?;
        deleted_counts = Some(counts);
        parts.push((None, part));
    }
    let mut known_products = live_products(&transaction, &product_refs).await?;
    known_products.retain(|id| !deleted.contains(*id));
    let mut known_styles: HashMap<u32, u32> = live_styles(&transaction, &style_refs).await?;
    known_styles.retain(|_, product| !deleted.contains(*product));

    // The records, checked against the live parents and the files' own rows.
    let mut checked = Vec::new();
    let mut owners = IdSet::default();
    let mut file_products = IdSet::default();
    let mut products = IdSet::default();
    for id in &known_products {
        products.insert(*id);
    }
    let mut file_styles = IdMap::<u32>::default();
    let mut styles = IdMap::<u32>::default();
    for (&style, &product) in &known_styles {
        *styles.get_mut(style) = product;
    }
    for &kind in present {
        let mut source = Source::open(dir, kind)?.into_reader();
        let mut part = Part::create(rejects, kind.file_name())?;
        let mut seen = IdSet::default();
        let one = {
            let mut ids = match kind {
                FileKind::Product => Ids::Product {
                    products: &mut file_products,
                },
                FileKind::Styles => Ids::Styles {
                    products: &products,
                    styles: &mut file_styles,
                },
                FileKind::Features | FileKind::Related => Ids::ProductChild {
                    products: &products,
                    seen: &mut seen,
                },
                FileKind::Photos | FileKind::Skus => Ids::StyleChild {
                    styles: &styles,
                    seen: &mut seen,
                },
            };
            check_file(kind, &mut source, &mut ids, &mut part, &mut owners, dir)?
        };
        parts.push((Some(kind), part.finish()?));
        checked.push(one);
        // Rows of later files may name the products and styles of earlier ones.
        match kind {
            FileKind::Product => {
                for id in file_products.iter() {
                    products.insert(id);
                }
            }
            FileKind::Styles => {
                for (style, product) in file_styles.iter().filter(|&(_, p)| p != 0) {
                    *styles.get_mut(style) = product;
                }
            }
            _ => {}
        }
    }
    let order: Vec<PathBuf> = FileKind::ALL
        .iter()
        .filter_map(|kind| {
            parts
                .iter()
                .find(|(k, _)| *k == Some(*kind))
                .map(|(_, p)| p.clone())
        })
        .chain(
            parts
                .iter()
                .filter(|(k, _)| k.is_none())
                .map(|(_, p)| p.clone()),
        )
        .collect();
    rejects::assemble(rejects, &order)?;

    // One transaction: deletions, then the rows, parents first.
    let deleted_ids: Vec<i32> = deleted.iter().map(|id| id as i32).collect();
    let removed = delete_products(&transaction, &deleted_ids).await?;
    let mut created = BTreeSet::new();
    for one in &checked {
        let inserted = upsert(&transaction, one).await?;
        if one.kind == FileKind::Product {
            created.extend(inserted);
        }
    }
    let touched = touch(&transaction).await?;

    let recreated: BTreeSet<i32> = removed.intersection(&created).copied().collect();
    let changes = ProductChanges {
        created: (created.len() - recreated.len()) as u64,
        changed: touched
            .iter()
            .filter(|id| recreated.contains(id) || !(created.contains(id) || removed.contains(id)))
            .count() as u64,
        unchanged: owners
            .iter()
            .filter(|&id| !touched.contains(&(id as i32)) && !removed.contains(&(id as i32)))
            .count() as u64,
        removed: (removed.len() - recreated.len()) as u64,
    };
    let mut files: Vec<FileCounts> = checked.into_iter().map(|one| one.counts).collect();
    files.extend(deleted_counts);
    let mut report = LoadReport {
        files,
        products: changes,
        rejects: rejects.to_path_buf(),
        elapsed: started.elapsed(),
    };
    let mut summary = report.summary();
    summary["changes"] = serde_json::Value::String(dir.display().to_string());
    transaction
        .execute(
            "INSERT INTO catalog_run (kind, summary) VALUES ('load', $1::text::jsonb)",
            &[&summary.to_string()],
        )
        .await?;
    transaction.commit().await?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// The product ids (of styles, features, related rows) and style ids (of photos and
/// skus) the change files name as parents.
fn referenced(dir: &Path, present: &[FileKind]) -> Result<(Vec<i32>, Vec<i32>)> {
    let (mut products, mut styles) = (BTreeSet::new(), BTreeSet::new());
    for &kind in present {
        let into = match kind {
            FileKind::Product => continue,
            FileKind::Photos | FileKind::Skus => &mut styles,
            _ => &mut products,
        };
        let source = Source::open(dir, kind)?;
        let path = source.path.clone();
        let mut reader = source.into_reader();
        while reader
            .next_record()
            .map_err(|e| Error::io("read", &path, e))?
        {
            into.extend(
                rows::referenced_ids(kind, &reader)
                    .into_iter()
                    .map(|id| id as i32),
            );
        }
    }
    Ok((products.into_iter().collect(), styles.into_iter().collect()))
}

/// Those of `ids` that are live products.
async fn live_products(transaction: &Transaction<'_>, ids: &[i32]) -> Result<Vec<u32>> {
    let rows = transaction
        .query("SELECT id FROM product WHERE id = ANY($1)", &[&ids])
        .await?;
    Ok(rows.iter().map(|row| row.get::<_, i32>(0) as u32).collect())
}

/// Those of `ids` that are live styles, with their product.
async fn live_styles(transaction: &Transaction<'_>, ids: &[i32]) -> Result<HashMap<u32, u32>> {
    let rows = transaction
        .query(
            "SELECT id, product_id FROM style WHERE id = ANY($1)",
            &[&ids],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| (row.get::<_, i32>(0) as u32, row.get::<_, i32>(1) as u32))
        .collect())
}

/// Checks every record of one change file, keeping the COPY data of its rows and noting
/// the products they belong to in `owners`.
fn check_file<R: BufRead>(
    kind: FileKind,
    reader: &mut crate::catalog::reader::RecordReader<R>,
    ids: &mut Ids<'_>,
    report: &mut Part,
    owners: &mut IdSet,
    dir: &Path,
) -> Result<Checked> {
    let path = dir.join(kind.file_name());
    let mut counts = FileCounts {
        file: kind.file_name(),
        ..FileCounts::default()
    };
    let mut rows = BytesMut::new();
    rows.extend_from_slice(binary::HEADER);
    let mut repairs = Vec::new();
    while reader
        .next_record()
        .map_err(|e| Error::io("read", &path, e))?
    {
        counts.read += 1;
        repairs.clear();
        let checked = rows::check(kind, reader, ids, &mut rows, &mut repairs);
        if let Some(owner) = report.tally(checked, reader, &repairs, &mut counts)? {
            owners.insert(owner);
        }
    }
    rows.extend_from_slice(binary::TRAILER);
    Ok(Checked { kind, counts, rows })
}

/// One record of deleted.csv.
struct Deletion {
    line: u64,
    raw: String,
    id: std::result::Result<i32, String>,
    repaired: Option<String>,
}

/// Reads deleted.csv: a header naming `product_id` (or `id`), then one id per line in
/// the first field; blank lines are skipped, spaces and quotes around an id removed.
fn read_deleted(path: &Path) -> Result<Vec<Deletion>> {
    let file = File::open(path).map_err(|e| Error::io("open change file", path, e))?;
    let mut lines = BufReader::new(file).lines();
    let header = lines
        .next()
        .transpose()
        .map_err(|e| Error::io("read", path, e))?
        .ok_or_else(|| Error::InvalidInput(format!("{}: the file is empty", path.display())))?;
    let first = header
        .trim_start_matches('\u{feff}')
        .split(',')
        .next()
        .unwrap_or("");
    let folded = first.trim().replace('_', "").to_ascii_lowercase();
    if folded != "productid" && folded != "id" {
        return Err(Error::InvalidInput(format!(
            "{}: its first line {:?} is not the header `product_id`",
            path.display(),
            header.chars().take(200).collect::<String>()
        )));
    }
    let mut deletions = Vec::new();
    for (index, line) in lines.enumerate() {
        let raw = line.map_err(|e| Error::io("read", path, e))?;
        let field = raw.split(',').next().unwrap_or("").trim_end_matches('\r');
        if field.trim().is_empty() && !raw.contains(',') {
            continue;
        }
        let bare = field.trim().trim_matches('"');
        let repaired = (bare != field)
            .then(|| "product_id: spaces or quotes around the id removed".to_string());
        let id = match bare.parse::<i64>() {
            Ok(id)
                if id >= 1
                    && id <= i64::from(i32::MAX)
                    && bare.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Ok(id as i32)
            }
            Ok(id) => Err(format!("product_id: {id} is out of range")),
            Err(_) => Err(format!("product_id: no number in {bare:?}")),
        };
        deletions.push(Deletion {
            line: index as u64 + 2,
            raw,
            id,
            repaired,
        });
    }
    Ok(deletions)
}

/// Reports deleted.csv's records and notes in `deleted` the live products to delete.
fn report_deletions(
    deletions: &[Deletion],
    live: &[u32],
    deleted: &mut IdSet,
    rejects: &Path,
) -> Result<(FileCounts, PathBuf)> {
    let live: BTreeSet<u32> = live.iter().copied().collect();
    let mut part = Part::create(rejects, DELETED_FILE)?;
    let mut counts = FileCounts {
        file: DELETED_FILE,
        ..FileCounts::default()
    };
    for deletion in deletions {
        counts.read += 1;
        let raw = deletion.raw.as_bytes();
        let outcome = match &deletion.id {
            Err(reason) => Err(reason.clone()),
            Ok(id) if !live.contains(&(*id as u32)) => {
                Err(format!("product_id {id} names no product in the catalog"))
            }
            Ok(id) if !deleted.insert(*id as u32) => Err(format!("duplicate id {id}")),
            Ok(_) => Ok(()),
        };
        match outcome {
            Ok(()) => {
                counts.loaded += 1;
                if let Some(repair) = &deletion.repaired {
                    counts.repaired += 1;
                    part.write(deletion.line, Outcome::Repaired, repair, raw)?;
                }
            }
            Err(reason) => {
                counts.rejected += 1;
                part.write(deletion.line, Outcome::Rejected, &reason, raw)?;
            }
        }
    }
    Ok((counts, part.finish()?))
}

/// Deletes the products `ids` and every row that belongs to them or names them; returns
/// the products deleted.
async fn delete_products(transaction: &Transaction<'_>, ids: &[i32]) -> Result<BTreeSet<i32>> {
    const DELETE_SQL: &str = "
        DELETE FROM related WHERE product_id = ANY($1) OR related_product_id = ANY($1);
        DELETE FROM feature WHERE product_id = ANY($1);
        DELETE FROM photo WHERE style_id IN (SELECT id FROM style WHERE product_id = ANY($1));
        DELETE FROM sku WHERE style_id IN (SELECT id FROM style WHERE product_id = ANY($1));
        DELETE FROM style WHERE product_id = ANY($1);";
    if ids.is_empty() {
        return Ok(BTreeSet::new());
    }
    for statement in DELETE_SQL.split(';').filter(|s| !s.trim().is_empty()) {
        transaction.execute(statement, &[&ids]).await?;
    }
    let rows = transaction
        .query(
            "DELETE FROM product WHERE id = ANY($1) RETURNING id",
            &[&ids],
        )
        .await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Copies one file's rows into a temporary table and inserts them into the live one,
/// replacing rows of the same id that differ; returns the ids inserted anew.
async fn upsert(transaction: &Transaction<'_>, checked: &Checked) -> Result<Vec<i32>> {
    let table = checked.kind.table();
    let columns = checked.kind.columns();
    let names: Vec<&str> = columns.split(", ").collect();
    let rest = &names[1..];
    let staged = format!("atelier_change_{table}");
    transaction
        .batch_execute(&format!(
            "CREATE TEMPORARY TABLE {staged} (LIKE public.{table} INCLUDING DEFAULTS) ON COMMIT DROP"
        ))
        .await?;
    let copy = format!("COPY {staged} ({columns}) FROM STDIN (FORMAT binary)");
    let mut sink = pin!(transaction.copy_in::<_, Bytes>(&copy).await?);
    sink.send(Bytes::copy_from_slice(&checked.rows)).await?;
    sink.as_mut().finish().await?;
    let set: Vec<String> = rest.iter().map(|c| format!("{c} = EXCLUDED.{c}")).collect();
    let live: Vec<String> = rest.iter().map(|c| format!("{table}.{c}")).collect();
    let new: Vec<String> = rest.iter().map(|c| format!("EXCLUDED.{c}")).collect();
    let statement = format!(
        "INSERT INTO public.{table} ({columns}) SELECT {columns} FROM {staged} \
         ON CONFLICT (id) DO UPDATE SET {} WHERE ({}) IS DISTINCT FROM ({}) \
         RETURNING id, (xmax = 0)",
        set.join(", "),
        live.join(", "),
        new.join(", ")
    );
    let rows = transaction.query(&statement, &[]).await?;
    Ok(rows
        .iter()
        .filter(|row| row.get::<_, bool>(1))
        .map(|row| row.get(0))
        .collect())
}

/// The products whose rows this transaction changed (the capture triggers queued them),
/// given the transaction's time as `updated_at`.
async fn touch(transaction: &Transaction<'_>) -> Result<BTreeSet<i32>> {
    const TOUCHED_SQL: &str = "SELECT DISTINCT product_id FROM document_queue \
                               WHERE xmin = pg_current_xact_id()::xid AND product_id <> 0";
    const TOUCH_SQL: &str =
        "UPDATE product SET updated_at = now() WHERE id = ANY($1) AND updated_at <> now()";
    let touched: Vec<i32> = transaction
        .query(TOUCHED_SQL, &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    transaction.execute(TOUCH_SQL, &[&touched]).await?;
    Ok(touched.into_iter().collect())
}
