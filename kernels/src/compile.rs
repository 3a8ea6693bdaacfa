//! The one place that compiles kernel families: NVRTC at run time for a given architecture,
//! with an on-disk PTX cache so a second start compiles nothing.
//!
//! [`Compiler::new`] finds NVRTC and the CUDA headers ([`crate::locate`]);
//! [`Compiler::compile`] turns a [`Family`] into PTX for an [`Arch`], looking in the cache first.
//! The cache key hashes the source, the embedded headers, the options, the architecture and the
//! NVRTC version; entries are written atomically (temporary file, then rename), and a cache
//! that cannot be read or written only costs a compile.

use std::path::{Path, PathBuf};
use std::{env, fmt, fs};

use crate::Family;
use crate::locate;
use crate::nvrtc;

/// The shared header families may `#include "common.cuh"`, embedded in the program.
pub const COMMON_HEADER: (&str, &str) = ("common.cuh", include_str!("../cuda/common.cuh"));

/// A GPU architecture, as its compute capability (8.0 is sm_80).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Arch {
    /// Major compute capability.
    pub major: u32,
    /// Minor compute capability.
    pub minor: u32,
}

impl Arch {
    /// Ampere (A100): sm_80.
    pub const SM80: Arch = Arch { major: 8, minor: 0 };
    /// Hopper (H100, H200): sm_90.
    pub const SM90: Arch = Arch { major: 9, minor: 0 };

    /// The number NVRTC and ptxas use (`90` for sm_90).
    pub fn number(self) -> u32 {
        self.major * 10 + self.minor
    }

    /// `sm_90`, as ptxas's `-arch`.
    pub fn sm(self) -> String {
        format!("sm_{}", self.number())
    }

    /// `compute_90`, the virtual architecture PTX is generated for.
    pub fn compute(self) -> String {
        format!("compute_{}", self.number())
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sm_{}", self.number())
    }
}

/// What can go wrong finding NVRTC or compiling a family.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// No NVRTC 12 library could be loaded.
    #[error(
        "NVRTC library not found: tried the files {files:?} and the names {names:?} on the loader path; \
         install it with `{hint}` (then set LD_LIBRARY_PATH to its nvidia/cuda_nvrtc/lib folder, \
         KILN_NVRTC_LIB to the file, or KILN_PYTHON_SITE to its site-packages folder)",
        hint = locate::PIP_INSTALL_HINT
    )]
    NvrtcNotFound {
        /// Full paths tried first (`$KILN_NVRTC_LIB`, toolkits, site-packages).
        files: Vec<PathBuf>,
        /// File names cudarc tried on the dynamic loader's path.
        names: Vec<String>,
    },
    /// No folder held both `cuda_fp16.h` and `cuda_bf16.h`.
    #[error(
        "CUDA headers cuda_fp16.h and cuda_bf16.h not found in {searched:?}; install them with `{hint}` \
         or set KILN_CUDA_INCLUDE to the folder holding them",
        hint = locate::PIP_INSTALL_HINT
    )]
    HeadersNotFound {
        /// The folders searched, in order.
        searched: Vec<PathBuf>,
    },
    /// NVRTC rejected a family's source.
    #[error("NVRTC could not compile {file} for {arch} ({status}):\n{log}")]
    Compile {
        /// The family's file under `kernels/cuda/`.
        file: &'static str,
        /// The target architecture.
        arch: Arch,
        /// NVRTC's status.
        status: String,
        /// NVRTC's log, with the compiler's messages.
        log: String,
    },
    /// Another NVRTC call failed.
    #[error("NVRTC call {call} failed: {status}")]
    Nvrtc {
        /// The C function.
        call: &'static str,
        /// Its status.
        status: String,
    },
}

impl From<nvrtc::NvrtcStatus> for CompileError {
    fn from(s: nvrtc::NvrtcStatus) -> Self {
        CompileError::Nvrtc { call: s.call, status: s.status }
    }
}

/// Where a [`CompiledFamily`]'s PTX came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PtxOrigin {
    /// Read from the on-disk cache.
    Cache,
    /// Compiled by NVRTC just now.
    Nvrtc,
}

/// One family compiled for one architecture.
#[derive(Clone, Debug)]
pub struct CompiledFamily {
    /// The family.
    pub family: Family,
    /// The architecture the PTX targets.
    pub arch: Arch,
    /// The PTX text.
    pub ptx: String,
    /// Cache hit or fresh compile.
    pub origin: PtxOrigin,
    /// NVRTC's warnings (empty on a cache hit or a clean compile).
    pub log: String,
}

impl CompiledFamily {
    /// The kernel entry points the PTX defines (`.entry NAME`), in order.
    pub fn entries(&self) -> Vec<&str> {
        ptx_entries(&self.ptx)
    }
}

/// The names of the `.entry` directives of a PTX module.
pub fn ptx_entries(ptx: &str) -> Vec<&str> {
    ptx.lines()
        .filter_map(|l| {
            let rest = l.trim_start().strip_prefix(".visible ").unwrap_or(l.trim_start());
            let rest = rest.strip_prefix(".entry ")?;
            Some(rest.split(|c: char| c == '(' || c.is_whitespace()).next().unwrap_or(rest))
        })
        .collect()
}

/// The default cache folder: `$KILN_CACHE_DIR`, else `$XDG_CACHE_HOME/kiln/kernels`, else
/// `~/.cache/kiln/kernels`; `None` when none can be named.
pub fn default_cache_dir() -> Option<PathBuf> {
    let var = |v| env::var_os(v).filter(|s| !s.is_empty()).map(PathBuf::from);
    var("KILN_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("kiln/kernels")))
        .or_else(|| var("HOME").map(|h| h.join(".cache/kiln/kernels")))
}

/// NVRTC, the headers and the cache: compiles families to PTX.
#[derive(Clone, Debug)]
pub struct Compiler {
    include_dir: PathBuf,
    cache_dir: Option<PathBuf>,
    version: (i32, i32),
    archs: Vec<u32>,
}

impl Compiler {
    /// Finds NVRTC (see [`locate::preload_nvrtc`]) and the CUDA headers, and uses
    /// [`default_cache_dir`].
    pub fn new() -> Result<Self, CompileError> {
        let preloaded = locate::preload_nvrtc();
        // SAFETY: only tries to open the library by its candidate names.
        if preloaded.is_none() && !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Err(CompileError::NvrtcNotFound {
                files: locate::nvrtc_library_candidates(),
                names: cudarc::get_lib_name_candidates("nvrtc"),
            });
        }
        let include_dir = locate::find_include_dir()
            .ok_or_else(|| CompileError::HeadersNotFound { searched: locate::include_dir_candidates() })?;
        Ok(Compiler {
            include_dir,
            cache_dir: default_cache_dir(),
            version: nvrtc::version()?,
            archs: nvrtc::supported_archs()?,
        })
    }

    /// The same compiler with another cache folder, or none (always compile).
    pub fn with_cache_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.cache_dir = dir;
        self
    }

    /// The cache folder in use, if any.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.cache_dir.as_deref()
    }

    /// The folder the CUDA headers come from.
    pub fn include_dir(&self) -> &Path {
        &self.include_dir
    }

    /// NVRTC's (major, minor) version.
    pub fn nvrtc_version(&self) -> (i32, i32) {
        self.version
    }

    /// The architecture to compile for on a device of compute capability `device`: itself if
    /// NVRTC supports it, else the newest supported one below it (PTX runs on newer GPUs).
    pub fn target_for(&self, device: Arch) -> Arch {
        let n = device.number();
        match self.archs.iter().copied().filter(|&a| a <= n).max() {
            Some(a) if a != n => Arch { major: a / 10, minor: a % 10 },
            _ => device,
        }
    }

    /// The NVRTC options for `arch`.
    pub fn options(&self, arch: Arch) -> Vec<String> {
        vec![
            format!("--gpu-architecture={}", arch.compute()),
            format!("--include-path={}", self.include_dir.display()),
            "--std=c++17".to_owned(),
            "--generate-line-info".to_owned(),
        ]
    }

    /// `family` as PTX for `arch`, from the cache when an entry with the same key exists.
    pub fn compile(&self, family: Family, arch: Arch) -> Result<CompiledFamily, CompileError> {
        let options = self.options(arch);
        let key = cache_key(family.source(), &options, arch, self.version);
        let path = self.cache_dir.as_ref().map(|d| d.join(format!("{}-{arch}-{key}.ptx", stem(family))));
        if let Some(ptx) = path.as_ref().and_then(|p| fs::read_to_string(p).ok()) {
            return Ok(CompiledFamily { family, arch, ptx, origin: PtxOrigin::Cache, log: String::new() });
        }
        let (ptx, log) =
            nvrtc::compile(family.source(), family.file_name(), &[COMMON_HEADER], &options).map_err(|f| {
                CompileError::Compile { file: family.file_name(), arch, status: f.status.status, log: f.log }
            })?;
        if let Some(p) = &path {
            // The cache is an optimisation: a folder that cannot be written only costs a compile.
            let _ = write_atomically(p, &ptx);
        }
        Ok(CompiledFamily { family, arch, ptx, origin: PtxOrigin::Nvrtc, log })
    }
}

fn stem(family: Family) -> &'static str {
    family.file_name().trim_end_matches(".cu")
}

/// 128 bits of FNV-1a (two 64-bit lanes with different offsets) over everything that changes
/// the PTX, as 32 hex digits. Stable across Rust versions, unlike `DefaultHasher`.
fn cache_key(source: &str, options: &[String], arch: Arch, version: (i32, i32)) -> String {
    let mut h = [0xcbf2_9ce4_8422_2325u64, 0x6c62_272e_07bb_0142u64];
    let mut feed = |bytes: &[u8]| {
        for lane in &mut h {
            for &b in bytes.iter().chain(&[0xff]) {
                *lane ^= b as u64;
                *lane = lane.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
    };
    feed(source.as_bytes());
    feed(COMMON_HEADER.1.as_bytes());
    options.iter().for_each(|o| feed(o.as_bytes()));
    feed(arch.to_string().as_bytes());
    feed(format!("nvrtc {}.{}", version.0, version.1).as_bytes());
    format!("{:016x}{:016x}", h[0], h[1])
}

/// Writes `text` to a temporary file beside `path`, then renames it over `path`, so a reader
/// never sees a partial entry.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let tmp = dir.join(format!(".tmp-{}-{nanos}", std::process::id()));
    fs::write(&tmp, text)?;
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_read_from_ptx() {
        let ptx = ".version 8.8\n.visible .entry gelu_bf16(\n\t.param .u64 a\n)\n.entry other_f16 (\n";
        assert_eq!(ptx_entries(ptx), vec!["gelu_bf16", "other_f16"]);
    }

    #[test]
    fn cache_key_depends_on_every_input() {
        let opts = vec!["--a".to_owned()];
        let k = cache_key("src", &opts, Arch::SM90, (12, 9));
        assert_eq!(k.len(), 32);
        assert_eq!(k, cache_key("src", &opts, Arch::SM90, (12, 9)));
        assert_ne!(k, cache_key("src2", &opts, Arch::SM90, (12, 9)));
        assert_ne!(k, cache_key("src", &[], Arch::SM90, (12, 9)));
        assert_ne!(k, cache_key("src", &opts, Arch::SM80, (12, 9)));
        assert_ne!(k, cache_key("src", &opts, Arch::SM90, (12, 8)));
    }

    #[test]
    fn atomic_write_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/x.ptx");
        write_atomically(&p, "one").unwrap();
        write_atomically(&p, "two").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "two");
        assert_eq!(fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn arch_names() {
        assert_eq!(Arch::SM90.sm(), "sm_90");
        assert_eq!(Arch::SM80.compute(), "compute_80");
        assert_eq!(Arch { major: 8, minor: 6 }.to_string(), "sm_86");
    }
}
