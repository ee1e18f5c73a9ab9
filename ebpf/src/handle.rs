//! Each program's handler: the shared walk decides (`fastpath_common::pipeline`), then
//! `carry.rs` does what it decided.

use aya_ebpf::programs::TcContext;
use fastpath_common::{
    pipeline::{self, Silent},
    Reason,
};

use crate::{
    carry::{self, Out6},
    outcome::{self, Outcome, Packed},
    skb,
    walk::{Maps, Packet},
};

/// What a pod sent: ARP and neighbour solicitations are answered, IPv4 forwarded, IPv6 carried
/// to a pod here, the rest passed: `pipeline::from_pod`, split by family, IPv6 in a BPF
/// subprogram of its own. Inline side by side, the two walks lead LLVM to share registers across
/// them in ways the verifier refuses (a register read on a path that never set it), and their
/// stack together would pass the 512 bytes; the two meet here as one integer each.
#[inline(always)]
pub fn from_pod(ctx: &TcContext) -> Outcome {
    let packed = if pipeline::is_ipv6(&Packet(ctx)) { from_pod_ipv6(ctx) } else { from_pod_ipv4(ctx) };
    outcome::unpack(packed)
}

/// Everything but IPv6 from a pod, as a BPF subprogram too: the kernel allows 512 bytes of stack
/// for a whole call chain, and the IPv4 walk's frame alone takes most of them. Inline in
/// `from_pod`, it would sit under the IPv6 subprogram's frame as well.
#[inline(never)]
fn from_pod_ipv4(ctx: &TcContext) -> Packed {
    outcome::pack(walk_ipv4(ctx))
}

#[inline(always)]
fn walk_ipv4(ctx: &TcContext) -> Outcome {
    let tables = Maps::new(ctx);
    let plan = pipeline::from_pod_ipv4(&Packet(ctx), skb::ifindex(ctx), &tables, &mut Silent)?;
    carry::out(ctx, tables.node, plan)
}

/// IPv6 from a pod, as a BPF subprogram, each plan carried out where the walk makes it
/// (`carry::Out6`).
#[inline(never)]
fn from_pod_ipv6(ctx: &TcContext) -> Packed {
    let tables = Maps::new(ctx);
    outcome::pack(pipeline::from_pod_ipv6(&Packet(ctx), skb::ifindex(ctx), &tables, &mut Silent, &Out6(ctx)))
}

/// What arrives on the underlay: tunnels from other nodes taken apart, and under `--trust
/// kernel` plain packets of approved flows delivered; the rest is the kernel's. Split by family
/// as `from_pod` is, IPv6 in a subprogram of its own.
#[inline(always)]
pub fn from_underlay(ctx: &TcContext) -> Outcome {
    let tables = Maps::new(ctx);
    // IPv4 first, as before IPv6 was carried: IPv6 is asked for only when IPv4's walk found no
    // IPv4 frame, so the IPv4 paths keep their code.
    let plan = match pipeline::from_underlay_ipv4(&Packet(ctx), &tables, &mut Silent) {
        Ok(plan) => plan,
        Err(Reason::PassUnderlayOther) if pipeline::is_ipv6(&Packet(ctx)) => {
            return outcome::unpack(from_underlay_ipv6(ctx));
        }
        Err(reason) => return Err(reason),
    };
    carry::out(ctx, tables.node, plan)
}

/// IPv6 from the underlay, as a BPF subprogram.
#[inline(never)]
fn from_underlay_ipv6(ctx: &TcContext) -> Packed {
    let tables = Maps::new(ctx);
    outcome::pack(pipeline::from_underlay_ipv6(&Packet(ctx), &tables, &mut Silent, &Out6(ctx)))
}
