//! The library's errors. Usage errors (a bad flag value, an interface that does not exist) are
//! told apart so the binary can exit with code 2 for them, as a command-line tool should.

use std::{io, path::PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("interface '{name}' does not exist")]
    NoSuchInterface { name: String },

    #[error("there is no default route to tell the underlay interface: pass --underlay IFACE")]
    NoDefaultRoute,

    #[error("the underlay interface {iface} has no IPv4 address")]
    NoUnderlayAddress { iface: String },

    #[error("cannot write map {name}")]
    WriteMap {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },

    #[error("cannot mount bpffs at {path}")]
    MountBpffs {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot create the pin folder {path}")]
    PinDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot pin map {name} at {path}")]
    Pin {
        name: &'static str,
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },

    #[error("cannot open pinned map {path} (is `fastpath run --bpffs` using this folder?)")]
    OpenPinned {
        path: PathBuf,
        #[source]
        source: aya::maps::MapError,
    },

    #[error("cannot read map {name}")]
    ReadMap {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },

    #[error("loading the eBPF object failed")]
    Load(#[source] aya::EbpfError),

    #[error("program {name} is missing from the eBPF object")]
    MissingProgram { name: &'static str },

    #[error("map {name} is missing from the eBPF object")]
    MissingMap { name: &'static str },

    #[error("loading program {name} into the kernel failed")]
    LoadProgram {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },

    #[error("attaching to {iface} failed")]
    Attach {
        iface: String,
        #[source]
        source: aya::programs::ProgramError,
    },

    #[error("the pinned link on {iface} is unusable")]
    Link {
        iface: String,
        #[source]
        source: aya::programs::links::LinkError,
    },

    #[error("netlink: {what}")]
    Netlink {
        what: &'static str,
        #[source]
        source: io::Error,
    },

    #[error("netlink request failed: {what}")]
    NetlinkRequest {
        what: &'static str,
        #[source]
        source: rtnetlink::Error,
    },

    #[error("cannot serve {what} on {addr}")]
    Listen {
        what: &'static str,
        addr: std::net::SocketAddr,
        #[source]
        source: io::Error,
    },

    #[error("cannot render the metrics (a collector failed; the daemon's log says which)")]
    Scrape,

    #[error("--bpffs {dir}: {parent} is not a bpffs and holds files, and so does {dir}; fastpath mounts a bpffs only on an empty or new folder: mount one yourself (mount -t bpf bpf DIR) or choose another --bpffs")]
    PinDirOccupied { dir: PathBuf, parent: PathBuf },

    #[error("cannot write the output as {format}")]
    Output {
        format: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error("another fastpath daemon is running on {dir}; stop it first, or give this one another --bpffs")]
    FolderInUse { dir: PathBuf },

    #[error("cannot start the async runtime")]
    Runtime(#[source] io::Error),

    #[error("no fastpath daemon is running on {dir} (no fresh heartbeat in its agent map)")]
    NotRunning { dir: PathBuf },

    #[error("cannot read the monitor's ring buffer")]
    Monitor(#[source] io::Error),

    #[error("cannot install the {signal} handler")]
    Signal {
        signal: &'static str,
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The error and every `source` under it, on one line: "a: b: c".
    pub fn chain(&self) -> String {
        let mut line = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(e) = source {
            line.push_str(": ");
            line.push_str(&e.to_string());
            source = e.source();
        }
        line
    }

    /// Whether a map refused a new entry for want of room: an LPM trie says ENOSPC, a hash map
    /// E2BIG (`trie_update_elem`, `htab_map_update_elem`).
    pub fn is_map_full(&self) -> bool {
        match self {
            Error::WriteMap { source: aya::maps::MapError::SyscallError(e), .. } => {
                matches!(e.io_error.raw_os_error(), Some(libc::ENOSPC | libc::E2BIG))
            }
            _ => false,
        }
    }

    /// Whether the user asked for something impossible (exit code 2) rather than the system
    /// failing (exit code 1).
    pub fn is_usage(&self) -> bool {
        matches!(self, Error::NoSuchInterface { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_joins_every_source() {
        let e = Error::PinDir { path: "/x".into(), source: io::Error::other("disk on fire") };
        assert_eq!(e.chain(), "cannot create the pin folder /x: disk on fire");
    }

    #[test]
    fn only_a_missing_interface_is_a_usage_error() {
        assert!(Error::NoSuchInterface { name: "eth9".into() }.is_usage());
        assert!(!Error::MissingMap { name: "X" }.is_usage());
    }
}
