//! Synthetic catalogs: the six CSV files with the real data's shape and dirt.
//!
//! Products 1–11 are the genuine rows of the original dataset; the rest is generated
//! with its proportions (styles, skus, photos, features and related rows per product,
//! prices, texts, Unsplash URLs) and, unless the catalog is clean, its known dirt.
//!
//! The catalog is cut into chunks of [`plan::CHUNK_PRODUCTS`] products, each drawn from
//! random streams of its own. A first pass plans every chunk to count the ids it uses,
//! which gives each chunk its first ids; then the chunks are rendered on all cores and
//! written in chunk order. The files depend only on the arguments, never on the number
//! of threads or their scheduling, and memory holds only a few chunks at a time.

mod genuine;
mod images;
mod ordered;
mod plan;
mod render;
mod rng;
mod row;
mod text;

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::catalog::{FILE_NAMES, FileKind, PerFile, Variant};
use crate::{Error, Result};
use genuine::Genuine;
use images::Images;
use plan::Ids;
use render::Catalog;

/// The catalog to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// Number of products (1,000,011 is the full dataset's size).
    pub products: u32,
    /// The same seed and spec give byte-identical files.
    pub seed: u64,
    /// Directory to write the six files into (created if missing).
    pub out: PathBuf,
    /// Write no dirt at all.
    pub clean: bool,
    /// Field layout of the files.
    pub variant: Variant,
}

/// What `generate` wrote: rows per file, in the order product, styles, features,
/// photos, skus, related.
#[derive(Debug, Clone, Default)]
pub struct GenerateReport {
    /// File name and number of records (a record broken over two lines counts once).
    pub files: Vec<(&'static str, u64)>,
    /// Bytes of each file, in the same order.
    pub bytes: Vec<u64>,
    /// How long writing the catalog took.
    pub elapsed: Duration,
}

/// Writes the six files described by `args` into `args.out`; `progress` shows a bar on
/// a terminal.
pub fn generate(args: &Spec, progress: bool) -> Result<GenerateReport> {
    let threads = std::thread::available_parallelism().map_or(1, |threads| threads.get());
    write_catalog(args, threads, progress)
}

/// `atelier generate`: the summary it prints.
pub fn run(args: &Spec) -> Result<String> {
    let report = generate(args, true)?;
    let mut summary = format!(
        "generated {} products into {} in {:.1} s\n",
        args.products,
        args.out.display(),
        report.elapsed.as_secs_f64()
    );
    for ((name, rows), bytes) in report.files.iter().zip(&report.bytes) {
        summary.push_str(&format!(
            "  {name:<13} {rows:>12} rows {:>10.1} MB\n",
            *bytes as f64 / 1e6
        ));
    }
    Ok(summary)
}

/// Results kept waiting for their turn to be written, per thread.
const WINDOW_PER_THREAD: usize = 2;

fn write_catalog(args: &Spec, threads: usize, progress: bool) -> Result<GenerateReport> {
    let started = Instant::now();
    if args.products == 0 {
        return Err(Error::InvalidInput(
            "generate: --products must be at least 1".into(),
        ));
    }
    let genuine = Genuine::get();
    let chunks = plan::chunks(args.products);
    let window = threads * WINDOW_PER_THREAD + 1;

    let mut starts = vec![Ids::first(genuine, args.products)];
    ordered::run(
        chunks as usize,
        threads,
        window,
        |chunk| plan::plan(args.seed, args.products, chunk as u32).ids,
        |_, used| {
            starts.push(starts[starts.len() - 1] + used);
            Ok(())
        },
    )?;

    let images = Images::new(args.seed);
    let catalog = Catalog {
        seed: args.seed,
        products: args.products,
        clean: args.clean,
        variant: args.variant,
        genuine,
        images: &images,
        ends: starts[chunks as usize],
    };
    let headers = PerFile(FileKind::ALL.map(|kind| kind.header_line(args.variant)));
    let mut output = Output::create(&args.out, &headers)?;
    let bar = progress_bar(progress, args.products);
    ordered::run(
        chunks as usize,
        threads,
        window,
        |chunk| {
            let chunk = chunk as u32;
            let plan = plan::plan(args.seed, args.products, chunk);
            let rendered = render::chunk(&catalog, &plan, chunk, starts[chunk as usize]);
            (plan.products.len() as u64, rendered)
        },
        |_, (products, rendered)| {
            output.write(&rendered)?;
            bar.inc(products);
            Ok(())
        },
    )?;
    bar.finish_and_clear();
    Ok(GenerateReport {
        files: FILE_NAMES.into_iter().zip(output.rows.0).collect(),
        bytes: output.bytes.0.to_vec(),
        elapsed: started.elapsed(),
    })
}

fn progress_bar(progress: bool, products: u32) -> ProgressBar {
    if !progress || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(u64::from(products));
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} products, {elapsed} (eta {eta})")
    {
        bar.set_style(style);
    }
    bar
}

/// The six files being written, with what went into each.
struct Output {
    files: Vec<(PathBuf, File)>,
    rows: PerFile<u64>,
    bytes: PerFile<u64>,
}

impl Output {
    /// Creates (or truncates) the six files in `dir` and writes their headers.
    fn create(dir: &Path, headers: &PerFile<&str>) -> Result<Output> {
        std::fs::create_dir_all(dir).map_err(|source| Error::io("create", dir, source))?;
        let mut output = Output {
            files: Vec::with_capacity(FileKind::ALL.len()),
            rows: PerFile::default(),
            bytes: PerFile::default(),
        };
        for (kind, header) in headers.iter() {
            let path = dir.join(kind.file_name());
            let mut file =
                File::create(&path).map_err(|source| Error::io("create", &path, source))?;
            file.write_all(header.as_bytes())
                .map_err(|source| Error::io("write", &path, source))?;
            output.bytes[kind] = header.len() as u64;
            output.files.push((path, file));
        }
        Ok(output)
    }

    /// Appends a rendered chunk. Its buffers are megabytes each, so they go straight
    /// to the files without another buffer.
    fn write(&mut self, rendered: &render::Rendered) -> Result<()> {
        for (kind, (path, file)) in FileKind::ALL.into_iter().zip(&mut self.files) {
            file.write_all(&rendered.files[kind])
                .map_err(|source| Error::io("write", path, source))?;
            self.rows[kind] += rendered.rows[kind];
            self.bytes[kind] += rendered.files[kind].len() as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(dir: &Path, products: u32, clean: bool) -> Spec {
        Spec {
            products,
            seed: 9,
            out: dir.to_path_buf(),
            clean,
            variant: Variant::Compact,
        }
    }

    fn read_all(dir: &Path) -> Vec<Vec<u8>> {
        FILE_NAMES
            .iter()
            .map(|name| std::fs::read(dir.join(name)).unwrap())
            .collect()
    }

    #[test]
    fn output_does_not_depend_on_the_number_of_threads() {
        let one = tempfile::tempdir().unwrap();
        let three = tempfile::tempdir().unwrap();
        let products = plan::CHUNK_PRODUCTS * 3 + 17;
        write_catalog(&args(one.path(), products, false), 1, false).unwrap();
        write_catalog(&args(three.path(), products, false), 3, false).unwrap();
        assert!(read_all(one.path()) == read_all(three.path()));
    }

    #[test]
    fn the_report_counts_rows_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let report = write_catalog(&args(dir.path(), 1500, true), 2, false).unwrap();
        let files = read_all(dir.path());
        for (index, (name, rows)) in report.files.iter().enumerate() {
            assert_eq!(*name, FILE_NAMES[index]);
            assert_eq!(report.bytes[index], files[index].len() as u64);
            let lines = files[index].iter().filter(|&&byte| byte == b'\n').count() as u64;
            assert_eq!(*rows, lines, "{name}: a clean file has one line per row");
        }
        assert_eq!(report.files[0].1, 1500);
    }

    #[test]
    fn zero_products_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(write_catalog(&args(dir.path(), 0, false), 1, false).is_err());
    }
}
