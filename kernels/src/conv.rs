//! The conv kernels: typed entry list and launchers.
//!
//! `cuda/conv.cu` computes a 2-d convolution of NHWC activations `x [N, H, W, Cin]` with OHWI
//! weights `w [Cout, KH, KW, Cin]` into `y [N, Ho, Wo, Cout]` as an implicit GEMM on the tensor
//! cores (`mma.sync.m16n8k16`, f32 accumulation): `M = N*Ho*Wo` output pixels by `Cout` channels
//! over `K = KH*KW*Cin`, with the input patches gathered into shared memory on the fly and the bias
//! and an optional residual (same shape as `y`) added in the epilogue, as in the CPU backend's
//! `conv2d` (then `+ residual`).
//!
//! Three variants per storage type ([`ConvVariant`]):
//! - [`ConvVariant::Tiled128x128`], [`ConvVariant::Tiled128x128K64`], [`ConvVariant::Tiled256x128`]
//!   and [`ConvVariant::Tiled128x64`]:
//!   16-byte `cp.async` gathers through a 3- or 4-stage pipeline; need `Cin % 8 == 0` (any `Cout`: paired
//!   stores when it is even, scalar ones otherwise);
//! - [`ConvVariant::Generic`]: any channel counts (SD's first conv with 4 or 9 channels, the VAE's
//!   3-channel ends), scalar guarded loads, slower.
//!
//! [`ConvKernel::select`] picks one for a shape; [`launch_conv2d`] validates and launches.

use std::fmt;

use cudarc::driver::sys::CUfunction_attribute;
use cudarc::driver::{
    CudaFunction, CudaStream, CudaView, CudaViewMut, DevicePtr, DriverError, LaunchConfig, PushKernelArg,
};

use crate::KernelDType;
use crate::launch::{KernelElem, LaunchError};

/// Threads per CTA of every conv entry (8 warps); `THREADS` in `conv.cu`.
pub const CONV_THREADS: u32 = 256;

/// Shared memory a kernel may use without opting in.
const DEFAULT_SMEM_LIMIT: usize = 48 * 1024;

/// One CTA's tile of the implicit GEMM, mirrored from the `KILN_CONV_ENTRY` lines and the
/// `BK`/`LDS` constants of `cuda/conv.cu` (keep both in step).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTile {
    /// Output pixels per CTA (GEMM rows).
    pub bm: usize,
    /// Output channels per CTA (GEMM columns).
    pub bn: usize,
    /// K extent of one pipeline stage (`BK`).
    pub bk: usize,
    /// Shared-memory row pitch in elements (`LDS = BK + 8`, padding against bank conflicts).
    pub lds: usize,
    /// Pipeline stages held in shared memory.
    pub stages: usize,
}

impl ConvTile {
    /// Dynamic shared memory per CTA in bytes: `stages * (bm + bn) * lds` 2-byte elements.
    pub fn shared_mem_bytes(&self) -> usize {
        self.stages * (self.bm + self.bn) * self.lds * 2
    }
}

/// The kernel variants of `conv.cu`, each instantiated for bf16 and f16.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvVariant {
    /// CTA tile 128x128x32, 8 warps of 64x32, 4 stages of `cp.async`; `Cin % 8 == 0`.
    Tiled128x128,
    /// CTA tile 128x128x64, 8 warps of 64x32, 3 stages (108 KB of shared memory); `Cin % 8 == 0`.
    Tiled128x128K64,
    /// CTA tile 256x128x32, 8 warps of 64x64, 4 stages (120 KB of shared memory, one CTA per SM);
    /// `Cin % 8 == 0`. Fewer shared-memory reads per mma, but 4x fewer CTAs than 128x64.
    Tiled256x128,
    /// CTA tile 128x64x32, 8 warps of 32x32, 4 stages; `Cin % 8 == 0`.
    Tiled128x64,
    /// CTA tile 128x64x32, scalar guarded loads, 2 stages; any `Cin` and `Cout`.
    Generic,
}

impl ConvVariant {
    /// Every variant, in table order.
    pub const ALL: [ConvVariant; 5] = [
        ConvVariant::Tiled128x128,
        ConvVariant::Tiled128x128K64,
        ConvVariant::Tiled256x128,
        ConvVariant::Tiled128x64,
        ConvVariant::Generic,
    ];

    /// The suffix of the entry point (`tiled_128x128`, `tiled_128x64`, `generic`).
    pub fn suffix(self) -> &'static str {
        match self {
            ConvVariant::Tiled128x128 => "tiled_128x128",
            ConvVariant::Tiled128x128K64 => "tiled_128x128_k64",
            ConvVariant::Tiled256x128 => "tiled_256x128",
            ConvVariant::Tiled128x64 => "tiled_128x64",
            ConvVariant::Generic => "generic",
        }
    }

    /// The compile-time tile of this variant (mirrors `conv.cu`).
    pub const fn tile(self) -> ConvTile {
        // Shared rows are padded by 8 elements (`Pitch<BK>::LDS` in conv.cu).
        const fn tile(bm: usize, bn: usize, bk: usize, stages: usize) -> ConvTile {
            ConvTile { bm, bn, bk, lds: bk + 8, stages }
        }
        match self {
            ConvVariant::Tiled128x128 => tile(128, 128, 32, 4),
            ConvVariant::Tiled128x128K64 => tile(128, 128, 64, 3),
            ConvVariant::Tiled256x128 => tile(256, 128, 32, 4),
            ConvVariant::Tiled128x64 => tile(128, 64, 32, 4),
            ConvVariant::Generic => tile(128, 64, 32, 2),
        }
    }

    /// Why this variant cannot run `dims`, if it cannot (the dims themselves are assumed valid).
    pub fn unsupported_reason(self, dims: &ConvDims) -> Option<String> {
        match self {
            ConvVariant::Generic => None,
            ConvVariant::Tiled128x128
            | ConvVariant::Tiled128x128K64
            | ConvVariant::Tiled256x128
            | ConvVariant::Tiled128x64 => {
                if dims.cin % 8 != 0 {
                    Some(format!("cin = {} is not a multiple of 8 (16-byte channel chunks)", dims.cin))
                } else {
                    None
                }
            }
        }
    }
}

impl fmt::Display for ConvVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.suffix())
    }
}

/// One instantiated conv entry point: `conv2d_<dtype>_<variant>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvKernel {
    /// Storage type of x, w, bias, residual and y.
    pub dtype: KernelDType,
    /// Tile shape and load path.
    pub variant: ConvVariant,
}

impl ConvKernel {
    /// The entry-point name in `conv.cu`.
    pub fn entry(&self) -> String {
        format!("conv2d_{}_{}", self.dtype.suffix(), self.variant.suffix())
    }

    /// Every instantiated entry.
    pub fn all() -> Vec<Self> {
        KernelDType::ALL
            .iter()
            .flat_map(|&dtype| ConvVariant::ALL.iter().map(move |&variant| ConvKernel { dtype, variant }))
            .collect()
    }

    /// The variant to use for `dims`: the 16-byte paths when `Cin % 8 == 0`, with the
    /// 128-wide N tile when `Cout` is a multiple of 128 (640, 1280, 128, 256, 512) and the 64-wide
    /// one otherwise (320 would waste a sixth of a 128 tile); the generic path for the rest.
    /// Which is faster for 320, and whether the K-64 tile beats the K-32 one, has not been
    /// measured: the `cuda_conv` bench times every variant.
    pub fn select(dtype: KernelDType, dims: &ConvDims) -> Self {
        let variant = if ConvVariant::Tiled128x128.unsupported_reason(dims).is_some() {
            ConvVariant::Generic
        } else if dims.cout % 128 == 0 {
            ConvVariant::Tiled128x128
        } else {
            ConvVariant::Tiled128x64
        };
        ConvKernel { dtype, variant }
    }
}

impl fmt::Display for ConvKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.entry())
    }
}

/// The sizes of one convolution. Padding is symmetric and the same on both axes, as is the stride.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvDims {
    /// Batch.
    pub n: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride, both axes.
    pub stride: usize,
    /// Zero padding on every side.
    pub pad: usize,
}

impl ConvDims {
    /// Output height `(h + 2*pad - kh) / stride + 1` (0 when the kernel does not fit).
    pub fn ho(&self) -> usize {
        out_len(self.h, self.pad, self.kh, self.stride)
    }

    /// Output width `(w + 2*pad - kw) / stride + 1` (0 when the kernel does not fit).
    pub fn wo(&self) -> usize {
        out_len(self.w, self.pad, self.kw, self.stride)
    }

    /// GEMM rows: output pixels `n * ho * wo`.
    pub fn gemm_m(&self) -> usize {
        self.n * self.ho() * self.wo()
    }

    /// GEMM depth: `kh * kw * cin`.
    pub fn gemm_k(&self) -> usize {
        self.kh * self.kw * self.cin
    }

    /// Elements of x, `[n, h, w, cin]`.
    pub fn input_len(&self) -> usize {
        self.n * self.h * self.w * self.cin
    }

    /// Elements of the weight, `[cout, kh, kw, cin]`.
    pub fn weight_len(&self) -> usize {
        self.cout * self.gemm_k()
    }

    /// Elements of y (and of the residual), `[n, ho, wo, cout]`.
    pub fn output_len(&self) -> usize {
        self.gemm_m() * self.cout
    }

    /// Multiply-add work counted as `2 * M * Cout * K` floating-point operations.
    pub fn flops(&self) -> f64 {
        2.0 * self.gemm_m() as f64 * self.cout as f64 * self.gemm_k() as f64
    }

    /// Checks what every variant needs: positive sizes, a kernel that fits the padded input, and
    /// every tensor under 2^31 elements (the kernels index in 32 bits).
    pub fn validate(&self) -> Result<(), String> {
        let ConvDims { n, h, w, cin, cout, kh, kw, stride, .. } = *self;
        if [n, h, w, cin, cout, kh, kw, stride].contains(&0) {
            return Err("every size and the stride must be positive".into());
        }
        if h + 2 * self.pad < kh || w + 2 * self.pad < kw {
            return Err("kernel larger than the padded input".into());
        }
        let limit = i32::MAX as usize;
        let lens =
            [("input", self.input_len()), ("weight", self.weight_len()), ("output", self.output_len())];
        for (name, len) in lens {
            if len > limit {
                return Err(format!("{name} has {len} elements, over the 32-bit index limit {limit}"));
            }
        }
        if self.pad > limit / 4 || stride > limit / 4 || h > limit / 4 || w > limit / 4 {
            return Err("padding, stride or image size beyond the 32-bit index range".into());
        }
        Ok(())
    }
}

fn out_len(len: usize, pad: usize, k: usize, stride: usize) -> usize {
    match (len + 2 * pad).checked_sub(k) {
        Some(span) if stride > 0 => span / stride + 1,
        _ => 0,
    }
}

impl fmt::Display for ConvDims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "x [{}, {}, {}, {}], w [{}, {}, {}, {}], stride {}, pad {}",
            self.n, self.h, self.w, self.cin, self.cout, self.kh, self.kw, self.cin, self.stride, self.pad
        )
    }
}

/// Why a conv launch was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ConvError {
    /// The sizes describe no convolution the kernels can run.
    #[error("conv2d: invalid dims ({dims}): {reason}")]
    InvalidDims {
        /// The sizes given.
        dims: ConvDims,
        /// What is wrong with them.
        reason: String,
    },
    /// The chosen kernel cannot run these sizes (use [`ConvKernel::select`]).
    #[error("conv2d: {kernel} cannot run {dims}: {reason}")]
    Unsupported {
        /// The kernel asked for.
        kernel: ConvKernel,
        /// The sizes given.
        dims: ConvDims,
        /// Which requirement fails.
        reason: String,
    },
    /// The element type of the buffers is not the kernel's.
    #[error("conv2d: kernel {kernel} given {given} buffers")]
    DType {
        /// The kernel asked for.
        kernel: ConvKernel,
        /// The buffers' type.
        given: KernelDType,
    },
    /// A buffer's length does not match the dims.
    #[error("conv2d: {name} has {got} elements, {dims} needs {expected}")]
    BufferLen {
        /// Which operand.
        name: &'static str,
        /// Elements the dims imply.
        expected: usize,
        /// Elements given.
        got: usize,
        /// The sizes given.
        dims: ConvDims,
    },
    /// A buffer is not aligned as the kernel's vector accesses need.
    #[error("conv2d: {name} at {ptr:#x} is not {align}-byte aligned, as {kernel} needs")]
    Misaligned {
        /// Which operand.
        name: &'static str,
        /// Its device address.
        ptr: u64,
        /// The alignment needed.
        align: u64,
        /// The kernel asked for.
        kernel: ConvKernel,
    },
    /// The driver refused the attribute or the launch.
    #[error("conv2d: CUDA driver error: {0}")]
    Driver(#[from] DriverError),
}

impl From<ConvError> for LaunchError {
    /// The crate-wide launcher error, for callers that handle every family alike.
    fn from(e: ConvError) -> Self {
        match e {
            ConvError::Driver(source) => LaunchError::Driver { kernel: "conv2d", source },
            other => LaunchError::Unsupported { kernel: "conv2d", message: other.to_string() },
        }
    }
}

/// Grid, block and dynamic shared memory of `kernel` on `dims`.
pub fn launch_config(kernel: ConvKernel, dims: &ConvDims) -> LaunchConfig {
    let tile = kernel.variant.tile();
    let m_tiles = dims.gemm_m().div_ceil(tile.bm);
    let n_tiles = dims.cout.div_ceil(tile.bn);
    LaunchConfig {
        grid_dim: ((m_tiles * n_tiles) as u32, 1, 1),
        block_dim: (CONV_THREADS, 1, 1),
        shared_mem_bytes: tile.shared_mem_bytes() as u32,
    }
}

/// `y = conv2d(x, w) (+ bias) (+ residual)` on `stream`, with `func` the loaded entry
/// `kernel.entry()`. `x` is `[n, h, w, cin]`, `w` `[cout, kh, kw, cin]`, `bias` `[cout]`,
/// `residual` and `y` `[n, ho, wo, cout]`, all contiguous. Validates everything first and launches
/// nothing on error; raises the function's dynamic shared-memory limit when the tile needs more
/// than 48 KB.
#[allow(clippy::too_many_arguments)]
pub fn launch_conv2d<T: KernelElem>(
    stream: &CudaStream,
    func: &CudaFunction,
    kernel: ConvKernel,
    x: &CudaView<T>,
    w: &CudaView<T>,
    bias: Option<&CudaView<T>>,
    residual: Option<&CudaView<T>>,
    y: &mut CudaViewMut<T>,
    dims: ConvDims,
) -> Result<(), ConvError> {
    if T::DTYPE != kernel.dtype {
        return Err(ConvError::DType { kernel, given: T::DTYPE });
    }
    dims.validate().map_err(|reason| ConvError::InvalidDims { dims, reason })?;
    if let Some(reason) = kernel.variant.unsupported_reason(&dims) {
        return Err(ConvError::Unsupported { kernel, dims, reason });
    }
    let check_len = |name: &'static str, got: usize, expected: usize| {
        if got == expected { Ok(()) } else { Err(ConvError::BufferLen { name, expected, got, dims }) }
    };
    check_len("x", x.len(), dims.input_len())?;
    check_len("w", w.len(), dims.weight_len())?;
    if let Some(b) = bias {
        check_len("bias", b.len(), dims.cout)?;
    }
    if let Some(r) = residual {
        check_len("residual", r.len(), dims.output_len())?;
    }
    check_len("y", y.len(), dims.output_len())?;

    // The tiled variants read x and w in 16-byte chunks and, when Cout is even, bias, residual and
    // y in pairs.
    if kernel.variant != ConvVariant::Generic {
        let check_align = |name: &'static str, ptr: u64, align: u64| {
            if ptr % align == 0 { Ok(()) } else { Err(ConvError::Misaligned { name, ptr, align, kernel }) }
        };
        check_align("x", x.device_ptr(stream).0, 16)?;
        check_align("w", w.device_ptr(stream).0, 16)?;
        if dims.cout % 2 == 0 {
            if let Some(b) = bias {
                check_align("bias", b.device_ptr(stream).0, 4)?;
            }
            if let Some(r) = residual {
                check_align("residual", r.device_ptr(stream).0, 4)?;
            }
            check_align("y", y.device_ptr(stream).0, 4)?;
        }
    }

    let cfg = launch_config(kernel, &dims);
    let smem = cfg.shared_mem_bytes as usize;
    if smem > DEFAULT_SMEM_LIMIT {
        func.set_attribute(
            CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            smem as i32,
        )?;
    }
    // validate() bounds every size by i32::MAX.
    let int = |v: usize| v as i32;
    let args = [
        int(dims.n),
        int(dims.h),
        int(dims.w),
        int(dims.cin),
        int(dims.cout),
        int(dims.kh),
        int(dims.kw),
        int(dims.stride),
        int(dims.pad),
        int(dims.ho()),
        int(dims.wo()),
    ];
    let null: u64 = 0;
    let mut builder = stream.launch_builder(func);
    builder.arg(x).arg(w);
    match bias {
        Some(b) => builder.arg(b),
        None => builder.arg(&null),
    };
    match residual {
        Some(r) => builder.arg(r),
        None => builder.arg(&null),
    };
    builder.arg(y);
    for a in &args {
        builder.arg(a);
    }
    // SAFETY: the argument list matches the entry's signature (x, w, bias, residual, y, then 11
    // ints); every buffer's length was checked against the dims above and the kernel reads and
    // writes only inside those extents (all loads and stores are guarded by M, Cout and K).
    unsafe { builder.launch(cfg) }?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(cin: usize, cout: usize, k: usize, stride: usize, pad: usize) -> ConvDims {
        ConvDims { n: 2, h: 9, w: 7, cin, cout, kh: k, kw: k, stride, pad }
    }

    #[test]
    fn entries_are_unique_and_named_by_dtype_and_variant() {
        let all = ConvKernel::all();
        assert_eq!(all.len(), 10);
        let mut names: Vec<String> = all.iter().map(ConvKernel::entry).collect();
        assert!(names.contains(&"conv2d_bf16_tiled_128x128".to_string()));
        assert!(names.contains(&"conv2d_f16_generic".to_string()));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 10);
    }

    #[test]
    fn every_entry_is_in_the_source() {
        let src = crate::Family::Conv.source();
        for k in ConvKernel::all() {
            assert!(src.contains(&format!("KILN_CONV_ENTRY({},", k.entry())), "{} missing", k.entry());
        }
    }

    #[test]
    fn tiles_mirror_the_source() {
        // The KILN_CONV_ENTRY lines carry (name, T, BM, BN, BK, WARPS_M, WARPS_N, STAGES, VEC).
        let src = crate::Family::Conv.source();
        for k in ConvKernel::all() {
            let t = k.variant.tile();
            let line = src
                .lines()
                .find(|l| l.starts_with(&format!("KILN_CONV_ENTRY({},", k.entry())))
                .expect("entry line");
            let fields: Vec<&str> = line.trim_end_matches(')').split(',').map(str::trim).collect::<Vec<_>>();
            assert_eq!(fields[2].parse::<usize>().unwrap(), t.bm, "{line}");
            assert_eq!(fields[3].parse::<usize>().unwrap(), t.bn, "{line}");
            assert_eq!(fields[4].parse::<usize>().unwrap(), t.bk, "{line}");
            assert_eq!(fields[7].parse::<usize>().unwrap(), t.stages, "{line}");
            assert_eq!(t.lds, t.bk + 8);
        }
        assert!(src.contains("static constexpr int LDS = BK + 8;"));
        assert!(src.contains("constexpr int THREADS = 256;"));
    }

    #[test]
    fn output_sizes_follow_the_cpu_formula() {
        let d = ConvDims { n: 1, h: 9, w: 8, cin: 8, cout: 8, kh: 3, kw: 3, stride: 2, pad: 1 };
        assert_eq!((d.ho(), d.wo()), (5, 4));
        let d = ConvDims { kh: 1, kw: 1, pad: 0, stride: 1, ..d };
        assert_eq!((d.ho(), d.wo()), (9, 8));
    }

    #[test]
    fn select_picks_by_channels() {
        let bf = KernelDType::BF16;
        assert_eq!(ConvKernel::select(bf, &dims(320, 320, 3, 1, 1)).variant, ConvVariant::Tiled128x64);
        assert_eq!(ConvKernel::select(bf, &dims(640, 640, 3, 1, 1)).variant, ConvVariant::Tiled128x128);
        assert_eq!(ConvKernel::select(bf, &dims(1280, 1280, 3, 2, 1)).variant, ConvVariant::Tiled128x128);
        assert_eq!(ConvKernel::select(bf, &dims(4, 320, 3, 1, 1)).variant, ConvVariant::Generic);
        assert_eq!(ConvKernel::select(bf, &dims(128, 3, 3, 1, 1)).variant, ConvVariant::Tiled128x64);
        assert_eq!(ConvKernel::select(bf, &dims(320, 4, 3, 1, 1)).variant, ConvVariant::Tiled128x64);
    }

    #[test]
    fn validate_refuses_bad_dims() {
        assert!(dims(8, 8, 3, 1, 1).validate().is_ok());
        assert!(dims(0, 8, 3, 1, 1).validate().is_err());
        assert!(dims(8, 8, 3, 0, 1).validate().is_err());
        assert!(ConvDims { h: 1, ..dims(8, 8, 3, 1, 0) }.validate().is_err());
        let huge = ConvDims { n: 64, h: 1024, w: 1024, cin: 128, cout: 128, kh: 3, kw: 3, stride: 1, pad: 1 };
        assert!(huge.validate().is_err());
    }

    #[test]
    fn shared_memory_per_variant() {
        assert_eq!(ConvVariant::Tiled128x128.tile().shared_mem_bytes(), 81920);
        assert_eq!(ConvVariant::Tiled128x128K64.tile().shared_mem_bytes(), 110592);
        assert_eq!(ConvVariant::Tiled256x128.tile().shared_mem_bytes(), 122880);
        assert_eq!(ConvVariant::Tiled128x64.tile().shared_mem_bytes(), 61440);
        assert_eq!(ConvVariant::Generic.tile().shared_mem_bytes(), 30720);
    }
}
