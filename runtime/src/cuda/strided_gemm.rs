//! cuBLASLt GEMMs on operands that start anywhere inside a buffer (the unfused attention's
//! per-batch, per-chunk, per-head matrices), through cuBLASLt's C API as cudarc exposes it.
//!
//! cudarc's `Matmul::matmul` leaves cuBLASLt's alignment preferences at their default, which
//! tells the algorithm heuristic that every pointer is 256-byte aligned; an operand at an
//! element offset is usually not, and an algorithm picked under that assumption may then be
//! refused or fault. Here the heuristic is told each pointer's actual alignment (the largest
//! power of two dividing it, at most 256), as PyTorch does, and the workspace is a buffer the
//! caller owns.
//!
//! The inputs `A`, `B` and the output `C`/`D` may differ in type: with f32 compute cuBLASLt
//! takes bf16/f16 `A`, `B` with f32 `C`, `D` (the unfused attention's scores, kept in f32).

use std::ffi::{c_int, c_void};

use cudarc::cublaslt::{CudaBlasLT, Matmul, MatmulConfig, MatmulShared, result as lt, sys};

use super::{CudaDevice, Elem};
use crate::{Error, Result};

/// The cuBLASLt descriptors of one GEMM, destroyed on drop.
#[derive(Default)]
struct Descriptors {
    layouts: Vec<sys::cublasLtMatrixLayout_t>,
    desc: Option<sys::cublasLtMatmulDesc_t>,
    pref: Option<sys::cublasLtMatmulPreference_t>,
}

impl Drop for Descriptors {
    fn drop(&mut self) {
        // SAFETY: each handle was created by cuBLASLt below and is destroyed once. A failure to
        // destroy leaks a descriptor; there is nothing better to do in a destructor.
        unsafe {
            for &l in &self.layouts {
                let _ = lt::destroy_matrix_layout(l);
            }
            if let Some(d) = self.desc {
                let _ = lt::destroy_matmul_desc(d);
            }
            if let Some(p) = self.pref {
                let _ = lt::destroy_matmul_pref(p);
            }
        }
    }
}

/// The largest power of two dividing `ptr`, at most 256 (cuBLASLt's default assumption).
fn alignment(ptr: u64) -> u32 {
    1 << ptr.trailing_zeros().min(8)
}

/// Device addresses of one GEMM's operands: `c = alpha * op(a) op(b)` in cuBLAS's column-major
/// terms (`c` is also the output `D`), and a workspace of `workspace_bytes`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GemmPointers {
    pub a: u64,
    pub b: u64,
    pub c: u64,
    pub workspace: u64,
    pub workspace_bytes: usize,
}

/// Enqueues one (strided-batched, when `cfg.batch_size` is set) cuBLASLt GEMM with f32 compute
/// on the device's stream: inputs of `T`, output of `D` (`T` itself, or f32).
///
/// # Safety
/// Every address must point into live device memory holding the elements the configuration
/// addresses (rows, columns, leading dimensions and batch strides), `c`'s matrices must not
/// overlap each other or the inputs, and the buffers must stay alive until the GEMM has run
/// (stream order: the caller drops them after enqueueing, which the allocator orders).
pub(crate) unsafe fn gemm_at<T: Elem, D: Elem>(
    dev: &CudaDevice,
    op: &'static str,
    cfg: MatmulConfig,
    p: GemmPointers,
    shapes: impl Fn() -> String,
) -> Result<()>
where
    CudaBlasLT: Matmul<T> + Matmul<D>,
{
    let fail = |what: &str, e: cudarc::cublaslt::result::CublasError| Error::Cuda {
        op,
        device: dev.device(),
        message: format!("{what} for {} ({} into {}) failed: {e:?}", shapes(), T::DTYPE, D::DTYPE),
    };
    dev.bind(op)?;
    let blas = dev.blas.lock().unwrap_or_else(|e| e.into_inner());
    let (ty, out_ty) = (<CudaBlasLT as Matmul<T>>::matrix_type(), <CudaBlasLT as Matmul<D>>::matrix_type());
    let (a_rows, a_cols) = if cfg.transa { (cfg.k, cfg.m) } else { (cfg.m, cfg.k) };
    let (b_rows, b_cols) = if cfg.transb { (cfg.n, cfg.k) } else { (cfg.k, cfg.n) };
    let mut d = Descriptors::default();
    for (ty, rows, cols, ld, stride) in [
        (ty, a_rows, a_cols, cfg.lda, cfg.stride_a),
        (ty, b_rows, b_cols, cfg.ldb, cfg.stride_b),
        (out_ty, cfg.m, cfg.n, cfg.ldc, cfg.stride_c),
    ] {
        let layout = lt::create_matrix_layout(ty, rows, cols, ld)
            .map_err(|e| fail("cublasLtMatrixLayoutCreate", e))?;
        d.layouts.push(layout);
        if let (Some(count), Some(stride)) = (cfg.batch_size, stride) {
            let count: c_int = count;
            // SAFETY: a live layout; the attribute types are those cuBLASLt documents (int32
            // count, int64 stride), passed with their sizes.
            unsafe {
                lt::set_matrix_layout_attribute(
                    layout,
                    sys::cublasLtMatrixLayoutAttribute_t::CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                    (&count as *const c_int).cast::<c_void>(),
                    size_of::<c_int>(),
                )
                .and_then(|()| {
                    lt::set_matrix_layout_attribute(
                        layout,
                        sys::cublasLtMatrixLayoutAttribute_t::CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                        (&stride as *const i64).cast::<c_void>(),
                        size_of::<i64>(),
                    )
                })
            }
            .map_err(|e| fail("cublasLtMatrixLayoutSetAttribute", e))?;
        }
    }
    // The compute type follows the inputs (32F for bf16/f16; cudarc's f32 would be TF32).
    let desc =
        lt::create_matmul_desc(<CudaBlasLT as Matmul<T>>::compute_type(), sys::cudaDataType_t::CUDA_R_32F)
            .map_err(|e| fail("cublasLtMatmulDescCreate", e))?;
    d.desc = Some(desc);
    for (attr, trans) in [
        (sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA, cfg.transa),
        (sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSB, cfg.transb),
    ] {
        let op_code = trans as i32; // CUBLAS_OP_T = 1, CUBLAS_OP_N = 0
        // SAFETY: a live descriptor; the transpose attributes are int32.
        unsafe {
            lt::set_matmul_desc_attribute(
                desc,
                attr,
                (&op_code as *const i32).cast::<c_void>(),
                size_of::<i32>(),
            )
        }
        .map_err(|e| fail("cublasLtMatmulDescSetAttribute", e))?;
    }
    let pref = lt::create_matmul_pref().map_err(|e| fail("cublasLtMatmulPreferenceCreate", e))?;
    d.pref = Some(pref);
    let workspace_bytes = p.workspace_bytes as u64;
    use sys::cublasLtMatmulPreferenceAttributes_t as Pref;
    // SAFETY: a live preference; the workspace limit is uint64, the alignments uint32.
    unsafe {
        lt::set_matmul_pref_attribute(
            pref,
            Pref::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
            (&workspace_bytes as *const u64).cast::<c_void>(),
            size_of::<u64>(),
        )
        .map_err(|e| fail("cublasLtMatmulPreferenceSetAttribute", e))?;
        for (attr, ptr) in [
            (Pref::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, p.a),
            (Pref::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, p.b),
            (Pref::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, p.c),
            (Pref::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, p.c),
        ] {
            let bytes = alignment(ptr);
            lt::set_matmul_pref_attribute(
                pref,
                attr,
                (&bytes as *const u32).cast::<c_void>(),
                size_of::<u32>(),
            )
            .map_err(|e| fail("cublasLtMatmulPreferenceSetAttribute", e))?;
        }
    }
    let (la, lb, lc) = (d.layouts[0], d.layouts[1], d.layouts[2]);
    // SAFETY: live descriptors, created above for these shapes.
    let heuristic = unsafe { lt::get_matmul_algo_heuristic(*blas.handle(), desc, la, lb, lc, lc, pref) }
        .map_err(|e| fail("cublasLtMatmulAlgoGetHeuristic", e))?;
    let (alpha, beta) = (cfg.alpha, cfg.beta);
    // SAFETY: the caller guarantees the addresses (see the function's contract); the algorithm
    // was chosen for these layouts, alignments and workspace size; the stream is the device's.
    unsafe {
        lt::matmul(
            *blas.handle(),
            desc,
            (&alpha as *const f32).cast::<c_void>(),
            (&beta as *const f32).cast::<c_void>(),
            p.a as *const c_void,
            la,
            p.b as *const c_void,
            lb,
            p.c as *const c_void,
            lc,
            p.c as *mut c_void,
            lc,
            &heuristic.algo,
            p.workspace as *mut c_void,
            p.workspace_bytes,
            blas.stream().cu_stream() as *mut _,
        )
    }
    .map_err(|e| fail("cublasLtMatmul", e))
}

#[cfg(test)]
mod tests {
    use super::alignment;

    #[test]
    fn alignment_is_the_largest_power_of_two_up_to_256() {
        assert_eq!(alignment(0x7f00_0000_0000), 256);
        assert_eq!(alignment(0x7f00_0000_0040), 64);
        assert_eq!(alignment(0x7f00_0000_0102), 2);
        assert_eq!(alignment(0), 256);
    }
}
