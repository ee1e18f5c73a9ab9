//! The route table the programs follow, and the decisions they take from it.
//!
//! The daemon writes [`RouteValue`]s into an LPM trie keyed by IPv4 prefix; the programs look up
//! a packet's addresses and call the pure functions here, which `fastpath explain` and the host
//! tests call too.

use crate::{ipv4::is_special_destination, tunnel::Tunnel, Reason};

/// What the fast path does with packets to a prefix (stored as `RouteValue::kind`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteKind {
    /// Let the kernel route it (also a local pod whose MAC is not known yet).
    Kernel = 0,
    /// A pod on this node: `ifindex` is the host side of its veth, `mac` the pod's own.
    LocalEndpoint = 1,
    /// A block of pods on another node: `next_hop` is that node's underlay address; `flags` say
    /// whether to encapsulate, and in what (for VXLAN, `mac` is that node's `vxlan.calico` MAC).
    RemoteBlock = 2,
    /// This node's own pod block: an address in it with no pod is dropped.
    Blackhole = 3,
}

impl TryFrom<u32> for RouteKind {
    type Error = u32;

    fn try_from(v: u32) -> Result<Self, u32> {
        match v {
            0 => Ok(Self::Kernel),
            1 => Ok(Self::LocalEndpoint),
            2 => Ok(Self::RemoteBlock),
            3 => Ok(Self::Blackhole),
            other => Err(other),
        }
    }
}

/// `RouteValue::flags`: encapsulate in IPIP toward `next_hop`.
pub const ROUTE_F_ENCAP: u32 = 1;
/// `RouteValue::flags`: encapsulate in VXLAN toward `next_hop`, whose `vxlan.calico` has MAC
/// `mac`. Never together with [`ROUTE_F_ENCAP`] (a value with both goes to the kernel).
pub const ROUTE_F_VXLAN: u32 = 2;

/// `RouteValue::flags` of a `Kernel` entry for a local pod: its interface has classic tc
/// configuration (a bandwidth limit's qdisc, a filter, an action), which only the kernel's path
/// honours: its traffic goes to the kernel both ways.
pub const ROUTE_F_CLASSIC_TC: u32 = 4;
/// `RouteValue::flags` of a `Kernel` entry: an ip rule sends packets to this prefix to a routing
/// table other than main (WireGuard's, an egress gateway's), which the fast path does not
/// reproduce.
pub const ROUTE_F_POLICY: u32 = 8;
/// `RouteValue::flags` of a `Kernel` entry: the route map had no room for a prefix inside this
/// one, which would otherwise fall into this entry (a blackhole, another node's block); the
/// kernel routes the whole prefix until every entry inside it is written. `next_hop` keeps a
/// remote block's node, whose tunnel stays accepted.
pub const ROUTE_F_OVERFLOW: u32 = 16;

/// The value of a `ROUTES` entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteValue {
    /// A [`RouteKind`].
    pub kind: u32,
    /// Host-side ifindex of a local endpoint (also kept for a `Kernel` local pod, for the
    /// source check).
    pub ifindex: u32,
    /// The node that owns a remote block (its underlay address).
    pub next_hop: [u8; 4],
    /// `ROUTE_F_*`.
    pub flags: u32,
    /// A local endpoint's MAC; for a VXLAN remote block, the owning node's `vxlan.calico` MAC.
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

const _: () = assert!(core::mem::size_of::<RouteValue>() == 24);

/// Why the kernel must route to a `Kernel` entry of either family, from its `ROUTE_F_*` flags.
pub const fn kernel_reason(flags: u32) -> Reason {
    if flags & ROUTE_F_CLASSIC_TC != 0 {
        Reason::PassEndpointTc
    } else if flags & ROUTE_F_POLICY != 0 {
        Reason::PassPolicyRoute
    } else if flags & ROUTE_F_OVERFLOW != 0 {
        Reason::PassMapOverflow
    } else {
        Reason::PassKernelRoute
    }
}

impl RouteValue {
    pub const fn local(ifindex: u32, mac: [u8; 6]) -> Self {
        Self { kind: RouteKind::LocalEndpoint as u32, ifindex, next_hop: [0; 4], flags: 0, mac, _pad: [0; 2] }
    }

    /// A local pod the kernel must route for now (its MAC is not known yet).
    pub const fn local_pending(ifindex: u32) -> Self {
        Self {
            kind: RouteKind::Kernel as u32,
            ifindex,
            next_hop: [0; 4],
            flags: 0,
            mac: [0; 6],
            _pad: [0; 2],
        }
    }

    pub const fn remote(next_hop: [u8; 4], encap: bool) -> Self {
        let flags = if encap { ROUTE_F_ENCAP } else { 0 };
        Self { kind: RouteKind::RemoteBlock as u32, ifindex: 0, next_hop, flags, mac: [0; 6], _pad: [0; 2] }
    }

    /// A block on another node reached in VXLAN: to the node at `next_hop` (the FDB's
    /// destination), inner Ethernet to its `vxlan.calico` MAC `mac` (the neighbour entry's).
    pub const fn vxlan(next_hop: [u8; 4], mac: [u8; 6]) -> Self {
        Self {
            kind: RouteKind::RemoteBlock as u32,
            ifindex: 0,
            next_hop,
            flags: ROUTE_F_VXLAN,
            mac,
            _pad: [0; 2],
        }
    }

    /// A destination the kernel routes (a VXLAN block whose neighbour or FDB entry is not known
    /// yet, this node's own tunnel address).
    pub const fn kernel() -> Self {
        Self::local_pending(0)
    }

    /// A local pod whose interface has classic tc configuration: the kernel carries its traffic
    /// both ways (`ifindex` kept for the source check).
    pub const fn local_with_tc(ifindex: u32) -> Self {
        Self { flags: ROUTE_F_CLASSIC_TC, ..Self::local_pending(ifindex) }
    }

    /// A destination an ip rule routes through another table; `ifindex` is the pod's interface
    /// when it is a local pod (for the source check), else 0.
    pub const fn policy(ifindex: u32) -> Self {
        Self { flags: ROUTE_F_POLICY, ..Self::local_pending(ifindex) }
    }

    /// Why the kernel must route to a `Kernel` entry.
    pub const fn kernel_reason(&self) -> Reason {
        kernel_reason(self.flags)
    }

    /// What `wanted` becomes while the route map lacks a prefix inside it: the kernel's, the
    /// node of a remote block kept (see [`ROUTE_F_OVERFLOW`]).
    pub const fn overflow(wanted: &RouteValue) -> Self {
        let next_hop = if wanted.kind == RouteKind::RemoteBlock as u32 { wanted.next_hop } else { [0; 4] };
        Self { next_hop, flags: ROUTE_F_OVERFLOW, ..Self::kernel() }
    }

    /// Whether this is an entry written as [`Self::overflow`].
    pub const fn is_overflow(&self) -> bool {
        self.kind == RouteKind::Kernel as u32 && self.flags & ROUTE_F_OVERFLOW != 0
    }

    pub const fn blackhole() -> Self {
        Self {
            kind: RouteKind::Blackhole as u32,
            ifindex: 0,
            next_hop: [0; 4],
            flags: 0,
            mac: [0; 6],
            _pad: [0; 2],
        }
    }

    /// Whether packets to a remote block go encapsulated: `Ok(None)` plain, `Ok(Some(tunnel))`
    /// in that tunnel, `Err(flags)` for a combination this version does not understand.
    pub const fn tunnel(&self) -> Result<Option<Tunnel>, u32> {
        match self.flags & (ROUTE_F_ENCAP | ROUTE_F_VXLAN) {
            0 => Ok(None),
            ROUTE_F_ENCAP => Ok(Some(Tunnel::Ipip)),
            ROUTE_F_VXLAN => Ok(Some(Tunnel::Vxlan)),
            _ => Err(self.flags),
        }
    }

    /// The encapsulation in a word: `ipip`, `vxlan`, `none` (or `invalid`).
    pub const fn encap_name(&self) -> &'static str {
        match self.tunnel() {
            Ok(Some(tunnel)) => tunnel.name(),
            Ok(None) => "none",
            Err(_) => "invalid",
        }
    }
}

/// Where a packet goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forward {
    /// Into the pod behind host-side `ifindex`, with Ethernet destination `mac`.
    Local { ifindex: u32, mac: [u8; 6] },
    /// To another node, in `tunnel`; for VXLAN, inner Ethernet to `mac` (the other node's
    /// `vxlan.calico`; all zero for IPIP).
    Encapsulate { next_hop: [u8; 4], tunnel: Tunnel, mac: [u8; 6] },
    /// To another node, as is (routed over the underlay).
    Underlay { next_hop: [u8; 4] },
}

/// The local endpoint a route describes, as the endpoint table holds it.
pub const fn endpoint_of(route: &RouteValue) -> Option<crate::maps::Endpoint> {
    if route.kind == RouteKind::LocalEndpoint as u32 {
        Some(crate::maps::Endpoint { ifindex: route.ifindex, mac: route.mac, _pad: [0; 2] })
    } else {
        None
    }
}

/// The destination decision: `Ok` to forward, `Err` to drop or hand to the kernel (the reason
/// says which).
pub fn forward_to(dst: [u8; 4], node_ip: [u8; 4], route: Option<&RouteValue>) -> Result<Forward, Reason> {
    if is_special_destination(dst, node_ip) {
        return Err(Reason::PassSpecialDestination);
    }
    let Some(route) = route else {
        return Err(Reason::PassNoRoute);
    };
    match RouteKind::try_from(route.kind) {
        Ok(RouteKind::LocalEndpoint) => Ok(Forward::Local { ifindex: route.ifindex, mac: route.mac }),
        Ok(RouteKind::RemoteBlock) => match route.tunnel() {
            Ok(Some(tunnel)) => Ok(Forward::Encapsulate { next_hop: route.next_hop, tunnel, mac: route.mac }),
            Ok(None) => Ok(Forward::Underlay { next_hop: route.next_hop }),
            Err(_) => Err(Reason::PassKernelRoute),
        },
        Ok(RouteKind::Blackhole) => Err(Reason::DropNoEndpoint),
        Ok(RouteKind::Kernel) => Err(route.kernel_reason()),
        Err(_) => Err(Reason::PassKernelRoute),
    }
}

/// The source check on a pod's interface, for a source that is not an endpoint of that
/// interface in the exact-match table: `route` is the source's route. The fast path carries a
/// pod's packet only from an address of its own interface (what Calico's strict rpfilter
/// allows). Another pod's address, here or on another node, is spoofed and dropped; any other
/// address (unallocated in this node's block, a service, the host, the outside) goes to the
/// kernel, whose rpfilter and FORWARD rules decide, as they would without fastpath.
pub fn check_source(route: Option<&RouteValue>, ingress_ifindex: u32) -> Result<(), Reason> {
    let Some(route) = route else { return Err(Reason::PassSourceNotPod) };
    let owner = route.ifindex;
    match RouteKind::try_from(route.kind) {
        Ok(RouteKind::LocalEndpoint) if owner == ingress_ifindex => Ok(()),
        Ok(RouteKind::LocalEndpoint | RouteKind::Kernel) if owner != 0 && owner != ingress_ifindex => {
            Err(Reason::DropSpoofedSource)
        }
        // This pod's own address while its MAC is not known yet, or while its interface has tc
        // configuration or a rule routes it elsewhere: the kernel routes it.
        Ok(RouteKind::Kernel) if owner != 0 => Err(route.kernel_reason()),
        Ok(RouteKind::RemoteBlock) => Err(Reason::DropSpoofedSource),
        Ok(RouteKind::Blackhole) => Err(Reason::PassSourceUnallocated),
        Ok(RouteKind::LocalEndpoint | RouteKind::Kernel) | Err(_) => Err(Reason::PassSourceNotPod),
    }
}

/// The source check of a packet that arrived in a tunnel from node `outer_src`: its inner
/// source must be that node itself (its host-network processes) or lie in a block routed via
/// it (its pods, and its tunnel address, which Calico takes from its block). A node must not
/// pose as a pod of a third node, or of this one. `route` is the inner source's route.
pub fn check_inner_source(
    inner_src: [u8; 4],
    outer_src: [u8; 4],
    route: Option<&RouteValue>,
) -> Result<(), Reason> {
    let via_sender =
        route.is_some_and(|r| r.kind == RouteKind::RemoteBlock as u32 && r.next_hop == outer_src);
    if inner_src == outer_src || via_sender {
        Ok(())
    } else {
        Err(Reason::PassInnerSourceForeign)
    }
}

/// Whether delivery after decapsulation may use this route: only to a pod on this node.
pub fn deliver_after_decap(
    dst: [u8; 4],
    node_ip: [u8; 4],
    route: Option<&RouteValue>,
) -> Result<Forward, Reason> {
    match forward_to(dst, node_ip, route)? {
        local @ Forward::Local { .. } => Ok(local),
        Forward::Encapsulate { .. } | Forward::Underlay { .. } => Err(Reason::PassDecapNotLocal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: [u8; 4] = [10, 101, 14, 50];
    const POD_MAC: [u8; 6] = [0x86, 0x79, 0x13, 0x2b, 0x26, 0x1d];

    #[test]
    fn each_kind_has_its_forwarding() {
        let local = RouteValue::local(7, POD_MAC);
        assert_eq!(
            forward_to([10, 244, 40, 36], NODE, Some(&local)),
            Ok(Forward::Local { ifindex: 7, mac: POD_MAC })
        );
        let ipip = RouteValue::remote([10, 101, 14, 51], true);
        assert_eq!(
            forward_to([10, 244, 166, 150], NODE, Some(&ipip)),
            Ok(Forward::Encapsulate { next_hop: [10, 101, 14, 51], tunnel: Tunnel::Ipip, mac: [0; 6] })
        );
        let vtep = [0x66, 0, 10, 101, 14, 51];
        let vxlan = RouteValue::vxlan([10, 101, 14, 51], vtep);
        assert_eq!(
            forward_to([10, 244, 166, 150], NODE, Some(&vxlan)),
            Ok(Forward::Encapsulate { next_hop: [10, 101, 14, 51], tunnel: Tunnel::Vxlan, mac: vtep })
        );
        let both = RouteValue { flags: ROUTE_F_ENCAP | ROUTE_F_VXLAN, ..vxlan };
        assert_eq!(forward_to([10, 244, 166, 150], NODE, Some(&both)), Err(Reason::PassKernelRoute));
        assert_eq!(
            forward_to([10, 244, 40, 0], NODE, Some(&RouteValue::kernel())),
            Err(Reason::PassKernelRoute)
        );
        let plain = RouteValue::remote([10, 101, 14, 51], false);
        assert_eq!(
            forward_to([10, 244, 166, 150], NODE, Some(&plain)),
            Ok(Forward::Underlay { next_hop: [10, 101, 14, 51] })
        );
        assert_eq!(
            forward_to([10, 244, 40, 99], NODE, Some(&RouteValue::blackhole())),
            Err(Reason::DropNoEndpoint)
        );
        assert_eq!(
            forward_to([10, 244, 40, 37], NODE, Some(&RouteValue::local_pending(8))),
            Err(Reason::PassKernelRoute)
        );
        assert_eq!(forward_to([8, 8, 8, 8], NODE, None), Err(Reason::PassNoRoute));
        assert_eq!(
            forward_to([10, 244, 40, 37], NODE, Some(&RouteValue::local_with_tc(8))),
            Err(Reason::PassEndpointTc)
        );
        assert_eq!(
            forward_to([10, 244, 166, 150], NODE, Some(&RouteValue::policy(0))),
            Err(Reason::PassPolicyRoute)
        );
        let bogus = RouteValue { kind: 99, ..RouteValue::default() };
        assert_eq!(forward_to([10, 244, 40, 36], NODE, Some(&bogus)), Err(Reason::PassKernelRoute));
    }

    #[test]
    fn an_overflowed_entry_sends_to_the_kernel_and_keeps_its_node() {
        let blackhole = RouteValue::overflow(&RouteValue::blackhole());
        assert!(blackhole.is_overflow());
        assert_eq!(forward_to([10, 244, 40, 99], NODE, Some(&blackhole)), Err(Reason::PassMapOverflow));
        assert_eq!(check_source(Some(&blackhole), 7), Err(Reason::PassSourceNotPod));
        let block = RouteValue::overflow(&RouteValue::remote([10, 101, 14, 51], true));
        assert_eq!(block.next_hop, [10, 101, 14, 51]);
        assert_eq!(forward_to([10, 244, 166, 150], NODE, Some(&block)), Err(Reason::PassMapOverflow));
        assert!(!RouteValue::kernel().is_overflow());
    }

    #[test]
    fn special_destinations_win_over_routes() {
        let local = RouteValue::local(7, POD_MAC);
        assert_eq!(forward_to(NODE, NODE, Some(&local)), Err(Reason::PassSpecialDestination));
        assert_eq!(forward_to([169, 254, 1, 1], NODE, Some(&local)), Err(Reason::PassSpecialDestination));
    }

    #[test]
    fn the_source_must_be_an_endpoint_of_the_ingress_interface() {
        let mine = RouteValue::local(7, POD_MAC);
        assert_eq!(check_source(Some(&mine), 7), Ok(()));
        assert_eq!(check_source(Some(&mine), 8), Err(Reason::DropSpoofedSource));
        assert_eq!(check_source(Some(&RouteValue::local_pending(7)), 8), Err(Reason::DropSpoofedSource));
        assert_eq!(check_source(Some(&RouteValue::local_pending(7)), 7), Err(Reason::PassKernelRoute));
        assert_eq!(
            check_source(Some(&RouteValue::remote([10, 101, 14, 51], true)), 7),
            Err(Reason::DropSpoofedSource)
        );
        assert_eq!(check_source(Some(&RouteValue::blackhole()), 7), Err(Reason::PassSourceUnallocated));
        assert_eq!(check_source(Some(&RouteValue::local_with_tc(7)), 7), Err(Reason::PassEndpointTc));
        assert_eq!(check_source(Some(&RouteValue::local_with_tc(7)), 8), Err(Reason::DropSpoofedSource));
        assert_eq!(check_source(Some(&RouteValue::policy(7)), 7), Err(Reason::PassPolicyRoute));
        assert_eq!(check_source(None, 7), Err(Reason::PassSourceNotPod));
        let bogus = RouteValue { kind: 99, ..RouteValue::default() };
        assert_eq!(check_source(Some(&bogus), 7), Err(Reason::PassSourceNotPod));
    }

    #[test]
    fn an_inner_source_must_belong_to_the_sending_node() {
        let (sender, third) = ([10, 101, 14, 51], [10, 101, 14, 52]);
        let senders_block = RouteValue::remote(sender, true);
        assert_eq!(check_inner_source([10, 244, 166, 150], sender, Some(&senders_block)), Ok(()));
        assert_eq!(check_inner_source(sender, sender, None), Ok(()), "the node's own host network");
        assert_eq!(
            check_inner_source([10, 244, 1, 1], sender, Some(&RouteValue::remote(third, true))),
            Err(Reason::PassInnerSourceForeign),
            "a pod of a third node"
        );
        assert_eq!(
            check_inner_source([10, 244, 40, 36], sender, Some(&RouteValue::local(7, POD_MAC))),
            Err(Reason::PassInnerSourceForeign),
            "a pod of this node"
        );
        assert_eq!(check_inner_source([192, 0, 2, 7], sender, None), Err(Reason::PassInnerSourceForeign));
        assert_eq!(
            check_inner_source(third, sender, None),
            Err(Reason::PassInnerSourceForeign),
            "another node's address"
        );
    }

    #[test]
    fn decap_delivers_only_to_local_pods() {
        let local = RouteValue::local(7, POD_MAC);
        assert_eq!(
            deliver_after_decap([10, 244, 166, 150], NODE, Some(&local)),
            Ok(Forward::Local { ifindex: 7, mac: POD_MAC })
        );
        let remote = RouteValue::remote([10, 101, 14, 52], true);
        assert_eq!(deliver_after_decap([10, 244, 1, 1], NODE, Some(&remote)), Err(Reason::PassDecapNotLocal));
    }

    #[test]
    fn encapsulations_in_words() {
        assert_eq!(RouteValue::remote([10, 101, 14, 51], true).encap_name(), "ipip");
        assert_eq!(RouteValue::remote([10, 101, 14, 51], false).encap_name(), "none");
        assert_eq!(RouteValue::vxlan([10, 101, 14, 51], [1; 6]).encap_name(), "vxlan");
        let both = RouteValue { flags: ROUTE_F_ENCAP | ROUTE_F_VXLAN, ..RouteValue::vxlan([1; 4], [1; 6]) };
        assert_eq!(both.encap_name(), "invalid");
    }

    #[test]
    fn kinds_round_trip() {
        for kind in
            [RouteKind::Kernel, RouteKind::LocalEndpoint, RouteKind::RemoteBlock, RouteKind::Blackhole]
        {
            assert_eq!(RouteKind::try_from(kind as u32), Ok(kind));
        }
        assert_eq!(RouteKind::try_from(4), Err(4));
    }
}
