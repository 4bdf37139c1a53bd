//! The failover benchmark's formation holder and driver (`bench/run failover`, and
//! `bench/cluster start --ha` / `bench/cluster failover`).
//!
//! - `failover up --dir DIR`: creates a pg_auto_failover formation on loopback (the
//!   library's [`atelier::db::ha::Formation`]: a monitor, a primary and its synchronous
//!   standby) and holds it until SIGTERM, taking commands on `DIR/control.sock`.
//! - `failover kill-primary|rejoin|settle|status --dir DIR`: those commands, from any
//!   process; each prints the holder's answers, one JSON object a line.
//! - `failover drive --dir DIR ...`: one measured run: storefront reads through nginx, a
//!   writer committing catalog changes, pollers timing each change until both instances
//!   serve it, the primary killed mid-run; then what was lost and what is stale. Writes
//!   one JSON object to `--out`.

mod control;
mod drive;
mod http;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "failover",
    about = "The failover benchmark's formation holder and driver"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a formation in DIR and hold it up until SIGTERM or SIGINT.
    Up {
        /// The holder's directory (the formation goes to DIR/pg; must not hold one).
        #[arg(long)]
        dir: PathBuf,
        /// The monitor's and the two nodes' ports; by default three free ones.
        #[arg(long, value_delimiter = ',', num_args = 3)]
        ports: Option<Vec<u16>>,
        /// The database created on the nodes.
        #[arg(long, default_value = "atelier")]
        dbname: String,
    },
    /// SIGKILL the primary's keeper and PostgreSQL, then wait for the monitor to promote
    /// the standby; prints both events and the engine's failover time.
    KillPrimary {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Bring every killed node back as a standby and wait until the formation settles.
    Rejoin {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Wait until one node is the primary and the other its standby.
    Settle {
        #[arg(long)]
        dir: PathBuf,
    },
    /// The nodes' states as the monitor has them.
    Status {
        #[arg(long)]
        dir: PathBuf,
    },
    /// One measured run across a kill of the primary.
    Drive(Box<drive::DriveArgs>),
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Up { dir, ports, dbname } => {
            let ports = ports.map(|p| [p[0], p[1], p[2]]);
            control::up(&dir, ports, &dbname).await
        }
        Command::KillPrimary { dir } => print_answers(&dir, "kill-primary").await,
        Command::Rejoin { dir } => print_answers(&dir, "rejoin").await,
        Command::Settle { dir } => print_answers(&dir, "settle").await,
        Command::Status { dir } => print_answers(&dir, "status").await,
        Command::Drive(args) => drive::run(*args).await,
    };
    if let Err(error) = outcome {
        eprintln!("failover: {error}");
        std::process::exit(1);
    }
}

async fn print_answers(dir: &std::path::Path, command: &str) -> Result<(), String> {
    control::command(dir, command, |value| println!("{value}")).await?;
    Ok(())
}
