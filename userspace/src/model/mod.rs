//! The kernel as fastpath pictures it: interfaces, neighbours, routes, rules, tc objects. Plain
//! types, no I/O and no decisions: `daemon::netlink` fills them from the kernel, the pure
//! mappings in `daemon` and the commands read them.

pub mod family;
pub mod link;
pub mod neighbour;
pub mod route;
pub mod rule;
pub mod tc;
