//! The daemon's half: following the kernel through netlink, turning its routes into map
//! entries, deciding attachments, and `fastpath run` wiring them together.

pub mod attach;
pub mod classic_tc;
pub mod conntrack;
pub mod ctnetlink;
pub mod endpoints6;
pub mod http;
pub mod ipip;
pub mod judge;
pub mod kernel;
pub mod metrics;
pub mod netlink;
pub mod next_hops;
pub mod node;
pub mod picture;
pub mod routes;
pub mod routes6;
pub mod rules;
mod run;
pub mod trust;
pub mod vxlan;

pub use run::run;
