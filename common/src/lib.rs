//! The contract between fastpath's eBPF programs and its userspace.
//!
//! Everything both sides must agree on lives here: the layout of every map value, the reason
//! codes that index the counters, map names and the pin layout. Map values are `#[repr(C)]` with
//! explicit padding and no `bool`/enum fields, so the kernel side and the user side can never read
//! different layouts.
#![no_std]

pub mod arp;
pub mod flow;
pub mod flow6;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;
pub mod maps;
pub mod ndp;
pub mod pipeline;
pub mod reason;
pub mod route;
pub mod route6;
pub mod tunnel;
pub mod vxlan;

pub use reason::{Reason, Verdict};

/// The MAC Calico gives the host end of every pod veth, and the one we answer ARP with.
pub const GATEWAY_MAC: [u8; 6] = [0xee; 6];
