//! The `fastpath` binary: parse the command line, run it, turn errors into exit codes
//! (2 for usage errors, 1 for everything else).

use std::process::ExitCode;

use clap::{error::ErrorKind, Parser as _};
use fastpath::{
    cli::{usage_error_line, Cli, Command, StatsArgs},
    daemon, stats, Error,
};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{}", usage_error_line(&e.render().to_string()));
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Run(args) => {
            init_logging(args.log_level);
            run_daemon(args)
        }
        Command::Stats(args) => {
            init_logging(log::LevelFilter::Warn);
            print_stats(&args)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.chain());
            ExitCode::from(if e.is_usage() { 2 } else { 1 })
        }
    }
}

fn run_daemon(args: fastpath::cli::RunArgs) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Netlink {
            what: "cannot start the async runtime",
            source,
        })?;
    runtime.block_on(daemon::run(args))
}

fn print_stats(args: &StatsArgs) -> Result<(), Error> {
    let totals = stats::read_pinned(&args.bpffs.dir)?;
    if args.json {
        println!("{}", stats::format_json(&totals));
    } else {
        print!("{}", stats::format_table(&totals));
    }
    Ok(())
}

/// `--log-level` sets the default; RUST_LOG, when set, refines or overrides it. aya's own debug
/// output (relocations, feature probes) is only shown when RUST_LOG asks for it.
fn init_logging(level: log::LevelFilter) {
    let library_level = level.min(log::LevelFilter::Info);
    env_logger::Builder::new()
        .filter_level(level)
        .filter_module("aya", library_level)
        .filter_module("aya_obj", library_level)
        .parse_env("RUST_LOG")
        .format_timestamp_millis()
        .init();
}
