//! Compiles the eBPF crate (nightly, bpfel-unknown-none) into OUT_DIR so the daemon embeds it.

use anyhow::{anyhow, Context as _};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let ebpf_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ebpf");
    let root_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow!("the eBPF crate's path is not UTF-8: {}", ebpf_dir.display()))?;
    let package = Package { name: "fastpath-ebpf", root_dir, ..Default::default() };
    aya_build::build_ebpf([package], Toolchain::default())
        .context("building the eBPF programs failed; `cargo xtask setup` installs what they need")
}
