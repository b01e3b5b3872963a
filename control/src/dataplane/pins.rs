//! What the data plane keeps in bpffs so that it outlives the daemon (fail-static) and a new
//! daemon takes it over without a gap:
//!
//! ```text
//! <bpffs_dir>/maps-<layout>/NAMES, CUSTOMERS, ACTIVE_SLOTS, PROXY_RINGS, CUSTOMER_STATS, XDP_STATS,
//!                            LOCAL_ADDRS_V4/6, LOCAL_SET,
//!                            RRL_CONFIG, RRL_STATE, RRL_EXEMPT_V4/6, RRL_STATS,
//!                            ZONES, ZONE_INFO, EXISTING, RESOLVER_QUERIES
//! <bpffs_dir>/xdp-<mode>@<interface>        the XDP link, one per interface
//! ```
//!
//! `<layout>` is a fingerprint of the maps' definitions in the object (type, key and value size,
//! entries, flags) and of [`MAP_LAYOUT_VERSION`] (the meaning of keys and records). A new
//! binary whose maps have the same layout reuses the pinned ones; one with another layout fills
//! new maps first and then swaps the program, and the old maps go.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use aya::{
    maps::MapInfo,
    programs::links::{FdLink, PinnedLink},
};
use sha2::{Digest, Sha256};
use spillway_common::maps::{
    ACTIVE_SLOTS_MAP, CUSTOMER_STATS_MAP, CUSTOMERS_MAP, EXISTING_MAP, LOCAL_ADDRS_V4_MAP, LOCAL_ADDRS_V6_MAP,
    LOCAL_SET_MAP, MAP_LAYOUT_VERSION, NAMES_MAP, PROXY_RINGS_MAP, RESOLVER_QUERIES_MAP, RRL_CONFIG_MAP,
    RRL_EXEMPT_V4_MAP, RRL_EXEMPT_V6_MAP, RRL_STATE_MAP, RRL_STATS_MAP, XDP_STATS_MAP, ZONE_INFO_MAP, ZONES_MAP,
};

use crate::{
    config::XdpModeConfig,
    error::{Error, Result},
};

/// Where `server.bpffs_dir` points by default.
pub const DEFAULT_BPFFS_DIR: &str = "/sys/fs/bpf/spillway";

/// The conventional bpffs mount point, mounted by the daemon when it is not.
const BPFFS_MOUNT: &str = "/sys/fs/bpf";

/// `statfs` type of a bpffs (include/uapi/linux/magic.h).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// The maps kept across restarts: everything but per-CPU scratch and the log buffer.
pub const PINNED_MAPS: [&str; 18] = [
    NAMES_MAP,
    CUSTOMERS_MAP,
    ACTIVE_SLOTS_MAP,
    PROXY_RINGS_MAP,
    CUSTOMER_STATS_MAP,
    XDP_STATS_MAP,
    LOCAL_ADDRS_V4_MAP,
    LOCAL_ADDRS_V6_MAP,
    LOCAL_SET_MAP,
    RRL_CONFIG_MAP,
    RRL_STATE_MAP,
    RRL_EXEMPT_V4_MAP,
    RRL_EXEMPT_V6_MAP,
    RRL_STATS_MAP,
    ZONES_MAP,
    ZONE_INFO_MAP,
    EXISTING_MAP,
    RESOLVER_QUERIES_MAP,
];

const MAPS_PREFIX: &str = "maps-";
const LINK_PREFIX: &str = "xdp-";

/// How the maps of this start came to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapsOrigin {
    /// None were pinned: new maps, filled from the config and the store.
    Created,
    /// Pinned maps of the same layout: taken over and reconciled in place.
    Reused,
    /// Pinned maps of another layout (their fingerprints): new maps filled first, the program
    /// swapped, then the old maps removed.
    Migrated { from: Vec<String> },
}

/// The pinned state under one directory.
#[derive(Debug, Clone)]
pub struct PinDir {
    pub root: PathBuf,
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::Pin(format!("{what}: {e}"))
}

fn is_bpffs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return false };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `st` a valid out-parameter.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type as i64 == BPF_FS_MAGIC
}

fn mount_bpffs(at: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    let target = std::ffi::CString::new(at.as_os_str().as_bytes()).map_err(|e| Error::Pin(e.to_string()))?;
    // SAFETY: all arguments are valid C strings; no data argument.
    let rc =
        unsafe { libc::mount(c"bpf".as_ptr(), target.as_ptr(), c"bpf".as_ptr(), 0, std::ptr::null::<libc::c_void>()) };
    if rc != 0 {
        return Err(Error::Pin(format!("mounting bpffs at {}: {}", at.display(), std::io::Error::last_os_error())));
    }
    tracing::info!(at = %at.display(), "bpffs was not mounted: mounted it");
    Ok(())
}

impl PinDir {
    /// The directory, created on a bpffs: under /sys/fs/bpf (mounted there if it is not), or
    /// anywhere else with a bpffs mounted on the directory itself when none holds it.
    pub fn open(root: &Path) -> Result<PinDir> {
        if !root.is_absolute() {
            return Err(Error::Pin(format!("server.bpffs_dir {} must be an absolute path", root.display())));
        }
        let under_default = root.starts_with(BPFFS_MOUNT);
        if under_default && !is_bpffs(Path::new(BPFFS_MOUNT)) {
            mount_bpffs(Path::new(BPFFS_MOUNT))?;
        }
        let on_bpffs = root.ancestors().find(|a| a.exists()).is_some_and(is_bpffs);
        std::fs::create_dir_all(root).map_err(io_err(format!("creating {}", root.display())))?;
        if !on_bpffs && !is_bpffs(root) {
            mount_bpffs(root)?;
        }
        Ok(PinDir { root: root.to_owned() })
    }

    /// The directory if it exists, without creating or mounting anything (for `detach`).
    pub fn existing(root: &Path) -> Option<PinDir> {
        (root.is_dir() && is_bpffs(root)).then(|| PinDir { root: root.to_owned() })
    }

    pub fn maps_dir(&self, layout: &str) -> PathBuf {
        self.root.join(format!("{MAPS_PREFIX}{layout}"))
    }

    /// The layouts of the map directories present.
    pub fn map_layouts(&self) -> Vec<String> {
        self.entries().filter_map(|n| n.strip_prefix(MAPS_PREFIX).map(str::to_owned)).collect()
    }

    pub fn link_path(&self, interface: &str, mode: XdpModeConfig) -> PathBuf {
        self.root.join(format!("{LINK_PREFIX}{}@{interface}", mode_name(mode)))
    }

    /// The pinned links: (interface, mode name, path).
    pub fn links(&self) -> Vec<(String, String, PathBuf)> {
        self.entries()
            .filter_map(|n| {
                let rest = n.strip_prefix(LINK_PREFIX)?;
                let (mode, iface) = rest.split_once('@')?;
                Some((iface.to_owned(), mode.to_owned(), self.root.join(&n)))
            })
            .collect()
    }

    fn entries(&self) -> impl Iterator<Item = String> {
        std::fs::read_dir(&self.root).into_iter().flatten().flatten().filter_map(|e| e.file_name().into_string().ok())
    }

    /// Unpin a map directory (the maps go when no program uses them any more).
    pub fn remove_maps(&self, layout: &str) -> Result<()> {
        let dir = self.maps_dir(layout);
        std::fs::remove_dir_all(&dir).map_err(io_err(format!("removing {}", dir.display())))
    }

    /// Unpin a link: the program leaves that interface.
    pub fn remove_link(path: &Path) -> Result<()> {
        match PinnedLink::from_pin(path) {
            Ok(link) => {
                let fd: FdLink = link.unpin().map_err(io_err(format!("unpinning {}", path.display())))?;
                drop(fd);
                Ok(())
            }
            // Not a link (or unreadable): the file goes all the same.
            Err(_) => std::fs::remove_file(path).map_err(io_err(format!("removing {}", path.display()))),
        }
    }

    /// Remove every link, then every map, then the directory (and its bpffs, if the daemon
    /// mounted one on it). Returns what it removed, for the log and `spillway detach`.
    pub fn remove_all(self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for (iface, mode, path) in self.links() {
            Self::remove_link(&path)?;
            removed.push(format!("XDP ({mode}) on {iface}"));
        }
        for layout in self.map_layouts() {
            self.remove_maps(&layout)?;
            removed.push(format!("maps {layout}"));
        }
        // A bpffs mounted on the directory itself is unmounted; one above it is left.
        let parent_is_bpffs = self.root.parent().is_some_and(is_bpffs);
        if !parent_is_bpffs && self.root != Path::new(BPFFS_MOUNT) {
            use std::os::unix::ffi::OsStrExt as _;
            if let Ok(c) = std::ffi::CString::new(self.root.as_os_str().as_bytes()) {
                // SAFETY: a valid C string. Failure (not a mount point) is fine.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
        let _ = std::fs::remove_dir(&self.root);
        Ok(removed)
    }
}

/// `spillway detach`: everything pinned under `root` removed; an empty list if nothing was.
pub fn detach(root: &Path) -> Result<Vec<String>> {
    match PinDir::existing(root) {
        Some(dir) => dir.remove_all(),
        None => Ok(Vec::new()),
    }
}

pub fn mode_name(mode: XdpModeConfig) -> &'static str {
    match mode {
        XdpModeConfig::Native => "native",
        XdpModeConfig::Skb => "skb",
    }
}

/// The fingerprint of the pinned maps' layout in `object`: `v<version>-<16 hex digits>`.
pub fn layout_of(object: &[u8]) -> Result<String> {
    let obj = aya_obj::Object::parse(object).map_err(|e| Error::Pin(format!("parsing the XDP object: {e}")))?;
    let mut h = Sha256::new();
    h.update(MAP_LAYOUT_VERSION.to_le_bytes());
    for name in PINNED_MAPS {
        let m = obj.maps.get(name).ok_or(Error::MissingMap(name))?;
        h.update(name.as_bytes());
        for v in [m.map_type(), m.key_size(), m.value_size(), m.max_entries(), m.map_flags()] {
            h.update(v.to_le_bytes());
        }
    }
    let mut out = format!("v{MAP_LAYOUT_VERSION}-");
    for b in &h.finalize()[..8] {
        let _ = write!(out, "{b:02x}");
    }
    Ok(out)
}

/// Check that the maps pinned in `dir` have the shapes `object` declares: a reused map that
/// did not would be read with the wrong layout.
pub fn check_pinned(object: &[u8], dir: &Path) -> Result<()> {
    let obj = aya_obj::Object::parse(object).map_err(|e| Error::Pin(format!("parsing the XDP object: {e}")))?;
    for name in PINNED_MAPS {
        let m = obj.maps.get(name).ok_or(Error::MissingMap(name))?;
        let path = dir.join(name);
        if !path.exists() {
            // The loader creates and pins it (a start that died half-way through creating them).
            continue;
        }
        let info = MapInfo::from_pin(&path).map_err(|e| Error::Pin(format!("{}: {e}", path.display())))?;
        let want = (m.key_size(), m.value_size(), m.max_entries(), m.map_flags());
        let have = (info.key_size(), info.value_size(), info.max_entries(), info.map_flags());
        if want != have {
            return Err(Error::Pin(format!(
                "{}: (key, value, entries, flags) {have:?} where this binary has {want:?}",
                path.display()
            )));
        }
    }
    Ok(())
}
