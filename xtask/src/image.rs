//! `cargo xtask image`: the container image, built here with no base image to pull: the daemon
//! linked statically, alone in a `FROM scratch` image (`Containerfile`).

use std::{fs, process::Command};

use anyhow::{bail, Context as _, Result};

use crate::{
    build,
    shell::{self, target_dir, workspace_root},
};

/// The image's name: podman's `localhost/` prefix names an image no registry serves.
pub const REPOSITORY: &str = "localhost/fastpath";

/// The most the image may weigh, in bytes (podman's MB are 10^6 bytes).
const SIZE_BUDGET: u64 = 25_000_000;

/// An image `podman build` made.
#[derive(Debug)]
pub struct Image {
    pub id: String,
    pub size: u64,
}

/// Build the static binary, then `Containerfile` with it as the only file of the build context,
/// tagged `localhost/fastpath:VERSION` and `:latest`. Fails if the image outgrows its budget.
pub fn build() -> Result<Image> {
    let binary = build::static_daemon()?;
    // The context holds the binary alone: podman need not read the rest of the tree.
    let context = target_dir().join("image-context");
    fs::create_dir_all(&context).with_context(|| format!("cannot create {}", context.display()))?;
    fs::copy(&binary, context.join("fastpath"))
        .with_context(|| format!("cannot copy {} into {}", binary.display(), context.display()))?;

    let version = env!("CARGO_PKG_VERSION");
    let tags = [format!("{REPOSITORY}:{version}"), format!("{REPOSITORY}:latest")];
    let mut cmd = Command::new("podman");
    // One image, no intermediate ones left behind to dangle after the next build.
    cmd.args(["build", "--layers=false", "--file"]).arg(workspace_root().join("Containerfile"));
    for tag in &tags {
        cmd.args(["--tag", tag]);
    }
    cmd.args(["--label", &format!("org.opencontainers.image.version={version}")]).arg(&context);
    shell::run(&mut cmd)?;

    let inspect = shell::output_ok(Command::new("podman").args([
        "image",
        "inspect",
        "--format",
        "{{.Id}} {{.Size}}",
        &tags[0],
    ]))?;
    let image = parse_inspect(&inspect).with_context(|| format!("podman image inspect said {inspect:?}"))?;
    println!("xtask: image {} ({}), id {}: {}", tags[0], tags[1], &image.id[..12], megabytes(image.size));
    if image.size > SIZE_BUDGET {
        bail!("the image weighs {}, over its budget of {}", megabytes(image.size), megabytes(SIZE_BUDGET));
    }
    Ok(image)
}

/// `podman image inspect --format '{{.Id}} {{.Size}}'`: "ID BYTES".
fn parse_inspect(out: &str) -> Option<Image> {
    let mut words = out.split_whitespace();
    let id = words.next()?.to_string();
    let size = words.next()?.parse().ok()?;
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(Image { id, size })
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn podman_inspect_gives_id_and_size() {
        let id = "5cbfedc72b5106594c5b7f245450c5e488b16ad16baa71116a9a9bee6ebc93e6";
        let image = parse_inspect(&format!("{id} 5122072\n")).unwrap();
        assert_eq!((image.id.as_str(), image.size), (id, 5_122_072));
        assert!(parse_inspect("").is_none());
        assert!(parse_inspect(&format!("{id} big")).is_none());
        assert!(parse_inspect("not-an-id 5122072").is_none());
    }

    #[test]
    fn sizes_read_as_podman_prints_them() {
        assert_eq!(megabytes(5_122_072), "5.1 MB");
        assert_eq!(megabytes(SIZE_BUDGET), "25.0 MB");
    }
}
