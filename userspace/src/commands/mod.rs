//! The inspection and maintenance commands (`status`, `routes`, `flows`, `explain`, `stats`,
//! `monitor`, `verify`, `cleanup`): each reads the pinned maps, so it works beside a running
//! daemon, from another process or container.

pub mod explain;
pub mod flows;
pub mod inspect;
pub mod show;
pub mod stats;
pub mod verify;
