//! The fused flash-attention forward kernels of `cuda/attention.cu`: the typed entry list
//! ([`AttentionKernel`]), their tile shapes ([`AttentionTile`], [`TILES`]) and the launcher
//! ([`launch_flash_attention`]).
//!
//! The kernel follows FlashAttention-2 (Dao, 2023): each block owns `block_m` query rows of one
//! (batch, head), walks the keys in tiles of `block_n` with an online softmax (running max and
//! sum in f32) and never materialises the score matrix. It reads q `[B, Lq, H, D]` and k, v
//! `[B, Lk, H, D]` and writes o `[B, Lq, H, D]`, all contiguous: the runtime's layout, no
//! permutes. `cuda/attention.cu` documents the algorithm, the fragment layouts and the index math.
//! With [`AttentionDims::causal`] query `i` sees keys `0..=i` only (CLIP's text encoders); the
//! kernel then masks the tiles crossing the diagonal and skips the key tiles past each block.

use cudarc::driver::{
    CudaFunction, CudaStream, DevicePtr, DevicePtrMut, DriverError, LaunchConfig, PushKernelArg,
    sys::{CUdevice_attribute, CUfunction_attribute},
};

use crate::KernelDType;
pub use crate::launch::KernelElem;
use crate::launch::LaunchError;

/// Tile shape of one head-dim instantiation.
///
/// This is the single Rust copy of the `KILN_ATTN_TILE(D, WM, NW, BN)` table in
/// `cuda/attention.cu`; a unit test parses that table and fails if the two differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AttentionTile {
    /// Head dimension `D` this tile is for.
    pub head_dim: usize,
    /// m16 tiles (16 query rows each) per warp (`WM`).
    pub m_tiles_per_warp: usize,
    /// Warps per block (`NW`).
    pub warps: usize,
    /// Keys per K/V tile (`BN`).
    pub block_n: usize,
}

/// Every instantiated head dim and its tile, in entry order (mirrors `KILN_ATTN_TILE`).
pub const TILES: [AttentionTile; 5] = [
    AttentionTile { head_dim: 40, m_tiles_per_warp: 2, warps: 4, block_n: 64 },
    AttentionTile { head_dim: 64, m_tiles_per_warp: 2, warps: 4, block_n: 64 },
    AttentionTile { head_dim: 80, m_tiles_per_warp: 2, warps: 4, block_n: 32 },
    AttentionTile { head_dim: 128, m_tiles_per_warp: 1, warps: 8, block_n: 64 },
    AttentionTile { head_dim: 160, m_tiles_per_warp: 1, warps: 4, block_n: 32 },
];

/// Bytes of one stored element (bf16 and f16 alike).
const ELEM_BYTES: usize = 2;
/// Shared memory a block may use without opting in.
const DEFAULT_SHARED_LIMIT: usize = 48 * 1024;
/// Global memory alignment the kernel's 16-byte `cp.async` copies need.
const ALIGN: u64 = 16;

impl AttentionTile {
    /// Head dim padded to the mma k step (16): 40 -> 48, others unchanged.
    pub const fn padded_head_dim(&self) -> usize {
        self.head_dim.div_ceil(16) * 16
    }

    /// Query rows per block: `16 * m_tiles_per_warp * warps`.
    pub const fn block_m(&self) -> usize {
        16 * self.m_tiles_per_warp * self.warps
    }

    /// Threads per block.
    pub const fn threads(&self) -> usize {
        32 * self.warps
    }

    /// Dynamic shared memory per block: Q `[block_m]` rows plus two stages of K and V
    /// `[block_n]` rows, each row `padded_head_dim + 8` elements (the 8 avoid bank conflicts).
    pub const fn shared_bytes(&self) -> usize {
        (self.block_m() + 4 * self.block_n) * (self.padded_head_dim() + 8) * ELEM_BYTES
    }
}

/// One attention entry point: `flash_attention_<dtype>_d<head_dim>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AttentionKernel {
    /// Storage type of q, k, v and o.
    pub dtype: KernelDType,
    /// Head dimension `D`; one of [`AttentionKernel::HEAD_DIMS`].
    pub head_dim: usize,
}

impl AttentionKernel {
    /// Head dims with a kernel: SD 1.5 uses 40, 80, 160 (8 heads), SDXL 64; 128 is common elsewhere.
    pub const HEAD_DIMS: [usize; 5] = [40, 64, 80, 128, 160];

    /// The entry point's name in the compiled module.
    pub fn entry(&self) -> String {
        format!("flash_attention_{}_d{}", self.dtype.suffix(), self.head_dim)
    }

    /// Every instantiated entry: both dtypes times [`Self::HEAD_DIMS`].
    pub fn all() -> Vec<Self> {
        KernelDType::ALL
            .iter()
            .flat_map(|&dtype| Self::HEAD_DIMS.iter().map(move |&head_dim| Self { dtype, head_dim }))
            .collect()
    }

    /// The kernel for `head_dim`, or `None` where none is instantiated.
    pub fn for_head_dim(dtype: KernelDType, head_dim: usize) -> Option<Self> {
        Self::HEAD_DIMS.contains(&head_dim).then_some(Self { dtype, head_dim })
    }

    /// This kernel's tile shape.
    pub fn tile(&self) -> AttentionTile {
        *TILES
            .iter()
            .find(|t| t.head_dim == self.head_dim)
            .expect("every AttentionKernel head dim has a tile (constructed through for_head_dim or all)")
    }
}

/// Sizes of one attention: q and o `[batch, len_q, heads, head_dim]`, k and v
/// `[batch, len_k, heads, head_dim]`; `scale` multiplies `q . k` (usually `1 / sqrt(head_dim)`);
/// `causal` masks keys after the query (needs `len_q == len_k`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionDims {
    /// Batch `B`.
    pub batch: usize,
    /// Heads `H`.
    pub heads: usize,
    /// Query tokens `Lq`.
    pub len_q: usize,
    /// Key and value tokens `Lk` (at least 1).
    pub len_k: usize,
    /// Head dimension `D`.
    pub head_dim: usize,
    /// Score scale.
    pub scale: f32,
    /// Query `i` attends to keys `0..=i` only (a causal mask, as CLIP's text transformer).
    pub causal: bool,
}

impl AttentionDims {
    /// Elements of q and o.
    pub fn q_len(&self) -> Option<usize> {
        self.batch.checked_mul(self.len_q)?.checked_mul(self.heads)?.checked_mul(self.head_dim)
    }

    /// Elements of k and v.
    pub fn kv_len(&self) -> Option<usize> {
        self.batch.checked_mul(self.len_k)?.checked_mul(self.heads)?.checked_mul(self.head_dim)
    }

    /// Floating-point operations of the two matrix products, `4 * B * H * Lq * Lk * D` (the
    /// count FlashAttention papers report TFLOP/s against; softmax not included), halved when
    /// causal (only the products below the diagonal are needed).
    pub fn flops(&self) -> f64 {
        let full = 4.0
            * self.batch as f64
            * self.heads as f64
            * self.len_q as f64
            * self.len_k as f64
            * self.head_dim as f64;
        if self.causal { full / 2.0 } else { full }
    }
}

/// Why [`launch_flash_attention`] did not launch, or the driver's error when it did.
#[derive(Debug, thiserror::Error)]
pub enum AttentionError {
    /// No kernel for this head dim.
    #[error(
        "flash attention ({dtype}): head dim {head_dim} has no kernel (have {:?})",
        AttentionKernel::HEAD_DIMS
    )]
    UnsupportedHeadDim {
        /// Storage type asked for.
        dtype: KernelDType,
        /// Head dim asked for.
        head_dim: usize,
    },
    /// `len_k == 0`: a softmax over no keys is undefined.
    #[error("flash attention: no keys (len_k = 0) in {dims:?}")]
    NoKeys {
        /// The dims passed.
        dims: AttentionDims,
    },
    /// A causal mask with `len_q != len_k` (the mask is defined for self-attention only).
    #[error("flash attention: a causal mask needs len_q == len_k, got {dims:?}")]
    CausalLengths {
        /// The dims passed.
        dims: AttentionDims,
    },
    /// A size is beyond what the kernel's 32-bit indices or the grid can take.
    #[error("flash attention: {what} in {dims:?}")]
    TooLarge {
        /// Which limit.
        what: &'static str,
        /// The dims passed.
        dims: AttentionDims,
    },
    /// A buffer holds fewer elements than the dims need.
    #[error("flash attention: {name} holds {len} elements, {dims:?} needs {needed}")]
    BufferTooSmall {
        /// `q`, `k`, `v` or `o`.
        name: &'static str,
        /// Elements in the buffer.
        len: usize,
        /// Elements needed.
        needed: usize,
        /// The dims passed.
        dims: AttentionDims,
    },
    /// A buffer's device address is not 16-byte aligned (the kernel copies 16-byte chunks).
    #[error("flash attention: {name} at device address {ptr:#x} is not 16-byte aligned")]
    Misaligned {
        /// `q`, `k`, `v` or `o`.
        name: &'static str,
        /// Its device address.
        ptr: u64,
    },
    /// The device cannot give a block the shared memory the tile needs.
    #[error(
        "flash attention {entry}: needs {needed} bytes of shared memory per block, the device allows {available}"
    )]
    SharedMemory {
        /// Entry point name.
        entry: String,
        /// Bytes the tile needs.
        needed: usize,
        /// Bytes the device allows per block (opt-in limit).
        available: usize,
    },
    /// The CUDA driver failed.
    #[error("flash attention: CUDA driver error: {0}")]
    Driver(#[from] DriverError),
}

impl From<AttentionError> for LaunchError {
    /// The crate-wide launcher error, for callers that handle every family alike.
    fn from(e: AttentionError) -> Self {
        match e {
            AttentionError::Driver(source) => LaunchError::Driver { kernel: "flash_attention", source },
            other => LaunchError::Unsupported { kernel: "flash_attention", message: other.to_string() },
        }
    }
}

/// Launch configuration for `dims` with `tile`: grid `(ceil(len_q / block_m), heads, batch)`,
/// `threads` per block, `shared_bytes` of dynamic shared memory. `None` for an empty output.
pub fn launch_config(tile: AttentionTile, dims: &AttentionDims) -> Option<LaunchConfig> {
    if dims.batch == 0 || dims.heads == 0 || dims.len_q == 0 {
        return None;
    }
    Some(LaunchConfig {
        grid_dim: (dims.len_q.div_ceil(tile.block_m()) as u32, dims.heads as u32, dims.batch as u32),
        block_dim: (tile.threads() as u32, 1, 1),
        shared_mem_bytes: tile.shared_bytes() as u32,
    })
}

/// Checks `dims` against what the kernel handles, before any device call.
pub fn validate(dtype: KernelDType, dims: &AttentionDims) -> Result<AttentionKernel, AttentionError> {
    let kernel = AttentionKernel::for_head_dim(dtype, dims.head_dim)
        .ok_or(AttentionError::UnsupportedHeadDim { dtype, head_dim: dims.head_dim })?;
    let too_large = |what| AttentionError::TooLarge { what, dims: *dims };
    if dims.len_k == 0 {
        return Err(AttentionError::NoKeys { dims: *dims });
    }
    if dims.causal && dims.len_q != dims.len_k {
        return Err(AttentionError::CausalLengths { dims: *dims });
    }
    // Row indices are 32-bit in the kernel and may run a tile past the length.
    let max_len = (i32::MAX as usize) - 1024;
    if dims.len_q > max_len || dims.len_k > max_len {
        return Err(too_large("len_q and len_k must stay below 2^31 - 1024"));
    }
    if dims.heads > 65_535 {
        return Err(too_large("heads is grid y, at most 65535"));
    }
    if dims.batch > 65_535 {
        return Err(too_large("batch is grid z, at most 65535"));
    }
    dims.q_len().ok_or_else(|| too_large("q elements overflow usize"))?;
    dims.kv_len().ok_or_else(|| too_large("k elements overflow usize"))?;
    if !dims.scale.is_finite() {
        return Err(too_large("scale must be finite"));
    }
    Ok(kernel)
}

/// Launches `flash_attention_<T>_d<D>` on `stream`: `o = softmax(scale * q k^T) v` per batch
/// and head, with q, o `[B, Lq, H, D]` and k, v `[B, Lk, H, D]` contiguous; with
/// `dims.causal`, query `i` sees keys `0..=i` only.
///
/// `func` must be the entry named by `AttentionKernel { dtype: T::DTYPE, head_dim }.entry()`
/// loaded from the compiled attention module. Grid, block and shared memory come from
/// [`TILES`]; the function's dynamic shared-memory limit is raised when the tile needs more
/// than 48 KB. Bad dims, short or misaligned buffers give an [`AttentionError`] and nothing
/// is launched; an empty output (`B`, `H` or `Lq` zero) launches nothing and returns `Ok`.
pub fn launch_flash_attention<T: KernelElem>(
    stream: &CudaStream,
    func: &CudaFunction,
    q: &impl DevicePtr<T>,
    k: &impl DevicePtr<T>,
    v: &impl DevicePtr<T>,
    o: &mut impl DevicePtrMut<T>,
    dims: AttentionDims,
) -> Result<(), AttentionError> {
    let kernel = validate(T::DTYPE, &dims)?;
    let tile = kernel.tile();
    let (q_len, kv_len) = (dims.q_len().unwrap_or(usize::MAX), dims.kv_len().unwrap_or(usize::MAX));
    for (name, len, needed) in
        [("q", q.len(), q_len), ("k", k.len(), kv_len), ("v", v.len(), kv_len), ("o", o.len(), q_len)]
    {
        if len < needed {
            return Err(AttentionError::BufferTooSmall { name, len, needed, dims });
        }
    }
    let Some(cfg) = launch_config(tile, &dims) else {
        return Ok(());
    };

    let shared = tile.shared_bytes();
    if shared > DEFAULT_SHARED_LIMIT {
        let available = stream
            .context()
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?
            as usize;
        if shared > available {
            return Err(AttentionError::SharedMemory { entry: kernel.entry(), needed: shared, available });
        }
        func.set_attribute(
            CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            shared as i32,
        )?;
    }

    // The guards order this launch after earlier writes of the inputs (and reads and writes
    // of the output) and record it; they must live until the launch is queued.
    let (q_ptr, _q_guard) = q.device_ptr(stream);
    let (k_ptr, _k_guard) = k.device_ptr(stream);
    let (v_ptr, _v_guard) = v.device_ptr(stream);
    let (o_ptr, _o_guard) = o.device_ptr_mut(stream);
    for (name, ptr) in [("q", q_ptr), ("k", k_ptr), ("v", v_ptr), ("o", o_ptr)] {
        if ptr % ALIGN != 0 {
            return Err(AttentionError::Misaligned { name, ptr });
        }
    }
    // validate() bounded every size below i32::MAX.
    let (batch, heads, len_q, len_k) =
        (dims.batch as i32, dims.heads as i32, dims.len_q as i32, dims.len_k as i32);
    let causal = dims.causal as i32;
    let mut launch = stream.launch_builder(func);
    launch.arg(&q_ptr).arg(&k_ptr).arg(&v_ptr).arg(&o_ptr);
    launch.arg(&batch).arg(&heads).arg(&len_q).arg(&len_k).arg(&dims.scale).arg(&causal);
    // SAFETY: the argument list matches the entry's signature (4 device pointers, 4 ints, one
    // float, one int); every buffer holds at least the elements the grid touches (checked above), and
    // the kernel never reads or writes past row len_q / len_k or column head_dim.
    unsafe { launch.launch(cfg) }?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Family;

    /// The Rust tile table equals the `KILN_ATTN_TILE` lines of attention.cu.
    #[test]
    fn tiles_mirror_the_cuda_table() {
        let parsed: Vec<AttentionTile> = Family::Attention
            .source()
            .lines()
            .filter_map(|l| l.strip_prefix("KILN_ATTN_TILE(")?.strip_suffix(')'))
            .map(|args| {
                let n: Vec<usize> =
                    args.split(',').map(|a| a.trim().parse().expect("integer tile arg")).collect();
                AttentionTile { head_dim: n[0], m_tiles_per_warp: n[1], warps: n[2], block_n: n[3] }
            })
            .collect();
        assert_eq!(parsed, TILES.to_vec());
    }

    /// Every entry of all() is instantiated in the source (the compiled-module check lives in
    /// the infra test; this one runs without NVRTC).
    #[test]
    fn every_entry_is_instantiated() {
        let src = Family::Attention.source();
        for k in AttentionKernel::all() {
            let ty = match k.dtype {
                KernelDType::BF16 => "__nv_bfloat16",
                KernelDType::F16 => "__half",
            };
            let line = format!("KILN_ATTN_ENTRY({}, {ty}, {})", k.dtype.suffix(), k.head_dim);
            assert!(src.lines().any(|l| l == line), "{} missing: no line {line}", k.entry());
        }
        assert_eq!(AttentionKernel::all().len(), 10);
        assert_eq!(AttentionKernel::all()[0].entry(), "flash_attention_bf16_d40");
    }

    #[test]
    fn tile_geometry() {
        let t = AttentionKernel::for_head_dim(KernelDType::BF16, 64).unwrap().tile();
        assert_eq!((t.block_m(), t.threads(), t.padded_head_dim()), (128, 128, 64));
        assert_eq!(t.shared_bytes(), (128 + 256) * 72 * 2);
        let t40 = AttentionKernel::for_head_dim(KernelDType::F16, 40).unwrap().tile();
        assert_eq!(t40.padded_head_dim(), 48);
        // Every tile fits the smallest opt-in limit of the targets (sm_80: 163 KB).
        assert!(TILES.iter().all(|t| t.shared_bytes() <= 163 * 1024));
        assert!(AttentionKernel::for_head_dim(KernelDType::BF16, 96).is_none());
    }

    #[test]
    fn launch_config_covers_the_queries() {
        let dims = AttentionDims {
            batch: 2,
            heads: 10,
            len_q: 4097,
            len_k: 77,
            head_dim: 64,
            scale: 0.125,
            causal: false,
        };
        let cfg = launch_config(TILES[1], &dims).unwrap();
        assert_eq!(cfg.grid_dim, (33, 10, 2));
        assert_eq!(cfg.block_dim, (128, 1, 1));
        assert!(launch_config(TILES[1], &AttentionDims { len_q: 0, ..dims }).is_none());
    }

    #[test]
    fn validation_refuses_bad_dims() {
        let ok = AttentionDims {
            batch: 1,
            heads: 8,
            len_q: 10,
            len_k: 77,
            head_dim: 40,
            scale: 0.1,
            causal: false,
        };
        assert!(validate(KernelDType::BF16, &ok).is_ok());
        assert!(validate(KernelDType::BF16, &AttentionDims { len_q: 77, causal: true, ..ok }).is_ok());
        let cases = [
            AttentionDims { head_dim: 72, ..ok },
            AttentionDims { len_k: 0, ..ok },
            AttentionDims { heads: 70_000, ..ok },
            AttentionDims { len_q: 1 << 31, ..ok },
            AttentionDims { scale: f32::NAN, ..ok },
            AttentionDims { causal: true, ..ok },
        ];
        for d in cases {
            let err = validate(KernelDType::F16, &d).unwrap_err();
            assert!(!err.to_string().is_empty());
        }
    }
}
