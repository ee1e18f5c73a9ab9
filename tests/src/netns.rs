//! A network namespace that is deleted, with every process still in it, when dropped.

use anyhow::Result;

use crate::cmd;

#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: String) -> Result<Self> {
        cmd::run("ip", &["netns", "add", &name])?;
        let ns = Self { name };
        cmd::ip(&ns.name, &["link", "set", "lo", "up"])?;
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(pids) = cmd::run("ip", &["netns", "pids", &self.name]) {
            for pid in pids.split_whitespace() {
                let _ = cmd::output("kill", &["-KILL", pid]);
            }
        }
        if let Err(e) = cmd::run("ip", &["netns", "del", &self.name]) {
            eprintln!("cleanup: {e:#}");
        }
    }
}
