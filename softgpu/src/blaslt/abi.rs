//! The exported C functions that create, configure and destroy cuBLASLt's objects, and the
//! helpers every exported function shares (panic guard, handle checks, error reports).
//!
//! Handles are `Box::into_raw` pointers of the structs in `desc.rs`, each starting with a
//! [`Kind`] tag that is checked on every use. Errors return the status cuBLASLt documents and
//! print one line on stderr saying why, since a status code alone rarely tells a caller what
//! was wrong.

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::desc::{AttrError, Attrs, Handle, Kind, MatmulDesc, MatrixLayout, Preference};
use super::logger;
use super::types::Status;

/// Runs an exported function's body, turning a panic into `CUBLAS_STATUS_INTERNAL_ERROR` (a
/// panic must never unwind into C).
pub(super) fn guard(func: &'static str, body: impl FnOnce() -> Status) -> Status {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_owned());
        report(func, &format!("internal error: {what}"));
        Status::InternalError
    })
}

/// Prints why `func` failed.
pub(super) fn report(func: &str, message: &str) {
    logger::error(func, message);
}

/// Fails `func` with `status`, saying why.
pub(super) fn fail(func: &str, status: Status, message: &str) -> Status {
    report(func, message);
    status
}

/// Objects that carry a [`Kind`] tag as their first field.
pub(super) trait Tagged {
    const KIND: Kind;
    /// The status for a null or mistyped pointer: `NOT_INITIALIZED` for the library handle,
    /// `INVALID_VALUE` for descriptors.
    const BAD: Status = Status::InvalidValue;
}

impl Tagged for Handle {
    const KIND: Kind = Kind::Handle;
    const BAD: Status = Status::NotInitialized;
}
impl Tagged for MatmulDesc {
    const KIND: Kind = Kind::MatmulDesc;
}
impl Tagged for MatrixLayout {
    const KIND: Kind = Kind::Layout;
}
impl Tagged for Preference {
    const KIND: Kind = Kind::Preference;
}

/// The object behind `ptr`, if it is a live object of kind `T`.
///
/// # Safety
/// `ptr` is null or points to at least 8 readable bytes (any cuBLASLt handle does).
pub(super) unsafe fn object<'a, T: Tagged>(func: &str, what: &str, ptr: *mut T) -> Result<&'a mut T, Status> {
    if ptr.is_null() {
        return Err(fail(func, T::BAD, &format!("{what} is NULL")));
    }
    // Read the tag as an integer: a pointer of another kind holds other bytes there, which
    // must not be read as a `Kind`.
    // SAFETY: the caller guarantees 8 readable bytes; every object is 8-aligned.
    let tag = unsafe { std::ptr::read(ptr as *const u64) };
    if tag != T::KIND as u64 {
        return Err(fail(
            func,
            T::BAD,
            &format!("{what} {ptr:p} is not a {:?} made by this library", T::KIND),
        ));
    }
    // SAFETY: a live object of kind T, made by `Box::into_raw` below.
    Ok(unsafe { &mut *ptr })
}

/// Boxes `value` into `*out`.
///
/// # Safety
/// `out` is null or writable.
unsafe fn create<T>(func: &str, out: *mut *mut T, value: impl FnOnce() -> T) -> Status {
    if out.is_null() {
        return fail(func, Status::InvalidValue, "the output pointer is NULL");
    }
    // SAFETY: checked non-null; the caller guarantees it is writable.
    unsafe { out.write(Box::into_raw(Box::new(value()))) };
    Status::Success
}

/// Frees an object made by [`create`].
///
/// # Safety
/// `ptr` is null or a pointer this library returned and has not freed.
unsafe fn destroy<T: Tagged>(func: &str, what: &str, ptr: *mut T) -> Status {
    // cuBLASLt's destroy functions accept NULL (as `free` does), except the library handle's.
    if ptr.is_null() && T::KIND != Kind::Handle {
        return Status::Success;
    }
    // SAFETY: as the caller guarantees.
    match unsafe { object(func, what, ptr) } {
        // SAFETY: a live object made by `Box::into_raw`, freed once.
        Ok(_) => drop(unsafe { Box::from_raw(ptr) }),
        Err(status) => return status,
    }
    Status::Success
}

fn attr_status(func: &str, e: AttrError) -> Status {
    fail(func, Status::InvalidValue, &e.to_string())
}

/// `Set*Attribute`: copies exactly the attribute's size from `buf`.
///
/// # Safety
/// `buf` is null or holds `size` readable bytes.
unsafe fn set_attr(func: &str, attrs: &mut Attrs, attr: u32, buf: *const c_void, size: usize) -> Status {
    if buf.is_null() {
        return fail(func, Status::InvalidValue, "buf is NULL");
    }
    // SAFETY: as the caller guarantees.
    let bytes = unsafe { std::slice::from_raw_parts(buf as *const u8, size) };
    match attrs.set(attr, bytes) {
        Ok(()) => Status::Success,
        Err(e) => attr_status(func, e),
    }
}

/// `Get*Attribute`: with `size` 0 reports the attribute's size in `*size_written`; otherwise
/// copies the value, which must be exactly `size` bytes.
///
/// # Safety
/// `buf` is null or holds `size` writable bytes; `size_written` is null or writable.
unsafe fn get_attr(
    func: &str,
    attrs: &Attrs,
    attr: u32,
    buf: *mut c_void,
    size: usize,
    size_written: *mut usize,
) -> Status {
    let needed = match attrs.size_of(attr) {
        Ok(n) => n,
        Err(e) => return attr_status(func, e),
    };
    if size == 0 {
        if size_written.is_null() {
            return fail(func, Status::InvalidValue, "sizeInBytes is 0 and sizeWritten is NULL");
        }
        // SAFETY: non-null, writable as the caller guarantees.
        unsafe { size_written.write(needed) };
        return Status::Success;
    }
    if buf.is_null() {
        return fail(func, Status::InvalidValue, "buf is NULL");
    }
    let value = match attrs.get_sized(attr, size) {
        Ok(v) => v,
        Err(e) => return attr_status(func, e),
    };
    // SAFETY: `size` writable bytes at `buf`, as the caller guarantees.
    unsafe { std::ptr::copy_nonoverlapping(value.as_ptr(), buf as *mut u8, size) };
    if !size_written.is_null() {
        // SAFETY: non-null, writable as the caller guarantees.
        unsafe { size_written.write(size) };
    }
    Status::Success
}

/// Creates the library handle. The device must be usable (its environment settings valid).
///
/// # Safety
/// `handle` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cublasLtCreate(handle: *mut *mut Handle) -> Status {
    const F: &str = "cublasLtCreate";
    guard(F, || {
        if let Err(e) = crate::device::device() {
            return fail(F, Status::NotInitialized, &format!("the software GPU is not usable: {e}"));
        }
        // SAFETY: as the caller guarantees.
        unsafe { create(F, handle, || Handle { kind: Kind::Handle }) }
    })
}

/// # Safety
/// `handle` is null or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cublasLtDestroy(handle: *mut Handle) -> Status {
    const F: &str = "cublasLtDestroy";
    // SAFETY: as the caller guarantees.
    guard(F, || unsafe { destroy(F, "lightHandle", handle) })
}

/// # Safety
/// `desc` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cublasLtMatmulDescCreate(
    desc: *mut *mut MatmulDesc,
    compute_type: u32,
    scale_type: u32,
) -> Status {
    const F: &str = "cublasLtMatmulDescCreate";
    // SAFETY: as the caller guarantees.
    guard(F, || unsafe { create(F, desc, || MatmulDesc::new(compute_type, scale_type)) })
}

/// # Safety
/// `desc` is null or a live matmul descriptor.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cublasLtMatmulDescDestroy(desc: *mut MatmulDesc) -> Status {
    const F: &str = "cublasLtMatmulDescDestroy";
    // SAFETY: as the caller guarantees.
    guard(F, || unsafe { destroy(F, "matmulDesc", desc) })
}

/// # Safety
/// `desc` is null or live; `buf` is null or holds `size` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cublasLtMatmulDescSetAttribute(
    desc: *mut MatmulDesc,
    attr: u32,
    buf: *const c_void,
    size: usize,
) -> Status {
    const F: &str = "cublasLtMatmulDescSetAttribute";
    guard(F, || {
        // SAFETY: as the caller guarantees.
        unsafe {
            match object(F, "matmulDesc", desc) {
                Ok(d) => set_attr(F, &mut d.attrs, attr, buf, size),
                Err(s) => s,
            }
        }
    })
}

/// # Safety
/// `desc` is null or live; `buf` null or `size` writable bytes; `size_written` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cublasLtMatmulDescGetAttribute(
    desc: *mut MatmulDesc,
    attr: u32,
    buf: *mut c_void,
    size: usize,
    size_written: *mut usize,
) -> Status {
    const F: &str = "cublasLtMatmulDescGetAttribute";
    guard(F, || {
        // SAFETY: as the caller guarantees.
        unsafe {
            match object(F, "matmulDesc", desc) {
                Ok(d) => get_attr(F, &d.attrs, attr, buf, size, size_written),
                Err(s) => s,
            }
        }
    })
}

/// # Safety
/// `layout` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cublasLtMatrixLayoutCreate(
    layout: *mut *mut MatrixLayout,
    data_type: u32,
    rows: u64,
    cols: u64,
    ld: i64,
) -> Status {
    const F: &str = "cublasLtMatrixLayoutCreate";
    // SAFETY: as the caller guarantees.
    guard(F, || unsafe { create(F, layout, || MatrixLayout::new(data_type, rows, cols, ld)) })
}

/// # Safety
/// `layout` is null or a live matrix layout.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cublasLtMatrixLayoutDestroy(layout: *mut MatrixLayout) -> Status {
    const F: &str = "cublasLtMatrixLayoutDestroy";
    // SAFETY: as the caller guarantees.
    guard(F, || unsafe { destroy(F, "matLayout", layout) })
}

/// # Safety
/// `layout` is null or live; `buf` is null or holds `size` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cublasLtMatrixLayoutSetAttribute(
    layout: *mut MatrixLayout,
    attr: u32,
    buf: *const c_void,
    size: usize,
) -> Status {
    const F: &str = "cublasLtMatrixLayoutSetAttribute";
    guard(F, || {
        // SAFETY: as the caller guarantees.
        unsafe {
            match object(F, "matLayout", layout) {
                Ok(l) => set_attr(F, &mut l.attrs, attr, buf, size),
                Err(s) => s,
            }
        }
    })
}

/// # Safety
/// `layout` is null or live; `buf` null or `size` writable bytes; `size_written` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cublasLtMatrixLayoutGetAttribute(
    layout: *mut MatrixLayout,
    attr: u32,
    buf: *mut c_void,
    size: usize,
    size_written: *mut usize,
) -> Status {
    const F: &str = "cublasLtMatrixLayoutGetAttribute";
    guard(F, || {
        // SAFETY: as the caller guarantees.
        unsafe {
            match object(F, "matLayout", layout) {
                Ok(l) => get_attr(F, &l.attrs, attr, buf, size, size_written),
                Err(s) => s,
            }
        }
    })
}

/// # Safety
/// `pref` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cublasLtMatmulPreferenceCreate(pref: *mut *mut Preference) -> Status {
    const F: &str = "cublasLtMatmulPreferenceCreate";
    // SAFETY: as the caller guarantees.
    guard(F, || unsafe { create(F, pref, Preference::new) })
}

/// # Safety
/// `pref` is null or a live preference.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cublasLtMatmulPreferenceDestroy(pref: *mut Preference) -> Status {
    const F: &str = "cublasLtMatmulPreferenceDestroy";
    // SAFETY: as the caller guarantees.
    guard(F, || unsafe { destroy(F, "pref", pref) })
}

/// # Safety
/// `pref` is null or live; `buf` is null or holds `size` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cublasLtMatmulPreferenceSetAttribute(
    pref: *mut Preference,
    attr: u32,
    buf: *const c_void,
    size: usize,
) -> Status {
    const F: &str = "cublasLtMatmulPreferenceSetAttribute";
    guard(F, || {
        // SAFETY: as the caller guarantees.
        unsafe {
            match object(F, "pref", pref) {
                Ok(p) => set_attr(F, &mut p.attrs, attr, buf, size),
                Err(s) => s,
            }
        }
    })
}

/// # Safety
/// `pref` is null or live; `buf` null or `size` writable bytes; `size_written` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cublasLtMatmulPreferenceGetAttribute(
    pref: *mut Preference,
    attr: u32,
    buf: *mut c_void,
    size: usize,
    size_written: *mut usize,
) -> Status {
    const F: &str = "cublasLtMatmulPreferenceGetAttribute";
    guard(F, || {
        // SAFETY: as the caller guarantees.
        unsafe {
            match object(F, "pref", pref) {
                Ok(p) => get_attr(F, &p.attrs, attr, buf, size, size_written),
                Err(s) => s,
            }
        }
    })
}
