//! Loading the embedded eBPF object, pinning its maps, attaching and detaching the programs.

use std::{collections::HashMap, fs, io, path::Path};

use aya::{
    programs::{tc::SchedClassifierLinkId, SchedClassifier, TcAttachType},
    Ebpf, EbpfLoader,
};
use fastpath_common::maps::PINNED_MAPS;

use crate::{attach::Link, Error};

/// The eBPF object built from `ebpf/` by build.rs, embedded so the binary is self-contained.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fastpath"));

/// The program for `cali*` ingress: everything a pod sends.
pub const FROM_POD: &str = "from_pod";
/// The program for the underlay's ingress: IPIP from other nodes.
pub const FROM_UNDERLAY: &str = "from_underlay";

/// Parse the embedded object and create its maps, with the eBPF-side log level set so programs
/// skip building records nobody will print.
pub fn load_object(log_level: log::LevelFilter) -> Result<Ebpf, Error> {
    let level = log_level as u8;
    EbpfLoader::new().override_global(aya_log::LEVEL, &level, false).load(EBPF_OBJECT).map_err(Error::Load)
}

/// Load `name` into the kernel and return it, ready to attach or to run with `TestRun`.
pub fn loaded_program<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut SchedClassifier, Error> {
    let program = classifier(ebpf, name)?;
    program.load().map_err(|source| Error::LoadProgram { name, source })?;
    Ok(program)
}

/// Pin every shared map into `dir`, replacing pins a crashed daemon left behind.
pub fn pin_maps(ebpf: &Ebpf, dir: &Path) -> Result<(), Error> {
    for name in PINNED_MAPS {
        let map = ebpf.map(name).ok_or(Error::MissingMap { name })?;
        let path = dir.join(name);
        match fs::remove_file(&path) {
            Ok(()) => log::warn!("replaced a stale pin at {}", path.display()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("cannot remove stale pin {}: {e}", path.display()),
        }
        map.pin(&path).map_err(|source| Error::Pin { name, path, source })?;
    }
    Ok(())
}

/// One program and the interfaces it is attached to (tcx ingress).
pub struct Attachments {
    program: &'static str,
    program_id: u32,
    attached: HashMap<u32, (String, SchedClassifierLinkId)>,
}

impl Attachments {
    /// Load `program` into the kernel.
    pub fn new(ebpf: &mut Ebpf, program: &'static str) -> Result<Self, Error> {
        let loaded = loaded_program(ebpf, program)?;
        let program_id = loaded.info().map_err(|source| Error::LoadProgram { name: program, source })?.id();
        Ok(Self { program, program_id, attached: HashMap::new() })
    }

    /// ifindex → interface name, for the pure decisions in [`crate::attach`].
    pub fn names(&self) -> HashMap<u32, String> {
        self.attached.iter().map(|(index, (name, _))| (*index, name.clone())).collect()
    }

    /// Attach to ingress of `link` (tcx on kernels ≥ 6.6, which aya picks by itself).
    pub fn attach(&mut self, ebpf: &mut Ebpf, link: &Link) -> Result<(), Error> {
        let id = classifier(ebpf, self.program)?
            .attach(&link.name, TcAttachType::Ingress)
            .map_err(|source| Error::Attach { iface: link.name.clone(), source })?;
        self.attached.insert(link.index, (link.name.clone(), id));
        log::info!(
            "attached {} (prog id {}) to {} (ifindex {})",
            self.program,
            self.program_id,
            link.name,
            link.index
        );
        Ok(())
    }

    /// Take the program off `link`. For an interface that is already gone this only releases our
    /// link handle: the kernel dropped the attachment with the device.
    pub fn detach(&mut self, ebpf: &mut Ebpf, link: &Link) {
        let Some((name, id)) = self.attached.remove(&link.index) else {
            return;
        };
        let program = self.program;
        match classifier(ebpf, program)
            .and_then(|p| p.detach(id).map_err(|source| Error::Attach { iface: name.clone(), source }))
        {
            Ok(()) => log::info!("detached {program} from {name} (ifindex {})", link.index),
            Err(e) => log::debug!("detaching {program} from {name}: {}", e.chain()),
        }
    }

    /// Detach from every interface (at shutdown).
    pub fn detach_all(&mut self, ebpf: &mut Ebpf) {
        let links: Vec<Link> = self
            .attached
            .iter()
            .map(|(index, (name, _))| Link { index: *index, name: name.clone() })
            .collect();
        for link in links {
            self.detach(ebpf, &link);
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
