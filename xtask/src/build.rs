//! Building, running and testing the workspace.

use std::{path::PathBuf, process::Command};

use anyhow::{bail, Result};

use crate::{
    setup::STATIC_TARGET,
    shell::{self, is_root, target_dir, workspace_root},
};

/// `cargo build` the daemon; returns the binary's path.
pub fn daemon(release: bool) -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.args(["build", "--package", "fastpath", "--bins"]);
    if release {
        cmd.arg("--release");
    }
    shell::run(&mut cmd)?;
    let path = target_dir().join(if release { "release" } else { "debug" }).join("fastpath");
    println!("xtask: built {}", path.display());
    Ok(path)
}

/// `cargo build` the daemon for the image: linked statically ([`STATIC_TARGET`]), in the
/// `image` profile (release without the symbol table); returns the binary's path.
pub fn static_daemon() -> Result<PathBuf> {
    shell::run(cargo().args(["build", "--package", "fastpath", "--bin", "fastpath"]).args([
        "--profile",
        "image",
        "--target",
        STATIC_TARGET,
    ]))?;
    let path = target_dir().join(STATIC_TARGET).join("image/fastpath");
    println!("xtask: built {}", path.display());
    Ok(path)
}

/// Build an example of the test bed (a load generator), optimised; returns its path.
pub fn example(name: &str) -> Result<PathBuf> {
    shell::run(cargo().args(["build", "--release", "--package", "fastpath-tests", "--example", name]))?;
    Ok(target_dir().join("release/examples").join(name))
}

pub fn run(release: bool, flags: &[String]) -> Result<()> {
    require_root("fastpath run")?;
    let bin = daemon(release)?;
    shell::run(Command::new(bin).arg("run").args(flags))
}

/// Every suite: unit tests on the host, BPF_PROG_TEST_RUN and end-to-end suites as root, the
/// container suite on the image just built.
pub fn test() -> Result<()> {
    require_root("the BPF_PROG_TEST_RUN and end-to-end suites")?;
    let bin = daemon(false)?;
    // By its id: the name may be taken meanwhile by a build from another work tree.
    let image = crate::image::build()?;
    let mut cmd = cargo();
    cmd.args(["test", "--no-fail-fast"]).env("FASTPATH_BIN", bin).env("FASTPATH_IMAGE", image.id);
    shell::run(&mut cmd)
}

/// Formatting and clippy, in two passes because features unify across a workspace and the eBPF
/// crate builds only for its own target.
pub fn lint() -> Result<()> {
    crate::setup::nightly_components(&["rustfmt", "clippy"])?;
    shell::run(nightly_cargo().args(["fmt", "--all", "--check"]))?;
    shell::run(cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    shell::run(
        nightly_cargo()
            .current_dir(workspace_root().join("ebpf"))
            .args(["clippy", "--release", "--target", "bpfel-unknown-none", "-Z", "build-std=core"])
            .args(["--", "-D", "warnings"]),
    )
}

/// The nightly cargo, whatever toolchain runs xtask (the eBPF crate and rustfmt's import
/// grouping need nightly).
fn nightly_cargo() -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo"]).current_dir(workspace_root()).env_remove("RUSTC");
    cmd
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

fn require_root(what: &str) -> Result<()> {
    if !is_root() {
        bail!("{what} need root (network namespaces, BPF): run as root or with sudo");
    }
    Ok(())
}
