//! Every map the programs use. BTF-defined, so `bpftool map dump` shows field names.

use aya_ebpf::{
    btf_maps::{lpm_trie::Key, Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
    macros::btf_map,
};
use fastpath_common::{
    flow::{FlowKey, FlowValue},
    flow6::{FlowKey6, FlowValue6},
    maps::{
        AgentInfo, Counter, Endpoint, MonitorControl, MonitorEvent, NextHopEntry, Node6Config, NodeConfig,
        PathMtu, ENDPOINTS_MAX, EVENTS_BYTES, FLOWS_DEFAULT_MAX, NEXT_HOPS_MAX, PATH_MTU_MAX, ROUTES6_MAX,
        ROUTES_MAX, TUNNEL_PEERS_MAX,
    },
    reason::COUNTER_SLOTS,
    route::RouteValue,
    route6::RouteValue6,
    Reason,
};

/// Packets and bytes per reason, per CPU (name: `fastpath_common::maps::COUNTERS`).
#[btf_map]
pub static FP_COUNTERS: PerCpuArray<Counter, { COUNTER_SLOTS as usize }> = PerCpuArray::new();

/// IPv4 prefix → what to do (name: `fastpath_common::maps::ROUTES`).
#[btf_map]
pub static FP_ROUTES: LpmTrie<[u8; 4], RouteValue, { ROUTES_MAX as usize }> = LpmTrie::new();

/// This node's pods by address (name: `fastpath_common::maps::ENDPOINTS`).
#[btf_map]
pub static FP_ENDPOINTS: HashMap<[u8; 4], Endpoint, { ENDPOINTS_MAX as usize }> = HashMap::new();

/// This node's pods by IPv6 address (name: `fastpath_common::maps::ENDPOINTS6`).
#[btf_map]
pub static FP_ENDPOINTS6: HashMap<[u8; 16], Endpoint, { ENDPOINTS_MAX as usize }> = HashMap::new();

/// IPv6 prefix → what to do (name: `fastpath_common::maps::ROUTES6`).
#[btf_map]
pub static FP_ROUTES6: LpmTrie<[u8; 16], RouteValue6, { ROUTES6_MAX as usize }> = LpmTrie::new();

/// Nodes whose IPv6 VXLAN we accept, by their IPv6 address (name:
/// `fastpath_common::maps::TUNNEL_PEERS6`).
#[btf_map]
pub static FP_PEERS6: HashMap<[u8; 16], u32, { TUNNEL_PEERS_MAX as usize }> = HashMap::new();

/// This node's IPv6 side, one slot (name: `fastpath_common::maps::NODE6`).
#[btf_map]
pub static FP_NODE6: Array<Node6Config, 1> = Array::new();

/// IPv6 next hops on the underlay as the FIB last said, per generation (name:
/// `fastpath_common::maps::NEXT_HOPS6`).
#[btf_map]
pub static FP_NEXT_HOPS6: LruHashMap<[u8; 16], NextHopEntry, { NEXT_HOPS_MAX as usize }> = LruHashMap::new();

/// This node's settings, one slot (name: `fastpath_common::maps::NODE`).
#[btf_map]
pub static FP_NODE: Array<NodeConfig, 1> = Array::new();

/// Nodes whose IPIP we accept (name: `fastpath_common::maps::TUNNEL_PEERS`).
#[btf_map]
pub static FP_PEERS: HashMap<[u8; 4], u32, { TUNNEL_PEERS_MAX as usize }> = HashMap::new();

/// The daemon's description of itself; the programs never read it (name:
/// `fastpath_common::maps::AGENT`).
#[btf_map]
pub static FP_AGENT: Array<AgentInfo, 1> = Array::new();

/// Whether a monitor is attached, and its filter (name: `fastpath_common::maps::MONITOR`).
#[btf_map]
pub static FP_MONITOR: Array<MonitorControl, 1> = Array::new();

/// Per-packet decisions for the monitor (name: `fastpath_common::maps::EVENTS`).
#[btf_map]
pub static FP_EVENTS: RingBuf<MonitorEvent, { EVENTS_BYTES as usize }> = RingBuf::new();

/// Flow directions and what the kernel made of them, under `--trust kernel` (name:
/// `fastpath_common::maps::FLOWS`; the daemon sets its size).
#[btf_map]
pub static FP_FLOWS: LruHashMap<FlowKey, FlowValue, { FLOWS_DEFAULT_MAX as usize }> = LruHashMap::new();

/// [`FP_FLOWS`] for IPv6 (name: `fastpath_common::maps::FLOWS6`; the daemon sets its size).
#[btf_map]
pub static FP_FLOWS6: LruHashMap<FlowKey6, FlowValue6, { FLOWS_DEFAULT_MAX as usize }> = LruHashMap::new();

/// Next hops on the underlay as the FIB last said, per generation (name:
/// `fastpath_common::maps::NEXT_HOPS`).
#[btf_map]
pub static FP_NEXT_HOPS: LruHashMap<[u8; 4], NextHopEntry, { NEXT_HOPS_MAX as usize }> = LruHashMap::new();

/// The path MTU toward other nodes, as routers said (name: `fastpath_common::maps::PATH_MTU`).
#[btf_map]
pub static FP_PATH_MTU: LruHashMap<[u8; 4], PathMtu, { PATH_MTU_MAX as usize }> = LruHashMap::new();

/// The path MTU toward other nodes' IPv6 addresses, as routers said (name:
/// `fastpath_common::maps::PATH_MTU6`).
#[btf_map]
pub static FP_PATH_MTU6: LruHashMap<[u8; 16], PathMtu, { PATH_MTU_MAX as usize }> = LruHashMap::new();

/// Room per CPU for what would otherwise sit in a program's stack frame (the kernel allows 512
/// bytes for a whole call chain): slot [`SCRATCH_FIB`] the FIB lookup's 64 bytes of parameters,
/// slot [`SCRATCH_MONITOR`] the packet a monitor watches (72 bytes). Not pinned: nothing
/// outlives one run.
#[btf_map]
pub static FP_SCRATCH: PerCpuArray<Scratch, 2> = PerCpuArray::new();

/// One slot of [`FP_SCRATCH`]: 72 bytes, 8-byte aligned.
pub type Scratch = [u64; 9];

/// [`FP_SCRATCH`]'s slot for `bpf_fib_lookup`'s parameters.
pub const SCRATCH_FIB: u32 = 0;
/// [`FP_SCRATCH`]'s slot for the monitor's event.
pub const SCRATCH_MONITOR: u32 = 1;

/// The most specific route for `addr`.
#[inline(always)]
pub fn route(addr: [u8; 4]) -> Option<&'static RouteValue> {
    FP_ROUTES.get(&Key::new(32, addr))
}

/// The most specific IPv6 route for `addr`.
#[inline(always)]
pub fn route6(addr: &[u8; 16]) -> Option<&'static RouteValue6> {
    FP_ROUTES6.get(&Key::new(128, *addr))
}

/// This node's IPv6 side, once the daemon has written it (the map's own value).
#[inline(always)]
pub fn node6() -> Option<&'static Node6Config> {
    FP_NODE6.get(0).filter(|node| node.ready())
}

#[inline(always)]
pub fn is_tunnel_peer6(addr: &[u8; 16]) -> bool {
    FP_PEERS6.get_ptr(addr).is_some()
}

/// The pod on this node with address `addr`, if any.
#[inline(always)]
pub fn endpoint(addr: [u8; 4]) -> Option<Endpoint> {
    // SAFETY: the pointer is to a live map value; it is copied out at once.
    FP_ENDPOINTS.get_ptr(addr).map(|e| unsafe { *e })
}

/// The pod on this node with IPv6 address `addr`, if any.
#[inline(always)]
pub fn endpoint6(addr: &[u8; 16]) -> Option<Endpoint> {
    // SAFETY: the pointer is to a live map value; it is copied out at once.
    FP_ENDPOINTS6.get_ptr(addr).map(|e| unsafe { *e })
}

/// This node's settings, once the daemon has written them: the map's own value, not a copy (a
/// copy would take 64 bytes of every program's stack).
#[inline(always)]
pub fn node() -> Result<&'static NodeConfig, Reason> {
    match FP_NODE.get(0) {
        Some(node) if node.ready() => Ok(node),
        _ => Err(Reason::PassNotReady),
    }
}

#[inline(always)]
pub fn is_tunnel_peer(addr: [u8; 4]) -> bool {
    FP_PEERS.get_ptr(addr).is_some()
}
