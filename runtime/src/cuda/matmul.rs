//! Linear layers and matrix products through cuBLASLt: bf16/f16 operands and result, f32
//! compute (`CUBLAS_COMPUTE_32F`), the bias added in the GEMM's epilogue.
//!
//! cuBLASLt is column-major and our tensors are row-major; a row-major `[R, C]` matrix is a
//! column-major `C x R` one, so each product is computed transposed:
//! - linear `y [M, N] = x [M, K] w[N, K]^T + b`: column-major `y^T (N x M) = w (N x K, stored as
//!   K x N, transposed) * x^T (K x M)`, with the bias along cuBLAS's rows (length `N`);
//! - matmul `c [M, N] = a [M, K] b [K, N]`: column-major `c^T (N x M) = b^T (N x K) * a^T (K x M)`,
//!   batched with strides `K*N`, `M*K`, `M*N`.

use cudarc::cublaslt::{CudaBlasLT, Matmul, MatmulConfig};
use cudarc::driver::{CudaView, CudaViewMut};

use super::{CudaDevice, CudaStorage, Elem, dispatch_half, operand};
use crate::{Error, Result, Tensor};

/// `x [M, K] w[N, K]^T + b` into a tensor of `shape` (`[.., N]`).
pub(crate) fn linear(
    x: &CudaStorage,
    weight: &Tensor,
    bias: Option<&Tensor>,
    (m, k, n): (usize, usize, usize),
    shape: &[usize],
) -> Result<Tensor> {
    const OP: &str = "linear";
    let dev = x.device();
    let w = operand(OP, weight)?;
    let b = bias.map(|b| operand(OP, b)).transpose()?;
    dispatch_half!(OP, x.dtype(), dev.device(), |T| {
        let mut out = CudaStorage::alloc(dev, T::DTYPE, m * n, OP)?;
        if m * n > 0 {
            let cfg = MatmulConfig {
                transa: true,
                transb: false,
                transc: false,
                m: n as u64,
                n: m as u64,
                k: k as u64,
                alpha: 1.0,
                lda: k as i64,
                ldb: k as i64,
                beta: 0.0,
                ldc: n as i64,
                stride_a: None,
                stride_b: None,
                stride_c: None,
                stride_bias: None,
                batch_size: None,
            };
            let bias_view = b.map(|b| b.view::<T>());
            let shapes = || format!("x [{m}, {k}], weight [{n}, {k}], bias {}", b.is_some());
            gemm::<T>(
                dev,
                OP,
                cfg,
                &w.view(),
                &x.view(),
                &mut out.view_mut(),
                bias_view.as_ref(),
                k,
                shapes,
            )?;
        }
        Tensor::from_cuda_storage(out, shape)
    })
}

/// `[B, M, K] x [B, K, N] -> [B, M, N]` (`batch` 1 for the unbatched form) into `shape`.
pub(crate) fn matmul(
    a: &CudaStorage,
    rhs: &Tensor,
    (batch, m, k, n): (usize, usize, usize, usize),
    shape: &[usize],
) -> Result<Tensor> {
    const OP: &str = "matmul";
    let dev = a.device();
    let b = operand(OP, rhs)?;
    dispatch_half!(OP, a.dtype(), dev.device(), |T| {
        let mut out = CudaStorage::alloc(dev, T::DTYPE, batch * m * n, OP)?;
        if batch * m * n > 0 {
            let batch_size = i32::try_from(batch).map_err(|_| {
                Error::unsupported(
                    OP,
                    T::DTYPE,
                    dev.device(),
                    format!("batch {batch} exceeds cuBLASLt's i32 count"),
                )
            })?;
            let cfg = MatmulConfig {
                transa: false,
                transb: false,
                transc: false,
                m: n as u64,
                n: m as u64,
                k: k as u64,
                alpha: 1.0,
                lda: n as i64,
                ldb: k as i64,
                beta: 0.0,
                ldc: n as i64,
                stride_a: Some((k * n) as i64),
                stride_b: Some((m * k) as i64),
                stride_c: Some((m * n) as i64),
                stride_bias: None,
                batch_size: (batch > 1).then_some(batch_size),
            };
            let shapes = || format!("[{batch}, {m}, {k}] x [{batch}, {k}, {n}]");
            gemm::<T>(dev, OP, cfg, &b.view(), &a.view(), &mut out.view_mut(), None, k, shapes)?;
        }
        Tensor::from_cuda_storage(out, shape)
    })
}

/// Enqueues one cuBLASLt matmul `c = a * b (+ bias)` in cuBLAS's column-major terms. A product
/// over `K = 0` is all zeros (plus nothing: with a bias it is refused, as no kernel broadcasts it).
#[allow(clippy::too_many_arguments)]
fn gemm<T: Elem>(
    dev: &CudaDevice,
    op: &'static str,
    cfg: MatmulConfig,
    a: &CudaView<'_, T>,
    b: &CudaView<'_, T>,
    c: &mut CudaViewMut<'_, T>,
    bias: Option<&CudaView<'_, T>>,
    k: usize,
    shapes: impl Fn() -> String,
) -> Result<()>
where
    CudaBlasLT: Matmul<T>,
{
    if k == 0 {
        if bias.is_some() {
            return Err(Error::unsupported(
                op,
                T::DTYPE,
                dev.device(),
                format!("K = 0 with a bias ({})", shapes()),
            ));
        }
        return dev
            .stream()
            .memset_zeros(c)
            .map_err(|e| super::driver_error(op, dev.device(), "cuMemsetD8Async", e));
    }
    dev.bind(op)?;
    let blas = dev.blas.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: the views hold exactly the elements the config addresses: `ops` validated the
    // shapes, and the leading dimensions and batch strides are those of contiguous row-major
    // operands (see the module comment).
    unsafe { blas.matmul(cfg, a, b, c, bias, None) }.map_err(|e| Error::Cuda {
        op,
        device: dev.device(),
        message: format!("cublasLtMatmul on {} ({}) failed: {e:?}", shapes(), T::DTYPE),
    })
}
