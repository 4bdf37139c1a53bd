//! The `atelier` command: parses the command line, sets up logging, and hands the work
//! to the library.

use std::process::ExitCode;

use atelier::config::{Cli, Command, DbCommand};

fn main() -> ExitCode {
    let cli = Cli::parse_args();
    let log_format = cli.log_format;
    atelier::logging::init(log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the async runtime");
    // Each command's exit status; only `db status` has one other than success.
    let outcome = runtime.block_on(async {
        let done = |outcome: atelier::Result<()>| outcome.map(|()| ExitCode::SUCCESS);
        match cli.command {
            Command::Generate(args) => done(atelier::generate::run(&args.spec())),
            Command::Load(args) => {
                done(atelier::load::run(&args.db.database(), &args.request()).await)
            }
            Command::Materialize(args) => done(
                atelier::materialize::run(&args.db.database(), args.task(), &args.settings()).await,
            ),
            Command::Serve(args) => done(
                atelier::http::run(
                    args.listen,
                    &args.db.database(),
                    &args.settings(),
                    &args.materialize_settings(),
                )
                .await,
            ),
            Command::Db { command } => match command {
                DbCommand::Status(args) => atelier::db::status(&args.database())
                    .map(|state| ExitCode::from(state.exit_status())),
                DbCommand::Stop(args) => done(atelier::db::stop(&args.database())),
            },
        }
    });
    match outcome {
        Ok(code) => code,
        Err(error) => {
            atelier::logging::report_failure(log_format, &error);
            ExitCode::FAILURE
        }
    }
}
