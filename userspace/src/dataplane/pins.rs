//! The pin folder's layout: maps by name, tcx links under `links/` as `PROGRAM@IFINDEX`; and the
//! check that pinned maps still have the layout this version expects.
//!
//! The dataplane outlives the daemon: its links and maps stay pinned when it exits, so the
//! programs keep running; the next daemon adopts them.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use aya::maps::{Array, Map, MapData};
use fastpath_common::maps::{AgentInfo, MapLayout, AGENT, LAYOUTS, LAYOUT_VERSION};

use crate::{dataplane::capacities::Capacities, Error};

/// The sub-folder of the pin folder that holds the tcx links.
pub const LINKS_DIR: &str = "links";

/// Where the link of `program` on interface `ifindex` is pinned.
pub fn link_path(dir: &Path, program: &str, ifindex: u32) -> PathBuf {
    dir.join(LINKS_DIR).join(format!("{program}@{ifindex}"))
}

/// The program and ifindex a link pin's file name stands for.
pub fn parse_link_name(name: &str) -> Option<(&str, u32)> {
    let (program, ifindex) = name.rsplit_once('@')?;
    Some((program, ifindex.parse().ok()?))
}

/// Every pinned link: (program, ifindex, path).
pub fn pinned_links(dir: &Path) -> Vec<(String, u32, PathBuf)> {
    let Ok(entries) = fs::read_dir(dir.join(LINKS_DIR)) else { return Vec::new() };
    let mut links: Vec<_> = entries
        .filter_map(|e| {
            let entry = e.ok()?;
            let name = entry.file_name().into_string().ok()?;
            let (program, ifindex) = parse_link_name(&name)?;
            Some((program.to_string(), ifindex, entry.path()))
        })
        .collect();
    links.sort();
    links
}

/// Remove the pinned links of programs other than `programs` (those a different mode attached):
/// they stop running.
pub fn drop_links_of_other_programs(dir: &Path, programs: &[&str]) {
    for (program, ifindex, path) in pinned_links(dir) {
        if !programs.contains(&program.as_str()) {
            log::info!("detaching {program} from ifindex {ifindex}: this mode does not use it");
            let _ = fs::remove_file(&path);
        }
    }
}

/// How a pinned map differs from what this version expects, if it does.
pub fn layout_mismatch(
    expected: &MapLayout,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
) -> Option<String> {
    let found = (key_size, value_size, max_entries);
    let wanted = (expected.key_size, expected.value_size, expected.max_entries);
    (found != wanted).then(|| {
        format!(
            "key {}→{} bytes, value {}→{} bytes, {}→{} entries",
            found.0, wanted.0, found.1, wanted.1, found.2, wanted.2
        )
    })
}

/// Remove the pins of maps whose layout differs from this version's, so the loader creates them
/// anew instead of misreading them. Every map goes when the pinned agent says another layout
/// version; a sized map (routes, endpoints, peers, flows) goes when its size is not what
/// `capacities` says (the daemon fills it again from the kernel). Says so in the log, one line
/// per map.
pub fn drop_incompatible_maps(dir: &Path, capacities: &Capacities) {
    let other_version = pinned_layout_version(dir).filter(|v| *v != LAYOUT_VERSION);
    for layout in &LAYOUTS {
        let layout = &capacities.layout(layout);
        let path = dir.join(layout.name);
        let Ok(data) = MapData::from_pin(&path) else { continue };
        let reason = match (other_version, data.info()) {
            (Some(version), _) => Some(format!("layout version {version}→{LAYOUT_VERSION}")),
            (None, Ok(info)) => {
                layout_mismatch(layout, info.key_size(), info.value_size(), info.max_entries())
            }
            (None, Err(e)) => Some(format!("unreadable ({e})")),
        };
        if let Some(reason) = reason {
            log::warn!("pinned map {} has another layout ({reason}): recreating it empty", layout.name);
            if let Err(e) = fs::remove_file(&path) {
                log::warn!("cannot remove {}: {e}", path.display());
            }
        }
    }
}

fn pinned_layout_version(dir: &Path) -> Option<u32> {
    let data = MapData::from_pin(dir.join(AGENT)).ok()?;
    let info = data.info().ok()?;
    if info.value_size() as usize != std::mem::size_of::<AgentInfo>() {
        // Another size: the per-map layout check recreates the agent map; the version it would
        // hold cannot be read.
        return None;
    }
    let agent: Array<MapData, AgentInfo> = Map::Array(data).try_into().ok()?;
    agent.get(&0, 0).ok().map(|a| a.layout_version).filter(|v| *v != 0)
}

/// Remove every pin in `dir` that fastpath makes, links first (their programs stop), then maps,
/// then the folders. Returns how many pins went.
pub fn remove_all(dir: &Path, map_names: &[&str]) -> Result<usize, Error> {
    let mut removed = 0;
    for (_, _, path) in pinned_links(dir) {
        remove_pin(&path)?;
        removed += 1;
    }
    for name in map_names {
        let path = dir.join(name);
        if path.exists() {
            remove_pin(&path)?;
            removed += 1;
        }
    }
    // Only empty folders go: never somebody else's pins.
    let _ = fs::remove_dir(dir.join(LINKS_DIR));
    let _ = fs::remove_dir(dir);
    Ok(removed)
}

fn remove_pin(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::PinDir { path: path.to_path_buf(), source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_pin_names_round_trip() {
        let path = link_path(Path::new("/sys/fs/bpf/fastpath"), "from_pod", 507);
        assert_eq!(path, Path::new("/sys/fs/bpf/fastpath/links/from_pod@507"));
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_link_name(name), Some(("from_pod", 507)));
        assert_eq!(parse_link_name("from_pod"), None);
        assert_eq!(parse_link_name("from_pod@eth0"), None);
    }

    #[test]
    fn a_layout_mismatch_names_what_changed() {
        let layout = MapLayout { name: "FP_ROUTES", key_size: 8, value_size: 24, max_entries: 10 };
        assert_eq!(layout_mismatch(&layout, 8, 24, 10), None);
        let why = layout_mismatch(&layout, 8, 16, 10).unwrap();
        assert!(why.contains("value 16→24 bytes"), "{why}");
    }
}
