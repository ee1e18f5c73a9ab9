//! Legacy tc: where the kernel has no tcx (before Linux 6.6), the programs attach as `cls_bpf`
//! filters under a `clsact` qdisc, through netlink. Such a filter is not a pinnable link, but it
//! outlives the daemon by itself; the next daemon finds it by its fixed priority and handle and
//! replaces its program in place.

use std::ffi::CStr;

use aya::programs::{
    tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle},
    SchedClassifier, TcAttachType,
};

use crate::dataplane::loader::{HOOKS, RETIRED};

/// The filter priority of every fastpath filter: first in line, as tcx programs are.
pub const PRIORITY: u16 = 1;

/// Each program's filter handle (its place in [`HOOKS`] then [`RETIRED`], from 1: the order they
/// were added in), distinct so that one interface can hold several of them (the underlay with a
/// pod prefix that matches it, say).
pub fn handle(program: &str) -> TcHandle {
    let mut all = HOOKS.iter().chain(&RETIRED);
    let place = all.position(|(name, _)| *name == program).unwrap_or(HOOKS.len() + RETIRED.len());
    TcHandle::new(0, place as u16 + 1)
}

/// Whether this kernel has tcx (Linux 6.6), as aya itself decides.
pub fn kernel_has_tcx() -> bool {
    aya::util::KernelVersion::current().is_ok_and(|v| v >= aya::util::KernelVersion::new(6, 6, 0))
}

/// Attach `program` to `iface` as a filter: adopt the one an earlier daemon left (its program
/// replaced in place), or add the `clsact` qdisc if missing and create the filter. Returns
/// whether it adopted one. The filter stays after the daemon exits; [`detach`] removes it.
pub fn attach(
    program: &mut SchedClassifier,
    name: &'static str,
    iface: &str,
    direction: TcAttachType,
) -> Result<bool, aya::programs::ProgramError> {
    let adopted = SchedClassifierLink::attached(iface, direction, PRIORITY, handle(name), None)
        .ok()
        .and_then(|old| program.attach_to_link(old).ok());
    let (id, adopted) = match adopted {
        Some(id) => (id, true),
        None => {
            if let Err(e) = tc::qdisc_add_clsact(iface) {
                // Present already (ours or anybody's) is fine; anything else shows in the attach.
                log::debug!("adding clsact to {iface}: {e}");
            }
            let options = NlOptions { priority: PRIORITY, handle: handle(name), classid: None };
            (program.attach_with_options(iface, direction, TcAttachOptions::Netlink(options))?, false)
        }
    };
    // The link object would remove the filter when dropped: forget it, so the filter outlives the
    // daemon as a pinned link does.
    std::mem::forget(program.take_link(id)?);
    Ok(adopted)
}

/// Remove `program`'s filter from `iface`, if it is there.
pub fn detach(name: &str, iface: &str, direction: TcAttachType) {
    if let Ok(link) = SchedClassifierLink::attached(iface, direction, PRIORITY, handle(name), None) {
        // Dropping the link object removes the filter (an error means it was not there).
        drop(link);
    }
}

/// Remove every fastpath filter, found by program name, from every interface of this network
/// namespace (`fastpath cleanup`); returns how many it removed.
pub fn detach_everywhere() -> usize {
    let mut removed = 0;
    for iface in interface_names() {
        for (program, direction) in HOOKS.into_iter().chain(RETIRED) {
            if tc::qdisc_detach_program(&iface, direction, program).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

/// The interfaces of this network namespace (`if_nameindex(3)`).
fn interface_names() -> Vec<String> {
    let mut names = Vec::new();
    // SAFETY: if_nameindex returns an array ending with a zeroed entry, freed below with
    // if_freenameindex; every name is a NUL-terminated string inside it.
    unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return names;
        }
        let mut entry = list;
        while (*entry).if_index != 0 && !(*entry).if_name.is_null() {
            names.push(CStr::from_ptr((*entry).if_name).to_string_lossy().into_owned());
            entry = entry.add(1);
        }
        libc::if_freenameindex(list);
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_program_has_a_handle_of_its_own() {
        let handles: Vec<u32> =
            HOOKS.iter().chain(&RETIRED).map(|(name, _)| u32::from(handle(name))).collect();
        assert_eq!(handles, [1, 2, 3, 4], "the handles of earlier versions' filters are kept");
        assert_eq!(u32::from(handle("no_such_program")), 5);
    }

    #[test]
    fn egress_programs_say_so() {
        assert_eq!(crate::dataplane::loader::attach_point("to_pod"), "tcx egress");
        assert_eq!(crate::dataplane::loader::attach_point(crate::dataplane::loader::FROM_POD), "tcx ingress");
    }
}
