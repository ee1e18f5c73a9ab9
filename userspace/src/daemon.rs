//! `fastpath run`: wire netlink, the loader, the maps and the pin folder together with tokio.

use std::time::Instant;

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
    kernel::{KernelState, PeerQuery},
    loader::{self, Attachments, FROM_POD, FROM_UNDERLAY},
    netlink::{Event, LinkState, Netlink},
    node::{self, Node},
    routes::{self, IpipMode, Mapping},
    tables::Tables,
    Error,
};

type Logger = AsyncFd<EbpfLogger<&'static dyn log::Log>>;

/// Everything the running daemon holds.
struct Daemon {
    selector: Selector,
    ipip: IpipMode,
    node: Node,
    kernel: KernelState,
    netlink: Netlink,
    ebpf: Ebpf,
    tables: Tables,
    pods: Attachments,
    underlay: Attachments,
}

/// Run the daemon until SIGINT or SIGTERM, then detach everything and remove the pins.
pub async fn run(args: RunArgs) -> Result<(), Error> {
    let selector = Selector { prefix: args.iface_prefix, explicit: args.ifaces };
    // Subscribe before the dumps so nothing created in between is missed.
    let netlink = Netlink::new()?;
    let links = netlink.links().await?;
    let addresses = netlink.ipv4_addresses().await?;
    let routes = netlink.ipv4_routes().await?;
    require_explicit_interfaces(&selector, &links)?;
    let node = node::choose(args.underlay.as_deref(), &links, &addresses, &routes)?;
    let mut signals = Signals::new()?;

    bpffs::ensure_pin_dir(&args.bpffs.dir)?;
    let mut ebpf = loader::load_object(args.log_level)?;
    // The logger owns the log ring buffer; it must live as long as the programs or their load
    // fails ("fd is not pointing to valid bpf_map").
    let mut logger = ebpf_logger(&mut ebpf);
    let pods = Attachments::new(&mut ebpf, FROM_POD)?;
    let underlay = Attachments::new(&mut ebpf, FROM_UNDERLAY)?;
    loader::pin_maps(&ebpf, &args.bpffs.dir)?;
    let tables = Tables::take(&mut ebpf)?;
    let kernel = KernelState::new(&links, routes);
    let mut daemon =
        Daemon { selector, ipip: args.ipip.into(), node, kernel, netlink, ebpf, tables, pods, underlay };
    for query in KernelState::peer_queries(&links, &daemon.selector.prefix) {
        learn_peer_mac(&daemon.netlink, &mut daemon.kernel, query).await;
    }

    let result = match daemon.start(&links).await {
        Ok(()) => daemon.serve(&mut logger, &mut signals).await,
        Err(e) => Err(e),
    };
    daemon.pods.detach_all(&mut daemon.ebpf);
    daemon.underlay.detach_all(&mut daemon.ebpf);
    bpffs::remove_pins(&args.bpffs.dir, &PINNED_MAPS);
    log::info!("stopped: every program detached, pins removed");
    result
}

impl Daemon {
    /// Fill the maps, then attach: the programs never run on empty maps.
    async fn start(&mut self, links: &[LinkState]) -> Result<(), Error> {
        self.sync()?;
        self.tables.set_node(&self.node.config())?;
        let underlay = links.iter().find(|l| l.index == self.node.underlay.ifindex).map(link_of);
        if let Some(underlay) = underlay {
            self.underlay.attach(&mut self.ebpf, &underlay)?;
        }
        for link in links {
            let action = attach::on_link_present(&self.selector, &self.pods.names(), link_of(link));
            self.apply(action);
        }
        // Tests and operators wait for this line: everything present at start is served now.
        log::info!(
            "fastpath {} running: underlay {} ({}), ipip {:?}, {} routes, attaching to interfaces named {}*{}",
            env!("CARGO_PKG_VERSION"),
            self.node.underlay.addr,
            self.node.underlay.ifindex,
            self.ipip,
            self.kernel.routes.len(),
            self.selector.prefix,
            self.selector.explicit.iter().map(|e| format!(" and {e}")).collect::<String>(),
        );
        Ok(())
    }

    async fn serve(&mut self, logger: &mut Option<Logger>, signals: &mut Signals) -> Result<(), Error> {
        loop {
            tokio::select! {
                name = signals.next() => {
                    log::info!("{name}: shutting down");
                    return Ok(());
                }
                event = self.netlink.next() => {
                    let Some(event) = event else {
                        return Err(Error::Netlink {
                            what: "the event socket closed",
                            source: std::io::ErrorKind::UnexpectedEof.into(),
                        });
                    };
                    self.handle(event).await?;
                }
                () = drain(logger) => {}
            }
        }
    }

    /// One kernel event: update the picture, the attachments, then the maps (only what changed).
    async fn handle(&mut self, event: Event) -> Result<(), Error> {
        let received = Instant::now();
        if let Some(query) = self.kernel.apply(&event, &self.selector.prefix) {
            learn_peer_mac(&self.netlink, &mut self.kernel, query).await;
        }
        match &event {
            Event::LinkPresent(link) => {
                let action = attach::on_link_present(&self.selector, &self.pods.names(), link_of(link));
                self.apply(action);
                if let Some(node) = node::updated(&self.node, link) {
                    log::info!("underlay changed: MTU {}", node.mtu);
                    self.node = node;
                    if let Err(e) = self.tables.set_node(&node.config()) {
                        log::warn!("{}", e.chain());
                    }
                }
            }
            Event::LinkGone(link) => {
                let action = attach::on_link_gone(&self.pods.names(), link_of(link));
                self.apply(action);
            }
            Event::RouteAdded(_) | Event::RouteRemoved(_) => {}
        }
        // A failed write is not fatal: the mirror of what was written only records successes,
        // so the next event's sync writes it again.
        match self.sync() {
            Ok(written) if written.upserted + written.removed > 0 => log::debug!(
                "synced {} writes, {} removals in {} µs after {event:?}",
                written.upserted,
                written.removed,
                received.elapsed().as_micros()
            ),
            Ok(_) => {}
            Err(e) => log::warn!("map sync after {event:?}: {}", e.chain()),
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<crate::tables::Written, Error> {
        let mapping = Mapping {
            interfaces: &self.kernel.interfaces,
            underlay: &self.node.underlay,
            ipip: self.ipip,
            pod_prefix: &self.selector.prefix,
        };
        let (table, peers) = routes::desired(self.kernel.routes.values(), &mapping);
        self.tables.sync(&table, &peers)
    }

    /// Carry out one attach decision. A failed attach is logged, not fatal: the interface may
    /// have vanished between the event and the attach, and the other pods keep their fast path.
    fn apply(&mut self, action: Action) {
        match action {
            Action::Attach(link) => {
                if let Err(e) = self.pods.attach(&mut self.ebpf, &link) {
                    log::warn!("{}", e.chain());
                }
            }
            Action::Detach(link) | Action::Forget(link) => self.pods.detach(&mut self.ebpf, &link),
            Action::Nothing => {}
        }
    }
}

/// Ask for a pod's MAC (the other end of its veth). Until it is known, its route stays with the
/// kernel.
async fn learn_peer_mac(netlink: &Netlink, kernel: &mut KernelState, query: PeerQuery) {
    match netlink.peer_mac(query.netnsid, query.peer_index).await {
        Ok(mac) => kernel.set_peer_mac(query.ifindex, mac),
        Err(e) => log::warn!(
            "pod MAC behind ifindex {} unknown, the kernel routes to it: {}",
            query.ifindex,
            e.chain()
        ),
    }
}

fn link_of(link: &LinkState) -> Link {
    Link { index: link.index, name: link.name.clone() }
}

fn require_explicit_interfaces(selector: &Selector, links: &[LinkState]) -> Result<(), Error> {
    match selector.explicit.iter().find(|name| !links.iter().any(|l| &l.name == *name)) {
        Some(name) => Err(Error::NoSuchInterface { name: name.clone() }),
        None => Ok(()),
    }
}

/// Start forwarding eBPF log records to `log`. Without it the programs still run; say so.
fn ebpf_logger(ebpf: &mut Ebpf) -> Option<Logger> {
    let logger = EbpfLogger::init(ebpf).map_err(|e| log::warn!("eBPF logs will not be shown: {e}")).ok()?;
    // SAFETY: the logger owns the ring buffer's fd and keeps it open, unchanged, for as long as
    // the AsyncFd that owns the logger lives.
    unsafe { AsyncFd::register(logger) }.map_err(|e| log::warn!("eBPF logs will not be shown: {e}")).ok()
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
