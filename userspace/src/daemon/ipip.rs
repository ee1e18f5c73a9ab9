//! How a route through Calico's IPIP device becomes an entry (pure).

use std::net::Ipv4Addr;

use fastpath_common::route::RouteValue;

use crate::modes::EncapMode;

/// Calico's IPIP device; this kernel need not have it for its routes to mean "IPIP".
pub const TUNNEL_DEVICE: &str = "tunl0";

/// `BLOCK via NODE dev tunl0 onlink`: IPIP to NODE, or plain with `--ipip never`.
pub fn entry(gateway: Ipv4Addr, mode: EncapMode) -> RouteValue {
    RouteValue::remote(gateway.octets(), mode != EncapMode::Never)
}
