//! `fastpath run`: wire netlink, the loader and the pin folder together with tokio.

use aya::Ebpf;
use aya_log::EbpfLogger;
use fastpath_common::maps::PINNED_MAPS;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{Signal, SignalKind},
};

use crate::{
    attach::{self, Action, Link, Selector},
    bpffs,
    cli::RunArgs,
    loader::{self, PodAttachments},
    netlink::{LinkEvent, LinkWatcher},
    Error,
};

type Logger = AsyncFd<EbpfLogger<&'static dyn log::Log>>;

/// Run the daemon until SIGINT or SIGTERM, then detach everything and remove the pins.
pub async fn run(args: RunArgs) -> Result<(), Error> {
    let selector = Selector {
        prefix: args.iface_prefix,
        explicit: args.ifaces,
    };
    // Subscribe before the dump so an interface created in between is not missed.
    let mut watcher = LinkWatcher::new()?;
    let links = watcher.dump().await?;
    require_explicit_interfaces(&selector, &links)?;
    let mut signals = Signals::new()?;

    bpffs::ensure_pin_dir(&args.bpffs.dir)?;
    let mut ebpf = loader::load_object(args.log_level)?;
    // The logger owns the log ring buffer; it must live as long as the programs or their load
    // fails ("fd is not pointing to valid bpf_map").
    let mut logger = ebpf_logger(&mut ebpf);
    let mut pods = PodAttachments::new(&mut ebpf)?;
    loader::pin_maps(&ebpf, &args.bpffs.dir)?;
    for link in links {
        let action = attach::on_link_present(&selector, &pods.names(), link);
        apply(&mut ebpf, &mut pods, action);
    }
    // Tests and operators wait for this line: everything present at start is attached now.
    log::info!(
        "fastpath {} running: attaching to interfaces named {}*{}, maps pinned in {}",
        env!("CARGO_PKG_VERSION"),
        selector.prefix,
        selector
            .explicit
            .iter()
            .map(|e| format!(" and {e}"))
            .collect::<String>(),
        args.bpffs.dir.display()
    );

    let result = serve(
        &selector,
        &mut ebpf,
        &mut pods,
        &mut watcher,
        &mut logger,
        &mut signals,
    )
    .await;

    pods.detach_all(&mut ebpf);
    bpffs::remove_pins(&args.bpffs.dir, &PINNED_MAPS);
    log::info!("stopped: every program detached, pins removed");
    result
}

async fn serve(
    selector: &Selector,
    ebpf: &mut Ebpf,
    pods: &mut PodAttachments,
    watcher: &mut LinkWatcher,
    logger: &mut Option<Logger>,
    signals: &mut Signals,
) -> Result<(), Error> {
    loop {
        tokio::select! {
            name = signals.next() => {
                log::info!("{name}: shutting down");
                return Ok(());
            }
            event = watcher.next() => {
                let Some(event) = event else {
                    return Err(Error::Netlink {
                        what: "the link-event socket closed",
                        source: std::io::ErrorKind::UnexpectedEof.into(),
                    });
                };
                let action = match event {
                    LinkEvent::Present(link) => attach::on_link_present(selector, &pods.names(), link),
                    LinkEvent::Gone(link) => attach::on_link_gone(&pods.names(), link),
                };
                apply(ebpf, pods, action);
            }
            () = drain(logger) => {}
        }
    }
}

/// Carry out one decision. A failed attach is logged, not fatal: the interface may have vanished
/// between the event and the attach, and the other pods must keep their fast path.
fn apply(ebpf: &mut Ebpf, pods: &mut PodAttachments, action: Action) {
    match action {
        Action::Attach(link) => {
            if let Err(e) = pods.attach(ebpf, &link) {
                log::warn!("{}", e.chain());
            }
        }
        Action::Detach(link) | Action::Forget(link) => pods.detach(ebpf, &link),
        Action::Nothing => {}
    }
}

fn require_explicit_interfaces(selector: &Selector, links: &[Link]) -> Result<(), Error> {
    match selector
        .explicit
        .iter()
        .find(|name| !links.iter().any(|l| &l.name == *name))
    {
        Some(name) => Err(Error::NoSuchInterface { name: name.clone() }),
        None => Ok(()),
    }
}

/// Start forwarding eBPF log records to `log`. Without it the programs still run; say so.
fn ebpf_logger(ebpf: &mut Ebpf) -> Option<Logger> {
    let logger = EbpfLogger::init(ebpf)
        .map_err(|e| log::warn!("eBPF logs will not be shown: {e}"))
        .ok()?;
    // SAFETY: the logger owns the ring buffer's fd and keeps it open, unchanged, for as long as
    // the AsyncFd that owns the logger lives.
    unsafe { AsyncFd::register(logger) }
        .map_err(|e| log::warn!("eBPF logs will not be shown: {e}"))
        .ok()
}

/// Wait for eBPF log records and print them; never resolves when there is no logger.
async fn drain(logger: &mut Option<Logger>) {
    let Some(logger) = logger else {
        return std::future::pending().await;
    };
    match logger.readable_mut().await {
        Ok(mut guard) => {
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
        Err(e) => log::warn!("reading eBPF logs: {e}"),
    }
}

struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn new() -> Result<Self, Error> {
        let install = |kind, signal| {
            tokio::signal::unix::signal(kind).map_err(|source| Error::Signal { signal, source })
        };
        Ok(Self {
            term: install(SignalKind::terminate(), "SIGTERM")?,
            int: install(SignalKind::interrupt(), "SIGINT")?,
        })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
