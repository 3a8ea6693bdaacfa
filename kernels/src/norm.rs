//! The norm kernels (`cuda/norm.cu`): group norm over NHWC with optional fused SiLU, layer
//! norm over the last dimension, and the row softmax (one warp per row, online max and sum),
//! from and to the storage type or from f32 scores ([`NormOp::SoftmaxFromF32`], the unfused
//! attention's). Typed entry list and launchers.
//!
//! Group norm is three launches ([`launch_group_norm`]): per-chunk Welford statistics, a merge
//! per (sample, group), and the normalisation; the launcher splits a caller-provided f32
//! workspace of [`GroupNormDims::workspace_len`] elements between them. The constants below
//! mirror the `#define`s of `norm.cu`.

use cudarc::driver::{
    CudaFunction, CudaStream, CudaView, CudaViewMut, DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg,
};

use crate::KernelDType;
use crate::launch::{KernelElem, LaunchError, aligned16, blocks_for, check_len, to_i32};

/// Most threads in a statistics block (`STATS_THREADS` in norm.cu is its launch bound, 1024).
pub const STATS_MAX_THREADS: usize = 1024;
/// Threads a statistics block aims at when a row is narrow (several rows per pass).
pub const STATS_TARGET_THREADS: usize = 256;
/// Elements each statistics block reads (about): sets the rows per chunk.
pub const STATS_ELEMS_PER_BLOCK: usize = 32_768;
/// Threads per block of the finalize and apply kernels.
pub const APPLY_THREADS: usize = 256;
/// Warps (rows) per layer-norm block (`LN_WARPS` in norm.cu).
pub const LN_WARPS: usize = 8;
/// Dynamic shared memory a statistics block may use without an opt-in.
const STATS_MAX_SMEM: usize = 48 * 1024;

/// One kernel of the family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NormOp {
    /// Group norm pass 1: per-chunk Welford statistics.
    GroupNormStats,
    /// Group norm pass 2: merge the chunks; per-channel mean and scale.
    GroupNormFinalize,
    /// Group norm pass 3: normalise, affine, optional SiLU.
    GroupNormApply,
    /// Layer norm, one warp per row.
    LayerNorm,
    /// Softmax over the last dimension, one warp per row.
    Softmax,
    /// The same softmax reading f32 rows and writing the storage type: the unfused attention's
    /// scores stay in f32 (rounded to half precision, each would carry an error of up to
    /// `u|s|/2` that the softmax turns into a relative error of the probability).
    SoftmaxFromF32,
}

impl NormOp {
    /// Every op, in table order.
    pub const ALL: [NormOp; 6] = [
        NormOp::GroupNormStats,
        NormOp::GroupNormFinalize,
        NormOp::GroupNormApply,
        NormOp::LayerNorm,
        NormOp::Softmax,
        NormOp::SoftmaxFromF32,
    ];

    /// The entry-point stem.
    pub fn name(self) -> &'static str {
        match self {
            NormOp::GroupNormStats => "group_norm_stats",
            NormOp::GroupNormFinalize => "group_norm_finalize",
            NormOp::GroupNormApply => "group_norm_apply",
            NormOp::LayerNorm => "layer_norm",
            NormOp::Softmax => "softmax",
            NormOp::SoftmaxFromF32 => "softmax_f32",
        }
    }
}

/// An entry point of `norm.cu`: `<op>_<dtype>` (`softmax_f32_bf16` reads f32, writes bf16).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NormKernel {
    /// The kernel.
    pub op: NormOp,
    /// Its storage type (for [`NormOp::SoftmaxFromF32`], the output's).
    pub dtype: KernelDType,
}

impl NormKernel {
    /// The entry-point name, e.g. `group_norm_stats_bf16`.
    pub fn entry(&self) -> String {
        format!("{}_{}", self.op.name(), self.dtype.suffix())
    }

    /// Every instantiated entry.
    pub fn all() -> Vec<Self> {
        KernelDType::ALL.iter().flat_map(|&dtype| NormOp::ALL.map(|op| NormKernel { op, dtype })).collect()
    }
}

/// Group norm of `x [n, l, c]` (NHWC with `l = H*W`) in `groups` groups.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupNormDims {
    /// Samples.
    pub n: usize,
    /// Positions per sample.
    pub l: usize,
    /// Channels.
    pub c: usize,
    /// Groups (divides `c`).
    pub groups: usize,
    /// Added to the variance.
    pub eps: f32,
    /// Apply SiLU after the affine.
    pub silu: bool,
}

impl GroupNormDims {
    /// Rows per statistics chunk and the number of chunks per sample.
    fn chunking(&self) -> (usize, usize) {
        let rpc = (STATS_ELEMS_PER_BLOCK / self.c.max(1)).clamp(1, self.l.max(1));
        (rpc, self.l.div_ceil(rpc))
    }

    /// f32s of the partial statistics `[n, chunks, groups, 2]`, rounded up to a multiple of 8
    /// so that the mean and scale arrays after them stay 32-byte aligned.
    fn partial_len(&self) -> usize {
        let (_, chunks) = self.chunking();
        (self.n * chunks * self.groups * 2).next_multiple_of(8)
    }

    /// The f32 workspace [`launch_group_norm`] needs: partial statistics
    /// `[n, chunks, groups, 2]` (padded), then mean and scale `[n, c]` each.
    pub fn workspace_len(&self) -> usize {
        self.partial_len() + 2 * self.n * self.c
    }
}

/// The three group-norm functions of one dtype.
#[derive(Clone, Copy, Debug)]
pub struct GroupNormFunctions<'a> {
    /// `group_norm_stats_<dtype>`.
    pub stats: &'a CudaFunction,
    /// `group_norm_finalize_<dtype>`.
    pub finalize: &'a CudaFunction,
    /// `group_norm_apply_<dtype>`.
    pub apply: &'a CudaFunction,
}

/// Group norm: `y = (x - mean) / sqrt(var + eps) * gamma + beta` per (sample, group), then
/// SiLU if `dims.silu`. `x`, `y`: `[n, l, c]`; `gamma`, `beta`: `[c]`; `workspace`: at least
/// [`GroupNormDims::workspace_len`] f32s. Three launches on `stream`, no synchronisation.
#[allow(clippy::too_many_arguments)]
pub fn launch_group_norm<T: KernelElem>(
    stream: &CudaStream,
    funcs: GroupNormFunctions<'_>,
    x: &CudaView<'_, T>,
    gamma: &CudaView<'_, T>,
    beta: &CudaView<'_, T>,
    y: &mut CudaViewMut<'_, T>,
    workspace: &mut CudaViewMut<'_, f32>,
    dims: GroupNormDims,
) -> Result<(), LaunchError> {
    const K: &str = "group_norm";
    let GroupNormDims { n, l, c, groups, eps, silu } = dims;
    if groups == 0 || c % groups != 0 {
        return Err(LaunchError::unsupported(K, format!("{c} channels do not split into {groups} groups")));
    }
    check_len(K, "x", x.len(), n * l * c)?;
    check_len(K, "y", y.len(), n * l * c)?;
    check_len(K, "gamma", gamma.len(), c)?;
    check_len(K, "beta", beta.len(), c)?;
    if workspace.len() < dims.workspace_len() {
        return Err(LaunchError::unsupported(
            K,
            format!("workspace has {} f32s, needs {} for {dims:?}", workspace.len(), dims.workspace_len()),
        ));
    }
    if n * l * c == 0 {
        return Ok(());
    }
    let aligned = [x, gamma, beta].iter().all(|b| aligned16(stream, *b))
        && aligned16(stream, y)
        && aligned16(stream, workspace);
    let vec = if c % 8 == 0 && aligned { 8 } else { 1 };
    let cols = c / vec;
    let lanes = (STATS_TARGET_THREADS / cols).max(1);
    let smem = (2 * lanes * c + lanes) * 4;
    if cols > STATS_MAX_THREADS || smem > STATS_MAX_SMEM {
        return Err(LaunchError::unsupported(
            K,
            format!(
                "{c} channels (vector width {vec}) exceed the statistics block (at most {STATS_MAX_THREADS} threads, {STATS_MAX_SMEM} bytes of shared memory)"
            ),
        ));
    }
    let (rpc, chunks) = dims.chunking();
    let (l_i, c_i, g_i) = (to_i32(K, "l", l)?, to_i32(K, "c", c)?, to_i32(K, "groups", groups)?);
    to_i32(K, "l * c", l * c)?;
    let n_y = u32::try_from(n)
        .ok()
        .filter(|&v| v <= 65_535)
        .ok_or_else(|| LaunchError::unsupported(K, format!("{n} samples exceed the grid's y limit 65535")))?;
    let (rpc_i, chunks_i, n_i, vec_i) =
        (to_i32(K, "rows per chunk", rpc)?, to_i32(K, "chunks", chunks)?, n as i32, vec as i32);

    // Workspace: partial [n, chunks, groups, 2] (padded), mean [n, c], scale [n, c].
    let (mut partial, mut rest) = workspace.split_at_mut(dims.partial_len());
    let (mut mean, mut rest) = rest.split_at_mut(n * c);
    let mut scale = rest.slice_mut(..n * c);

    // Pass 1: grid (chunks, n), block (cols, lanes).
    let cfg = LaunchConfig {
        grid_dim: (chunks_i as u32, n_y, 1),
        block_dim: (cols as u32, lanes as u32, 1),
        shared_mem_bytes: smem as u32,
    };
    let mut b = stream.launch_builder(funcs.stats);
    b.arg(x).arg(&mut partial).arg(&l_i).arg(&c_i).arg(&g_i).arg(&rpc_i).arg(&vec_i);
    // SAFETY: argument types and order match group_norm_stats_<dtype>; the buffers hold the
    // sizes checked above and the block reads rows < l and channels < c only.
    unsafe { b.launch(cfg) }.map_err(LaunchError::driver("group_norm_stats"))?;

    // Pass 2: one warp per (sample, group).
    let warps = n * groups;
    let cfg = LaunchConfig {
        grid_dim: (blocks_for(K, warps * 32, APPLY_THREADS)?, 1, 1),
        block_dim: (APPLY_THREADS as u32, 1, 1),
        shared_mem_bytes: 0,
    };
    let partial_ro = partial.as_view();
    let mut b = stream.launch_builder(funcs.finalize);
    b.arg(&partial_ro).arg(gamma).arg(&mut mean).arg(&mut scale).arg(&n_i).arg(&l_i).arg(&c_i).arg(&g_i);
    b.arg(&rpc_i).arg(&chunks_i).arg(&eps);
    // SAFETY: as above, for group_norm_finalize_<dtype>.
    unsafe { b.launch(cfg) }.map_err(LaunchError::driver("group_norm_finalize"))?;

    // Pass 3: grid (positions * channels / vec / threads, n).
    let cfg = LaunchConfig {
        grid_dim: (blocks_for(K, l * c / vec, APPLY_THREADS)?, n_y, 1),
        block_dim: (APPLY_THREADS as u32, 1, 1),
        shared_mem_bytes: 0,
    };
    let (mean_ro, scale_ro, silu_i) = (mean.as_view(), scale.as_view(), silu as i32);
    let mut b = stream.launch_builder(funcs.apply);
    b.arg(x).arg(&mean_ro).arg(&scale_ro).arg(beta).arg(y).arg(&l_i).arg(&c_i).arg(&silu_i).arg(&vec_i);
    // SAFETY: as above, for group_norm_apply_<dtype>.
    unsafe { b.launch(cfg) }.map_err(LaunchError::driver("group_norm_apply"))?;
    Ok(())
}

/// Layer norm of `x [rows, c]` over `c`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerNormDims {
    /// Rows (every dimension but the last, multiplied).
    pub rows: usize,
    /// The normalised dimension.
    pub c: usize,
    /// Added to the variance.
    pub eps: f32,
}

/// Layer norm: `y = (x - mean) / sqrt(var + eps) * gamma + beta` per row. `x`, `y`:
/// `[rows, c]`; `gamma`, `beta`: `[c]`.
pub fn launch_layer_norm<T: KernelElem>(
    stream: &CudaStream,
    func: &CudaFunction,
    x: &CudaView<'_, T>,
    gamma: &CudaView<'_, T>,
    beta: &CudaView<'_, T>,
    y: &mut CudaViewMut<'_, T>,
    dims: LayerNormDims,
) -> Result<(), LaunchError> {
    const K: &str = "layer_norm";
    let LayerNormDims { rows, c, eps } = dims;
    check_len(K, "x", x.len(), rows * c)?;
    check_len(K, "y", y.len(), rows * c)?;
    check_len(K, "gamma", gamma.len(), c)?;
    check_len(K, "beta", beta.len(), c)?;
    if rows * c == 0 {
        return Ok(());
    }
    let vec_i: i32 =
        if c % 8 == 0 && [x, gamma, beta].iter().all(|b| aligned16(stream, *b)) && aligned16(stream, y) {
            8
        } else {
            1
        };
    let (rows_i, c_i) = (to_i32(K, "rows", rows)?, to_i32(K, "c", c)?);
    let cfg = LaunchConfig {
        grid_dim: (blocks_for(K, rows, LN_WARPS)?, 1, 1),
        block_dim: ((LN_WARPS * 32) as u32, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut b = stream.launch_builder(func);
    b.arg(x).arg(gamma).arg(beta).arg(y).arg(&rows_i).arg(&c_i).arg(&eps).arg(&vec_i);
    // SAFETY: argument types and order match layer_norm_<dtype>; sizes checked above.
    unsafe { b.launch(cfg) }.map_err(LaunchError::driver(K))?;
    Ok(())
}

/// Rows of `c` elements of a softmax, `c > 0`, optionally under a causal mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftmaxDims {
    /// Rows (every dimension but the last, multiplied).
    pub rows: usize,
    /// The dimension the softmax runs over.
    pub c: usize,
    /// A causal mask over the rows seen as a stack of score matrices, or `None`.
    pub causal: Option<CausalMask>,
}

/// The causal mask of a stack of `[rows_per_matrix, c]` score matrices whose first row is query
/// `offset`: row `r` keeps columns `0..=(r % rows_per_matrix) + offset` (keys up to its query);
/// the others are treated as `-inf`, so they get probability 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CausalMask {
    /// Rows of one matrix (query rows of one head); at least 1.
    pub rows_per_matrix: usize,
    /// Query index of each matrix's first row.
    pub offset: usize,
}

/// Checks `dims` against the buffers; `Ok(None)` for nothing to do, else the kernel's ints
/// `(rows, c, causal_period, causal_offset)`.
fn softmax_args(
    dims: SoftmaxDims,
    x_len: usize,
    y_len: usize,
) -> Result<Option<(i32, i32, i32, i32)>, LaunchError> {
    const K: &str = "softmax";
    let SoftmaxDims { rows, c, causal } = dims;
    let n = rows
        .checked_mul(c)
        .ok_or_else(|| LaunchError::unsupported(K, format!("{rows} x {c} elements overflow")))?;
    check_len(K, "x", x_len, n)?;
    check_len(K, "y", y_len, n)?;
    if rows == 0 {
        return Ok(None);
    }
    if c == 0 {
        return Err(LaunchError::unsupported(K, format!("{rows} rows of 0 elements")));
    }
    let (period, offset) = match causal {
        None => (0, 0),
        Some(CausalMask { rows_per_matrix: 0, .. }) => {
            return Err(LaunchError::unsupported(K, "a causal mask over matrices of 0 rows"));
        }
        Some(m) => (to_i32(K, "rows per matrix", m.rows_per_matrix)?, to_i32(K, "causal offset", m.offset)?),
    };
    // The kernel forms row % period + offset + 1 in 32 bits.
    to_i32(K, "rows per matrix + offset", period as usize + offset as usize)?;
    Ok(Some((to_i32(K, "rows", rows)?, to_i32(K, "c", c)?, period, offset)))
}

/// Enqueues `softmax_<dtype>` on the pointers `x` and `y` (possibly equal), or, given `y_lo`,
/// `softmax_f32_<dtype>` on `x`, `y` and `y_lo` (0 for none).
fn launch_softmax_raw(
    stream: &CudaStream,
    func: &CudaFunction,
    (x, y, y_lo): (u64, u64, Option<u64>),
    (rows, c, period, offset): (i32, i32, i32, i32),
    vec: i32,
) -> Result<(), LaunchError> {
    const K: &str = "softmax";
    let cfg = LaunchConfig {
        grid_dim: (blocks_for(K, rows as usize, LN_WARPS)?, 1, 1),
        block_dim: ((LN_WARPS * 32) as u32, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut b = stream.launch_builder(func);
    b.arg(&x).arg(&y);
    if let Some(y_lo) = &y_lo {
        b.arg(y_lo);
    }
    b.arg(&rows).arg(&c).arg(&period).arg(&offset).arg(&vec);
    // SAFETY: argument types and order match softmax_<dtype>(x, y, rows, C, causal_period,
    // causal_offset, vec) or, with y_lo, softmax_f32_<dtype>(x, y, y_lo, ...); the callers checked that both buffers hold rows * C elements of their
    // types and picked vec = 8 only for C % 8 == 0 and 16-byte aligned pointers (every 8-element
    // group then starts 16-byte aligned: the kernel loads f32 rows 16 bytes at a time).
    unsafe { b.launch(cfg) }.map_err(LaunchError::driver(K))?;
    Ok(())
}

/// Softmax over the last dimension: `y[r, :] = exp(x[r, :] - max) / sum`, computed in f32, for
/// `x`, `y` `[rows, c]` (with `dims.causal`, masked columns are left out and written as 0);
/// `func` is `softmax_<dtype>`.
pub fn launch_softmax<T: KernelElem>(
    stream: &CudaStream,
    func: &CudaFunction,
    x: &CudaView<'_, T>,
    y: &mut CudaViewMut<'_, T>,
    dims: SoftmaxDims,
) -> Result<(), LaunchError> {
    let Some(args) = softmax_args(dims, x.len(), y.len())? else {
        return Ok(());
    };
    let aligned = aligned16(stream, x) && aligned16(stream, y);
    let vec = if dims.c % 8 == 0 && aligned { 8 } else { 1 };
    // The guards order the launch after earlier work on the buffers; they live until it is queued.
    let (x_ptr, _xg) = x.device_ptr(stream);
    let (y_ptr, _yg) = y.device_ptr_mut(stream);
    launch_softmax_raw(stream, func, (x_ptr, y_ptr, None), args, vec)
}

/// [`launch_softmax`] in place: `x` is overwritten by its softmax (for a caller that does not
/// need the input twice).
pub fn launch_softmax_in_place<T: KernelElem>(
    stream: &CudaStream,
    func: &CudaFunction,
    x: &mut CudaViewMut<'_, T>,
    dims: SoftmaxDims,
) -> Result<(), LaunchError> {
    let Some(args) = softmax_args(dims, x.len(), x.len())? else {
        return Ok(());
    };
    let vec = if dims.c % 8 == 0 && aligned16(stream, x) { 8 } else { 1 };
    let (ptr, _guard) = x.device_ptr_mut(stream);
    launch_softmax_raw(stream, func, (ptr, ptr, None), args, vec)
}

/// [`launch_softmax`] from f32 rows to the storage type: `y[r, :] = softmax(x[r, :])` with `x`
/// f32 and `y` of `T`, all `[rows, c]` (with `dims.causal`, masked columns are left out and
/// written as 0); `func` is `softmax_f32_<dtype>`. With `y_lo`, also the remainders
/// `y_lo = T(p - y)`, so that `y + y_lo` is the f32 softmax `p` to about `u^2` relative (`u`
/// the unit roundoff of `T`).
///
/// The unfused attention's step between its two GEMMs: f32 scores in, probabilities out as two
/// half-precision terms, each multiplied by `V` on the tensor cores and summed in f32.
pub fn launch_softmax_from_f32<T: KernelElem>(
    stream: &CudaStream,
    func: &CudaFunction,
    x: &CudaView<'_, f32>,
    y: &mut CudaViewMut<'_, T>,
    y_lo: Option<&mut CudaViewMut<'_, T>>,
    dims: SoftmaxDims,
) -> Result<(), LaunchError> {
    if let Some(lo) = &y_lo {
        check_len("softmax", "y_lo", lo.len(), y.len())?;
    }
    let Some(args) = softmax_args(dims, x.len(), y.len())? else {
        return Ok(());
    };
    let aligned = aligned16(stream, x)
        && aligned16(stream, y)
        && y_lo.as_deref().is_none_or(|lo| aligned16(stream, lo));
    let vec = if dims.c % 8 == 0 && aligned { 8 } else { 1 };
    // The guards order the launch after earlier work on the buffers; they live until it is queued.
    let (x_ptr, _xg) = x.device_ptr(stream);
    let (y_ptr, _yg) = y.device_ptr_mut(stream);
    let (lo_ptr, _log) = match y_lo {
        Some(lo) => {
            let (p, g) = lo.device_ptr_mut(stream);
            (p, Some(g))
        }
        None => (0, None),
    };
    launch_softmax_raw(stream, func, (x_ptr, y_ptr, Some(lo_ptr)), args, vec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_cover_every_op_and_dtype() {
        let all = NormKernel::all();
        assert_eq!(all.len(), 12);
        assert!(all.iter().any(|k| k.entry() == "softmax_bf16"));
        assert!(all.iter().any(|k| k.entry() == "softmax_f32_bf16"));
        assert!(all.iter().any(|k| k.entry() == "softmax_f32_f16"));
        assert!(all.iter().any(|k| k.entry() == "group_norm_stats_bf16"));
        assert!(all.iter().any(|k| k.entry() == "layer_norm_f16"));
    }

    #[test]
    fn sdxl_group_norm_plan() {
        let d = GroupNormDims { n: 2, l: 128 * 128, c: 320, groups: 32, eps: 1e-5, silu: true };
        let (rpc, chunks) = d.chunking();
        assert_eq!((rpc, chunks), (102, 161));
        assert_eq!(d.workspace_len(), 2 * 161 * 32 * 2 + 2 * 2 * 320);
        let odd = GroupNormDims { n: 1, l: 3, c: 8, groups: 1, ..d };
        assert_eq!(odd.workspace_len(), 8 + 2 * 8);
        // A one-row input still gets one chunk.
        let d = GroupNormDims { l: 1, ..d };
        assert_eq!(d.chunking(), (1, 1));
    }
}
