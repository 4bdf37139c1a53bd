//! The rejects report: a CSV file (`file,line,outcome,reason,raw`) with one line per
//! rejected or repaired record, so that nothing a load drops or changes goes unsaid.
//! Each catalog file's lines go to a part file of their own while the files are read in
//! parallel; [`assemble`] joins the parts in catalog order.

use std::fs::File;
use std::io::{self, BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::FileCounts;
use crate::catalog::reader::RecordReader;
use crate::{Error, Result};

/// The report's header line.
const HEADER: [&str; 5] = ["file", "line", "outcome", "reason", "raw"];

/// What happened to a reported record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Not loaded.
    Rejected,
    /// Loaded after a repair.
    Repaired,
}

/// The report lines of one catalog file.
pub struct Part {
    file: &'static str,
    path: PathBuf,
    writer: csv::Writer<BufWriter<File>>,
}

impl Part {
    /// A part of `report` for the lines of catalog file `file`.
    pub fn create(report: &Path, file: &'static str) -> Result<Part> {
        let path = part_path(report, file);
        let out = File::create(&path).map_err(|e| Error::io("create", &path, e))?;
        let writer = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(BufWriter::new(out));
        Ok(Part { file, path, writer })
    }

    /// Counts in `counts` how checking the current record of `reader` went (`checked`,
    /// with the `repairs` it made) and reports the record if it was rejected or
    /// repaired. Returns the product the row belongs to when it was loaded.
    pub fn tally<R: BufRead>(
        &mut self,
        checked: std::result::Result<u32, String>,
        reader: &RecordReader<R>,
        repairs: &[String],
        counts: &mut FileCounts,
    ) -> Result<Option<u32>> {
        match checked {
            Ok(owner) => {
                counts.loaded += 1;
                if !repairs.is_empty() {
                    counts.repaired += 1;
                    let reason = repairs.join("; ");
                    self.write(reader.line(), Outcome::Repaired, &reason, reader.raw())?;
                }
                Ok(Some(owner))
            }
            Err(reason) => {
                counts.rejected += 1;
                self.write(reader.line(), Outcome::Rejected, &reason, reader.raw())?;
                Ok(None)
            }
        }
    }

    /// Reports the record starting at physical line `line`.
    pub fn write(&mut self, line: u64, outcome: Outcome, reason: &str, raw: &[u8]) -> Result<()> {
        let outcome = match outcome {
            Outcome::Rejected => "rejected",
            Outcome::Repaired => "repaired",
        };
        let line = line.to_string();
        let raw = String::from_utf8_lossy(raw);
        self.writer
            .write_record([self.file, line.as_str(), outcome, reason, &raw])
            .map_err(|e| Error::io("write", &self.path, e.into()))
    }

    /// Flushes the part to disk; returns its path.
    pub fn finish(mut self) -> Result<PathBuf> {
        self.writer
            .flush()
            .map_err(|e| Error::io("write", &self.path, e))?;
        Ok(self.path)
    }
}

/// Writes the report at `report`: the header, then each part in the order given. The
/// parts are removed.
pub fn assemble(report: &Path, parts: &[PathBuf]) -> Result<()> {
    let out = File::create(report).map_err(|e| Error::io("create", report, e))?;
    let mut writer = csv::Writer::from_writer(BufWriter::new(out));
    writer
        .write_record(HEADER)
        .map_err(|e| Error::io("write", report, e.into()))?;
    let mut out = writer
        .into_inner()
        .map_err(|e| Error::io("write", report, e.into_error()))?;
    for part in parts {
        let mut input = File::open(part).map_err(|e| Error::io("open", part, e))?;
        io::copy(&mut input, &mut out).map_err(|e| Error::io("copy", part, e))?;
    }
    out.flush().map_err(|e| Error::io("write", report, e))?;
    remove_parts(parts);
    Ok(())
}

/// Removes part files, ignoring the ones already gone.
pub fn remove_parts(parts: &[PathBuf]) {
    for part in parts {
        let _ = std::fs::remove_file(part);
    }
}

/// Where the part of `report` for catalog file `file` is written.
pub fn part_path(report: &Path, file: &str) -> PathBuf {
    let mut name = report.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{file}.part"));
    report.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_join_under_one_header_with_raw_text_quoted() {
        let dir = std::env::temp_dir().join(format!("atelier-rejects-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let report = dir.join("rejects.csv");
        let mut photos = Part::create(&report, "photos.csv").unwrap();
        photos
            .write(
                49,
                Outcome::Repaired,
                "closing quote missing",
                b"48,12,\"a\",\"b",
            )
            .unwrap();
        let mut product = Part::create(&report, "product.csv").unwrap();
        product
            .write(3, Outcome::Rejected, "duplicate id 1", b"1,\"x\ny\"")
            .unwrap();
        let parts = [product.finish().unwrap(), photos.finish().unwrap()];
        assemble(&report, &parts).unwrap();
        let text = std::fs::read_to_string(&report).unwrap();
        assert_eq!(
            text,
            "file,line,outcome,reason,raw\n\
             product.csv,3,rejected,duplicate id 1,\"1,\"\"x\ny\"\"\"\n\
             photos.csv,49,repaired,closing quote missing,\"48,12,\"\"a\"\",\"\"b\"\n"
        );
        assert!(parts.iter().all(|part| !part.exists()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
