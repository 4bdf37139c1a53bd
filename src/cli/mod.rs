//! The `atelier` binary's command line: every subcommand and setting, each with a flag,
//! an environment variable where it makes sense, a safe default and a doc line (shown
//! by `--help`). The library takes plain settings types ([`Database`],
//! [`http::Settings`], [`generate::Spec`], …) whose defaults are the flags' defaults;
//! the arguments here convert to them, so the library never sees clap.

pub mod logging;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Arg, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use atelier::catalog::Variant;
use atelier::db::Database;
use atelier::{generate, http, load, materialize};

pub use logging::LogFormat;

/// Atelier products: load the catalog CSV files, materialize JSON documents, serve them.
///
/// Every command writes its result to standard output and its logs to standard error.
#[derive(Debug, Parser)]
#[command(name = "atelier", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// How log lines on standard error are written: text (coloured only on a terminal)
    /// or json (one object per line). Accepted after any command too; `ATELIER_LOG`
    /// filters the lines (default `info,tokio_postgres=warn`).
    #[arg(long, global = true, env = "ATELIER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl Cli {
    /// Parses the process's arguments, exiting with clap's message on an error.
    /// `--log-format` is accepted after every command but listed only in
    /// `atelier --help`, so that it does not repeat in every command's help.
    pub fn parse_args() -> Cli {
        let mut command = Cli::command();
        let log_format = command
            .get_arguments()
            .find(|arg| arg.get_id() == "log_format")
            .cloned()
            .expect("the log format is an argument")
            .hide(true);
        command = hide_in_subcommands(command, &log_format);
        let mut matches = command.get_matches();
        Cli::from_arg_matches_mut(&mut matches).unwrap_or_else(|error| error.exit())
    }
}

/// Gives every subcommand, at any depth, its own hidden copy of the global `arg`: clap
/// propagates a global argument only to subcommands that lack it, so the copy is the
/// one parsed there, and its value still reaches the top level.
fn hide_in_subcommands(command: clap::Command, arg: &Arg) -> clap::Command {
    command.mut_subcommands(|subcommand| hide_in_subcommands(subcommand.arg(arg.clone()), arg))
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a synthetic catalog (the six CSV files) with the real data's shape and dirt.
    Generate(GenerateArgs),
    /// Replace the catalog with the six CSV files of a directory.
    #[command(mut_arg("data_dir", |arg| arg.help(DATA_DIR_STARTED)))]
    Load(LoadArgs),
    /// Rebuild the stored response documents from the catalog tables.
    #[command(mut_arg("data_dir", |arg| arg.help(DATA_DIR_STARTED)))]
    Materialize(MaterializeArgs),
    /// Serve the products API over HTTP.
    #[command(mut_arg("data_dir", |arg| arg.help(
        "Directory of the embedded PostgreSQL cluster, used when --database-url is unset: \
         created and started if needed and left running; a database without a catalog \
         first gets a generated demo catalog of 10,000 products. It is served as the \
         read-only role atelier_reader"
    )))]
    Serve(ServeArgs),
    /// Manage the embedded PostgreSQL cluster.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
}

/// Which PostgreSQL to use. Each command says in the help of `--data-dir` what it does
/// with the embedded cluster, since `db status` only looks and `db stop` stops it.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL connection URL (e.g. postgres://user@host/db). When unset, the embedded
    /// cluster in --data-dir is used.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Directory of the embedded PostgreSQL cluster, used when --database-url is unset.
    #[arg(long, env = "ATELIER_DATA_DIR", default_value = ".atelier")]
    pub data_dir: PathBuf,
}

impl DatabaseArgs {
    /// The database these arguments choose.
    pub fn database(&self) -> Database {
        match &self.database_url {
            Some(url) => Database::Url(url.clone()),
            None => Database::Embedded(self.data_dir.clone()),
        }
    }
}

/// `--data-dir` of the commands that work on the catalog database.
const DATA_DIR_STARTED: &str = "Directory of the embedded PostgreSQL cluster, used when \
    --database-url is unset: created and started if needed, and left running \
    (`atelier db stop` stops it)";

/// Arguments of `atelier generate`.
#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    /// Number of products to generate, a positive integer (1000011 is the full
    /// dataset's size).
    #[arg(long, allow_negative_numbers = true, value_parser = positive_count)]
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
    #[arg(long, value_enum, default_value_t = Layout::Compact)]
    pub variant: Layout,
}

/// The field layouts `generate` writes ([`Variant`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Layout {
    /// `,` between fields, camelCase `productId`/`styleId` headers (sara-2023).
    Compact,
    /// `, ` between fields (photos.csv stays compact), snake_case headers (beck-2021).
    Spaced,
}

impl From<Layout> for Variant {
    fn from(layout: Layout) -> Variant {
        match layout {
            Layout::Compact => Variant::Compact,
            Layout::Spaced => Variant::Spaced,
        }
    }
}

impl GenerateArgs {
    /// The catalog these arguments describe.
    pub fn spec(&self) -> generate::Spec {
        generate::Spec {
            products: self.products,
            seed: self.seed,
            out: self.out.clone(),
            clean: self.clean,
            variant: self.variant.into(),
        }
    }
}

/// `--products` of generate: a whole number of at least 1, said so for `0` or `-5`.
fn positive_count(text: &str) -> Result<u32, String> {
    match text.trim().parse::<i64>() {
        Ok(count) if count >= 1 => u32::try_from(count)
            .map_err(|_| format!("the number must be at most {}, got {count}", u32::MAX)),
        Ok(count) => Err(format!(
            "the number must be positive (1 or more), got {count}"
        )),
        Err(_) => Err(format!(
            "expected a positive whole number such as 10000, got {text:?}"
        )),
    }
}

/// Arguments of `atelier load`.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Directory holding product.csv, styles.csv, features.csv, photos.csv, skus.csv, related.csv.
    pub dir: PathBuf,
    /// Where to write the rejects report, a CSV file with the columns file, line,
    /// outcome (rejected or repaired), reason, raw. Default: rejects.csv in DIR, beside
    /// the files it describes.
    #[arg(long)]
    pub rejects: Option<PathBuf>,
    /// Apply DIR as changes to the live catalog instead of replacing it: any of the six
    /// files (rows inserted or replacing the row of the same id) and `deleted.csv`
    /// (a `product_id` header, then the ids of the products to remove), in one
    /// transaction.
    #[arg(long)]
    pub changes: bool,
    #[command(flatten)]
    pub db: DatabaseArgs,
}

/// Arguments of `atelier materialize`.
#[derive(Debug, Clone, Args)]
pub struct MaterializeArgs {
    /// Rebuild only these product ids (comma-separated); default: the products added,
    /// changed or removed since the documents were last built. The documents of listed
    /// products no longer in the catalog are removed; ids unknown to both the catalog
    /// and the documents are named, and it fails when all are.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(i32).range(1..), conflicts_with_all = ["all", "follow"])]
    pub products: Option<Vec<i32>>,
    /// Rebuild every document (a new table, swapped in atomically).
    #[arg(long, conflicts_with = "follow")]
    pub all: bool,
    /// Run until stopped, rebuilding the documents of changed products in small batches
    /// as soon as their changes commit, and notifying servers after each batch.
    #[arg(long)]
    pub follow: bool,
    /// The `campus` value written into every product document.
    #[arg(long, env = "ATELIER_CAMPUS", default_value = materialize::DEFAULT_CAMPUS)]
    pub campus: String,
    /// Database connections building a full rebuild's parts at once (default: the
    /// number of CPU cores).
    #[arg(long, env = "ATELIER_MATERIALIZE_JOBS", default_value_t = materialize::Settings::default().jobs)]
    pub jobs: usize,
    #[command(flatten)]
    pub db: DatabaseArgs,
}

impl LoadArgs {
    /// What these arguments ask to load.
    pub fn request(&self) -> load::Request {
        load::Request {
            dir: self.dir.clone(),
            rejects: self.rejects.clone(),
            changes: self.changes,
        }
    }
}

impl MaterializeArgs {
    /// What these arguments ask materialize to do.
    pub fn task(&self) -> materialize::Task {
        match &self.products {
            _ if self.follow => materialize::Task::Follow,
            Some(ids) => materialize::Task::Rebuild(materialize::Plan::Products(ids.clone())),
            None if self.all => materialize::Task::Rebuild(materialize::Plan::Everything),
            None => materialize::Task::Rebuild(materialize::Plan::Queue),
        }
    }

    /// How these arguments ask documents to be built.
    pub fn settings(&self) -> materialize::Settings {
        materialize::Settings {
            campus: self.campus.clone(),
            jobs: self.jobs,
            ..materialize::Settings::default()
        }
    }
}

/// Arguments of `atelier serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on: IP:PORT (0.0.0.0:3000 for every interface, [::1]:3000),
    /// or a port alone (3000 or :3000), which listens on 127.0.0.1 only, the safe
    /// default: other machines cannot reach it.
    #[arg(long, env = "ATELIER_LISTEN", default_value = "127.0.0.1:3000", value_parser = listen_address)]
    pub listen: SocketAddr,
    /// There is no --port: the port is part of --listen. Kept, hidden, to say so.
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "PORT", value_parser = no_port_flag)]
    pub port: Option<String>,
    /// Memory the document cache may hold, in bytes (bodies, validators and keys).
    #[arg(long, env = "ATELIER_CACHE_BYTES", default_value_t = serve_defaults().cache_bytes)]
    pub cache_bytes: u64,
    /// Seconds a cached document is kept at most; a backstop behind NOTIFY invalidation.
    #[arg(long, env = "ATELIER_CACHE_TTL", default_value_t = serve_defaults().cache_ttl.as_secs())]
    pub cache_ttl: u64,
    /// Seconds an unknown product id is remembered as unknown.
    #[arg(long, env = "ATELIER_NOT_FOUND_TTL", default_value_t = serve_defaults().not_found_ttl.as_secs())]
    pub not_found_ttl: u64,
    /// `Cache-Control: max-age` sent with documents, in seconds: how long a browser may
    /// reuse one without asking. 0 makes it revalidate each time (a 304 without a body
    /// when nothing changed), so a change shows at the next load.
    #[arg(long, env = "ATELIER_MAX_AGE", default_value_t = serve_defaults().max_age)]
    pub max_age: u32,
    /// `Cache-Control: s-maxage` sent with documents, in seconds: how long a shared cache
    /// (nginx, a CDN) may serve one without asking. `none` sends none (shared caches
    /// then keep `--max-age`).
    #[arg(long, env = "ATELIER_SHARED_MAX_AGE", default_value = "1", value_parser = optional_seconds)]
    // Spelled out so that clap takes the whole `Option` from the parser, not a `u32`.
    pub shared_max_age: std::option::Option<u32>,
    /// Origins whose pages may read the API from a browser, separated by commas
    /// (`https://shop.example,https://m.shop.example`), or `*` for every origin: the
    /// default, since the catalog is public, read-only, and reads carry no credentials.
    #[arg(
        long,
        env = "ATELIER_CORS_ORIGINS",
        default_value = "*",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,
    /// Content coding offered beside the stored bytes: `gzip` (made once per document, when
    /// a client that takes gzip first asks for it) or `off` (a proxy in front compresses).
    #[arg(long, env = "ATELIER_COMPRESSION", value_enum, default_value_t = Compression::Gzip)]
    pub compression: Compression,
    /// What to do about changes announced while the LISTEN connection was down (a
    /// dropped connection, a failover): `catch-up` replays them from the notice log
    /// (the whole cache is dropped only after an outage longer than the log keeps, an
    /// hour); `drop` drops the whole cache at every reconnection.
    #[arg(long, env = "ATELIER_MISSED_CHANGES", value_enum, default_value_t = MissedChanges::CatchUp)]
    pub missed_changes: MissedChanges,
    /// Database connections kept open. Each carries many concurrent reads, pipelined, so
    /// a few per database core are enough; reads of documents that arrive together go out
    /// as one statement, at most one such statement per two connections at a time.
    #[arg(long, env = "ATELIER_POOL_SIZE", default_value_t = serve_defaults().pool_size)]
    pub pool_size: u32,
    /// Milliseconds a request waits for a pooled connection (or to open one) before 503.
    #[arg(long, env = "ATELIER_POOL_TIMEOUT_MS", default_value_t = millis(serve_defaults().pool_timeout))]
    pub pool_timeout_ms: u64,
    /// Milliseconds a database read may take in all, connection wait included, before 503.
    #[arg(long, env = "ATELIER_QUERY_TIMEOUT_MS", default_value_t = millis(serve_defaults().query_timeout))]
    pub query_timeout_ms: u64,
    /// Open client connections at most; further clients wait in the listen backlog.
    #[arg(long, env = "ATELIER_MAX_CONNECTIONS", default_value_t = serve_defaults().max_connections)]
    pub max_connections: usize,
    /// Milliseconds a client has to send a request's headers; idle keep-alive
    /// connections are closed after it too (both within a quarter more).
    #[arg(long, env = "ATELIER_HEADER_TIMEOUT_MS", default_value_t = millis(serve_defaults().header_timeout))]
    pub header_timeout_ms: u64,
    /// Log one line per request (method, path, status, duration in µs, body bytes) at
    /// info level, in the chosen log format; off, it costs nothing.
    #[arg(long, env = "ATELIER_ACCESS_LOG")]
    pub access_log: bool,
    /// Milliseconds in-flight requests get to finish on SIGTERM/SIGINT.
    #[arg(long, env = "ATELIER_DRAIN_TIMEOUT_MS", default_value_t = millis(serve_defaults().drain_timeout))]
    pub drain_timeout_ms: u64,
    /// The `campus` value of the documents the embedded default rebuilds as it follows
    /// catalog changes (the same setting as materialize's).
    #[arg(long, env = "ATELIER_CAMPUS", default_value = materialize::DEFAULT_CAMPUS)]
    pub campus: String,
    /// PostgreSQL URL of the primary, for the LISTEN connection and its WAL position,
    /// when --database-url names streaming replicas. Default: the --database-url hosts
    /// that accept writes.
    #[arg(long, env = "ATELIER_PRIMARY_URL")]
    pub primary_url: Option<String>,
    #[command(flatten)]
    pub db: DatabaseArgs,
}

/// `--listen`: a socket address, or a port alone (`3001`, `:3001`) on the loopback
/// interface, so that naming only a port never opens the service to the network.
fn listen_address(text: &str) -> Result<SocketAddr, String> {
    let port = text.strip_prefix(':').unwrap_or(text);
    if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
        return port
            .parse::<u16>()
            .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
            .map_err(|_| format!("the port must be at most 65535, got {port}"));
    }
    text.parse().map_err(|_| {
        format!(
            "expected IP:PORT or a port alone, e.g. 127.0.0.1:3000, 0.0.0.0:3000, [::1]:3000, \
             3000 or :3000 (a port alone listens on 127.0.0.1), got {text:?}"
        )
    })
}

/// `--port`, which does not exist: it points to `--listen`.
fn no_port_flag(text: &str) -> Result<String, String> {
    Err(format!(
        "there is no --port option: use --listen {text} (127.0.0.1:{text}) or \
         --listen 0.0.0.0:{text} for every interface"
    ))
}

/// The server's defaults, which the flags show and use.
fn serve_defaults() -> http::Settings {
    http::Settings::default()
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis() as u64
}

impl ServeArgs {
    /// The server settings these arguments give.
    pub fn settings(&self) -> http::Settings {
        http::Settings {
            cache_bytes: self.cache_bytes,
            cache_ttl: Duration::from_secs(self.cache_ttl),
            not_found_ttl: Duration::from_secs(self.not_found_ttl),
            max_age: self.max_age,
            shared_max_age: self.shared_max_age,
            cors_origins: self.cors_origins.clone(),
            pool_size: self.pool_size,
            pool_timeout: Duration::from_millis(self.pool_timeout_ms),
            query_timeout: Duration::from_millis(self.query_timeout_ms),
            primary_url: self.primary_url.clone(),
            max_connections: self.max_connections,
            header_timeout: Duration::from_millis(self.header_timeout_ms),
            drain_timeout: Duration::from_millis(self.drain_timeout_ms),
            compress: self.compression == Compression::Gzip,
            access_log: self.access_log,
            missed_changes: match self.missed_changes {
                MissedChanges::CatchUp => http::catch_up::MissedChanges::CatchUp,
                MissedChanges::Drop => http::catch_up::MissedChanges::Drop,
            },
        }
    }

    /// How the embedded default rebuilds the documents of the changes it follows.
    pub fn materialize_settings(&self) -> materialize::Settings {
        materialize::Settings {
            campus: self.campus.clone(),
            ..materialize::Settings::default()
        }
    }
}

/// What `atelier serve` does about changes announced while it was not listening.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MissedChanges {
    CatchUp,
    Drop,
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
    /// Say whether the embedded cluster exists and runs, and its connection URL. Exits
    /// with status 0 when it runs (or DATABASE_URL is set), 3 when it is stopped and 4
    /// when there is none, as `pg_ctl status` does, so scripts can test it.
    #[command(mut_arg("data_dir", |arg| arg.help(
        "Directory of the embedded PostgreSQL cluster to report on; it is neither created \
         nor started"
    )))]
    Status(DatabaseArgs),
    /// Stop the embedded cluster, if it runs.
    #[command(mut_arg("data_dir", |arg| arg.help(
        "Directory of the embedded PostgreSQL cluster to stop"
    )))]
    #[command(mut_arg("database_url", |arg| arg.help(
        "When set, no embedded cluster is in use and stop refuses to run"
    )))]
    Stop(DatabaseArgs),
}

/// A number of seconds, or `none`.
fn optional_seconds(value: &str) -> Result<Option<u32>, String> {
    match value {
        "none" => Ok(None),
        seconds => seconds
            .parse()
            .map(Some)
            .map_err(|_| format!("expected a number of seconds or `none`, got {seconds:?}")),
    }
}
