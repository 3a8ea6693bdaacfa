//! Finding the CUDA pieces kiln needs at run time without a CUDA toolkit: the NVRTC library,
//! the `cuda_fp16.h`/`cuda_bf16.h` headers and (for the CI check) `ptxas`.
//!
//! Each is looked for in an explicit environment variable first, then in a CUDA toolkit
//! (`$CUDA_PATH`, `/usr/local/cuda`), then in the Python packages NVIDIA publishes
//! (`nvidia-cuda-nvrtc-cu12`, `nvidia-cuda-runtime-cu12`, `nvidia-cuda-nvcc-cu12`), under every
//! site-packages folder of [`python_site_dirs`].

use std::env;
use std::path::{Path, PathBuf};

/// The pip command that installs what the compile step needs.
pub const PIP_INSTALL_HINT: &str =
    "pip install nvidia-cuda-nvrtc-cu12==12.9.86 nvidia-cuda-runtime-cu12==12.9.79";

/// A colon-separated path list from the environment, empty entries dropped.
fn env_paths(var: &str) -> Vec<PathBuf> {
    env::var_os(var)
        .map(|v| env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()).collect())
        .unwrap_or_default()
}

/// CUDA toolkit roots: `$CUDA_PATH`, `$CUDA_HOME`, `/usr/local/cuda`.
fn toolkit_roots() -> Vec<PathBuf> {
    let mut roots = env_paths("CUDA_PATH");
    roots.extend(env_paths("CUDA_HOME"));
    roots.push(PathBuf::from("/usr/local/cuda"));
    roots
}

/// `dir/lib*/python3*/site-packages` (and `dist-packages`) for each existing match.
fn python_lib_dirs(prefix: &Path, out: &mut Vec<PathBuf>) {
    for lib in ["lib", "lib64"] {
        let Ok(entries) = std::fs::read_dir(prefix.join(lib)) else { continue };
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("python3")))
            .flat_map(|p| [p.join("site-packages"), p.join("dist-packages")])
            .filter(|p| p.is_dir())
            .collect();
        found.sort();
        out.extend(found);
    }
}

/// Folders that may hold NVIDIA's Python packages (`nvidia/...`), in search order:
/// `$KILN_PYTHON_SITE` (a path list), `$VIRTUAL_ENV` and `$CONDA_PREFIX`'s site-packages,
/// the user's (`~/.local`), then the system's (`/usr/local`, `/usr`).
pub fn python_site_dirs() -> Vec<PathBuf> {
    let mut dirs = env_paths("KILN_PYTHON_SITE");
    for var in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        for prefix in env_paths(var) {
            python_lib_dirs(&prefix, &mut dirs);
        }
    }
    if let Some(home) = env::var_os("HOME") {
        python_lib_dirs(&Path::new(&home).join(".local"), &mut dirs);
    }
    for prefix in ["/usr/local", "/usr"] {
        python_lib_dirs(Path::new(prefix), &mut dirs);
    }
    dirs
}

/// Candidate folders for the CUDA headers, in search order: `$KILN_CUDA_INCLUDE`,
/// `<toolkit>/include`, `<site>/nvidia/cuda_runtime/include`.
pub fn include_dir_candidates() -> Vec<PathBuf> {
    let mut dirs = env_paths("KILN_CUDA_INCLUDE");
    dirs.extend(toolkit_roots().into_iter().map(|r| r.join("include")));
    dirs.extend(python_site_dirs().into_iter().map(|s| s.join("nvidia/cuda_runtime/include")));
    dirs
}

/// The first candidate folder holding both `cuda_fp16.h` and `cuda_bf16.h`.
pub fn find_include_dir() -> Option<PathBuf> {
    include_dir_candidates()
        .into_iter()
        .find(|d| d.join("cuda_fp16.h").is_file() && d.join("cuda_bf16.h").is_file())
}

/// Full paths where an NVRTC 12 library may sit, in search order: `$KILN_NVRTC_LIB` (a file),
/// `<toolkit>/lib64`, `<site>/nvidia/cuda_nvrtc/lib`.
pub fn nvrtc_library_candidates() -> Vec<PathBuf> {
    let mut files = env_paths("KILN_NVRTC_LIB");
    let name = "libnvrtc.so.12";
    files.extend(toolkit_roots().into_iter().map(|r| r.join("lib64").join(name)));
    files.extend(python_site_dirs().into_iter().map(|s| s.join("nvidia/cuda_nvrtc/lib").join(name)));
    files
}

/// Loads the first existing [`nvrtc_library_candidates`] file globally, so that cudarc's own
/// lookup by file name (`libnvrtc.so.12`, ...) finds the already loaded library by its soname
/// even when its folder is not on `LD_LIBRARY_PATH`. Returns the path loaded, if any.
///
/// The library stays loaded for the life of the process.
pub fn preload_nvrtc() -> Option<PathBuf> {
    #[cfg(unix)]
    {
        use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
        for path in nvrtc_library_candidates().into_iter().filter(|p| p.is_file()) {
            // SAFETY: loading NVRTC runs its initialisers, which have no preconditions.
            if let Ok(lib) = unsafe { Library::open(Some(&path), RTLD_NOW | RTLD_GLOBAL) } {
                std::mem::forget(lib);
                return Some(path);
            }
        }
    }
    None
}

/// Candidate `ptxas` executables, in search order: `$KILN_PTXAS`, `<toolkit>/bin/ptxas`,
/// every `ptxas` on `PATH`, `<site>/nvidia/cuda_nvcc/bin/ptxas`.
pub fn ptxas_candidates() -> Vec<PathBuf> {
    let mut files = env_paths("KILN_PTXAS");
    files.extend(toolkit_roots().into_iter().map(|r| r.join("bin/ptxas")));
    files.extend(env_paths("PATH").into_iter().map(|d| d.join("ptxas")));
    files.extend(python_site_dirs().into_iter().map(|s| s.join("nvidia/cuda_nvcc/bin/ptxas")));
    files
}

/// The first existing [`ptxas_candidates`] file.
pub fn find_ptxas() -> Option<PathBuf> {
    ptxas_candidates().into_iter().find(|p| p.is_file())
}
