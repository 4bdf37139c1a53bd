//! The command line: every subcommand and setting, each with a flag, an environment
//! variable where it makes sense, a safe default and a doc line (shown by `--help`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Atelier products: load the catalog CSV files, materialize JSON documents, serve them.
#[derive(Debug, Parser)]
#[command(name = "atelier", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a synthetic catalog (the six CSV files) with the real data's shape and dirt.
    Generate(GenerateArgs),
    /// Replace the catalog with the six CSV files of a directory.
    Load(LoadArgs),
    /// Rebuild the stored response documents from the catalog tables.
    Materialize(MaterializeArgs),
    /// Serve the products API over HTTP.
    Serve(ServeArgs),
    /// Manage the embedded PostgreSQL cluster.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
}

/// Which PostgreSQL to use.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL connection URL (e.g. postgres://user@host/db). When unset, an embedded
    /// cluster in --data-dir is created and started as needed.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Directory holding the embedded PostgreSQL cluster.
    #[arg(long, env = "ATELIER_DATA_DIR", default_value = ".atelier")]
    pub data_dir: PathBuf,
}

/// The two field layouts found in the real files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Variant {
    /// `,` between fields, camelCase `productId`/`styleId` headers.
    Compact,
    /// `, ` between fields (photos.csv stays compact), snake_case headers.
    Spaced,
}

/// Arguments of `atelier generate`.
#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    /// Number of products to generate (1000011 is the full dataset's size).
    #[arg(long)]
    pub products: u32,
    /// Seed: the same seed and arguments give byte-identical files.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Directory to write the six CSV files into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Write no dirt at all (no broken quotes, no orphans, no duplicates).
    #[arg(long)]
    pub clean: bool,
    /// Field layout of the files.
    #[arg(long, value_enum, default_value_t = Variant::Compact)]
    pub variant: Variant,
}

/// Arguments of `atelier load`.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Directory holding product.csv, styles.csv, features.csv, photos.csv, skus.csv, related.csv.
    pub dir: PathBuf,
    /// Where to write the rejects report (CSV: file, line, reason, raw). Default:
    /// `rejects.csv` in the data directory.
    #[arg(long)]
    pub rejects: Option<PathBuf>,
    #[command(flatten)]
    pub db: DatabaseArgs,
}

/// Arguments of `atelier materialize`.
#[derive(Debug, Clone, Args)]
pub struct MaterializeArgs {
    /// Rebuild only these product ids (comma-separated); default: every product.
    #[arg(long, value_delimiter = ',')]
    pub products: Option<Vec<i32>>,
    /// The `campus` value written into every product document.
    #[arg(long, env = "ATELIER_CAMPUS", default_value = crate::materialize::DEFAULT_CAMPUS)]
    pub campus: String,
    /// Database connections building a full rebuild's parts at once (default: the
    /// number of CPU cores).
    #[arg(long, env = "ATELIER_MATERIALIZE_JOBS", default_value_t = crate::materialize::Settings::default().jobs)]
    pub jobs: usize,
    #[command(flatten)]
    pub db: DatabaseArgs,
}

/// Arguments of `atelier serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "ATELIER_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: std::net::SocketAddr,
    /// Memory the document cache may hold, in bytes (bodies, validators and keys).
    #[arg(long, env = "ATELIER_CACHE_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub cache_bytes: u64,
    /// Seconds a cached document is kept at most; a backstop behind NOTIFY invalidation.
    #[arg(long, env = "ATELIER_CACHE_TTL", default_value_t = 300)]
    pub cache_ttl: u64,
    /// Seconds an unknown product id is remembered as unknown.
    #[arg(long, env = "ATELIER_NOT_FOUND_TTL", default_value_t = 5)]
    pub not_found_ttl: u64,
    /// `Cache-Control: max-age` sent with documents, in seconds.
    #[arg(long, env = "ATELIER_MAX_AGE", default_value_t = 60)]
    pub max_age: u32,
    /// Content coding offered beside the stored bytes: `gzip` (made once per document as
    /// it enters the cache) or `off` (a proxy in front compresses).
    #[arg(long, env = "ATELIER_COMPRESSION", value_enum, default_value_t = Compression::Gzip)]
    pub compression: Compression,
    /// Database connections kept open. Each carries many concurrent reads, pipelined, so
    /// a few per database core are enough.
    #[arg(long, env = "ATELIER_POOL_SIZE", default_value_t = 4)]
    pub pool_size: u32,
    /// Milliseconds a request waits for a pooled connection (or to open one) before 503.
    #[arg(long, env = "ATELIER_POOL_TIMEOUT_MS", default_value_t = 1000)]
    pub pool_timeout_ms: u64,
    /// Milliseconds a database read may take in all, connection wait included, before 503.
    #[arg(long, env = "ATELIER_QUERY_TIMEOUT_MS", default_value_t = 3000)]
    pub query_timeout_ms: u64,
    /// Open client connections at most; further clients wait in the listen backlog.
    #[arg(long, env = "ATELIER_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// Milliseconds a client has to send a request's headers; idle keep-alive
    /// connections are closed after it too.
    #[arg(long, env = "ATELIER_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,
    /// Milliseconds in-flight requests get to finish on SIGTERM/SIGINT.
    #[arg(long, env = "ATELIER_DRAIN_TIMEOUT_MS", default_value_t = 10_000)]
    pub drain_timeout_ms: u64,
    /// PostgreSQL URL of the primary, for the LISTEN connection and its WAL position,
    /// when --database-url names streaming replicas. Default: the --database-url hosts
    /// that accept writes.
    #[arg(long, env = "ATELIER_PRIMARY_URL")]
    pub primary_url: Option<String>,
    #[command(flatten)]
    pub db: DatabaseArgs,
}

/// The content codings `atelier serve` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    Gzip,
    Off,
}

/// `atelier db` subcommands.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Say whether the embedded cluster exists and runs, and its connection URL.
    Status(DatabaseArgs),
    /// Stop the embedded cluster.
    Stop(DatabaseArgs),
}
