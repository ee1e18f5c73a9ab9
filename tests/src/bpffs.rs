//! A bpffs of the test's own, mounted in the host's mount namespace, so pins outlive a daemon
//! (and its `ip netns exec` mount namespace) the way /sys/fs/bpf does on a node. Unmounted, with
//! everything pinned in it, when dropped.

use std::{fs, path::PathBuf};

use anyhow::Result;

use crate::{cmd, names};

#[derive(Debug)]
pub struct Bpffs {
    pub mount: PathBuf,
}

impl Bpffs {
    pub fn new(tag: &str) -> Result<Self> {
        let mount = std::env::temp_dir().join("fastpath-tests").join(names::unique(tag));
        fs::create_dir_all(&mount)?;
        let bpffs = Self { mount };
        cmd::run("mount", &["-t", "bpf", "bpf", bpffs.mount.to_str().expect("UTF-8 temp dir")])?;
        Ok(bpffs)
    }

    /// The pin folder to hand to `fastpath --bpffs`.
    pub fn pin_dir(&self) -> PathBuf {
        self.mount.join("fastpath")
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        // Unmounting a bpffs releases every object pinned in it: links detach, maps go.
        if let Err(e) = cmd::run("umount", &[self.mount.to_str().unwrap_or_default()]) {
            eprintln!("cleanup: {e:#}");
        }
        let _ = fs::remove_dir(&self.mount);
    }
}
