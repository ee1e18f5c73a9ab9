//! BIRD 2 in a node's namespace, configured as Calico's BIRD is: an iBGP full mesh over the
//! underlay (AS 64512, every node a peer of every other), each node originating its own pod block
//! from a `blackhole` static route, and every route exported to the kernel's main table as
//! `proto bird`: the node's block as a blackhole, the other nodes' blocks via the owning node.
//! Stopped (SIGTERM, then SIGKILL) and its files removed when dropped.

use std::{
    fmt::Write as _,
    fs,
    net::Ipv4Addr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

use crate::{child, names, wait};

/// Calico's default AS number.
pub const AS_NUMBER: u32 = 64512;

pub struct Bird {
    child: Child,
    dir: PathBuf,
}

/// The configuration of the BIRD on node `node_ip` owning `block`, peering with `peers`.
pub fn config(node_ip: Ipv4Addr, block: (Ipv4Addr, u8), peers: &[Ipv4Addr]) -> String {
    let mut conf = format!(
        r#"router id {node_ip};
protocol device {{ scan time 1; }}
protocol static blocks {{
    ipv4;
    route {}/{} blackhole;
}}
protocol kernel {{
    ipv4 {{ import none; export all; }};
}}
template bgp mesh {{
    local {node_ip} as {AS_NUMBER};
    direct;
    graceful restart off;
    connect retry time 1;
    error wait time 1, 5;
    ipv4 {{ import all; export where proto = "blocks"; next hop self; }};
}}
"#,
        block.0, block.1
    );
    for peer in peers {
        let _ = writeln!(
            conf,
            "protocol bgp node_{} from mesh {{ neighbor {peer} as {AS_NUMBER}; }}",
            peer.octets()[3]
        );
    }
    conf
}

impl Bird {
    /// Start BIRD in `node_ns` with [`config`].
    pub fn start(
        node_ns: &str,
        node_ip: Ipv4Addr,
        block: (Ipv4Addr, u8),
        peers: &[Ipv4Addr],
    ) -> Result<Self> {
        let dir = std::env::temp_dir().join("fastpath-tests").join(names::unique("bird"));
        fs::create_dir_all(&dir)?;
        let conf = dir.join("bird.conf");
        fs::write(&conf, config(node_ip, block, peers))?;
        let log = fs::File::create(dir.join("bird.log"))?;
        let child = Command::new("ip")
            .args(["netns", "exec", node_ns, "bird", "-f", "-c"])
            .arg(&conf)
            .arg("-s")
            .arg(dir.join("bird.ctl"))
            .arg("-P")
            .arg(dir.join("bird.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start bird (`cargo xtask setup` installs bird2)")?;
        let mut bird = Self { child, dir };
        // A configuration error ends it at once; give it the time to say so.
        if let Some((status, _)) =
            wait::until(Duration::from_millis(300), || bird.child.try_wait().ok().flatten())
        {
            bail!("bird exited at once ({status}): {}", bird.log());
        }
        Ok(bird)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("bird.log")).unwrap_or_default()
    }

    /// Stop BIRD as an operator would (SIGTERM): it tells its peers (a BGP Cease) and removes its
    /// routes from the kernel.
    pub fn stop(&mut self) -> Result<()> {
        terminate(&mut self.child)
    }
}

fn terminate(child: &mut Child) -> Result<()> {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our own child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    match wait::until(Duration::from_secs(5), || child.try_wait().ok().flatten()) {
        Some(_) => Ok(()),
        None => bail!("bird did not exit within 5 s of SIGTERM"),
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        child::stop(&mut self.child, |c| {
            let _ = terminate(c);
        });
        child::keep_log_if_failing("bird", &self.dir, &self.log());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_is_a_full_mesh_exporting_the_own_block() {
        let conf = config(
            Ipv4Addr::new(10, 101, 14, 50),
            (Ipv4Addr::new(10, 244, 40, 0), 26),
            &[Ipv4Addr::new(10, 101, 14, 51), Ipv4Addr::new(10, 101, 14, 52)],
        );
        assert!(conf.contains("route 10.244.40.0/26 blackhole;"), "{conf}");
        assert!(conf.contains("local 10.101.14.50 as 64512;"), "{conf}");
        assert!(
            conf.contains("protocol bgp node_51 from mesh { neighbor 10.101.14.51 as 64512; }"),
            "{conf}"
        );
        assert!(
            conf.contains("protocol bgp node_52 from mesh { neighbor 10.101.14.52 as 64512; }"),
            "{conf}"
        );
        assert!(conf.contains(r#"export where proto = "blocks""#), "{conf}");
    }
}
