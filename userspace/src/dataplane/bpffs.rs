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

/// Where a bpffs may be mounted for `dir` to be a pin folder, when none holds it yet: the
/// parent, as `/sys/fs/bpf` is for `/sys/fs/bpf/fastpath`, when the parent is missing or
/// empty; else `dir` itself, beside whatever the parent holds, when `dir` is missing or empty.
/// Never over a folder that holds anything: that would hide it (a bpffs over `/run` hides the
/// node's sockets and `/run/netns`). `None` when both hold something.
pub fn mount_point_for(dir: &Path) -> Option<PathBuf> {
    let free = |path: &Path| fs::read_dir(path).map_or(true, |mut entries| entries.next().is_none());
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() && free(parent) => Some(parent.to_path_buf()),
        _ if free(dir) => Some(dir.to_path_buf()),
        _ => None,
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

/// What [`ensure_pin_dir`] made: a mount and the folders it created, so that a start that
/// fails can take them away again ([`PinFolder::undo`]).
#[derive(Debug, Default)]
#[must_use = "a failed start must undo the pin folder"]
pub struct PinFolder {
    mounted: Option<PathBuf>,
    /// Deepest first.
    created: Vec<PathBuf>,
}

impl PinFolder {
    /// Whether this start mounted a bpffs.
    pub fn mounted(&self) -> Option<&Path> {
        self.mounted.as_deref()
    }

    /// Unmount what this start mounted and remove the (empty) folders it created.
    pub fn undo(self) {
        if let Some(mount_point) = &self.mounted {
            match unmount(mount_point) {
                Ok(()) => log::info!("unmounted the bpffs this start mounted at {}", mount_point.display()),
                Err(e) => log::warn!("cannot unmount {}: {e}", mount_point.display()),
            }
        }
        for dir in &self.created {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// Make `dir` a usable pin folder: on a bpffs already there, or on one mounted on
/// [`mount_point_for`]'s folder, then create it.
pub fn ensure_pin_dir(dir: &Path) -> Result<PinFolder, Error> {
    let on_bpffs = |path: &Path| is_bpffs(path).map_err(|source| mount_error(path, source));
    let mut made = PinFolder::default();
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
    if !on_bpffs(dir)? && !parent.map(on_bpffs).transpose()?.unwrap_or(false) {
        let mount_point = mount_point_for(dir).ok_or_else(|| Error::PinDirOccupied {
            dir: dir.to_path_buf(),
            parent: parent.unwrap_or(dir).to_path_buf(),
        })?;
        made.created = missing_ancestors(&mount_point);
        fs::create_dir_all(&mount_point).map_err(|source| mount_error(&mount_point, source))?;
        if let Err(e) = mount(&mount_point) {
            made.undo();
            return Err(e);
        }
        made.mounted = Some(mount_point);
    }
    if !dir.exists() {
        if let Err(source) = fs::create_dir_all(dir) {
            made.undo();
            return Err(Error::PinDir { path: dir.to_path_buf(), source });
        }
    }
    Ok(made)
}

/// `path` and those of its ancestors that do not exist, deepest first.
fn missing_ancestors(path: &Path) -> Vec<PathBuf> {
    path.ancestors().take_while(|p| !p.as_os_str().is_empty() && !p.exists()).map(Path::to_path_buf).collect()
}

fn unmount(mount_point: &Path) -> io::Result<()> {
    let target = CString::new(mount_point.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a valid NUL-terminated path. MNT_DETACH: a pinned object still open elsewhere
    // does not keep the mount from going.
    if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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

    /// A scratch folder under the system's temporary folder, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Self {
            let path = std::env::temp_dir().join(format!("fastpath-bpffs-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            Self(path)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn an_empty_or_missing_parent_is_the_mount_point() {
        let scratch = Scratch::new("empty");
        let dir = scratch.0.join("bpf/fastpath");
        assert_eq!(mount_point_for(&dir), Some(scratch.0.join("bpf")));
        fs::create_dir(scratch.0.join("bpf")).unwrap();
        assert_eq!(mount_point_for(&dir), Some(scratch.0.join("bpf")));
    }

    #[test]
    fn a_parent_that_holds_anything_is_never_mounted_over() {
        let scratch = Scratch::new("full");
        fs::write(scratch.0.join("socket-of-the-node"), b"").unwrap();
        let dir = scratch.0.join("fastpath");
        // Beside the parent's files: on the pin folder itself, while it is missing or empty.
        assert_eq!(mount_point_for(&dir), Some(dir.clone()));
        fs::create_dir(&dir).unwrap();
        assert_eq!(mount_point_for(&dir), Some(dir.clone()));
        fs::write(dir.join("something"), b"").unwrap();
        assert_eq!(mount_point_for(&dir), None);
    }

    #[test]
    fn missing_ancestors_are_listed_deepest_first() {
        let scratch = Scratch::new("anc");
        let dir = scratch.0.join("a/b");
        assert_eq!(missing_ancestors(&dir), [dir.clone(), scratch.0.join("a")]);
    }

    #[test]
    fn proc_is_not_bpffs_and_a_missing_path_is_not_either() {
        assert!(!is_bpffs(Path::new("/proc")).unwrap());
        assert!(!is_bpffs(Path::new("/nonexistent/fastpath/test")).unwrap());
    }
}
