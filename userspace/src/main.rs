//! The `fastpath` binary: parse the command line, run it, turn errors into exit codes
//! (2 for usage errors, 1 for everything else, including "no daemon is running").

use std::{
    io::Write as _,
    process::ExitCode,
    time::{Duration, Instant},
};

use clap::{error::ErrorKind, Parser as _};
use fastpath::{
    cli::{usage_error_line, Cli, Command, ExplainArgs, ListArgs, LogFormat, MonitorArgs, StatsArgs},
    clock::{monotonic_ns, wall_ns},
    commands::{
        explain::{self, Question},
        flows, inspect, show, stats,
    },
    daemon,
    dataplane::{counters, tables},
    output, Error,
};

fn main() -> ExitCode {
    let cli = match Cli::try_parse().and_then(|cli| fastpath::cli::check(&cli).map(|()| cli)) {
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
            init_logging(args.log_level, args.log_format);
            runtime().and_then(|rt| rt.block_on(daemon::run(args)))
        }
        command => {
            init_logging(log::LevelFilter::Warn, LogFormat::Text);
            inspect_command(command)
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

fn inspect_command(command: Command) -> Result<(), Error> {
    match command {
        Command::Run(_) => unreachable!("handled by main"),
        Command::Status(args) if args.brief => {
            let (line, ready) = inspect::status_brief(&args.list.bpffs.dir);
            println!("{line}");
            if !ready {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Status(args) => {
            print(inspect::status(&args.list.bpffs.dir, args.list.format(), interface_name))
        }
        Command::Stats(args) if args.watch => watch_stats(&args),
        Command::Stats(args) => print_stats(&args),
        Command::Routes(args) => print_routes(&args),
        Command::Endpoints(args) => print(inspect::endpoints(&args.bpffs.dir, args.format(), interface_name)),
        Command::Peers(args) => print(inspect::peers(&args.bpffs.dir, args.format())),
        Command::Flows(args) => print(flows::list_pinned(&args.bpffs.dir, args.format(), monotonic_ns())),
        Command::Version(args) => print(inspect::version(&args.list.bpffs.dir, args.list.format())),
        Command::Completion(args) => {
            use clap::CommandFactory as _;
            clap_complete::generate(args.shell, &mut Cli::command(), "fastpath", &mut std::io::stdout());
            Ok(())
        }
        Command::Explain(args) => explain(&args),
        Command::Monitor(args) => runtime().and_then(|rt| rt.block_on(monitor(&args))),
        Command::Cleanup(args) => print(inspect::cleanup(&args.bpffs.dir)),
        Command::Verify(args) => verify(&args.bpffs.dir),
    }
}

/// Print the drift; exit code 1 when there is any.
fn verify(dir: &std::path::Path) -> Result<(), Error> {
    let drift = runtime()?.block_on(fastpath::commands::verify::run(dir))?;
    if drift.is_empty() {
        println!("no drift: every map matches the kernel");
        return Ok(());
    }
    for line in &drift {
        println!("drift: {line}");
    }
    std::process::exit(1);
}

fn print(text: Result<String, Error>) -> Result<(), Error> {
    let text = text?;
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(Error::Runtime)
}

fn print_stats(args: &StatsArgs) -> Result<(), Error> {
    let totals = counters::read_pinned(&args.list.bpffs.dir)?;
    print(output::render(&stats::Listing(&totals), args.list.format(), |_| stats::format_table(&totals)))
}

/// Refresh in place every second with rates, until Ctrl-C.
fn watch_stats(args: &StatsArgs) -> Result<(), Error> {
    let mut previous = counters::read_pinned(&args.list.bpffs.dir)?;
    let mut at = Instant::now();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = counters::read_pinned(&args.list.bpffs.dir)?;
        let elapsed = at.elapsed().as_secs_f64();
        at = Instant::now();
        print!("\x1b[H\x1b[2J{}", stats::format_rates(&previous, &now, elapsed));
        let _ = std::io::stdout().flush();
        previous = now;
    }
}

fn print_routes(args: &ListArgs) -> Result<(), Error> {
    let trie = tables::pinned_routes(&args.bpffs.dir)?;
    let mut rows: Vec<show::RouteRow> = tables::route_entries(&trie)?
        .iter()
        .map(|(prefix, value)| show::row(*prefix, value, interface_name))
        .collect();
    let ipv6 = tables::pinned_route6_entries(&args.bpffs.dir)?;
    rows.extend(ipv6.iter().map(|(prefix, value)| show::row6(*prefix, value)));
    print(output::render(&rows, args.format(), |rows| show::table(rows)))
}

fn explain(args: &ExplainArgs) -> Result<(), Error> {
    let ingress = match &args.iface {
        Some(name) => {
            Some(interface_index(name).ok_or_else(|| Error::NoSuchInterface { name: name.clone() })?)
        }
        None => None,
    };
    let question = Question {
        src: args.src,
        dst: args.dst,
        arp: args.arp,
        from_underlay: args.from_underlay,
        encap: args.encap,
        ingress,
        ttl: args.ttl,
        size: args.size,
        df: !args.no_df,
    };
    let (mut text, reason) = explain::explain_pinned(&args.bpffs.dir, &question, &interface_name)?;
    // Which rule or qdisc: the kernel's to say. Without it the answer stands as it is.
    if let Ok(detail) =
        runtime().and_then(|rt| rt.block_on(explain::kernel_detail(&args.bpffs.dir, reason, &question)))
    {
        for line in detail {
            text.push_str(&format!("  because {line}\n"));
        }
    }
    print(Ok(text))
}

/// Stream decisions until Ctrl-C, SIGTERM, `--count` or `--duration`; the programs stop
/// reporting on their own two seconds after the last renewal.
async fn monitor(args: &MonitorArgs) -> Result<(), Error> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut monitor = inspect::Monitor::open(&args.bpffs.dir, args.filter)?;
    let mut term =
        signal(SignalKind::terminate()).map_err(|source| Error::Signal { signal: "SIGTERM", source })?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|source| Error::Signal { signal: "SIGINT", source })?;
    let deadline = args.duration.map(|s| Instant::now() + Duration::from_secs(s));
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    let (mut seen, mut last_renewal) = (0u64, None::<Instant>);
    let result = loop {
        if last_renewal.is_none_or(|t| t.elapsed() >= Duration::from_millis(500)) {
            if let Err(e) = monitor.renew(monotonic_ns(), Duration::from_secs(2)) {
                break Err(e);
            }
            last_renewal = Some(Instant::now());
        }
        tokio::select! {
            _ = term.recv() => break Ok(()),
            _ = int.recv() => break Ok(()),
            _ = poll.tick() => {}
        }
        let offset = wall_ns().saturating_sub(u128::from(monotonic_ns()));
        for event in monitor.drain().into_iter().filter(|e| shown(args, e)) {
            let wall_ns = offset + u128::from(event.time_ns);
            let row = stats::EventRow::new(&event, wall_ns, interface_name(event.ifindex));
            let line = if args.json { output::json(&row)? } else { row.line() };
            println!("{line}");
            seen += 1;
            if args.count.is_some_and(|c| seen >= c) {
                break;
            }
        }
        let _ = std::io::stdout().flush();
        if args.count.is_some_and(|c| seen >= c) || deadline.is_some_and(|d| Instant::now() >= d) {
            break Ok(());
        }
    };
    monitor.stop();
    result
}

/// Whether `monitor --verdict` and `--reason` let `event` through.
fn shown(args: &MonitorArgs, event: &fastpath_common::maps::MonitorEvent) -> bool {
    let verdict = fastpath_common::Verdict::from_tc_action(event.verdict);
    args.verdict.is_none_or(|v| verdict == Some(v.into()))
        && args.reason.is_none_or(|r| event.reason == r.index())
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

fn interface_index(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: a NUL-terminated name; if_nametoindex only reads it.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// `--log-level` sets the default; RUST_LOG, when set, refines or overrides it. aya's own debug
/// output (relocations, feature probes) is only shown when RUST_LOG asks for it. `--log-format
/// json`: one object per line, `{"ts","level","target","msg"}`, for a log pipeline.
fn init_logging(level: log::LevelFilter, format: LogFormat) {
    let library_level = level.min(log::LevelFilter::Info);
    let mut builder = env_logger::Builder::new();
    builder
        .filter_level(level)
        .filter_module("aya", library_level)
        .filter_module("aya_obj", library_level)
        .parse_env("RUST_LOG")
        .format_timestamp_millis();
    if format == LogFormat::Json {
        builder.format(|buf, record| {
            let line = serde_json::json!({
                "ts": buf.timestamp_millis().to_string(),
                "level": record.level().as_str(),
                "target": record.target(),
                "msg": record.args().to_string(),
            });
            writeln!(buf, "{line}")
        });
    }
    builder.init();
}
