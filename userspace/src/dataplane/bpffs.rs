//! The pin folder: find or mount the bpffs it lives on, create it, clean it.
//!
//! `ip netns exec` gives its command a fresh /sys with no bpffs on /sys/fs/bpf, and a DaemonSet
//! may not mount one either, so the daemon mounts it itself when it is missing.

use std::{
    ffi::CString,
    fs, io,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use crate::Error;

/// `f_type` of a bpffs in `statfs(2)` (include/uapi/linux/magic.h). glibc declares `f_type` as
/// `__fsword_t` (signed), musl as `unsigned long`: compared as a `u64` it builds with both.
const BPF_FS_MAGIC: u64 = 0xcafe_4a11;

/// Where bpffs must be mounted for `dir` to be a pin folder: its parent, as `/sys/fs/bpf` is for
/// `/sys/fs/bpf/fastpath`; `dir` itself when it is the conventional mount point.
pub fn mount_point_for(dir: &Path) -> PathBuf {
    if dir == Path::new("/sys/fs/bpf") {
        return dir.to_path_buf();
    }
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => dir.to_path_buf(),
    }
}

/// Whether `path` lies on a bpffs; a path that does not exist does not.
pub fn is_bpffs(path: &Path) -> io::Result<bool> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: `statfs` writes into the zeroed struct we own; the path is a valid C string.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut buf) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::NotFound { Ok(false) } else { Err(err) };
    }
    Ok(u64::try_from(buf.f_type).is_ok_and(|f_type| f_type == BPF_FS_MAGIC))
}

/// Make `dir` a usable pin folder: mount bpffs on its mount point when needed, then create it.
/// Returns whether this call mounted bpffs.
pub fn ensure_pin_dir(dir: &Path) -> Result<bool, Error> {
    let mount_point = mount_point_for(dir);
    let mounted = if is_bpffs(&mount_point).map_err(|source| mount_error(&mount_point, source))? {
        false
    } else {
        mount(&mount_point)?;
        true
    };
    fs::create_dir_all(dir).map_err(|source| Error::PinDir { path: dir.to_path_buf(), source })?;
    Ok(mounted)
}

fn mount(mount_point: &Path) -> Result<(), Error> {
    fs::create_dir_all(mount_point).map_err(|source| mount_error(mount_point, source))?;
    let target = CString::new(mount_point.as_os_str().as_bytes())
        .map_err(|_| mount_error(mount_point, io::ErrorKind::InvalidInput.into()))?;
    let fstype = c"bpf";
    // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call.
    let rc = unsafe {
        libc::mount(fstype.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, c"mode=0700".as_ptr().cast())
    };
    if rc != 0 {
        return Err(mount_error(mount_point, io::Error::last_os_error()));
    }
    log::info!("mounted bpffs at {}", mount_point.display());
    Ok(())
}

fn mount_error(path: &Path, source: io::Error) -> Error {
    Error::MountBpffs { path: path.to_path_buf(), source }
}

/// Open the map a running daemon pinned in `dir` under `name`.
pub fn open_pinned(dir: &Path, name: &str) -> Result<aya::maps::Map, Error> {
    let path = dir.join(name);
    let data = aya::maps::MapData::from_pin(&path)
        .map_err(|source| Error::OpenPinned { path: path.clone(), source })?;
    aya::maps::Map::from_map_data(data).map_err(|source| Error::OpenPinned { path, source })
}

/// Open map `name` pinned in `dir` as the typed map `M`.
pub fn open_pinned_as<M: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(
    dir: &Path,
    name: &'static str,
) -> Result<M, Error> {
    open_pinned(dir, name)?.try_into().map_err(|source| Error::ReadMap { name, source })
}

/// The one value of the one-slot array `name` pinned in `dir`.
pub fn read_pinned_slot<T: aya::Pod>(dir: &Path, name: &'static str) -> Result<T, Error> {
    let array: aya::maps::Array<aya::maps::MapData, T> = open_pinned_as(dir, name)?;
    array.get(&0, 0).map_err(|source| Error::ReadMap { name, source })
}

/// An exclusive hold on a pin folder: one daemon per folder. Released when dropped (or when the
/// process dies: it is a `flock` on the folder).
#[derive(Debug)]
pub struct FolderLock {
    _held: fs::File,
}

/// Take the folder for this daemon, or say which daemon has it.
pub fn lock(dir: &Path) -> Result<FolderLock, Error> {
    let folder = fs::File::open(dir).map_err(|source| Error::PinDir { path: dir.to_path_buf(), source })?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&folder), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(Error::FolderInUse { dir: dir.to_path_buf() });
    }
    Ok(FolderLock { _held: folder })
}

/// Remove the pins this daemon made, then the folder if nothing else is in it.
pub fn remove_pins(dir: &Path, names: &[&str]) {
    for name in names {
        let path = dir.join(name);
        if let Err(e) = fs::remove_file(&path) {
            if e.kind() != io::ErrorKind::NotFound {
                log::warn!("cannot remove pin {}: {e}", path.display());
            }
        }
    }
    // Only succeeds when empty, which is what we want: never remove somebody else's pins.
    let _ = fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_of_the_pin_folder_is_the_mount_point() {
        assert_eq!(mount_point_for(Path::new("/sys/fs/bpf/fastpath")), Path::new("/sys/fs/bpf"));
        assert_eq!(mount_point_for(Path::new("/run/fp/bpf/node1")), Path::new("/run/fp/bpf"));
    }

    #[test]
    fn the_conventional_mount_point_is_its_own_mount_point() {
        assert_eq!(mount_point_for(Path::new("/sys/fs/bpf")), Path::new("/sys/fs/bpf"));
    }

    #[test]
    fn a_relative_single_component_is_its_own_mount_point() {
        assert_eq!(mount_point_for(Path::new("pins")), Path::new("pins"));
    }

    #[test]
    fn proc_is_not_bpffs_and_a_missing_path_is_not_either() {
        assert!(!is_bpffs(Path::new("/proc")).unwrap());
        assert!(!is_bpffs(Path::new("/nonexistent/fastpath/test")).unwrap());
    }
}
