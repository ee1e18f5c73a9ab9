//! The `fastpath` binary: parse the command line, run it, turn errors into exit codes
//! (2 for usage errors, 1 for everything else).

use std::process::ExitCode;

use clap::{error::ErrorKind, Parser as _};
use fastpath::{
    cli::{usage_error_line, Cli, Command, RoutesArgs, StatsArgs},
    daemon, show, stats, tables, Error,
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
        Command::Routes(args) => {
            init_logging(log::LevelFilter::Warn);
            print_routes(&args)
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
        .map_err(|source| Error::Netlink { what: "cannot start the async runtime", source })?;
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

fn print_routes(args: &RoutesArgs) -> Result<(), Error> {
    let trie = tables::pinned_routes(&args.bpffs.dir)?;
    let rows: Vec<show::RouteRow> = tables::route_entries(&trie)?
        .iter()
        .map(|(prefix, value)| show::row(*prefix, value, interface_name))
        .collect();
    if args.json {
        println!("{}", show::json(&rows));
    } else {
        print!("{}", show::table(&rows));
    }
    Ok(())
}

/// The name of an interface in this process's network namespace.
fn interface_name(index: u32) -> Option<String> {
    let mut buf = [0u8; libc::IF_NAMESIZE];
    // SAFETY: the buffer is IF_NAMESIZE bytes, as if_indextoname requires.
    let name = unsafe { libc::if_indextoname(index, buf.as_mut_ptr().cast()) };
    if name.is_null() {
        return None;
    }
    let len = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..len]).into_owned())
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
