//! The contract between fastpath's eBPF programs and its userspace.
//!
//! Everything both sides must agree on lives here: the layout of every map value, the reason
//! codes that index the counters, map names and the pin layout. Map values are `#[repr(C)]` with
//! explicit padding and no `bool`/enum fields, so the kernel side and the user side can never read
//! different layouts.
#![no_std]

pub mod arp;
pub mod flow;
pub mod icmp;
pub mod ipv4;
pub mod maps;
pub mod reason;
pub mod route;
pub mod tunnel;
pub mod vxlan;

pub use reason::Reason;

/// The `skb->mark` bit the programs put on a packet they send out of the underlay under `--trust
/// kernel`, so that the underlay's egress program knows it at once (a flow the fast path
/// carries is already approved) instead of looking it up again; that program takes the bit off
/// before anything else sees the packet. It lies outside the bits Calico (`0xffff0000` by
/// default) and kube-proxy (`0x4000`, `0x8000`) use; a kernel packet that carried it anyway would
/// only leave its flow with the kernel, never approve one.
pub const FAST_PATH_MARK: u32 = 0x0000_2000;

/// The MAC Calico gives the host end of every pod veth, and the one we answer ARP with.
pub const GATEWAY_MAC: [u8; 6] = [0xee; 6];
