//! The `atelier` command: parses the command line, sets up logging, and hands the work
//! to the library.

use std::process::ExitCode;

use atelier::config::{Cli, Command, DbCommand};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = cli.log_format;
    atelier::logging::init(log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the async runtime");
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Generate(args) => atelier::generate::run(&args.spec()),
            Command::Load(args) => atelier::load::run(&args.db.database(), &args.request()).await,
            Command::Materialize(args) => {
                atelier::materialize::run(&args.db.database(), args.task(), &args.settings()).await
            }
            Command::Serve(args) => {
                atelier::http::run(
                    args.listen,
                    &args.db.database(),
                    &args.settings(),
                    &args.materialize_settings(),
                )
                .await
            }
            Command::Db { command } => match command {
                DbCommand::Status(args) => atelier::db::status(&args.database()),
                DbCommand::Stop(args) => atelier::db::stop(&args.database()),
            },
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            atelier::logging::report_failure(log_format, &error);
            ExitCode::FAILURE
        }
    }
}
