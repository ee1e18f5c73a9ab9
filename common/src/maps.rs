//! Map names, value layouts and the pin layout shared by the programs, the daemon and the CLI.

/// Per-CPU counters, indexed by [`crate::Reason`]: one [`Counter`] per reason per CPU.
pub const COUNTERS: &str = "FP_COUNTERS";

/// LPM trie: IPv4 prefix → [`crate::route::RouteValue`]. The key is aya's `lpm_trie::Key<[u8; 4]>`:
/// `prefix_len: u32` then the address in network order, as the kernel wants it.
pub const ROUTES: &str = "FP_ROUTES";

/// Hash: pod IPv4 (`[u8; 4]`) → [`Endpoint`], every pod on this node whose MAC is known. The
/// programs look here before the route trie: an exact match costs less than a prefix match.
pub const ENDPOINTS: &str = "FP_ENDPOINTS";

/// Hash: pod IPv6 (`[u8; 16]`) → [`Endpoint`], every pod on this node with an IPv6 address
/// whose MAC is known: a dual-stack pod's second family, on the same interface.
pub const ENDPOINTS6: &str = "FP_ENDPOINTS6";

/// One-slot array: this node's [`NodeConfig`].
pub const NODE: &str = "FP_NODE";

/// LPM trie: IPv6 prefix → [`crate::route6::RouteValue6`] (other nodes' blocks, plain or VXLAN,
/// this node's block as a blackhole, what the kernel must route). The key is aya's
/// `lpm_trie::Key<[u8; 16]>`: `prefix_len: u32` then the address in network order. Local pods
/// are [`ENDPOINTS6`]'s, not this trie's.
pub const ROUTES6: &str = "FP_ROUTES6";

/// Hash: node IPv6 address on the underlay (`[u8; 16]`) → 1, the nodes whose IPv6 VXLAN this
/// node accepts (IPv4's [`TUNNEL_PEERS`], for the other family).
pub const TUNNEL_PEERS6: &str = "FP_PEERS6";

/// One-slot array: this node's [`Node6Config`], its IPv6 side. Until the daemon sets
/// [`NODE6_F_READY`], IPv6 for other nodes goes to the kernel (pods here are carried as before).
pub const NODE6: &str = "FP_NODE6";

/// LRU hash: next hop IPv6 (`[u8; 16]`) → [`NextHopEntry`], [`NEXT_HOPS`] for IPv6 next hops
/// (the same generation, [`NodeConfig::next_hop_generation`]: the daemon bumps it on a change of
/// the underlay's IPv6 neighbours or routes too). Written by the programs only.
pub const NEXT_HOPS6: &str = "FP_NEXT_HOPS6";

/// Hash: node IPv4 (`[u8; 4]`) → 1, the nodes whose tunnels (IPIP, VXLAN) this node accepts.
pub const TUNNEL_PEERS: &str = "FP_PEERS";

/// One-slot array: the running daemon's [`AgentInfo`], for `fastpath status` and for telling a
/// pin folder of another layout.
pub const AGENT: &str = "FP_AGENT";

/// One-slot array: [`MonitorControl`], written by `fastpath monitor` while it runs.
pub const MONITOR: &str = "FP_MONITOR";

/// Ring buffer of [`MonitorEvent`]s, filled only while a monitor is attached.
pub const EVENTS: &str = "FP_EVENTS";

/// LRU hash: [`crate::flow::FlowKey`] → [`crate::flow::FlowValue`], one entry per flow direction
/// the kernel's conntrack holds a confirmed entry for, written by the daemon, under `--trust
/// kernel`. Sized by `--flow-table-size`; a full table evicts the least recently used flow, which
/// then goes through the kernel again.
pub const FLOWS: &str = "FP_FLOWS";

/// LRU hash: [`crate::flow6::FlowKey6`] → [`crate::flow6::FlowValue6`], [`FLOWS`] for IPv6,
/// of the same size.
pub const FLOWS6: &str = "FP_FLOWS6";

/// LRU hash: next hop IPv4 (`[u8; 4]`) → [`NextHopEntry`], the programs' cache of what
/// `bpf_fib_lookup` said about reaching it over the underlay. An entry is used only while its
/// generation is [`NodeConfig::next_hop_generation`]; the daemon bumps that on every neighbour or
/// route change of the underlay, so the kernel's FIB stays the authority and is asked once per
/// next hop and change instead of once per packet.
pub const NEXT_HOPS: &str = "FP_NEXT_HOPS";

/// LRU hash: another node's underlay address (`[u8; 4]`) → [`PathMtu`], the path MTU toward it
/// as a router on the way said ("fragmentation needed" quoting one of this node's tunnel
/// packets), written by the underlay program. It ages out as the kernel's PMTU cache does.
pub const PATH_MTU: &str = "FP_PATH_MTU";

/// LRU hash: another node's IPv6 address on the underlay (`[u8; 16]`) → [`PathMtu`], [`PATH_MTU`]
/// for IPv6 VXLAN: the path MTU toward it as a router said (ICMPv6 "packet too big" quoting one
/// of this node's IPv6 VXLAN packets, never below [`PATH_MTU6_MIN`]), written by the underlay
/// program; it ages out as the kernel's IPv6 PMTU cache does.
pub const PATH_MTU6: &str = "FP_PATH_MTU6";

/// Bumped whenever the meaning of a map value changes without its size changing, so a daemon
/// never misreads the maps an older one pinned.
/// (3: remote blocks may be VXLAN, `RouteValue::mac` then being the other node's VTEP MAC.)
/// (4: `FP_FLOWS6`, IPv6 flows under `--trust kernel`.)
/// (5: `MonitorControl` and `MonitorEvent` hold IPv6 addresses, IPv4 mapped.)
/// (6: `FP_PATH_MTU6`, the path MTU routers teach toward other nodes' IPv6 VXLAN.)
pub const LAYOUT_VERSION: u32 = 6;

/// Bytes of the monitor's ring buffer.
pub const EVENTS_BYTES: u32 = 256 * 1024;

/// Room in the route trie (Calico: one /32 per local pod plus one block per node).
pub const ROUTES_MAX: u32 = 262_144;
/// Room in the endpoint table (pods on one node).
pub const ENDPOINTS_MAX: u32 = 16_384;
/// Room in the peer table (nodes in the cluster).
pub const TUNNEL_PEERS_MAX: u32 = 16_384;

/// Room in the IPv6 route trie (one block per node, a few kernel entries).
pub const ROUTES6_MAX: u32 = 65_536;

/// Room in the next-hop cache (one per node the fast path sends to; the least recently used
/// is forgotten first).
pub const NEXT_HOPS_MAX: u32 = 16_384;

/// Room in the path MTU table (one per node a router told us about).
pub const PATH_MTU_MAX: u32 = 16_384;

/// How long a learned path MTU holds, as the kernel's `net.ipv4.route.mtu_expires` (10 minutes).
pub const PATH_MTU_EXPIRES_NS: u64 = 600 * 1_000_000_000;

/// The smallest path MTU taken from a router, as the kernel's `net.ipv4.route.min_pmtu`: a
/// smaller claim is raised to it.
pub const PATH_MTU_MIN: u32 = 552;

/// The smallest path MTU IPv6 knows (RFC 8200 §5, the kernel's `IPV6_MIN_MTU`): a "packet too
/// big" claiming less is ignored (RFC 8201 §4; the kernel's `__ip6_rt_update_pmtu` returns
/// without learning).
pub const PATH_MTU6_MIN: u32 = 1280;

/// Room in the flow table unless `--flow-table-size` says otherwise.
pub const FLOWS_DEFAULT_MAX: u32 = 65_536;

/// The default folder the daemon pins its maps in.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/fastpath";

/// Maps the daemon pins in its folder, by file name (the map name, as bpftool shows it).
pub const PINNED_MAPS: [&str; 18] = [
    COUNTERS,
    ROUTES,
    ENDPOINTS,
    NODE,
    TUNNEL_PEERS,
    AGENT,
    MONITOR,
    EVENTS,
    FLOWS,
    NEXT_HOPS,
    PATH_MTU,
    ENDPOINTS6,
    ROUTES6,
    TUNNEL_PEERS6,
    NODE6,
    NEXT_HOPS6,
    FLOWS6,
    PATH_MTU6,
];

/// What a pinned map must look like to be reused (`bpf_map_info`'s sizes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapLayout {
    pub name: &'static str,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
}

const fn size<T>() -> u32 {
    core::mem::size_of::<T>() as u32
}

/// The layout of every pinned map, from the same types and constants the programs use.
/// The flow table's `max_entries` is the daemon's `--flow-table-size`; the check substitutes it.
pub const LAYOUTS: [MapLayout; 18] = [
    MapLayout {
        name: COUNTERS,
        key_size: 4,
        value_size: size::<Counter>(),
        max_entries: crate::reason::COUNTER_SLOTS,
    },
    // The trie's key is the prefix length (u32) and the IPv4 address.
    MapLayout {
        name: ROUTES,
        key_size: 8,
        value_size: size::<crate::route::RouteValue>(),
        max_entries: ROUTES_MAX,
    },
    MapLayout { name: ENDPOINTS, key_size: 4, value_size: size::<Endpoint>(), max_entries: ENDPOINTS_MAX },
    MapLayout { name: NODE, key_size: 4, value_size: size::<NodeConfig>(), max_entries: 1 },
    MapLayout { name: TUNNEL_PEERS, key_size: 4, value_size: 4, max_entries: TUNNEL_PEERS_MAX },
    MapLayout { name: AGENT, key_size: 4, value_size: size::<AgentInfo>(), max_entries: 1 },
    MapLayout { name: MONITOR, key_size: 4, value_size: size::<MonitorControl>(), max_entries: 1 },
    // A ring buffer has neither key nor value; its size is its max_entries.
    MapLayout { name: EVENTS, key_size: 0, value_size: 0, max_entries: EVENTS_BYTES },
    MapLayout {
        name: FLOWS,
        key_size: size::<crate::flow::FlowKey>(),
        value_size: size::<crate::flow::FlowValue>(),
        max_entries: FLOWS_DEFAULT_MAX,
    },
    MapLayout {
        name: NEXT_HOPS,
        key_size: 4,
        value_size: size::<NextHopEntry>(),
        max_entries: NEXT_HOPS_MAX,
    },
    MapLayout { name: PATH_MTU, key_size: 4, value_size: size::<PathMtu>(), max_entries: PATH_MTU_MAX },
    MapLayout { name: ENDPOINTS6, key_size: 16, value_size: size::<Endpoint>(), max_entries: ENDPOINTS_MAX },
    // The trie's key is the prefix length (u32) and the IPv6 address.
    MapLayout {
        name: ROUTES6,
        key_size: 20,
        value_size: size::<crate::route6::RouteValue6>(),
        max_entries: ROUTES6_MAX,
    },
    MapLayout { name: TUNNEL_PEERS6, key_size: 16, value_size: 4, max_entries: TUNNEL_PEERS_MAX },
    MapLayout { name: NODE6, key_size: 4, value_size: size::<Node6Config>(), max_entries: 1 },
    MapLayout {
        name: NEXT_HOPS6,
        key_size: 16,
        value_size: size::<NextHopEntry>(),
        max_entries: NEXT_HOPS_MAX,
    },
    MapLayout {
        name: FLOWS6,
        key_size: size::<crate::flow6::FlowKey6>(),
        value_size: size::<crate::flow6::FlowValue6>(),
        max_entries: FLOWS_DEFAULT_MAX,
    },
    MapLayout { name: PATH_MTU6, key_size: 16, value_size: size::<PathMtu>(), max_entries: PATH_MTU_MAX },
];

/// The path MTU toward another node (the value of [`PATH_MTU`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathMtu {
    /// The largest outer packet the path carries, in bytes.
    pub mtu: u32,
    pub _pad: u32,
    /// `bpf_ktime_get_ns()` after which it no longer holds.
    pub expires_ns: u64,
}

const _: () = assert!(core::mem::size_of::<PathMtu>() == 16);

impl PathMtu {
    /// What a router's "fragmentation needed" with next-hop MTU `mtu` teaches, at `now_ns`
    /// (`None` for a message without one, which the kernel would guess from: we leave that to it).
    pub const fn learned(mtu: u16, now_ns: u64) -> Option<Self> {
        if mtu == 0 {
            return None;
        }
        let mtu = if (mtu as u32) < PATH_MTU_MIN { PATH_MTU_MIN } else { mtu as u32 };
        Some(Self { mtu, _pad: 0, expires_ns: now_ns.saturating_add(PATH_MTU_EXPIRES_NS) })
    }

    /// What an ICMPv6 "packet too big" with MTU `mtu` teaches, at `now_ns`: nothing below
    /// [`PATH_MTU6_MIN`], which IPv6 never goes under (RFC 8201 §4 has such a message ignored,
    /// and the kernel's `__ip6_rt_update_pmtu` ignores it too, rather than raise it as IPv4's
    /// `min_pmtu` does).
    pub const fn learned6(mtu: u32, now_ns: u64) -> Option<Self> {
        if mtu < PATH_MTU6_MIN {
            return None;
        }
        Some(Self { mtu, _pad: 0, expires_ns: now_ns.saturating_add(PATH_MTU_EXPIRES_NS) })
    }

    /// The largest inner packet a tunnel adding `overhead` bytes carries along this path at
    /// `now_ns`, if the entry still holds.
    pub const fn inner_mtu(&self, overhead: u32, now_ns: u64) -> Option<u32> {
        if now_ns >= self.expires_ns {
            return None;
        }
        Some(self.mtu.saturating_sub(overhead))
    }

    /// What a tunnel of MTU `tunnel_mtu`, adding `overhead` bytes, carries toward a node a router
    /// said `learned` about: the path's inner MTU while that word holds and is lower, with the
    /// path's own MTU beside it (for the words); else the tunnel's own. The clock is read only
    /// when there is a word: most packets go where no router said anything.
    #[inline(always)]
    pub fn narrowest(
        learned: Option<Self>,
        overhead: u32,
        tunnel_mtu: u32,
        now_ns: impl FnOnce() -> u64,
    ) -> (u32, Option<u32>) {
        let path = learned
            .and_then(|p| Some((p.mtu, p.inner_mtu(overhead, now_ns())?)))
            .filter(|(_, inner)| *inner < tunnel_mtu);
        match path {
            Some((outer, inner)) => (inner, Some(outer)),
            None => (tunnel_mtu, None),
        }
    }
}

/// How to reach a next hop over the underlay, as the FIB said under `generation` (the value of
/// [`NEXT_HOPS`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NextHopEntry {
    pub generation: u32,
    /// The interface the FIB sends it out of.
    pub ifindex: u32,
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
}

const _: () = assert!(core::mem::size_of::<NextHopEntry>() == 20);

/// A pod on this node (the value of [`ENDPOINTS`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// The host side of the pod's veth.
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

const _: () = assert!(core::mem::size_of::<Endpoint>() == 12);

/// `NodeConfig::flags`: the daemon has filled this node's settings; until then every IPv4
/// packet goes to the kernel.
pub const NODE_F_READY: u32 = 1;
/// `NodeConfig::flags`: `--trust kernel`, a flow direction takes the fast path only by the entry
/// the kernel's conntrack holds for it ([`crate::flow`]).
pub const NODE_F_TRUST_KERNEL: u32 = 2;
/// `NodeConfig::flags`: this node has a `vxlan.calico` the programs can stand in for
/// (`NodeConfig::vxlan` holds its settings); without it VXLAN is the kernel's, both ways.
pub const NODE_F_VXLAN: u32 = 4;

/// This node's settings, the one value of [`NODE`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeConfig {
    /// Where encapsulated packets leave and arrive.
    pub underlay_ifindex: u32,
    /// The underlay address: source of our tunnels, destination of the tunnels we accept.
    pub node_ip: [u8; 4],
    pub node_mac: [u8; 6],
    pub _pad: [u8; 2],
    /// The underlay's MTU; IPIP's is 20 bytes less, VXLAN's 50.
    pub underlay_mtu: u32,
    /// `NODE_F_*`.
    pub flags: u32,
    /// Bumped by the daemon whenever the underlay's neighbours or routes change: a next hop the
    /// programs cached ([`NEXT_HOPS`]) under another generation is asked of the FIB again.
    pub next_hop_generation: u32,
    /// This node's `vxlan.calico`, when `NODE_F_VXLAN` says there is one.
    pub vxlan: crate::vxlan::VxlanConfig,
    /// The largest inner packet IPIP carries: the underlay's MTU less 20, or `tunl0`'s own MTU
    /// when that is lower (Felix sets it from its configuration).
    pub ipip_mtu: u32,
    /// The same for VXLAN: the underlay's MTU less 50, or `vxlan.calico`'s when lower.
    pub vxlan_mtu: u32,
}

const _: () = assert!(core::mem::size_of::<NodeConfig>() == 60);

impl NodeConfig {
    pub const fn ready(&self) -> bool {
        self.flags & NODE_F_READY != 0
    }

    pub const fn trusts_kernel(&self) -> bool {
        self.flags & NODE_F_TRUST_KERNEL != 0
    }

    pub const fn has_vxlan(&self) -> bool {
        self.flags & NODE_F_VXLAN != 0
    }

    /// The largest inner packet `tunnel` carries from this node (before any path MTU a router
    /// taught, [`PathMtu`]).
    pub const fn tunnel_mtu(&self, tunnel: &crate::tunnel::Tunnel) -> u32 {
        match tunnel {
            crate::tunnel::Tunnel::Ipip => self.ipip_mtu,
            crate::tunnel::Tunnel::Vxlan => self.vxlan_mtu,
        }
    }
}

/// `Node6Config::flags`: the daemon has filled this node's IPv6 side (its address); until then
/// IPv6 for other nodes is the kernel's, both ways.
pub const NODE6_F_READY: u32 = 1;
/// `Node6Config::flags`: this node has a `vxlan-v6.calico` the programs can stand in for
/// (`Node6Config::vxlan` holds its settings); without it IPv6 VXLAN is the kernel's, both ways.
pub const NODE6_F_VXLAN: u32 = 2;

/// This node's IPv6 side, the one value of [`NODE6`]. The rest ([`NodeConfig`]: the underlay,
/// its MTU, the trust mode, the next-hop generation) is shared with IPv4, and must be ready too.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Node6Config {
    /// `NODE6_F_*`.
    pub flags: u32,
    /// The largest inner packet IPv6 VXLAN carries: the underlay's MTU less 70
    /// ([`crate::vxlan::OVERHEAD6`]), or `vxlan-v6.calico`'s own MTU when that is lower.
    pub vxlan_mtu: u32,
    /// This node's IPv6 address on the underlay: the source of its IPv6 VXLAN and of its FIB
    /// lookups, the destination of the IPv6 VXLAN it accepts.
    pub node_ip: [u8; 16],
    /// This node's `vxlan-v6.calico`, when `NODE6_F_VXLAN` says there is one: read as IPv4's
    /// `vxlan.calico` is, `ttl` being the outer hop limit (the device's `ttl`, or the underlay's
    /// `hop_limit` sysctl, 64, when the device says 0; [`crate::vxlan::TTL_INHERIT`] for `ttl
    /// inherit`), `tos` the outer traffic class; `df` means nothing for IPv6.
    pub vxlan: crate::vxlan::VxlanConfig,
}

const _: () = assert!(core::mem::size_of::<Node6Config>() == 48);

impl Node6Config {
    pub const fn ready(&self) -> bool {
        self.flags & NODE6_F_READY != 0
    }

    pub const fn has_vxlan(&self) -> bool {
        self.flags & NODE6_F_VXLAN != 0
    }
}

/// Packets and bytes seen under one reason on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

const _: () = assert!(core::mem::size_of::<Counter>() == 16);

impl Counter {
    /// The sum of two counters (used to fold per-CPU values together).
    pub const fn add(self, other: Counter) -> Counter {
        Counter {
            packets: self.packets.wrapping_add(other.packets),
            bytes: self.bytes.wrapping_add(other.bytes),
        }
    }
}

/// The running daemon, as it describes itself (the value of [`AGENT`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AgentInfo {
    /// [`LAYOUT_VERSION`] of the daemon that created the maps.
    pub layout_version: u32,
    pub pid: u32,
    pub started_unix_ms: u64,
    /// Refreshed every second while the daemon runs: a stale heartbeat means no daemon.
    pub heartbeat_unix_ms: u64,
    /// `--ipip` as a number (0 follow, 1 always, 2 cross-subnet, 3 never).
    pub ipip_mode: u32,
    /// `--vxlan`, numbered as `ipip_mode`.
    pub vxlan_mode: u32,
    pub _pad: u32,
    /// `AGENT_F_*`.
    pub flags: u32,
    /// The daemon's version, NUL-padded.
    pub version: [u8; 16],
    /// `--iface-prefix`, NUL-padded, so `fastpath verify` judges the interfaces as the daemon
    /// does.
    pub iface_prefix: [u8; 16],
    /// Drifts between the maps and the kernel found and repaired by periodic resyncs.
    pub repairs: u64,
}

const _: () = assert!(core::mem::size_of::<AgentInfo>() == 80);

/// `AgentInfo::flags`: the maps are synced and every matching interface is attached.
pub const AGENT_F_READY: u32 = 1;
/// `AgentInfo::flags`: the daemon runs with `--trust kernel` (egress programs attached too).
pub const AGENT_F_TRUST_KERNEL: u32 = 2;
/// `AgentInfo::flags`: the programs attach as legacy tc filters (no tcx), which are not pinned
/// links and so are not listed by `fastpath status`.
pub const AGENT_F_LEGACY_TC: u32 = 4;

/// What `fastpath monitor` asks for (the value of [`MONITOR`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MonitorControl {
    /// Report packets until this `bpf_ktime_get_ns()` time; 0 or past means off. A monitor that
    /// dies stops the reports by itself.
    pub until_ns: u64,
    /// Report only packets with this address as source or destination, under `mask` (all-zero
    /// mask: every packet). Both in IPv6's form, an IPv4 filter IPv4-mapped (`::ffff:a.b.c.d`,
    /// its mask covering the 96 bits before it), as [`MonitorEvent`]'s addresses are: one
    /// comparison serves either family, and an IPv4 filter never matches IPv6.
    pub addr: [u8; 16],
    pub mask: [u8; 16],
}

const _: () = assert!(core::mem::size_of::<MonitorControl>() == 40);

impl MonitorControl {
    /// A filter for the `prefix_len`-bit prefix `addr` (IPv6's form; for IPv4, its mapped
    /// address and 96 + its prefix length), not yet turned on.
    pub const fn filter(addr: [u8; 16], prefix_len: u8) -> Self {
        let mut mask = [0u8; 16];
        let mut i = 0;
        while i < 16 {
            let bits = prefix_len as i32 - 8 * i as i32;
            mask[i] = if bits >= 8 {
                0xff
            } else if bits <= 0 {
                0
            } else {
                0xff << (8 - bits)
            };
            i += 1;
        }
        let mut masked = addr;
        let mut i = 0;
        while i < 16 {
            masked[i] &= mask[i];
            i += 1;
        }
        Self { until_ns: 0, addr: masked, mask }
    }

    /// Whether `src` or `dst` (IPv6's form, IPv4 mapped) is in the filter's prefix.
    #[inline(always)]
    pub const fn matches(&self, src: &[u8; 16], dst: &[u8; 16]) -> bool {
        self.covers(src) || self.covers(dst)
    }

    /// Two 64-bit comparisons: the programs check every packet while a monitor runs.
    #[inline(always)]
    const fn covers(&self, a: &[u8; 16]) -> bool {
        let (a_hi, a_lo) = halves(a);
        let (f_hi, f_lo) = halves(&self.addr);
        let (m_hi, m_lo) = halves(&self.mask);
        (a_hi ^ f_hi) & m_hi == 0 && (a_lo ^ f_lo) & m_lo == 0
    }
}

#[inline(always)]
const fn halves(a: &[u8; 16]) -> (u64, u64) {
    (
        u64::from_ne_bytes([a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]]),
        u64::from_ne_bytes([a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]]),
    )
}

/// `MonitorEvent::program`.
pub const PROGRAM_FROM_POD: u32 = 0;
pub const PROGRAM_FROM_UNDERLAY: u32 = 1;

/// `MonitorEvent::family`.
pub const FAMILY_IPV4: u8 = 4;
pub const FAMILY_IPV6: u8 = 6;

/// One packet's decision, as the monitor shows it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MonitorEvent {
    pub time_ns: u64,
    pub ifindex: u32,
    /// `PROGRAM_*`.
    pub program: u32,
    /// The addresses in IPv6's form, IPv4's IPv4-mapped (`::ffff:a.b.c.d`, [`crate::ipv6::v4_mapped`]).
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    /// The IPv4 protocol or the IPv6 next header.
    pub protocol: u8,
    /// `FAMILY_*`.
    pub family: u8,
    /// The ICMP type (protocol 1) or ICMPv6 type (next header 58); 0 for anything else.
    pub icmp_type: u8,
    pub _pad: u8,
    pub verdict: i32,
    /// A [`crate::Reason`] code.
    pub reason: u32,
    /// The packet's length as it arrived.
    pub len: u32,
    pub _pad2: u32,
}

const _: () = assert!(core::mem::size_of::<MonitorEvent>() == 72);

#[cfg(feature = "user")]
mod user {
    // SAFETY: each type is `#[repr(C)]`, `Copy`, and has no implicit padding (its layout is
    // asserted above), so every byte pattern of its size is a valid value.
    unsafe impl aya::Pod for super::Counter {}
    unsafe impl aya::Pod for super::NodeConfig {}
    unsafe impl aya::Pod for super::Endpoint {}
    unsafe impl aya::Pod for super::NextHopEntry {}
    unsafe impl aya::Pod for super::PathMtu {}
    unsafe impl aya::Pod for super::AgentInfo {}
    unsafe impl aya::Pod for super::MonitorControl {}
    unsafe impl aya::Pod for super::MonitorEvent {}
    unsafe impl aya::Pod for super::Node6Config {}
    unsafe impl aya::Pod for crate::route::RouteValue {}
    unsafe impl aya::Pod for crate::route6::RouteValue6 {}
    unsafe impl aya::Pod for crate::flow::FlowKey {}
    unsafe impl aya::Pod for crate::flow::FlowValue {}
    unsafe impl aya::Pod for crate::flow6::FlowKey6 {}
    unsafe impl aya::Pod for crate::flow6::FlowValue6 {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipv6::v4_mapped;

    #[test]
    fn a_monitor_filter_matches_either_address() {
        let (pod, remote, outside) =
            (v4_mapped([10, 244, 40, 36]), v4_mapped([10, 244, 166, 150]), v4_mapped([8, 8, 8, 8]));
        let all = MonitorControl { until_ns: 1, ..MonitorControl::default() };
        assert!(all.matches(&pod, &remote));
        let one = MonitorControl::filter(pod, 128);
        assert_eq!(one.mask, [0xff; 16]);
        assert!(one.matches(&pod, &outside));
        assert!(one.matches(&outside, &pod));
        assert!(!one.matches(&v4_mapped([10, 244, 40, 37]), &outside));
        let block = MonitorControl::filter(v4_mapped([10, 244, 166, 128]), 96 + 26);
        assert!(block.matches(&v4_mapped([1, 1, 1, 1]), &remote));
        assert!(!block.matches(&pod, &outside));
    }

    #[test]
    fn a_monitor_filter_of_either_family_matches_only_its_family() {
        let pod6 = [0xfd, 0x5f, 0xa1, 0xb2, 0xc3, 0xd4, 0, 0, 0, 0, 0, 0, 10, 244, 40, 36];
        let remote6 = [0xfd, 0x5f, 0xa1, 0xb2, 0xc3, 0xd4, 0, 0, 0, 0, 0, 0, 10, 244, 166, 150];
        let pod4 = v4_mapped([10, 244, 40, 36]);
        // An IPv6 /128, and the /122 block of the remote pod (its last 6 bits are the host's).
        let one = MonitorControl::filter(pod6, 128);
        assert!(one.matches(&pod6, &remote6) && one.matches(&remote6, &pod6));
        assert!(!one.matches(&remote6, &remote6));
        assert!(!one.matches(&pod4, &pod4), "an IPv6 filter never matches IPv4");
        let block = MonitorControl::filter(remote6, 122);
        assert_eq!(block.addr[15], 128, "the filter keeps the prefix's bits only");
        assert_eq!(block.mask[15], 0xc0);
        assert!(block.matches(&pod6, &remote6));
        assert!(!block.matches(&pod6, &pod6));
        // An IPv4 filter, even 0.0.0.0/0, matches IPv4 alone.
        let v4 = MonitorControl::filter(pod4, 128);
        assert!(v4.matches(&pod4, &pod4) && !v4.matches(&pod6, &remote6));
        let any4 = MonitorControl::filter(v4_mapped([0; 4]), 96);
        assert!(any4.matches(&pod4, &pod4) && !any4.matches(&pod6, &remote6));
        // ::/0 matches both.
        let any = MonitorControl::filter([0; 16], 0);
        assert!(any.matches(&pod4, &pod4) && any.matches(&pod6, &remote6));
    }

    #[test]
    fn a_path_mtu_is_clamped_and_ages_out() {
        assert_eq!(PathMtu::learned(0, 5), None, "no next-hop MTU: the kernel's to guess");
        let small = PathMtu::learned(300, 5).unwrap();
        assert_eq!(small.mtu, PATH_MTU_MIN);
        let learned = PathMtu::learned(1400, 5).unwrap();
        assert_eq!(learned.inner_mtu(20, 6), Some(1380));
        assert_eq!(learned.inner_mtu(50, 5 + PATH_MTU_EXPIRES_NS - 1), Some(1350));
        assert_eq!(learned.inner_mtu(20, 5 + PATH_MTU_EXPIRES_NS), None);
    }

    #[test]
    fn the_narrowest_limit_is_the_paths_while_its_word_holds_and_is_lower() {
        let learned = PathMtu::learned(1400, 5);
        let unread = || -> u64 { panic!("the clock is read only when a router said something") };
        assert_eq!(PathMtu::narrowest(None, 50, 1450, unread), (1450, None));
        assert_eq!(PathMtu::narrowest(learned, 50, 1450, || 6), (1350, Some(1400)));
        assert_eq!(PathMtu::narrowest(learned, 20, 1300, || 6), (1300, None), "the tunnel is narrower");
        assert_eq!(
            PathMtu::narrowest(learned, 50, 1450, || 5 + PATH_MTU_EXPIRES_NS),
            (1450, None),
            "aged out"
        );
    }

    #[test]
    fn an_ipv6_path_mtu_is_never_below_1280() {
        assert_eq!(PathMtu::learned6(0, 5), None);
        assert_eq!(PathMtu::learned6(1279, 5), None, "RFC 8201: below IPv6's minimum, ignored");
        let least = PathMtu::learned6(1280, 5).unwrap();
        assert_eq!(least.mtu, 1280);
        assert_eq!(least.inner_mtu(70, 6), Some(1210));
        let learned = PathMtu::learned6(70_000, 5).unwrap();
        assert_eq!(learned.mtu, 70_000, "a jumbo path is taken as said");
        assert_eq!(learned.inner_mtu(70, 5 + PATH_MTU_EXPIRES_NS), None);
    }

    #[test]
    fn every_pinned_map_has_a_layout() {
        for name in PINNED_MAPS {
            assert!(LAYOUTS.iter().any(|l| l.name == name), "{name}");
        }
    }
}
