//! The `atelier` command: parses the command line ([`cli`]), sets up logging, hands the
//! work to the library and prints what it returns: every command's result goes to
//! standard output, its logs to standard error.

mod cli;

use std::process::ExitCode;

use cli::{Cli, Command, DbCommand, logging};

/// mimalloc rather than glibc's malloc: a cache miss allocates and frees its future, its
/// row, its body and the cache's entry, and mimalloc's per-thread free lists make that a
/// tenth cheaper in instructions (bench/README.md). The library leaves the choice to
/// its binaries.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse_args();
    let log_format = cli.log_format;
    logging::init(log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the async runtime");
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(error) => {
            logging::report_failure(log_format, &error);
            ExitCode::FAILURE
        }
    }
}

/// Runs `command`; its exit status (only `db status` has one other than success).
async fn run(command: Command) -> atelier::Result<ExitCode> {
    match command {
        Command::Generate(args) => print!("{}", atelier::generate::run(&args.spec())?),
        Command::Load(args) => {
            print!(
                "{}",
                atelier::load::run(&args.db.database(), &args.request()).await?
            );
        }
        Command::Materialize(args) => {
            let finished =
                atelier::materialize::run(&args.db.database(), args.task(), &args.settings())
                    .await?;
            if let Some(finished) = finished {
                let report = &finished.report;
                println!(
                    "materialized {} documents ({} removed) in {:.1?}",
                    report.documents, report.removed, finished.elapsed
                );
            }
        }
        Command::Serve(args) => {
            atelier::http::run(
                args.listen,
                &args.db.database(),
                &args.settings(),
                &args.materialize_settings(),
            )
            .await?;
        }
        Command::Db { command } => match command {
            DbCommand::Status(args) => {
                let state = atelier::db::status(&args.database())?;
                println!("{state}");
                return Ok(ExitCode::from(state.exit_status()));
            }
            DbCommand::Stop(args) => println!("{}", atelier::db::stop(&args.database())?),
        },
    }
    Ok(ExitCode::SUCCESS)
}
