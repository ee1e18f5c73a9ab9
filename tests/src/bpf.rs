//! What bpftool says about programs and links, which are global to the machine.

use std::time::Duration;

use crate::cmd;

/// Links (any namespace) whose program is `prog_id`, from `bpftool link show`. Links of tests
/// running in parallel may vanish while bpftool walks them, which spoils its JSON: try again.
pub fn links_of_program(prog_id: u32) -> usize {
    for _ in 0..20 {
        let json = cmd::run("bpftool", &["link", "show", "--json"]).unwrap_or_default();
        if let Ok(serde_json::Value::Array(links)) = serde_json::from_str(&json) {
            return links.iter().filter(|l| l["prog_id"].as_u64() == Some(u64::from(prog_id))).count();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("bpftool link show --json gave no usable answer in 20 tries");
}

pub fn program_exists(prog_id: u32) -> bool {
    cmd::output("bpftool", &["prog", "show", "id", &prog_id.to_string()]).expect("bpftool").status.success()
}
