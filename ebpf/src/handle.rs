//! Each program's handler: the shared walk decides (`fastpath_common::pipeline`), then
//! `carry.rs` does what it decided.

use aya_ebpf::programs::TcContext;
use fastpath_common::pipeline::{self, Silent};

use crate::{
    carry,
    outcome::Outcome,
    skb,
    walk::{Maps, Packet},
};

/// What a pod sent: ARP is answered, IPv4 forwarded, the rest passed.
#[inline(always)]
pub fn from_pod(ctx: &TcContext) -> Outcome {
    let tables = Maps::new(ctx);
    let plan = pipeline::from_pod(&Packet(ctx), skb::ifindex(ctx), &tables, &mut Silent)?;
    carry::out(ctx, tables.node, plan)
}

/// What arrives on the underlay: tunnels from other nodes taken apart, and under `--trust
/// kernel` plain packets of approved flows delivered; the rest is the kernel's.
#[inline(always)]
pub fn from_underlay(ctx: &TcContext) -> Outcome {
    let tables = Maps::new(ctx);
    let plan = pipeline::from_underlay(&Packet(ctx), &tables, &mut Silent)?;
    carry::out(ctx, tables.node, plan)
}
