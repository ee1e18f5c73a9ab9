//! The shared walk's view from inside a program (`fastpath_common::pipeline`): the skb as its
//! frame, the maps and the kernel's FIB as its tables. What the walk decides, `carry.rs` does.

use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::TcContext};
use fastpath_common::{
    flow::{Admission, FlowKey, FlowValue},
    flow6::{FlowKey6, FlowValue6},
    maps::{Endpoint, Node6Config, NodeConfig, PathMtu},
    pipeline::{Frame, Tables},
    route::RouteValue,
    route6::RouteValue6,
    Reason,
};

use crate::{
    fib::{self, NextHop, NextHop6},
    flow,
    maps::{self, FP_FLOWS, FP_FLOWS6, FP_PATH_MTU, FP_PATH_MTU6},
    parse, skb,
};

/// The packet, read in place.
pub struct Packet<'a>(pub &'a TcContext);

impl Frame for Packet<'_> {
    #[inline(always)]
    fn length(&self) -> u32 {
        skb::len(self.0)
    }

    #[inline(always)]
    fn read<const N: usize, R>(&self, offset: usize, f: impl FnOnce(&[u8; N]) -> R) -> Option<R> {
        let bytes: *const [u8; N] = parse::header_mut(self.0, offset)?;
        // SAFETY: bounds-checked by `header_mut`; read before anything changes the packet.
        Some(f(unsafe { &*bytes }))
    }

    #[inline(always)]
    fn gso_size(&self) -> u32 {
        skb::gso_size(self.0)
    }
}

/// The maps, and the FIB for the way out over the underlay.
pub struct Maps<'a> {
    ctx: &'a TcContext,
    /// This node's settings: looked up once, for the walk and for carrying out its plan.
    pub node: Result<&'static NodeConfig, Reason>,
}

impl<'a> Maps<'a> {
    #[inline(always)]
    pub fn new(ctx: &'a TcContext) -> Self {
        Self { ctx, node: maps::node() }
    }
}

impl Tables for Maps<'_> {
    type Route = &'static RouteValue;
    type Flow = &'static mut FlowValue;
    type Hop = NextHop;
    type Route6 = &'static RouteValue6;
    type Hop6 = NextHop6;
    type Flow6 = &'static mut FlowValue6;

    #[inline(always)]
    fn node(&self) -> Result<&NodeConfig, Reason> {
        self.node.map(|node| node as &NodeConfig)
    }

    #[inline(always)]
    fn route(&self, addr: [u8; 4]) -> Option<&'static RouteValue> {
        maps::route(addr)
    }

    #[inline(always)]
    fn endpoint(&self, addr: [u8; 4]) -> Option<Endpoint> {
        maps::endpoint(addr)
    }

    #[inline(always)]
    fn endpoint6(&self, addr: &[u8; 16]) -> Option<Endpoint> {
        maps::endpoint6(addr)
    }

    #[inline(always)]
    fn is_peer(&self, addr: [u8; 4]) -> bool {
        maps::is_tunnel_peer(addr)
    }

    #[inline(always)]
    fn path_mtu(&self, peer: [u8; 4]) -> Option<PathMtu> {
        // SAFETY: a live map value, copied out at once.
        FP_PATH_MTU.get_ptr(peer).map(|entry| unsafe { *entry })
    }

    #[inline(always)]
    fn now_ns(&self) -> u64 {
        // SAFETY: a plain helper call.
        unsafe { bpf_ktime_get_ns() }
    }

    #[inline(always)]
    fn learn_path_mtu(&self, peer: [u8; 4], learned: PathMtu) {
        // A full table forgets its least recently used node; that only costs one more ICMP.
        let _ = FP_PATH_MTU.insert(peer, learned, 0);
    }

    #[inline(always)]
    fn path_mtu6(&self, peer: &[u8; 16]) -> Option<PathMtu> {
        // SAFETY: a live map value, copied out at once.
        FP_PATH_MTU6.get_ptr(peer).map(|entry| unsafe { *entry })
    }

    #[inline(always)]
    fn learn_path_mtu6(&self, peer: &[u8; 16], learned: PathMtu) {
        // A full table forgets its least recently used node; that only costs one more ICMPv6.
        let _ = FP_PATH_MTU6.insert(peer, learned, 0);
    }

    #[inline(always)]
    fn flow(&self, key: &FlowKey) -> Option<&'static mut FlowValue> {
        // SAFETY: a live map value. Another CPU writing the same entry at once can only cost a
        // count or a timestamp; the state written is always one of the decisions.
        FP_FLOWS.get_ptr_mut(*key).map(|entry| unsafe { &mut *entry })
    }

    #[inline(always)]
    fn settle(&self, entry: &mut &'static mut FlowValue, key: &FlowKey, admission: &Admission) {
        entry.state = admission.state as u8;
        if admission.close_reply {
            flow::close(&entry.reply_key(key));
        }
        match admission.verdict {
            Ok(()) => {
                entry.last_seen_ns = self.now_ns();
                entry.fast_packets += 1;
            }
            Err(_) => entry.kernel_packets += 1,
        }
    }

    #[inline(always)]
    fn flow6(&self, key: &FlowKey6) -> Option<&'static mut FlowValue6> {
        // SAFETY: as `flow`'s.
        FP_FLOWS6.get_ptr_mut(*key).map(|entry| unsafe { &mut *entry })
    }

    #[inline(always)]
    fn settle6(&self, entry: &mut &'static mut FlowValue6, key: &FlowKey6, admission: &Admission) {
        entry.state = admission.state as u8;
        if admission.close_reply {
            flow::close6(&key.reversed());
        }
        match admission.verdict {
            Ok(()) => {
                entry.last_seen_ns = self.now_ns();
                entry.fast_packets += 1;
            }
            Err(_) => entry.kernel_packets += 1,
        }
    }

    #[inline(always)]
    fn hop(&self, addr: [u8; 4]) -> Result<NextHop, Reason> {
        fib::lookup(self.ctx, self.node?, addr)
    }

    #[inline(always)]
    fn hop_ifindex(&self, hop: &NextHop) -> u32 {
        fib::ifindex(hop)
    }

    #[inline(always)]
    fn node6(&self) -> Option<&Node6Config> {
        maps::node6().map(|node| node as &Node6Config)
    }

    #[inline(always)]
    fn route6(&self, addr: &[u8; 16]) -> Option<&'static RouteValue6> {
        maps::route6(addr)
    }

    #[inline(always)]
    fn is_peer6(&self, addr: &[u8; 16]) -> bool {
        maps::is_tunnel_peer6(addr)
    }

    #[inline(always)]
    fn hop6(&self, addr: &[u8; 16]) -> Result<NextHop6, Reason> {
        fib::lookup6(self.ctx, self.node?, maps::node6().ok_or(Reason::PassNotReady)?, addr)
    }

    #[inline(always)]
    fn sender_mac(&self, addr: [u8; 4]) -> Option<[u8; 6]> {
        match self.hop(addr) {
            Ok(NextHop::Resolved { dmac, .. }) => Some(dmac),
            _ => None,
        }
    }
}
