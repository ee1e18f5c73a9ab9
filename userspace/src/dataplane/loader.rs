//! Loading the embedded eBPF object, pinning its maps, attaching and detaching the programs.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
};

use aya::{
    programs::{
        links::{FdLink, PinnedLink},
        tc::SchedClassifierLink,
        ProgramError, SchedClassifier, TcAttachType,
    },
    Ebpf, EbpfLoader,
};
use fastpath_common::maps::PINNED_MAPS;

use crate::{
    dataplane::{capacities::Capacities, legacy_tc, pins},
    model::link::Link,
    Error,
};

/// The eBPF object built from `ebpf/` by build.rs, embedded so the binary is self-contained.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fastpath"));

/// The program for `cali*` ingress: everything a pod sends.
pub const FROM_POD: &str = "from_pod";
/// The program for the underlay's ingress: IPIP from other nodes.
pub const FROM_UNDERLAY: &str = "from_underlay";
/// The programs on every pod interface, and where each attaches.
pub const POD_PROGRAMS: [(&str, TcAttachType); 1] = [(FROM_POD, TcAttachType::Ingress)];

/// The programs on the underlay, and where each attaches.
pub const UNDERLAY_PROGRAMS: [(&str, TcAttachType); 1] = [(FROM_UNDERLAY, TcAttachType::Ingress)];

/// Every program and where it attaches.
pub const HOOKS: [(&str, TcAttachType); 2] =
    [(FROM_POD, TcAttachType::Ingress), (FROM_UNDERLAY, TcAttachType::Ingress)];

/// Programs of earlier versions, gone since: the egress judges of `--trust kernel` before the
/// kernel's conntrack judged flows. A daemon removes their pinned links and legacy tc filters.
pub const RETIRED: [(&str, TcAttachType); 2] =
    [("to_pod", TcAttachType::Egress), ("to_underlay", TcAttachType::Egress)];

/// Where `program` attaches, in words (`fastpath status`).
pub fn attach_point(program: &str) -> &'static str {
    match HOOKS.iter().chain(&RETIRED).find(|(name, _)| *name == program) {
        Some((_, TcAttachType::Egress)) => "tcx egress",
        _ => "tcx ingress",
    }
}

/// Parse the embedded object and create its maps, with the eBPF-side log level set so programs
/// skip building records nobody will print.
pub fn load_object(log_level: log::LevelFilter) -> Result<Ebpf, Error> {
    let level = log_level as u8;
    EbpfLoader::new().override_global(aya_log::LEVEL, &level, false).load(EBPF_OBJECT).map_err(Error::Load)
}

/// How many times a program load is tried when the verifier answers EAGAIN.
const LOAD_ATTEMPTS: u32 = 5;

/// Load `name` into the kernel and return it, ready to attach or to run with `TestRun`.
///
/// The verifier gives up with EAGAIN when a signal reaches the loading thread while it works
/// (`bpf_check` polls `signal_pending`); the load is then simply tried again.
pub fn loaded_program<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut SchedClassifier, Error> {
    let program = classifier(ebpf, name)?;
    let mut attempt = 1;
    loop {
        match program.load() {
            Ok(()) => return Ok(program),
            Err(ProgramError::LoadError { io_error, .. })
                if io_error.raw_os_error() == Some(libc::EAGAIN) && attempt < LOAD_ATTEMPTS =>
            {
                attempt += 1;
            }
            Err(source) => return Err(Error::LoadProgram { name, source }),
        }
    }
}

/// Parse the embedded object and create its maps, reusing the maps pinned in `dir` (pinning
/// new ones there), after removing pins whose layout (or size) this version would misread. A map
/// whose pin is missing while others are there is created empty and filled by the daemon's first
/// sync; the log says so.
pub fn load_pinned(log_level: log::LevelFilter, dir: &Path, capacities: &Capacities) -> Result<Ebpf, Error> {
    pins::drop_incompatible_maps(dir, capacities);
    let paths: Vec<(&str, PathBuf)> = PINNED_MAPS.iter().map(|name| (*name, dir.join(name))).collect();
    let missing: Vec<&str> = paths.iter().filter(|(_, path)| !path.exists()).map(|(name, _)| *name).collect();
    if !missing.is_empty() && missing.len() < paths.len() {
        log::info!(
            "{} not pinned in {}: created anew, filled from the kernel",
            missing.join(", "),
            dir.display()
        );
    }
    let level = log_level as u8;
    let mut loader = EbpfLoader::new();
    loader.override_global(aya_log::LEVEL, &level, false);
    for (name, size) in capacities.sizes() {
        loader.map_max_entries(name, size);
    }
    for (name, path) in &paths {
        loader.map_pin_path(name, path.as_path());
    }
    loader.load(EBPF_OBJECT).map_err(Error::Load)
}

/// How the programs attach: tcx links (Linux 6.6 and later), or legacy tc filters under a clsact
/// qdisc ([`crate::dataplane::legacy_tc`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Tcx,
    LegacyTc,
}

/// What keeps a program on an interface.
enum Held {
    /// A tcx link, pinned.
    Tcx(FdLink),
    /// A tc filter, which needs nothing held.
    LegacyTc,
}

/// One program and the interfaces it is attached to (ingress or egress), each attachment made to
/// outlive the daemon (a pinned tcx link, or a tc filter).
pub struct Attachments {
    program: &'static str,
    direction: TcAttachType,
    hook: Hook,
    program_id: u32,
    dir: PathBuf,
    attached: HashMap<u32, (String, Held)>,
}

impl Attachments {
    /// Load `program` into the kernel, for `direction`; its links are pinned under `dir`.
    pub fn new(
        ebpf: &mut Ebpf,
        program: &'static str,
        direction: TcAttachType,
        hook: Hook,
        dir: &Path,
    ) -> Result<Self, Error> {
        let loaded = loaded_program(ebpf, program)?;
        let program_id = loaded.info().map_err(|source| Error::LoadProgram { name: program, source })?.id();
        fs::create_dir_all(dir.join(pins::LINKS_DIR))
            .map_err(|source| Error::PinDir { path: dir.join(pins::LINKS_DIR), source })?;
        Ok(Self { program, direction, hook, program_id, dir: dir.to_path_buf(), attached: HashMap::new() })
    }

    pub fn program_id(&self) -> u32 {
        self.program_id
    }

    pub fn program(&self) -> &'static str {
        self.program
    }

    /// ifindex → interface name, for the pure decisions in [`crate::daemon::attach`].
    pub fn names(&self) -> HashMap<u32, String> {
        self.attached.iter().map(|(index, (name, _))| (*index, name.clone())).collect()
    }

    /// Serve `link`: adopt the link an earlier daemon pinned for it, swapping in this program
    /// atomically (`bpf_link_update`: no packet sees no program), or attach a new tcx link and
    /// pin it.
    pub fn attach(&mut self, ebpf: &mut Ebpf, link: &Link) -> Result<(), Error> {
        let attach_error = |source| Error::Attach { iface: link.name.clone(), source };
        let (held, adopted) = match self.hook {
            Hook::Tcx => self.attach_tcx(ebpf, link)?,
            Hook::LegacyTc => {
                let program = classifier(ebpf, self.program)?;
                let adopted = legacy_tc::attach(program, self.program, &link.name, self.direction)
                    .map_err(attach_error)?;
                (Held::LegacyTc, adopted)
            }
        };
        self.attached.insert(link.index, (link.name.clone(), held));
        log::info!(
            "{} {} (prog id {}) to {} (ifindex {}{})",
            if adopted { "adopted the link and swapped in" } else { "attached" },
            self.program,
            self.program_id,
            link.name,
            link.index,
            if self.hook == Hook::LegacyTc { ", legacy tc" } else { "" }
        );
        Ok(())
    }

    fn attach_tcx(&mut self, ebpf: &mut Ebpf, link: &Link) -> Result<(Held, bool), Error> {
        let path = pins::link_path(&self.dir, self.program, link.index);
        let attach_error = |source| Error::Attach { iface: link.name.clone(), source };
        let link_error = |source| Error::Link { iface: link.name.clone(), source };
        let program = classifier(ebpf, self.program)?;
        let (id, adopted) = match PinnedLink::from_pin(&path) {
            Ok(pinned) => {
                let old = SchedClassifierLink::try_from(FdLink::from(pinned)).map_err(link_error)?;
                (program.attach_to_link(old).map_err(attach_error)?, true)
            }
            Err(_) => (program.attach(&link.name, self.direction).map_err(attach_error)?, false),
        };
        let fd_link = FdLink::try_from(program.take_link(id).map_err(attach_error)?).map_err(link_error)?;
        let fd_link = if adopted {
            fd_link
        } else {
            FdLink::from(fd_link.pin(&path).map_err(|source| Error::Pin {
                name: "link",
                path: path.clone(),
                source,
            })?)
        };
        Ok((Held::Tcx(fd_link), adopted))
    }

    /// Take the program off `link` for good: unpin and close its link. For an interface that is
    /// already gone this only releases the link: the kernel dropped the attachment with it.
    pub fn detach(&mut self, link: &Link) {
        let Some((name, held)) = self.attached.remove(&link.index) else { return };
        match held {
            Held::Tcx(fd_link) => {
                let path = pins::link_path(&self.dir, self.program, link.index);
                if let Err(e) = fs::remove_file(&path) {
                    log::debug!("removing {}: {e}", path.display());
                }
                drop(fd_link);
            }
            Held::LegacyTc => legacy_tc::detach(self.program, &name, self.direction),
        }
        log::info!("detached {} from {name} (ifindex {})", self.program, link.index);
    }

    /// Detach from every interface (`--cleanup-on-exit`).
    pub fn detach_all(&mut self) {
        let links: Vec<Link> = self
            .attached
            .iter()
            .map(|(index, (name, _))| Link { index: *index, name: name.clone() })
            .collect();
        for link in links {
            self.detach(&link);
        }
    }

    /// Remove pinned links of this program that serve no interface any more (gone or no longer
    /// wanted while no daemon ran).
    pub fn drop_stale_pins(&self) {
        for (program, ifindex, path) in pins::pinned_links(&self.dir) {
            if program == self.program && !self.attached.contains_key(&ifindex) {
                log::info!(
                    "removing the stale link {} (ifindex {ifindex} is gone or not served)",
                    path.display()
                );
                let _ = fs::remove_file(&path);
            }
        }
    }
}

/// The classifier program `name` of `ebpf`, loaded or not.
pub fn classifier<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut SchedClassifier, Error> {
    ebpf.program_mut(name)
        .ok_or(Error::MissingProgram { name })?
        .try_into()
        .map_err(|source| Error::LoadProgram { name, source })
}
