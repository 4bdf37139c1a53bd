//! The `atelier` binary's log output, for every command: human-readable text, coloured only on a terminal,
//! or one JSON object per line for log collectors, filtered by `ATELIER_LOG`.

use std::io::IsTerminal;

use clap::ValueEnum;

/// What is logged when `ATELIER_LOG` is unset: the driver's own notices are noise.
const DEFAULT_FILTER: &str = "info,tokio_postgres=warn";

/// How log lines are written to standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `time level target: message key=value`, coloured when standard error is a terminal.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, and `fields` holding
    /// `message` and the event's values.
    Json,
}

/// Installs the process's logger, writing to standard error.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ATELIER_LOG")
        .unwrap_or_else(|_| DEFAULT_FILTER.into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(colour()).init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Colour escapes help a person at a terminal and corrupt a file or a pipe; `NO_COLOR`
/// (no-color.org) turns them off even on a terminal.
fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Says why a command failed, as its last line on standard error: plain `error: …` for
/// a person, or one more JSON object, so that a collector reading JSON lines reads it too.
pub fn report_failure(format: LogFormat, error: &atelier::Error) {
    match format {
        LogFormat::Text => eprintln!("error: {error}"),
        LogFormat::Json => tracing::error!("{error}"),
    }
}
