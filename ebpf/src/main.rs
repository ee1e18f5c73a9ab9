//! fastpath's TC programs. Entry points only: each calls its handler, counts the reason, and
//! returns the verdict the handler chose.
#![no_std]
#![no_main]

mod arp;
mod carry;
mod deliver;
mod fib;
mod flow;
mod handle;
mod icmp;
mod icmp6;
mod ip;
mod ipip;
mod maps;
mod monitor;
mod nat;
mod ndp;
mod outcome;
mod parse;
mod skb;
mod stats;
mod vxlan;
mod walk;

use aya_ebpf::{macros::classifier, programs::TcContext};
use fastpath_common::maps::{PROGRAM_FROM_POD, PROGRAM_FROM_UNDERLAY};

/// tcx ingress on every `cali*` interface: everything a pod sends.
#[classifier]
pub fn from_pod(ctx: TcContext) -> i32 {
    let watched = monitor::watch(&ctx, PROGRAM_FROM_POD);
    let bytes = skb::len(&ctx);
    stats::finish(bytes, handle::from_pod(&ctx), watched)
}

/// tcx ingress on the underlay interface: IPIP and VXLAN from other nodes.
#[classifier]
pub fn from_underlay(ctx: TcContext) -> i32 {
    let watched = monitor::watch(&ctx, PROGRAM_FROM_UNDERLAY);
    let bytes = skb::len(&ctx);
    stats::finish(bytes, handle::from_underlay(&ctx), watched)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
