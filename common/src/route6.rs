//! The IPv6 route table the programs follow (`FP_ROUTES6`), and the decisions they take from it:
//! IPv4's [`crate::route`] with 16-byte addresses. Local pods are not in it: the exact-match
//! endpoint table (`FP_ENDPOINTS6`) holds them, and is looked up first.
//!
//! IPv6 is never carried in IPIP by Calico (`felix/dataplane/linux/vxlan_mgr.go` makes
//! `vxlan-v6.calico`; BIRD routes IPv6 plain): a remote block is either VXLAN or plain.

use crate::{
    ipv6::same_address,
    route::{kernel_reason, RouteKind, ROUTE_F_ENCAP, ROUTE_F_VXLAN},
    Reason,
};

/// The value of an `FP_ROUTES6` entry (key: aya's `lpm_trie::Key<[u8; 16]>`, the prefix length
/// as a `u32` then the address in network order).
///
/// - `kind` [`RouteKind::RemoteBlock`]: another node's block. `next_hop` is that node's IPv6
///   address on the underlay: for a plain route the route's gateway, for a VXLAN route (`flags`
///   [`ROUTE_F_VXLAN`]) the destination the FDB gives the tunnel address's MAC, `mac` being that
///   MAC (the other node's `vxlan-v6.calico`).
/// - [`RouteKind::Blackhole`]: this node's own block; an address in it with no pod is dropped.
/// - [`RouteKind::Kernel`]: the kernel routes it; `flags` say why
///   ([`crate::route::ROUTE_F_CLASSIC_TC`], [`crate::route::ROUTE_F_POLICY`],
///   [`crate::route::ROUTE_F_OVERFLOW`], or none: this node's tunnel address, a VXLAN
///   block whose neighbour or FDB entry is not known yet).
/// - [`RouteKind::LocalEndpoint`] is not written: a local pod is `FP_ENDPOINTS6`'s, and one the
///   endpoint table lacks goes to the kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteValue6 {
    /// A [`RouteKind`].
    pub kind: u32,
    /// `ROUTE_F_*`.
    pub flags: u32,
    /// The node that owns a remote block: its IPv6 address on the underlay.
    pub next_hop: [u8; 16],
    /// For a VXLAN block, the owning node's `vxlan-v6.calico` MAC.
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

const _: () = assert!(core::mem::size_of::<RouteValue6>() == 32);

impl RouteValue6 {
    /// A block on another node routed plain, via `next_hop` on the underlay.
    pub const fn plain(next_hop: [u8; 16]) -> Self {
        Self { kind: RouteKind::RemoteBlock as u32, flags: 0, next_hop, mac: [0; 6], _pad: [0; 2] }
    }

    /// A block on another node reached in IPv6 VXLAN: to node `next_hop` (the FDB's
    /// destination), inner Ethernet to its `vxlan-v6.calico` MAC `mac`.
    pub const fn vxlan(next_hop: [u8; 16], mac: [u8; 6]) -> Self {
        Self { kind: RouteKind::RemoteBlock as u32, flags: ROUTE_F_VXLAN, next_hop, mac, _pad: [0; 2] }
    }

    /// This node's own block.
    pub const fn blackhole() -> Self {
        Self { kind: RouteKind::Blackhole as u32, flags: 0, next_hop: [0; 16], mac: [0; 6], _pad: [0; 2] }
    }

    /// A destination the kernel routes, `flags` saying why (`ROUTE_F_*`, or 0).
    pub const fn kernel(flags: u32) -> Self {
        Self { kind: RouteKind::Kernel as u32, flags, next_hop: [0; 16], mac: [0; 6], _pad: [0; 2] }
    }
}

/// Where an IPv6 packet goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forward6 {
    /// Into the pod behind host-side `ifindex`, with Ethernet destination `mac` (the endpoint
    /// table's; never [`forward6`]'s).
    Local { ifindex: u32, mac: [u8; 6] },
    /// Out of the underlay as it is, to node `next_hop`.
    Underlay { next_hop: [u8; 16] },
    /// In IPv6 VXLAN to node `next_hop`, inner Ethernet to its VTEP MAC `mac`.
    Vxlan { next_hop: [u8; 16], mac: [u8; 6] },
}

/// What `FP_ROUTES6`'s longest match for a destination that is no pod here says: `Ok` to carry
/// it, `Err` to drop it or hand it to the kernel (the reason says which), as IPv4's
/// [`crate::route::forward_to`].
pub const fn forward6(route: Option<&RouteValue6>) -> Result<Forward6, Reason> {
    let Some(route) = route else { return Err(Reason::PassNoRoute) };
    if route.kind == RouteKind::Blackhole as u32 {
        return Err(Reason::DropNoEndpoint);
    }
    if route.kind == RouteKind::Kernel as u32 {
        return Err(kernel_reason(route.flags));
    }
    if route.kind != RouteKind::RemoteBlock as u32 {
        return Err(Reason::PassKernelRoute);
    }
    match route.flags & (ROUTE_F_ENCAP | ROUTE_F_VXLAN) {
        0 => Ok(Forward6::Underlay { next_hop: route.next_hop }),
        ROUTE_F_VXLAN => Ok(Forward6::Vxlan { next_hop: route.next_hop, mac: route.mac }),
        // IPIP over IPv6, or both: nothing Calico makes; the kernel's.
        _ => Err(Reason::PassKernelRoute),
    }
}

/// The source check of IPv6 decapsulated from node `outer_src`: as IPv4's
/// [`crate::route::check_inner_source`], the inner source must be the node itself or lie in a
/// block routed via it (`route`, its longest match).
pub const fn check_inner_source6(
    inner_src: &[u8; 16],
    outer_src: &[u8; 16],
    route: Option<&RouteValue6>,
) -> Result<(), Reason> {
    if same_address(inner_src, outer_src) {
        return Ok(());
    }
    routed_via(outer_src, route)
}

/// The second half of [`check_inner_source6`], for a walk that compared the addresses already
/// (and looks the route up only when they differ): whether the inner source's route is a block
/// of node `outer_src`.
pub const fn routed_via(outer_src: &[u8; 16], route: Option<&RouteValue6>) -> Result<(), Reason> {
    match route {
        Some(r) if r.kind == RouteKind::RemoteBlock as u32 && same_address(&r.next_hop, outer_src) => Ok(()),
        _ => Err(Reason::PassInnerSourceForeign),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{ROUTE_F_CLASSIC_TC, ROUTE_F_OVERFLOW, ROUTE_F_POLICY};

    const NODE_B: [u8; 16] = [0xfd, 0, 0x01, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0x65, 0x0e, 0x33];
    const NODE_C: [u8; 16] = [0xfd, 0, 0x01, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0x65, 0x0e, 0x34];
    const VTEP: [u8; 6] = [0x66, 0, 1, 2, 3, 4];

    #[test]
    fn each_kind_has_its_forwarding() {
        assert_eq!(forward6(None), Err(Reason::PassNoRoute));
        assert_eq!(forward6(Some(&RouteValue6::plain(NODE_B))), Ok(Forward6::Underlay { next_hop: NODE_B }));
        assert_eq!(
            forward6(Some(&RouteValue6::vxlan(NODE_B, VTEP))),
            Ok(Forward6::Vxlan { next_hop: NODE_B, mac: VTEP })
        );
        assert_eq!(forward6(Some(&RouteValue6::blackhole())), Err(Reason::DropNoEndpoint));
        assert_eq!(forward6(Some(&RouteValue6::kernel(0))), Err(Reason::PassKernelRoute));
        assert_eq!(forward6(Some(&RouteValue6::kernel(ROUTE_F_CLASSIC_TC))), Err(Reason::PassEndpointTc));
        assert_eq!(forward6(Some(&RouteValue6::kernel(ROUTE_F_POLICY))), Err(Reason::PassPolicyRoute));
        assert_eq!(forward6(Some(&RouteValue6::kernel(ROUTE_F_OVERFLOW))), Err(Reason::PassMapOverflow));
        let ipip = RouteValue6 { flags: ROUTE_F_ENCAP, ..RouteValue6::plain(NODE_B) };
        assert_eq!(forward6(Some(&ipip)), Err(Reason::PassKernelRoute), "no IPIP over IPv6");
        let local = RouteValue6 { kind: RouteKind::LocalEndpoint as u32, ..RouteValue6::plain(NODE_B) };
        assert_eq!(
            forward6(Some(&local)),
            Err(Reason::PassKernelRoute),
            "local pods are the endpoint table's"
        );
        let unknown = RouteValue6 { kind: 9, ..RouteValue6::plain(NODE_B) };
        assert_eq!(forward6(Some(&unknown)), Err(Reason::PassKernelRoute));
    }

    #[test]
    fn a_node_sends_only_its_own_and_its_blocks_sources() {
        let pod_of_b = [0xfd, 0x5f, 0xa1, 0xb2, 0xc3, 0xd4, 0, 0, 0, 0, 0, 0, 0x0a, 0xf4, 0xa6, 0x96];
        assert_eq!(check_inner_source6(&NODE_B, &NODE_B, None), Ok(()), "the node's host network");
        assert_eq!(check_inner_source6(&pod_of_b, &NODE_B, Some(&RouteValue6::vxlan(NODE_B, VTEP))), Ok(()));
        assert_eq!(check_inner_source6(&pod_of_b, &NODE_B, Some(&RouteValue6::plain(NODE_B))), Ok(()));
        assert_eq!(
            check_inner_source6(&pod_of_b, &NODE_B, Some(&RouteValue6::vxlan(NODE_C, VTEP))),
            Err(Reason::PassInnerSourceForeign),
            "a pod of a third node"
        );
        assert_eq!(
            check_inner_source6(&pod_of_b, &NODE_B, Some(&RouteValue6::blackhole())),
            Err(Reason::PassInnerSourceForeign),
            "an address of this node's block"
        );
        assert_eq!(check_inner_source6(&pod_of_b, &NODE_B, None), Err(Reason::PassInnerSourceForeign));
        assert_eq!(check_inner_source6(&NODE_C, &NODE_B, None), Err(Reason::PassInnerSourceForeign));
    }
}
