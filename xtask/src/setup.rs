//! Make this machine able to build and test fastpath, idempotently: quick when nothing is
//! missing, and it says what it installs.

use std::{
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use crate::shell::{self, is_root, probe, target_dir};

/// The bpf-linker release that builds against the nightly's LLVM here.
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Debian packages the tests and the demo use.
pub const PACKAGES: &[&str] = &[
    "iproute2",
    "iputils-ping",
    "arping",
    "bpftool",
    "util-linux",
    "iptables",
    "tcpdump",
    "iperf3",
    "bird2",
    // `cargo xtask profile`: perf 6.1 samples this kernel with the software clock.
    "linux-perf",
    // parity_e2e.rs reads the segment size of the aggregates a pod receives.
    "bpftrace",
    // ipv6_e2e.rs turns a node's tunnel offloads off, so every segment's checksum is checked.
    "ethtool",
    // conntrack_e2e.rs deletes and reads the kernel's conntrack entries, as Felix and an
    // operator do.
    "conntrack",
    "podman",
    // podman prefers crun, which cannot start a container on a host with cgroups v1 (hybrid
    // mode); the container tests run runc.
    "runc",
    // The container tests import the image into containerd as a node would, and run it there.
    "containerd",
];

/// Packages whose program another package may provide under another name (Docker's
/// `containerd.io` provides runc and containerd, and conflicts with Debian's): the program on
/// the PATH will do.
const PROVIDED_ELSEWHERE: &[(&str, &str)] = &[("runc", "runc"), ("containerd", "ctr")];

/// What `cargo xtask image` needs of Debian: podman builds the image.
pub const IMAGE_PACKAGES: &[&str] = &["podman"];

/// The target of the image's binary: musl, linked statically, so it runs with no C library.
pub const STATIC_TARGET: &str = "x86_64-unknown-linux-musl";

/// Everything: the toolchain and the packages the tests, demo and benchmark use.
pub fn run() -> Result<()> {
    toolchain()?;
    static_target()?;
    debian_packages(PACKAGES)
}

/// What `cargo xtask image` needs: the toolchain, the static target and podman.
pub fn image() -> Result<()> {
    toolchain()?;
    static_target()?;
    debian_packages(IMAGE_PACKAGES)
}

/// Only what compiling needs (for `build` and container images).
pub fn toolchain() -> Result<()> {
    nightly_with_rust_src()?;
    bpf_linker()
}

fn nightly_with_rust_src() -> Result<()> {
    let toolchains = probe("rustup", &["toolchain", "list"]).context("rustup is required")?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        println!("xtask: setup: installing the nightly toolchain (the eBPF programs need it)");
        shell::run(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))?;
    }
    let sysroot = nightly_sysroot()?;
    if sysroot.join("lib/rustlib/src/rust/library/core/Cargo.toml").exists() {
        println!("xtask: setup: nightly rust-src ok");
    } else {
        println!("xtask: setup: adding rust-src to nightly (-Z build-std=core needs it)");
        shell::run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))?;
    }
    Ok(())
}

/// Add the nightly components in `names` that are missing.
pub fn nightly_components(names: &[&str]) -> Result<()> {
    let installed =
        probe("rustup", &["component", "list", "--installed", "--toolchain", "nightly"]).unwrap_or_default();
    for name in names {
        if !installed.lines().any(|l| l.starts_with(&format!("{name}-")) || l == *name) {
            println!("xtask: setup: adding {name} to nightly");
            shell::run(Command::new("rustup").args(["component", "add", name, "--toolchain", "nightly"]))?;
        }
    }
    Ok(())
}

fn nightly_sysroot() -> Result<PathBuf> {
    let out = probe("rustc", &["+nightly", "--print", "sysroot"]).context("`rustc +nightly` does not run")?;
    Ok(PathBuf::from(out.trim()))
}

fn bpf_linker() -> Result<()> {
    // bpf-linker links nightly's libLLVM, which is only on the library path under `rustup run`
    // (as aya-build runs it).
    if probe("rustup", &["run", "nightly", "bpf-linker", "--version"])
        .is_some_and(|v| is_bpf_linker_version(&v, BPF_LINKER_VERSION))
    {
        println!("xtask: setup: bpf-linker {BPF_LINKER_VERSION} ok");
        return Ok(());
    }
    let verbose = probe("rustc", &["+nightly", "-vV"]).context("`rustc +nightly -vV` does not run")?;
    let major = llvm_major(&verbose).context("cannot tell nightly's LLVM version")?;
    let prefix = llvm_prefix(&nightly_sysroot()?, major)?;
    println!("xtask: setup: building bpf-linker {BPF_LINKER_VERSION} against nightly's LLVM {major} (about a minute)");
    shell::run(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["install", &format!("bpf-linker@{BPF_LINKER_VERSION}"), "--no-default-features"])
            .args(["--features", &format!("llvm-{major}")])
            .env("LLVM_PREFIX", &prefix),
    )
}

/// A folder whose `lib/libLLVM.so` is nightly's own libLLVM, which is what bpf-linker's
/// build script looks for under LLVM_PREFIX.
fn llvm_prefix(sysroot: &Path, major: u32) -> Result<PathBuf> {
    let lib_dir = sysroot.join("lib");
    let names: Vec<String> = fs::read_dir(&lib_dir)
        .with_context(|| format!("cannot list {}", lib_dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    let Some(lib) = libllvm_name(&names, major) else {
        bail!("nightly ships no libLLVM {major} in {}", lib_dir.display());
    };
    let prefix = target_dir().join(format!("xtask/llvm-{major}"));
    let link = prefix.join("lib/libLLVM.so");
    fs::create_dir_all(prefix.join("lib"))?;
    let _ = fs::remove_file(&link);
    symlink(lib_dir.join(lib), &link).with_context(|| format!("cannot create {}", link.display()))?;
    Ok(fs::canonicalize(&prefix)?)
}

/// The standard library for [`STATIC_TARGET`], added to the toolchain that builds the daemon
/// (the one `cargo` runs here).
fn static_target() -> Result<()> {
    let installed = probe("rustup", &["target", "list", "--installed"]).context("rustup is required")?;
    if installed.lines().any(|l| l.trim() == STATIC_TARGET) {
        println!("xtask: setup: target {STATIC_TARGET} ok");
        return Ok(());
    }
    println!("xtask: setup: adding the target {STATIC_TARGET} (the image's binary is linked statically)");
    shell::run(Command::new("rustup").args(["target", "add", STATIC_TARGET]))
}

fn debian_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> =
        packages.iter().copied().filter(|p| !is_installed(p) && !is_provided(p)).collect();
    if missing.is_empty() {
        println!("xtask: setup: Debian packages ok ({})", packages.join(", "));
        return Ok(());
    }
    if !is_root() {
        bail!("missing Debian packages {}: run `cargo xtask setup` as root", missing.join(" "));
    }
    println!("xtask: setup: installing Debian packages {}", missing.join(" "));
    shell::run(Command::new("apt-get").args(["update", "-qq"]))?;
    shell::run(
        Command::new("apt-get")
            // --no-remove: never make room by removing a package (Docker's, say); fail instead.
            .args(["install", "-y", "-qq", "--no-install-recommends", "--no-remove"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn is_installed(package: &str) -> bool {
    probe("dpkg-query", &["-W", "-f=${db:Status-Status}", package]).is_some_and(|s| s.trim() == "installed")
}

/// Whether `package`'s program is on the PATH though another package installed it.
fn is_provided(package: &str) -> bool {
    PROVIDED_ELSEWHERE.iter().any(|(p, program)| *p == package && probe("which", &[program]).is_some())
}

/// `bpf-linker --version` prints "bpf-linker 0.13.0".
fn is_bpf_linker_version(output: &str, version: &str) -> bool {
    output.split_whitespace().nth(1) == Some(version)
}

/// The LLVM major version in `rustc -vV` output ("LLVM version: 22.1.2").
fn llvm_major(rustc_verbose: &str) -> Option<u32> {
    let version = rustc_verbose.lines().find_map(|l| l.strip_prefix("LLVM version: "))?;
    version.split('.').next()?.trim().parse().ok()
}

/// Nightly's shared libLLVM for `major` (`libLLVM.so.22.1-rust-1.97.0-nightly`), not the
/// `libLLVM-22-rust-…` alias.
fn libllvm_name(names: &[String], major: u32) -> Option<&str> {
    let prefix = format!("libLLVM.so.{major}.");
    names.iter().map(String::as_str).find(|n| n.starts_with(&prefix) && n.contains("-rust-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpf_linker_version_is_read_from_its_output() {
        assert!(is_bpf_linker_version("bpf-linker 0.13.0\n", "0.13.0"));
        assert!(!is_bpf_linker_version("bpf-linker 0.9.15\n", "0.13.0"));
        assert!(!is_bpf_linker_version("", "0.13.0"));
    }

    #[test]
    fn llvm_major_is_read_from_rustc_vv() {
        let out = "rustc 1.97.0-nightly (abc 2026-05-01)\nbinary: rustc\nhost: x86_64-unknown-linux-gnu\nLLVM version: 22.1.2\n";
        assert_eq!(llvm_major(out), Some(22));
        assert_eq!(llvm_major("rustc 1.97.0\n"), None);
    }

    #[test]
    fn nightly_libllvm_is_found_by_major() {
        let names: Vec<String> = [
            "libLLVM-22-rust-1.97.0-nightly.so",
            "librustc_driver-x.so",
            "libLLVM.so.22.1-rust-1.97.0-nightly",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(libllvm_name(&names, 22), Some("libLLVM.so.22.1-rust-1.97.0-nightly"));
        assert_eq!(libllvm_name(&names, 21), None);
    }
}
