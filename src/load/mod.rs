//! `atelier load`: the six CSV files of a directory become the new catalog.

use std::path::Path;

use tokio_postgres::Client;

use crate::Result;
use crate::config::LoadArgs;

/// Counts for one file of a load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileCounts {
    pub file: &'static str,
    pub read: u64,
    pub loaded: u64,
    pub repaired: u64,
    pub rejected: u64,
}

/// What a load did, file by file, and where its rejects report is.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub files: Vec<FileCounts>,
}

/// Replaces the catalog tables with the six files of `dir`, writing rejected and
/// repaired rows to `rejects`. `progress` shows a bar on a terminal.
pub async fn load_catalog(
    _client: &mut Client,
    _dir: &Path,
    _rejects: &Path,
    _progress: bool,
) -> Result<LoadReport> {
    Err(crate::Error::InvalidInput("load: not built yet".into()))
}

/// `atelier load`.
pub async fn run(_args: &LoadArgs) -> Result<()> {
    Err(crate::Error::InvalidInput("load: not built yet".into()))
}
