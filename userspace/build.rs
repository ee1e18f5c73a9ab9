//! Compiles the eBPF crate (nightly, bpfel-unknown-none) into OUT_DIR so the daemon embeds it.

use anyhow::{anyhow, Context as _};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    revision();
    let ebpf_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ebpf");
    let root_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow!("the eBPF crate's path is not UTF-8: {}", ebpf_dir.display()))?;
    let package = Package { name: "fastpath-ebpf", root_dir, ..Default::default() };
    aya_build::build_ebpf([package], Toolchain::default())
        .context("building the eBPF programs failed; `cargo xtask setup` installs what they need")
}

/// `FASTPATH_REVISION` for the binary (`fastpath version`, `fastpath_build_info`): the
/// environment's when set (a build outside git), else `git rev-parse --short=12 HEAD`; `unknown`
/// without git.
fn revision() {
    println!("cargo:rerun-if-env-changed=FASTPATH_REVISION");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    // Rebuilt when HEAD moves (a commit, a checkout): HEAD and the branch it names.
    if let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={path}");
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", &branch]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let revision = std::env::var("FASTPATH_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]));
    println!("cargo:rustc-env=FASTPATH_REVISION={}", revision.as_deref().unwrap_or("unknown"));
}
