//! `fastpath run`: wire netlink, the loader, the maps and the pin folder together with tokio.
//!
//! The dataplane outlives the daemon: links and maps stay pinned when it exits (unless
//! `--cleanup-on-exit`), so traffic keeps flowing; the next daemon adopts the links, swapping
//! its programs in atomically, and reconciles the maps against the kernel.

use std::{
    collections::{BTreeSet, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use aya::Ebpf;
use aya_log::EbpfLogger;
use fastpath_common::{
    maps::{
        AgentInfo, NodeConfig, AGENT_F_LEGACY_TC, AGENT_F_READY, LAYOUT_VERSION, PINNED_MAPS, ROUTES6_MAX,
    },
    route::RouteValue,
    tunnel::Tunnel,
    Reason,
};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{Signal, SignalKind},
};

use crate::{
    cli::{RunArgs, TcAttach},
    clock::unix_ms,
    daemon::{
        attach::{self, Action, Selector},
        endpoints6,
        http::{self, Endpoints},
        kernel::{KernelState, Touched},
        metrics::Metrics,
        netlink::{Event, Netlink},
        next_hops,
        node::{self, Node},
        picture::{self, Picture},
        routes::{self, Mapping},
        routes6,
        rules::Policy,
        trust::{Flows, RouteTable, Trust, Untracked},
    },
    dataplane::{
        bpffs, counters,
        flow_table::FlowTables,
        legacy_tc,
        loader::{self, Attachments, Hook},
        pins,
        tables::{Overflow, Tables, Written},
    },
    model::{
        link::{Link, LinkState},
        route::Prefix,
    },
    modes::{self, EncapMode, Modes},
    text, Error,
};

type Logger = AsyncFd<EbpfLogger<&'static dyn log::Log>>;

/// Everything the running daemon holds.
struct Daemon {
    selector: Selector,
    modes: Modes,
    node: Node,
    kernel: KernelState,
    netlink: Netlink,
    /// `--trust kernel`: conntrack's judgement followed, and the flow table it implies.
    trust: Option<(Trust, Flows)>,
    /// Whether conntrack tracks nothing here, said once.
    untracked: Untracked,
    /// The generation of the programs' next-hop cache (`NodeConfig::next_hop_generation`).
    next_hop_generation: u32,
    ebpf: Ebpf,
    tables: Tables,
    /// The programs on every pod interface (ingress first) and on the underlay.
    pods: Vec<Attachments>,
    underlay: Vec<Attachments>,
    metrics: Arc<Metrics>,
    agent: AgentInfo,
    /// Interfaces that should carry the pod program but do not (their attach failed).
    unattached: BTreeSet<u32>,
    /// `--underlay`, for resyncs.
    underlay_flag: Option<String>,
}

/// Run the daemon until SIGINT or SIGTERM.
pub async fn run(args: RunArgs) -> Result<(), Error> {
    let modes = args.modes();
    let selector = Selector { prefix: args.iface_prefix.clone(), explicit: args.ifaces.clone() };
    // Subscribe before the dumps so nothing created in between is missed.
    let netlink = Netlink::new()?;
    // A missing --iface is the user's mistake: say so before anything about the environment.
    require_explicit_interfaces(&selector, &netlink.links().await?)?;
    let picture = picture::take(&netlink, args.underlay.as_deref(), &selector.prefix).await?;
    let mut signals = Signals::new()?;
    let dir = args.bpffs.dir.clone();
    let folder = bpffs::ensure_pin_dir(&dir)?;
    let mut serving = false;
    let cleanup_on_exit = args.cleanup_on_exit;
    let taken = Taken { picture, netlink, selector, modes };
    let result = run_on(args, taken, &mut signals, &mut serving).await;
    // Never leave a mount behind after a failed start: it would hide whatever its folder's
    // parent later holds. After a start that served, the pins (and so the mount) outlive the
    // daemon: the programs keep forwarding.
    if (result.is_err() && !serving) || cleanup_on_exit {
        folder.undo();
    }
    result
}

/// What `run` learnt before it touched the pin folder.
struct Taken {
    picture: Picture,
    netlink: Netlink,
    selector: Selector,
    modes: Modes,
}

/// The daemon on its pin folder: load, attach, serve; `serving` turns true once it serves.
async fn run_on(args: RunArgs, taken: Taken, signals: &mut Signals, serving: &mut bool) -> Result<(), Error> {
    let Taken { picture: Picture { links, node, kernel }, netlink, selector, modes } = taken;
    let dir = args.bpffs.dir.clone();
    let _lock = bpffs::lock(&dir)?;
    let mut ebpf = loader::load_pinned(args.log_level, &dir, &args.capacities())?;
    // The logger owns the log ring buffer; it must live as long as the programs or their load
    // fails ("fd is not pointing to valid bpf_map").
    let mut logger = ebpf_logger(&mut ebpf);
    let hook = hook_for(args.tc_attach, legacy_tc::kernel_has_tcx());
    let mut programs = |list: &[(&'static str, _)]| -> Result<Vec<Attachments>, Error> {
        list.iter()
            .map(|(program, direction)| Attachments::new(&mut ebpf, program, *direction, hook, &dir))
            .collect()
    };
    let pods = programs(&loader::POD_PROGRAMS)?;
    let underlay = programs(&loader::UNDERLAY_PROGRAMS)?;
    // Attachments no program of this version uses (the egress judges earlier versions attached
    // under --trust kernel), and whatever the other hook left after a switch between tcx and
    // legacy tc.
    let served: Vec<&str> = match hook {
        Hook::Tcx => pods.iter().chain(&underlay).map(Attachments::program).collect(),
        Hook::LegacyTc => Vec::new(),
    };
    pins::drop_links_of_other_programs(&dir, &served);
    if hook == Hook::Tcx && legacy_tc::detach_everywhere() > 0 {
        log::info!("removed the legacy tc filters an earlier daemon left: the programs attach with tcx now");
    }
    let tables = Tables::take(&mut ebpf)?;
    // Subscribed before the daemon starts, so no conntrack event in between is missed.
    let trust = if args.trust == modes::Trust::Kernel {
        Some((Trust::new()?, FlowTables::take(&mut ebpf)?))
    } else {
        None
    };
    let metrics = Arc::new(Metrics::new(&dir));
    if let Some(addr) = args.metrics_addr {
        http::serve(addr, Endpoints::Metrics, Arc::clone(&metrics)).await?;
    }
    if let Some(addr) = args.health_addr {
        http::serve(addr, Endpoints::Health, Arc::clone(&metrics)).await?;
    }
    let agent = AgentInfo {
        layout_version: LAYOUT_VERSION,
        pid: std::process::id(),
        started_unix_ms: unix_ms(),
        heartbeat_unix_ms: unix_ms(),
        ipip_mode: modes.ipip as u32,
        vxlan_mode: modes.vxlan as u32,
        _pad: 0,
        flags: mode_flags(args.trust, hook),
        version: text::padded(env!("CARGO_PKG_VERSION")),
        iface_prefix: text::padded(&selector.prefix),
        repairs: 0,
    };
    let mut daemon = Daemon {
        selector,
        modes,
        node,
        kernel,
        netlink,
        trust,
        untracked: Untracked::default(),
        // Past whatever an earlier daemon left, so no next hop it cached counts as current.
        next_hop_generation: tables.node().map_or(0, |n| n.next_hop_generation).wrapping_add(1),
        ebpf,
        tables,
        pods,
        underlay,
        metrics,
        agent,
        unattached: BTreeSet::new(),
        underlay_flag: args.underlay,
    };
    let resync_every = (args.resync_interval > 0).then(|| Duration::from_secs(args.resync_interval));

    let result = match daemon.start(&links).await {
        Ok(()) => {
            *serving = true;
            daemon.serve(&mut logger, signals, resync_every).await
        }
        Err(e) => Err(e),
    };
    if args.cleanup_on_exit {
        for programs in daemon.pods.iter_mut().chain(daemon.underlay.iter_mut()) {
            programs.detach_all();
        }
        drop(daemon);
        pins::remove_all(&dir, &PINNED_MAPS)?;
        log::info!("stopped: every program detached, every pin removed (--cleanup-on-exit)");
    } else {
        daemon.agent.heartbeat_unix_ms = 0;
        daemon.agent.flags &= !AGENT_F_READY;
        let _ = daemon.tables.set_agent(&daemon.agent);
        log::info!("stopped: the programs keep forwarding; the next daemon adopts them (`fastpath cleanup` removes them)");
    }
    result
}

impl Daemon {
    /// Fill the maps, then attach: the programs never run on empty maps.
    async fn start(&mut self, links: &[LinkState]) -> Result<(), Error> {
        let started = Instant::now();
        self.sync();
        self.write_node()?;
        self.judge_all().await;
        if let Some(underlay) = links.iter().find(|l| l.index == self.node.underlay.ifindex) {
            for programs in &mut self.underlay {
                programs.attach(&mut self.ebpf, &link_of(underlay))?;
            }
        }
        for link in links {
            let action = attach::on_link_present(&self.selector, &self.pod_names(), link_of(link));
            self.apply(action);
        }
        for programs in self.pods.iter().chain(&self.underlay) {
            programs.drop_stale_pins();
        }
        self.warn_if_ipip_cannot_return().await;
        self.heartbeat();
        release_freed_memory();
        // Tests and operators wait for this line: everything present at start is served now.
        log::info!(
            "fastpath {} running: underlay {} ({}), {}, {}, {}, trust {}, {} routes, attaching to interfaces named {}*{} (ready in {:?})",
            env!("CARGO_PKG_VERSION"),
            self.node.underlay.addr,
            self.node.underlay.ifindex,
            self.modes.describe(),
            self.node.vxlan_words(),
            self.node.ipv6_words(),
            self.trust().name(),
            self.kernel.route_count(),
            self.selector.prefix,
            self.selector.explicit.iter().map(|e| format!(" and {e}")).collect::<String>(),
            started.elapsed(),
        );
        Ok(())
    }

    /// Under `--trust kernel` the kernel carries every flow until its conntrack approves it. If
    /// the fast path sends IPIP while the kernels have no IPIP device, the other node's fast path
    /// may already send a flow's packets in IPIP while the kernel here still carries it, and
    /// cannot decapsulate them: they are lost. Said once, at start.
    async fn warn_if_ipip_cannot_return(&self) {
        let sends_ipip = sends_ipip(self.modes.ipip, self.tables.any_ipip());
        if self.trust() != modes::Trust::Kernel || !sends_ipip {
            return;
        }
        match self.netlink.has_ipip_device().await {
            Ok(true) => {}
            Ok(false) => log::warn!(
                "--trust kernel with IPIP ({}) on a kernel without an IPIP device: the kernel carries each flow until its conntrack approves it, and cannot decapsulate what the other node's fast path already sends in IPIP: such packets are lost; load the ipip module (tunl0) or route blocks plain with --ipip never",
                match self.modes.ipip {
                    EncapMode::Follow => "routes via tunl0",
                    mode => mode.name(),
                }
            ),
            Err(e) => log::debug!("cannot tell whether the kernel has an IPIP device: {}", e.chain()),
        }
    }

    async fn serve(
        &mut self,
        logger: &mut Option<Logger>,
        signals: &mut Signals,
        resync_every: Option<Duration>,
    ) -> Result<(), Error> {
        let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
        // Each entry's own due time decides; a second is the finest a timeout is given in.
        let mut refresh = tokio::time::interval(Duration::from_secs(1));
        // An hour stands in for "never" when resyncs are off; the branch below checks.
        let mut resync = tokio::time::interval_at(
            tokio::time::Instant::now() + resync_every.unwrap_or(Duration::from_secs(3600)),
            resync_every.unwrap_or(Duration::from_secs(3600)),
        );
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
                    self.handle(event).await;
                }
                event = next_conntrack(&mut self.trust) => {
                    let Some(event) = event else {
                        return Err(Error::Netlink {
                            what: "the conntrack event socket closed",
                            source: std::io::ErrorKind::UnexpectedEof.into(),
                        });
                    };
                    self.follow_conntrack(event).await;
                }
                _ = refresh.tick(), if self.trust.is_some() => self.refresh_conntrack().await,
                _ = heartbeat.tick() => self.heartbeat(),
                _ = resync.tick(), if resync_every.is_some() => self.resync().await,
                () = drain(logger) => {}
            }
        }
    }

    /// Take the kernel's state whole and make the maps match it: whatever events were lost
    /// (a netlink overflow, a bug), nothing stays diverged longer than one interval.
    async fn resync(&mut self) {
        let picture =
            match picture::take(&self.netlink, self.underlay_flag.as_deref(), &self.selector.prefix).await {
                Ok(picture) => picture,
                Err(e) => return log::warn!("resync: {}", e.chain()),
            };
        self.kernel = picture.kernel;
        // The node's settings as last written, against what the map holds now: a difference
        // was made behind the daemon's back (the next writes repair it).
        let node_drifted = self
            .tables
            .node()
            .map(|held| NodeConfig { next_hop_generation: self.next_hop_generation, ..held })
            != Some(self.node_config());
        if picture.node != self.node {
            self.set_node(picture.node);
        }
        // Whatever events were lost, next hops are asked of the FIB again.
        self.forget_next_hops();
        for link in &picture.links {
            let action = attach::on_link_present(&self.selector, &self.pod_names(), link_of(link));
            self.apply(action);
        }
        if let Err(e) = self.tables.reread() {
            return log::warn!("resync: {}", e.chain());
        }
        let written = self.sync();
        let repaired = (written.upserted + written.removed + usize::from(node_drifted)) as u64;
        if repaired > 0 {
            self.agent.repairs += repaired;
            self.metrics.resync_repairs.inc_by(repaired);
            log::warn!(
                "resync repaired {repaired} map entries that had drifted from the kernel{}",
                if node_drifted { " (FP_NODE among them)" } else { "" }
            );
        } else {
            log::debug!("resync: the maps match the kernel");
        }
        self.judge_all().await;
        release_freed_memory();
    }

    /// One kernel event: update the picture, the attachments, then the maps (only what changed).
    async fn handle(&mut self, event: Event) {
        let received = Instant::now();
        self.metrics.netlink_events.inc();
        if event == Event::Overrun {
            self.metrics.netlink_overruns.inc();
            log::warn!("netlink overflow: the kernel dropped events; resyncing from a full dump");
            return self.resync().await;
        }
        if event == Event::Address6Changed(self.node.underlay.ifindex) {
            // The node's IPv6 address (and with it vxlan-v6.calico's standing) may have come,
            // gone or finished duplicate address detection: take the kernel's picture again.
            log::debug!("an IPv6 address of the underlay changed; resyncing");
            return self.resync().await;
        }
        let next_hops_may_change = next_hops::may_change(
            &event,
            self.node.underlay.ifindex,
            &self.kernel.interfaces,
            &self.selector.prefix,
        );
        let (mut touched, query) = self.kernel.apply(&event, &self.selector.prefix);
        if let Some(query) = query {
            picture::learn_peer_mac(&self.netlink, &mut self.kernel, query).await;
        }
        if let Event::TrafficControl(ifindex) = event {
            touched = self.follow_classic_tc(ifindex).await;
        }
        match &event {
            Event::LinkPresent(link) => {
                let action = attach::on_link_present(&self.selector, &self.pod_names(), link_of(link));
                self.apply(action);
                if let Some(node) = node::updated(&self.node, link) {
                    self.set_node(node);
                }
            }
            Event::LinkGone(link) => {
                self.unattached.remove(&link.index);
                let action = attach::on_link_gone(&self.pod_names(), link_of(link));
                self.apply(action);
                if let Some(node) = node::without(&self.node, link) {
                    self.set_node(node);
                }
            }
            Event::RouteAdded(_)
            | Event::RouteRemoved(_)
            | Event::Route6Added(_)
            | Event::Route6Removed(_)
            | Event::Rule6Added(_)
            | Event::Rule6Removed(_)
            | Event::NeighbourPresent(_)
            | Event::NeighbourGone(_)
            | Event::RuleAdded(_)
            | Event::RuleRemoved(_)
            | Event::TrafficControl(_)
            | Event::Address6Changed(_)
            | Event::Overrun => {}
        }
        if next_hops_may_change {
            self.forget_next_hops();
        }
        // A failed write is not fatal: the mirror of what was written only records successes,
        // so the next sync writes it again.
        let written = match touched {
            Touched::Prefix(prefix) => self.sync_prefixes(vec![prefix]),
            Touched::Prefixes(prefixes) => self.sync_prefixes(prefixes),
            Touched::Everything => self.sync(),
            Touched::Ipv6 => self.sync6(),
            Touched::Nothing => Written::default(),
        };
        if written.any() {
            self.metrics.observe_sync(received.elapsed());
            log::debug!(
                "synced {} writes, {} removals in {} µs after {event:?}",
                written.upserted,
                written.removed,
                received.elapsed().as_micros()
            );
            // Where an address is may have changed: what conntrack's entries mean with it.
            self.judge_again().await;
        }
        self.update_readiness();
    }

    /// A qdisc or filter of interface `ifindex` changed: if it is a pod's, learn its classic tc
    /// configuration again; its pod's entry follows (to the kernel while it has any).
    async fn follow_classic_tc(&mut self, ifindex: u32) -> Touched {
        let Some(name) = self.kernel.interfaces.get(&ifindex).map(|i| i.name.clone()) else {
            return Touched::Nothing;
        };
        if !name.starts_with(&self.selector.prefix) {
            return Touched::Nothing;
        }
        if !picture::learn_classic_tc(&self.netlink, &mut self.kernel, ifindex).await {
            return Touched::Nothing;
        }
        match &self.kernel.interfaces[&ifindex].classic_tc {
            Some(config) => log::info!("{name} has classic tc configuration ({config}): the kernel carries its pod's traffic, both ways"),
            None => log::info!("{name} has no classic tc configuration any more: its pod is back on the fast path"),
        }
        Touched::Everything
    }

    /// The pod interfaces served now (those of the ingress program: every program is attached to
    /// the same ones, or the interface counts as unattached).
    fn pod_names(&self) -> std::collections::HashMap<u32, String> {
        self.pods[0].names()
    }

    fn node_config(&self) -> NodeConfig {
        self.node.config(self.trust(), self.next_hop_generation)
    }

    /// This node's settings, both families', into the maps.
    fn write_node(&mut self) -> Result<(), Error> {
        self.tables.set_node(&self.node_config())?;
        self.tables.set_node6(&self.node.config6())
    }

    /// `--trust`, as the daemon follows it: conntrack is followed only under `--trust kernel`.
    fn trust(&self) -> modes::Trust {
        if self.trust.is_some() {
            modes::Trust::Kernel
        } else {
            modes::Trust::Routes
        }
    }

    /// `--trust kernel`: conntrack's entries taken whole and the flow table made to match.
    async fn judge_all(&mut self) {
        let Some((trust, table)) = &mut self.trust else { return };
        let places = RouteTable { tables: &self.tables, underlay: &self.node.underlay };
        match trust.resync(table, &places).await {
            Ok(written) if written.any() => log::debug!(
                "flow table: {} directions written, {} removed, from {} conntrack entries",
                written.upserted,
                written.removed,
                trust.entries()
            ),
            Ok(_) => {}
            Err(e) => log::warn!("conntrack: {}", e.chain()),
        }
    }

    /// The route table changed: what conntrack's entries mean may have too (an endpoint that
    /// went takes its flows along).
    async fn judge_again(&mut self) {
        let Some((trust, table)) = &mut self.trust else { return };
        let places = RouteTable { tables: &self.tables, underlay: &self.node.underlay };
        if let Err(e) = trust.rejudge(table, &places) {
            log::warn!("flow table: {}", e.chain());
        }
    }

    /// One event of conntrack's.
    async fn follow_conntrack(&mut self, event: crate::daemon::conntrack::Event) {
        let Some((trust, table)) = &mut self.trust else { return };
        let places = RouteTable { tables: &self.tables, underlay: &self.node.underlay };
        if let Err(e) = trust.handle(event, table, &places).await {
            log::warn!("flow table: {}", e.chain());
        }
    }

    /// Refresh the conntrack entries of the flows the fast path carries; say if conntrack
    /// tracks nothing here.
    async fn refresh_conntrack(&mut self) {
        let Some((trust, table)) = &mut self.trust else { return };
        let refreshed = trust.refresh(table);
        if refreshed > 0 {
            log::debug!("refreshed {refreshed} conntrack entries the fast path carries");
        }
        let entries = trust.entries();
        let pending = self.counted(Reason::PassFlowPending);
        if self.untracked.observe(entries, pending) {
            log::warn!(
                "--trust kernel: the kernel's conntrack holds no entry in this network namespace while the programs handed it {} packets awaiting approval: nothing here asks conntrack to track (kube-proxy's and Calico's rules do), so no flow is approved and the kernel carries everything",
                Untracked::EVIDENCE
            );
        }
    }

    /// The programs' count of packets under `reason`, over every CPU (0 if unreadable).
    fn counted(&self, reason: Reason) -> u64 {
        counters::totals(&self.tables.counters)
            .map(|totals| totals.iter().filter(|t| t.reason == reason).map(|t| t.total.packets).sum())
            .unwrap_or(0)
    }

    /// Tell the programs that every next hop they cached may be stale (the underlay's
    /// neighbours or routes changed): each is asked of the FIB again on its next packet.
    fn forget_next_hops(&mut self) {
        self.next_hop_generation = self.next_hop_generation.wrapping_add(1);
        if let Err(e) = self.write_node() {
            log::warn!("{}", e.chain());
        }
    }

    /// A changed underlay or `vxlan.calico`: the programs' settings follow (the routes through
    /// the device follow with the sync after the event).
    fn set_node(&mut self, node: Node) {
        if node.mtu != self.node.mtu {
            log::info!("underlay changed: MTU {}", node.mtu);
        }
        for tunnel in [Tunnel::Ipip, Tunnel::Vxlan] {
            if node.tunnel_mtu(tunnel) != self.node.tunnel_mtu(tunnel) {
                log::info!("{} tunnel MTU now {}", tunnel.name(), node.tunnel_mtu(tunnel));
            }
        }
        if node.vxlan != self.node.vxlan {
            log::info!("{}", node.vxlan_words());
        }
        if node.ipv6 != self.node.ipv6 {
            log::info!("{}", node.ipv6_words());
        }
        self.node = node;
        if let Err(e) = self.write_node() {
            log::warn!("{}", e.chain());
        }
    }

    fn policy(&self) -> Policy {
        routes::pod_policy(
            &self.kernel.rules,
            &self.kernel.interfaces,
            &self.node.underlay,
            &self.selector.prefix,
        )
    }

    fn mapping<'a>(&'a self, policy: &'a Policy) -> Mapping<'a> {
        Mapping {
            interfaces: &self.kernel.interfaces,
            underlay: &self.node.underlay,
            modes: self.modes,
            pod_prefix: &self.selector.prefix,
            vxlan: self.node.usable_vxlan(),
            vteps: &self.kernel.vteps,
            policy,
        }
    }

    /// Every entry against the kernel: at start and after link events.
    fn sync(&mut self) -> Written {
        let policy = self.policy();
        let mapping = self.mapping(&policy);
        let mut prefixes: HashSet<Prefix> = self.kernel.prefixes().copied().collect();
        prefixes.extend(self.tables.written_prefixes());
        let changes: Vec<(Prefix, Option<RouteValue>)> =
            prefixes.into_iter().map(|p| (p, routes::entry_for(p, &self.kernel, &mapping))).collect();
        let ipv4 = self.write(changes);
        let ipv6 = self.sync6();
        ipv4 + ipv6
    }

    /// Every IPv6 endpoint and route against the kernel: after IPv6 route and rule events, and
    /// with [`Self::sync`].
    fn sync6(&mut self) -> Written {
        let before = self.tables.overflow();
        let endpoints =
            self.tables.apply_endpoints6(&endpoints6::wanted(&self.kernel, &self.selector.prefix));
        let wanted = routes6::wanted(&self.kernel, &self.node);
        // Peers first: a node is accepted before anything is sent to it in IPv6 VXLAN.
        let peers = self.tables.apply_peers6(&routes6::peers(&wanted));
        let routes = self.tables.apply_routes6(&wanted);
        self.tell_overflow(&before, endpoints.failed.or(peers.failed).or(routes.failed));
        endpoints.written + peers.written + routes.written
    }

    /// Some prefixes' entries: after a route event, whatever the size of the table.
    fn sync_prefixes(&mut self, prefixes: Vec<Prefix>) -> Written {
        let policy = self.policy();
        let mapping = self.mapping(&policy);
        let changes: Vec<(Prefix, Option<RouteValue>)> =
            prefixes.into_iter().map(|p| (p, routes::entry_for(p, &self.kernel, &mapping))).collect();
        self.write(changes)
    }

    /// Write `changes`. What the maps refuse is the kernel's to route (see
    /// [`Tables::apply`]): said once per change of what is refused, never once per entry.
    fn write(&mut self, changes: impl IntoIterator<Item = (Prefix, Option<RouteValue>)>) -> Written {
        let before = self.tables.overflow();
        let synced = self.tables.apply(changes);
        self.tell_overflow(&before, synced.failed);
        synced.written
    }

    /// Say what changed in what the maps refuse, and any write that failed otherwise.
    fn tell_overflow(&self, before: &Overflow, failed: Option<Error>) {
        let after = self.tables.overflow();
        if let Some((level, words)) = overflow_words(before, &after, self.tables.route_capacity()) {
            log::log!(level, "{words}");
        }
        if let Some(e) = failed.filter(|e| !e.is_map_full()) {
            log::warn!("map sync: {}", e.chain());
        }
    }

    /// Carry out one attach decision. A failed attach is logged and counted, not fatal: the
    /// interface may have vanished between the event and the attach, and the other pods keep
    /// their fast path; the node is not ready until it is attached.
    fn apply(&mut self, action: Action) {
        match action {
            Action::Attach(link) => {
                let failed =
                    self.pods.iter_mut().map(|p| p.attach(&mut self.ebpf, &link)).find_map(Result::err);
                match failed {
                    None => {
                        self.unattached.remove(&link.index);
                    }
                    Some(e) => {
                        log::warn!("{}", e.chain());
                        self.metrics.attach_failures.inc();
                        self.unattached.insert(link.index);
                    }
                }
            }
            Action::Detach(link) | Action::Forget(link) => {
                for programs in &mut self.pods {
                    programs.detach(&link);
                }
            }
            Action::Nothing => {}
        }
    }

    fn update_readiness(&mut self) {
        let ready = self.unattached.is_empty();
        self.metrics.set_ready(ready);
        self.agent.flags = (self.agent.flags & !AGENT_F_READY) | if ready { AGENT_F_READY } else { 0 };
    }

    /// Tell `fastpath status` the daemon is alive (and ready or not).
    fn heartbeat(&mut self) {
        self.update_readiness();
        self.agent.heartbeat_unix_ms = unix_ms();
        if let Err(e) = self.tables.set_agent(&self.agent) {
            log::warn!("{}", e.chain());
        }
    }
}

/// What to say when what the maps refused changed (`None`: nothing did). A map that starts
/// refusing is a warning, once, however many entries it refuses after (300 000 BGP routes are
/// 300 000 route events); every entry fitting again is a note; any other change is a debug line.
fn overflow_words(before: &Overflow, after: &Overflow, route_capacity: u32) -> Option<(log::Level, String)> {
    let refused = |o: &Overflow| [o.routes, o.endpoints, o.endpoints6, o.routes6, o.peers6];
    if refused(after) == refused(before) {
        return None;
    }
    if refused(after) == [0; 5] {
        return Some((log::Level::Info, "the maps have room again: every entry is written".into()));
    }
    let mut words = Vec::new();
    if after.routes > 0 {
        let example =
            after.example.map(|(len, addr)| format!(", {addr}/{len} the longest")).unwrap_or_default();
        words.push(format!(
            "FP_ROUTES is full ({route_capacity} entries): {} prefixes are not in it{example}; the kernel routes them, and every entry covering one of them sends its traffic to the kernel until it fits (--route-capacity)",
            after.routes
        ));
    }
    if after.endpoints > 0 {
        words.push(format!(
            "FP_ENDPOINTS is full: {} local pods are not in it; their routes carry them (--endpoint-capacity)",
            after.endpoints
        ));
    }
    if after.endpoints6 > 0 {
        words.push(format!(
            "FP_ENDPOINTS6 is full: {} local pods' IPv6 addresses are not in it; the kernel carries them (--endpoint-capacity)",
            after.endpoints6
        ));
    }
    if after.routes6 > 0 {
        words.push(format!(
            "FP_ROUTES6 is full ({ROUTES6_MAX} entries): {} IPv6 prefixes are not in it; the kernel routes them, and every entry covering one of them sends its traffic to the kernel",
            after.routes6
        ));
    }
    if after.peers6 > 0 {
        words.push(format!(
            "FP_PEERS6 is full: {} nodes are not in it; their IPv6 VXLAN to this node is dropped until they fit (--peer-capacity)",
            after.peers6
        ));
    }
    let starts = refused(before).iter().zip(refused(after)).any(|(before, after)| *before == 0 && after > 0);
    Some((if starts { log::Level::Warn } else { log::Level::Debug }, words.join("; ")))
}

/// The dumps of a start-up or a resync (every route and link, as netlink messages, and the old
/// picture) are freed by now; give their memory back to the system rather than keep it as the
/// process's high-water mark.
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free heap memory; it has no other effect.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Whether the fast path will encapsulate in IPIP: `--ipip always` or `cross-subnet` may at any
/// time; `follow` when a route says so now.
fn sends_ipip(mode: EncapMode, routes_encapsulate: bool) -> bool {
    match mode {
        EncapMode::Always | EncapMode::CrossSubnet => true,
        EncapMode::Follow => routes_encapsulate,
        EncapMode::Never => false,
    }
}

/// `--tc-attach` made concrete: `auto` is tcx where the kernel has it, else legacy tc, said once.
fn hook_for(choice: TcAttach, kernel_has_tcx: bool) -> Hook {
    match choice {
        TcAttach::Tcx => Hook::Tcx,
        TcAttach::Legacy => Hook::LegacyTc,
        TcAttach::Auto if kernel_has_tcx => Hook::Tcx,
        TcAttach::Auto => {
            log::warn!(
                "this kernel has no tcx (Linux 6.6): attaching as legacy tc filters under a clsact qdisc"
            );
            Hook::LegacyTc
        }
    }
}

/// The agent's mode flags: `--trust kernel`, legacy tc.
fn mode_flags(trust: modes::Trust, hook: Hook) -> u32 {
    let legacy = if hook == Hook::LegacyTc { AGENT_F_LEGACY_TC } else { 0 };
    trust.agent_flag() | legacy
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

/// The next event of conntrack's under `--trust kernel`; never resolves under `--trust routes`.
async fn next_conntrack(trust: &mut Option<(Trust, Flows)>) -> Option<crate::daemon::conntrack::Event> {
    match trust {
        Some((trust, _)) => trust.next().await,
        None => std::future::pending().await,
    }
}

/// Start forwarding eBPF log records to `log`. Without it the programs still run; say so.
fn ebpf_logger(ebpf: &mut Ebpf) -> Option<Logger> {
    let logger = match EbpfLogger::init(ebpf) {
        Ok(logger) => logger,
        // The object has no log map when no program writes a log statement (today's build):
        // there is nothing to show, so this is not worth a warning on every start.
        Err(aya_log::Error::MapNotFound) => {
            log::debug!("the programs write no eBPF logs");
            return None;
        }
        Err(e) => {
            log::warn!("eBPF logs will not be shown: {e}");
            return None;
        }
    };
    // SAFETY: the logger owns the ring buffer's fd and keeps it open, unchanged, for as long as
    // the AsyncFd that owns the logger lives.
    unsafe { AsyncFd::register(logger) }.map_err(|e| log::warn!("eBPF logs will not be shown: {e}")).ok()
}

/// Wait for eBPF log records and print them; never resolves when there is no logger.
async fn drain(logger: &mut Option<Logger>) {
    let Some(logger) = logger else { return std::future::pending().await };
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

#[cfg(test)]
mod tests {
    use fastpath_common::maps::AGENT_F_TRUST_KERNEL;

    use super::*;

    #[test]
    fn auto_attaches_with_tcx_only_where_the_kernel_has_it() {
        assert_eq!(hook_for(TcAttach::Auto, true), Hook::Tcx);
        assert_eq!(hook_for(TcAttach::Auto, false), Hook::LegacyTc);
        assert_eq!(hook_for(TcAttach::Legacy, true), Hook::LegacyTc);
        assert_eq!(hook_for(TcAttach::Tcx, false), Hook::Tcx);
    }

    #[test]
    fn ipip_is_sent_when_the_mode_or_the_routes_say_so() {
        assert!(sends_ipip(EncapMode::Always, false));
        assert!(sends_ipip(EncapMode::CrossSubnet, false));
        assert!(sends_ipip(EncapMode::Follow, true));
        assert!(!sends_ipip(EncapMode::Follow, false));
        assert!(!sends_ipip(EncapMode::Never, true));
    }

    #[test]
    fn a_full_map_is_told_once_per_change() {
        let none = Overflow::default();
        let full = Overflow {
            routes: 3,
            endpoints: 0,
            endpoints6: 0,
            routes6: 0,
            peers6: 0,
            example: Some((32, std::net::Ipv4Addr::new(10, 244, 40, 40))),
        };
        assert_eq!(overflow_words(&none, &none, 64), None);
        assert_eq!(overflow_words(&full, &full, 64), None, "the same refusals again: not a word");
        let (level, words) = overflow_words(&none, &full, 64).unwrap();
        assert_eq!(level, log::Level::Warn);
        assert!(
            words.starts_with(
                "FP_ROUTES is full (64 entries): 3 prefixes are not in it, 10.244.40.40/32 the longest"
            ),
            "{words}"
        );
        let fewer = Overflow { routes: 1, ..full };
        assert_eq!(overflow_words(&full, &fewer, 64).unwrap().0, log::Level::Debug);
        assert_eq!(
            overflow_words(&fewer, &full, 64).unwrap().0,
            log::Level::Debug,
            "fuller: not a warning again"
        );
        let endpoints_too = Overflow { endpoints: 1, ..full };
        assert_eq!(overflow_words(&full, &endpoints_too, 64).unwrap().0, log::Level::Warn);
        let (level, words) = overflow_words(&none, &Overflow { routes6: 2, ..none }, 64).unwrap();
        assert_eq!(level, log::Level::Warn);
        assert!(words.starts_with("FP_ROUTES6 is full (65536 entries): 2 IPv6 prefixes"), "{words}");
        let (level, words) = overflow_words(&none, &Overflow { peers6: 1, ..none }, 64).unwrap();
        assert_eq!(level, log::Level::Warn);
        assert!(words.starts_with("FP_PEERS6 is full: 1 nodes are not in it"), "{words}");
        let (level, words) = overflow_words(&fewer, &none, 64).unwrap();
        assert_eq!(
            (level, words.as_str()),
            (log::Level::Info, "the maps have room again: every entry is written")
        );
    }

    #[test]
    fn mode_flags_say_trust_and_hook() {
        assert_eq!(mode_flags(modes::Trust::Routes, Hook::Tcx), 0);
        assert_eq!(
            mode_flags(modes::Trust::Kernel, Hook::LegacyTc),
            AGENT_F_TRUST_KERNEL | AGENT_F_LEGACY_TC
        );
    }
}
