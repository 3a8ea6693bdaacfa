//! The elementwise kernels (`cuda/elementwise.cu`): GELU, SiLU, affine, GEGLU, broadcast
//! add/mul, nearest 2x upsampling, concatenation, timestep embeddings, casts and permutations
//! ([`launch_permute`], by element width). Typed entry list and launchers.
//!
//! Each launcher picks the vector width (8 storage values, 4 for casts, else 1) from the
//! dimensions and the buffers' alignment, and launches one thread per vector on blocks of
//! [`EW_THREADS`] threads (`EW_THREADS` in elementwise.cu).

use cudarc::driver::{
    CudaFunction, CudaStream, CudaView, CudaViewMut, DeviceRepr, LaunchConfig, PushKernelArg,
};

use crate::KernelDType;
use crate::launch::{KernelElem, LaunchError, aligned16, blocks_for, check_len};

mod broadcast;
mod permute;

pub use broadcast::{BCAST_MAX_RANK, BroadcastPlan};
pub use permute::{
    PERM_MAX_RANK, PERM_ROWS, PERM_TILE, PermutePlan, PermuteWidth, launch_permute, permute_kernel,
};

/// Threads per block of every elementwise kernel.
pub const EW_THREADS: usize = 256;

/// An op instantiated for bf16 and f16.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ElementwiseOp {
    /// GELU, erf form.
    Gelu,
    /// SiLU.
    Silu,
    /// `x * mul + add`.
    Affine,
    /// `hidden * gelu(gate)` of the halves of the last dimension.
    Geglu,
    /// Broadcast sum.
    Add,
    /// Broadcast product.
    Mul,
    /// NHWC nearest 2x upsampling.
    UpsampleNearest2x,
    /// Concatenation of two tensors.
    Concat,
    /// Sinusoidal timestep embedding.
    TimestepEmbedding,
}

impl ElementwiseOp {
    /// Every op, in table order.
    pub const ALL: [ElementwiseOp; 9] = [
        ElementwiseOp::Gelu,
        ElementwiseOp::Silu,
        ElementwiseOp::Affine,
        ElementwiseOp::Geglu,
        ElementwiseOp::Add,
        ElementwiseOp::Mul,
        ElementwiseOp::UpsampleNearest2x,
        ElementwiseOp::Concat,
        ElementwiseOp::TimestepEmbedding,
    ];

    /// The entry-point stem.
    pub fn name(self) -> &'static str {
        match self {
            ElementwiseOp::Gelu => "gelu",
            ElementwiseOp::Silu => "silu",
            ElementwiseOp::Affine => "affine",
            ElementwiseOp::Geglu => "geglu",
            ElementwiseOp::Add => "add",
            ElementwiseOp::Mul => "mul",
            ElementwiseOp::UpsampleNearest2x => "upsample_nearest2x",
            ElementwiseOp::Concat => "concat",
            ElementwiseOp::TimestepEmbedding => "timestep_embedding",
        }
    }
}

/// A type a cast reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CastType {
    /// `float`.
    F32,
    /// `__nv_bfloat16`.
    BF16,
    /// `__half`.
    F16,
}

impl CastType {
    /// Every cast type.
    pub const ALL: [CastType; 3] = [CastType::F32, CastType::BF16, CastType::F16];

    /// The name in entry points.
    pub fn suffix(self) -> &'static str {
        match self {
            CastType::F32 => "f32",
            CastType::BF16 => "bf16",
            CastType::F16 => "f16",
        }
    }
}

/// An entry point of `elementwise.cu`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ElementwiseKernel {
    /// `<op>_<dtype>`.
    Op {
        /// The op.
        op: ElementwiseOp,
        /// Its storage type.
        dtype: KernelDType,
    },
    /// `cast_<from>_to_<to>`.
    Cast {
        /// Source type.
        from: CastType,
        /// Destination type (differs from `from`).
        to: CastType,
    },
    /// `permute_<width>` (gather) or `permute_tiled_<width>` (shared-memory transpose).
    Permute {
        /// Element width copied.
        width: PermuteWidth,
        /// The tiled kernel.
        tiled: bool,
    },
}

impl ElementwiseKernel {
    /// The entry-point name, e.g. `geglu_bf16` or `cast_f32_to_f16`.
    pub fn entry(&self) -> String {
        match self {
            ElementwiseKernel::Op { op, dtype } => format!("{}_{}", op.name(), dtype.suffix()),
            ElementwiseKernel::Cast { from, to } => format!("cast_{}_to_{}", from.suffix(), to.suffix()),
            ElementwiseKernel::Permute { width, tiled } => {
                format!("permute_{}{}", if *tiled { "tiled_" } else { "" }, width.suffix())
            }
        }
    }

    /// Every instantiated entry.
    pub fn all() -> Vec<Self> {
        let ops = KernelDType::ALL
            .iter()
            .flat_map(|&dtype| ElementwiseOp::ALL.map(|op| ElementwiseKernel::Op { op, dtype }));
        let casts = CastType::ALL.iter().flat_map(|&from| {
            CastType::ALL
                .into_iter()
                .filter(move |&to| to != from)
                .map(move |to| ElementwiseKernel::Cast { from, to })
        });
        let permutes = PermuteWidth::ALL
            .iter()
            .flat_map(|&width| [false, true].map(|tiled| ElementwiseKernel::Permute { width, tiled }));
        ops.chain(casts).chain(permutes).collect()
    }
}

/// A storage type casts read or write.
pub trait CastElem: DeviceRepr + Copy + Unpin + 'static {
    /// Its [`CastType`].
    const CAST: CastType;
}

impl CastElem for f32 {
    const CAST: CastType = CastType::F32;
}
impl CastElem for half::bf16 {
    const CAST: CastType = CastType::BF16;
}
impl CastElem for half::f16 {
    const CAST: CastType = CastType::F16;
}

/// One-dimensional launch of `work` threads.
fn cfg_1d(kernel: &'static str, work: usize) -> Result<LaunchConfig, LaunchError> {
    Ok(LaunchConfig {
        grid_dim: (blocks_for(kernel, work, EW_THREADS)?, 1, 1),
        block_dim: (EW_THREADS as u32, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// `y = op(x)` over `x.len()` elements; `extra` are the op's scalars (affine's mul, add).
fn unary<T: KernelElem>(
    kernel: &'static str,
    stream: &CudaStream,
    func: &CudaFunction,
    x: &CudaView<'_, T>,
    y: &mut CudaViewMut<'_, T>,
    extra: &[f32],
) -> Result<(), LaunchError> {
    let n = x.len();
    check_len(kernel, "y", y.len(), n)?;
    if n == 0 {
        return Ok(());
    }
    let vec: usize = if aligned16(stream, x) && aligned16(stream, y) { 8 } else { 1 };
    let (n_u, vec_i) = (n as u64, vec as i32);
    let mut b = stream.launch_builder(func);
    b.arg(x).arg(y).arg(&n_u);
    for v in extra {
        b.arg(v);
    }
    b.arg(&vec_i);
    // SAFETY: (x, y, n, [scalars], vec) is the signature of gelu/silu/affine_<dtype>; y holds n.
    unsafe { b.launch(cfg_1d(kernel, n.div_ceil(vec))?) }.map_err(LaunchError::driver(kernel))?;
    Ok(())
}

/// `y = gelu(x)` (erf form), element-wise; `func` is `gelu_<dtype>`.
pub fn launch_gelu<T: KernelElem>(
    stream: &CudaStream,
    func: &CudaFunction,
    x: &CudaView<'_, T>,
    y: &mut CudaViewMut<'_, T>,
) -> Result<(), LaunchError> {
    unary("gelu", stream, func, x, y, &[])
}

/// `y = silu(x)`, element-wise; `func` is `silu_<dtype>`.
pub fn launch_silu<T: KernelElem>(
    stream: &CudaStream,
    func: &CudaFunction,
    x: &CudaView<'_, T>,
    y: &mut CudaViewMut<'_, T>,
) -> Result<(), LaunchError> {
    unary("silu", stream, func, x, y, &[])
}

/// `y = x * mul + add`, element-wise; `func` is `affine_<dtype>`.
pub fn launch_affine<T: KernelElem>(
    stream: &CudaStream,
    func: &CudaFunction,
    x: &CudaView<'_, T>,
    y: &mut CudaViewMut<'_, T>,
    mul: f32,
    add: f32,
) -> Result<(), LaunchError> {
    unary("affine", stream, func, x, y, &[mul, add])
}

/// GEGLU: `x [rows, 2 * hidden]` -> `y [rows, hidden]`, `y = x[.., :hidden] * gelu(x[.., hidden:])`;
/// `func` is `geglu_<dtype>`.
pub fn launch_geglu<T: KernelElem>(
    stream: &CudaStream,
    func: &CudaFunction,
    x: &CudaView<'_, T>,
    y: &mut CudaViewMut<'_, T>,
    rows: usize,
    hidden: usize,
) -> Result<(), LaunchError> {
    const K: &str = "geglu";
    check_len(K, "x", x.len(), rows * 2 * hidden)?;
    check_len(K, "y", y.len(), rows * hidden)?;
    if rows * hidden == 0 {
        return Ok(());
    }
    let vec = if hidden % 8 == 0 && aligned16(stream, x) && aligned16(stream, y) { 8 } else { 1 };
    let (rows_u, h_u, vec_i) = (rows as u64, hidden as u64, vec as i32);
    let mut b = stream.launch_builder(func);
    b.arg(x).arg(y).arg(&rows_u).arg(&h_u).arg(&vec_i);
    // SAFETY: matches geglu_<dtype>(x, y, rows, h, vec); sizes checked above.
    unsafe { b.launch(cfg_1d(K, rows * hidden / vec)?) }.map_err(LaunchError::driver(K))?;
    Ok(())
}

/// `out = a op b` with numpy broadcasting of `a_dims` and `b_dims` (`out` has the broadcast
/// shape); `func` is `add_<dtype>` or `mul_<dtype>`.
pub fn launch_binary<T: KernelElem>(
    stream: &CudaStream,
    func: &CudaFunction,
    (a, a_dims): (&CudaView<'_, T>, &[usize]),
    (b, b_dims): (&CudaView<'_, T>, &[usize]),
    out: &mut CudaViewMut<'_, T>,
) -> Result<(), LaunchError> {
    const K: &str = "add/mul";
    let (plan, n) = BroadcastPlan::new(a_dims, b_dims).map_err(|m| LaunchError::unsupported(K, m))?;
    check_len(K, "a", a.len(), a_dims.iter().product())?;
    check_len(K, "b", b.len(), b_dims.iter().product())?;
    check_len(K, "out", out.len(), n)?;
    if n == 0 {
        return Ok(());
    }
    let vec = if plan.inner_size() % 8 == 0
        && aligned16(stream, a)
        && aligned16(stream, b)
        && aligned16(stream, out)
    {
        8
    } else {
        1
    };
    let (n_u, vec_i) = (n as u64, vec as i32);
    let mut l = stream.launch_builder(func);
    l.arg(a).arg(b).arg(out).arg(&plan).arg(&n_u).arg(&vec_i);
    // SAFETY: matches add/mul_<dtype>(a, b, out, Bcast, n, vec); the plan's offsets stay within
    // a and b (their shapes were checked against their lengths), out holds n.
    unsafe { l.launch(cfg_1d(K, n / vec)?) }.map_err(LaunchError::driver(K))?;
    Ok(())
}

/// Nearest 2x upsampling `x [n, h, w, c]` -> `y [n, 2h, 2w, c]`; `func` is
/// `upsample_nearest2x_<dtype>`.
pub fn launch_upsample_nearest2x<T: KernelElem>(
    stream: &CudaStream,
    func: &CudaFunction,
    x: &CudaView<'_, T>,
    y: &mut CudaViewMut<'_, T>,
    [n, h, w, c]: [usize; 4],
) -> Result<(), LaunchError> {
    const K: &str = "upsample_nearest2x";
    check_len(K, "x", x.len(), n * h * w * c)?;
    check_len(K, "y", y.len(), n * 4 * h * w * c)?;
    if n * h * w * c == 0 {
        return Ok(());
    }
    let vec = if c % 8 == 0 && aligned16(stream, x) && aligned16(stream, y) { 8 } else { 1 };
    let dims = [n as u64, h as u64, w as u64, c as u64];
    let vec_i = vec as i32;
    let mut b = stream.launch_builder(func);
    b.arg(x).arg(y).arg(&dims[0]).arg(&dims[1]).arg(&dims[2]).arg(&dims[3]).arg(&vec_i);
    // SAFETY: matches upsample_nearest2x_<dtype>(x, y, N, H, W, C, vec); sizes checked above.
    unsafe { b.launch(cfg_1d(K, n * h * w * c / vec)?) }.map_err(LaunchError::driver(K))?;
    Ok(())
}

/// Concatenation of `a [outer, a_block]` and `b [outer, b_block]` into `out [outer, a_block +
/// b_block]`: along dimension `d` of two tensors, `outer` is the product of the dimensions
/// before `d` and each block is its size along `d` times the product of those after.
/// `func` is `concat_<dtype>`.
pub fn launch_concat<T: KernelElem>(
    stream: &CudaStream,
    func: &CudaFunction,
    a: &CudaView<'_, T>,
    b: &CudaView<'_, T>,
    out: &mut CudaViewMut<'_, T>,
    (outer, a_block, b_block): (usize, usize, usize),
) -> Result<(), LaunchError> {
    const K: &str = "concat";
    check_len(K, "a", a.len(), outer * a_block)?;
    check_len(K, "b", b.len(), outer * b_block)?;
    let total = outer * (a_block + b_block);
    check_len(K, "out", out.len(), total)?;
    if total == 0 {
        return Ok(());
    }
    let vec = if a_block % 8 == 0
        && b_block % 8 == 0
        && aligned16(stream, a)
        && aligned16(stream, b)
        && aligned16(stream, out)
    {
        8
    } else {
        1
    };
    let (o_u, ab_u, bb_u, vec_i) = (outer as u64, a_block as u64, b_block as u64, vec as i32);
    let mut l = stream.launch_builder(func);
    l.arg(a).arg(b).arg(out).arg(&o_u).arg(&ab_u).arg(&bb_u).arg(&vec_i);
    // SAFETY: matches concat_<dtype>(a, b, out, outer, ab, bb, vec); sizes checked above.
    unsafe { l.launch(cfg_1d(K, total / vec)?) }.map_err(LaunchError::driver(K))?;
    Ok(())
}

/// Settings of [`launch_timestep_embedding`], as diffusers' `get_timestep_embedding`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimestepParams {
    /// `[cos, sin]` instead of `[sin, cos]`.
    pub flip_sin_to_cos: bool,
    /// Frequencies are `max_period^(-i / (dim/2 - downscale_freq_shift))`.
    pub downscale_freq_shift: f32,
    /// The longest period.
    pub max_period: u32,
}

/// Sinusoidal embeddings of `timesteps [n]` (f32) into `out [n, dim]`; `func` is
/// `timestep_embedding_<dtype>`. Matches the CPU reference (frequencies and `t * f` in f32,
/// sin/cos in f64).
pub fn launch_timestep_embedding<T: KernelElem>(
    stream: &CudaStream,
    func: &CudaFunction,
    timesteps: &CudaView<'_, f32>,
    out: &mut CudaViewMut<'_, T>,
    dim: usize,
    p: TimestepParams,
) -> Result<(), LaunchError> {
    const K: &str = "timestep_embedding";
    let n = timesteps.len();
    check_len(K, "out", out.len(), n * dim)?;
    if n * dim == 0 {
        return Ok(());
    }
    // The same f32 values as the CPU reference: ln(max_period) rounded from f64, and
    // half - shift in f32.
    let log_period = (p.max_period as f64).ln() as f32;
    let denom = (dim / 2) as f32 - p.downscale_freq_shift;
    let (n_u, dim_u, flip) = (n as u64, dim as u64, p.flip_sin_to_cos as i32);
    let mut b = stream.launch_builder(func);
    b.arg(timesteps).arg(out).arg(&n_u).arg(&dim_u).arg(&log_period).arg(&denom).arg(&flip);
    // SAFETY: matches timestep_embedding_<dtype>(t, out, n, dim, log_period, denom, flip).
    unsafe { b.launch(cfg_1d(K, n * dim)?) }.map_err(LaunchError::driver(K))?;
    Ok(())
}

/// `y = x` converted (round to nearest even); `func` is `cast_<S>_to_<D>` (S != D).
pub fn launch_cast<S: CastElem, D: CastElem>(
    stream: &CudaStream,
    func: &CudaFunction,
    x: &CudaView<'_, S>,
    y: &mut CudaViewMut<'_, D>,
) -> Result<(), LaunchError> {
    const K: &str = "cast";
    if S::CAST == D::CAST {
        return Err(LaunchError::unsupported(K, format!("no cast from {:?} to itself", S::CAST)));
    }
    let n = x.len();
    check_len(K, "y", y.len(), n)?;
    if n == 0 {
        return Ok(());
    }
    let vec = if aligned16(stream, x) && aligned16(stream, y) { 4 } else { 1 };
    let (n_u, vec_i) = (n as u64, vec as i32);
    let mut b = stream.launch_builder(func);
    b.arg(x).arg(y).arg(&n_u).arg(&vec_i);
    // SAFETY: matches cast_<S>_to_<D>(x, y, n, vec); y holds n.
    unsafe { b.launch(cfg_1d(K, n.div_ceil(vec))?) }.map_err(LaunchError::driver(K))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names() {
        let all = ElementwiseKernel::all();
        assert_eq!(all.len(), 9 * 2 + 6 + 4);
        let names: Vec<String> = all.iter().map(|k| k.entry()).collect();
        for n in [
            "gelu_bf16",
            "geglu_f16",
            "upsample_nearest2x_bf16",
            "cast_f32_to_bf16",
            "cast_f16_to_bf16",
            "permute_b16",
            "permute_tiled_b32",
        ] {
            assert!(names.iter().any(|e| e == n), "{n} missing from {names:?}");
        }
    }
}
