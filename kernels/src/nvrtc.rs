//! A thin safe layer over NVRTC's C API (through `cudarc::nvrtc::sys`), for what cudarc's
//! `compile_ptx_with_opts` lacks: embedded headers (`common.cuh`), the library version, and
//! the list of supported architectures.
//!
//! Every function here requires NVRTC to be loadable: [`crate::compile::Compiler::new`] checks
//! that once (cudarc panics when a symbol is looked up in a missing library).

use std::ffi::{CStr, CString, c_char, c_int};

use cudarc::nvrtc::sys;

/// An NVRTC status other than success, with the call that returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NvrtcStatus {
    pub call: &'static str,
    pub status: String,
}

fn check(call: &'static str, r: sys::nvrtcResult) -> Result<(), NvrtcStatus> {
    if r == sys::nvrtcResult::NVRTC_SUCCESS {
        Ok(())
    } else {
        Err(NvrtcStatus { call, status: format!("{r:?}") })
    }
}

/// NVRTC's (major, minor) version.
pub(crate) fn version() -> Result<(i32, i32), NvrtcStatus> {
    let (mut major, mut minor) = (0, 0);
    // SAFETY: two valid out-pointers.
    check("nvrtcVersion", unsafe { sys::nvrtcVersion(&mut major, &mut minor) })?;
    Ok((major, minor))
}

/// The SM versions (`80` for sm_80) this NVRTC can compile for, ascending.
pub(crate) fn supported_archs() -> Result<Vec<u32>, NvrtcStatus> {
    let mut n: c_int = 0;
    // SAFETY: a valid out-pointer.
    check("nvrtcGetNumSupportedArchs", unsafe { sys::nvrtcGetNumSupportedArchs(&mut n) })?;
    let mut archs = vec![0 as c_int; n.max(0) as usize];
    // SAFETY: `archs` has room for the `n` values NVRTC reported.
    check("nvrtcGetSupportedArchs", unsafe { sys::nvrtcGetSupportedArchs(archs.as_mut_ptr()) })?;
    Ok(archs.into_iter().map(|a| a.max(0) as u32).collect())
}

/// What a failed compile left: the status and NVRTC's log.
#[derive(Debug, Clone)]
pub(crate) struct CompileFailure {
    pub status: NvrtcStatus,
    pub log: String,
}

/// An `nvrtcProgram`, destroyed on drop.
struct Program(sys::nvrtcProgram);

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: created by nvrtcCreateProgram and destroyed exactly once.
        unsafe {
            sys::nvrtcDestroyProgram(&mut self.0);
        }
    }
}

impl Program {
    fn log(&self) -> String {
        let mut size = 0usize;
        // SAFETY: a live program and valid out-pointers sized from NVRTC's answer.
        unsafe {
            if sys::nvrtcGetProgramLogSize(self.0, &mut size) != sys::nvrtcResult::NVRTC_SUCCESS || size == 0
            {
                return String::new();
            }
            let mut buf = vec![0 as c_char; size];
            if sys::nvrtcGetProgramLog(self.0, buf.as_mut_ptr()) != sys::nvrtcResult::NVRTC_SUCCESS {
                return String::new();
            }
            CStr::from_ptr(buf.as_ptr()).to_string_lossy().trim_end().to_owned()
        }
    }

    fn ptx(&self) -> Result<String, NvrtcStatus> {
        let mut size = 0usize;
        // SAFETY: a live, compiled program; the buffer has the size NVRTC reported.
        unsafe {
            check("nvrtcGetPTXSize", sys::nvrtcGetPTXSize(self.0, &mut size))?;
            let mut buf = vec![0 as c_char; size.max(1)];
            check("nvrtcGetPTX", sys::nvrtcGetPTX(self.0, buf.as_mut_ptr()))?;
            Ok(CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned())
        }
    }
}

fn cstring(s: &str) -> CString {
    // Sources, names and options are ours and hold no NUL; replace one rather than panic.
    CString::new(s.replace('\0', " ")).unwrap_or_default()
}

/// Compiles `src` (named `name` in diagnostics) to PTX with `options`, resolving
/// `#include "<header name>"` from `headers` (name, contents) before the include paths.
///
/// Returns the PTX and NVRTC's log (warnings), or the failure with the log.
pub(crate) fn compile(
    src: &str,
    name: &str,
    headers: &[(&str, &str)],
    options: &[String],
) -> Result<(String, String), CompileFailure> {
    let fail = |status| CompileFailure { status, log: String::new() };
    let (c_src, c_name) = (cstring(src), cstring(name));
    let header_srcs: Vec<CString> = headers.iter().map(|(_, s)| cstring(s)).collect();
    let header_names: Vec<CString> = headers.iter().map(|(n, _)| cstring(n)).collect();
    let src_ptrs: Vec<*const c_char> = header_srcs.iter().map(|s| s.as_ptr()).collect();
    let name_ptrs: Vec<*const c_char> = header_names.iter().map(|s| s.as_ptr()).collect();
    let mut prog: sys::nvrtcProgram = std::ptr::null_mut();
    // SAFETY: every pointer refers to a NUL-terminated string alive for this call; the arrays
    // hold `headers.len()` entries each.
    check("nvrtcCreateProgram", unsafe {
        sys::nvrtcCreateProgram(
            &mut prog,
            c_src.as_ptr(),
            c_name.as_ptr(),
            headers.len() as c_int,
            if headers.is_empty() { std::ptr::null() } else { src_ptrs.as_ptr() },
            if headers.is_empty() { std::ptr::null() } else { name_ptrs.as_ptr() },
        )
    })
    .map_err(fail)?;
    let prog = Program(prog);
    let c_opts: Vec<CString> = options.iter().map(|o| cstring(o)).collect();
    let opt_ptrs: Vec<*const c_char> = c_opts.iter().map(|o| o.as_ptr()).collect();
    // SAFETY: a live program; `opt_ptrs` holds `options.len()` NUL-terminated strings.
    let r = unsafe { sys::nvrtcCompileProgram(prog.0, opt_ptrs.len() as c_int, opt_ptrs.as_ptr()) };
    let log = prog.log();
    if let Err(status) = check("nvrtcCompileProgram", r) {
        return Err(CompileFailure { status, log });
    }
    let ptx = prog.ptx().map_err(|status| CompileFailure { status, log: log.clone() })?;
    Ok((ptx, log))
}
