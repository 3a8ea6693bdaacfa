//! Permutation of a contiguous tensor's dimensions (`permute_b16/b32`, `permute_tiled_b16/b32`
//! in elementwise.cu): the copy plan the kernels take ([`PermutePlan`], `struct Perm`), the
//! choice between the gather and the tiled kernel, and the launcher.
//!
//! The plan drops size-1 dimensions and merges output axes that stay adjacent in the input, so
//! e.g. NHWC -> NCHW becomes the 3-axis `[N, C, H*W]` with input strides `[H*W*C, 1, C]`. When
//! the innermost output axis is contiguous in the input, a gather kernel copies runs (16 bytes
//! per thread where aligned); otherwise the tiled kernel transposes 32 x 32 tiles of (the
//! input's contiguous axis, the output's) through shared memory so that both the reads and the
//! writes are coalesced.

use cudarc::driver::{
    CudaFunction, CudaStream, CudaView, CudaViewMut, DeviceRepr, LaunchConfig, PushKernelArg,
};

use super::{EW_THREADS, ElementwiseKernel};
use crate::launch::{LaunchError, aligned16, blocks_for, check_len};

/// Most axes a permutation keeps after merging (`PERM_MAX_RANK` in elementwise.cu).
pub const PERM_MAX_RANK: usize = 6;
/// Side of the tiled kernel's square tile (`PERM_TILE`).
pub const PERM_TILE: usize = 32;
/// Thread rows of a tiled block (`PERM_ROWS`): blocks are `PERM_TILE x PERM_ROWS` threads.
pub const PERM_ROWS: usize = 8;
/// Shortest tile axes for which the tiled kernel is used: with fewer, most of a tile is idle
/// and the gather kernel's strided reads cost less.
const MIN_TILED_EXTENT: usize = 8;

/// The element width a permutation kernel copies (the copy is bitwise, so one kernel serves
/// every dtype of that size).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PermuteWidth {
    /// 2-byte elements (bf16, f16).
    B16,
    /// 4-byte elements (f32).
    B32,
}

impl PermuteWidth {
    /// Both widths, in table order.
    pub const ALL: [PermuteWidth; 2] = [PermuteWidth::B16, PermuteWidth::B32];

    /// The width of elements of `bytes` bytes, if a kernel exists for it.
    pub fn for_size(bytes: usize) -> Option<Self> {
        match bytes {
            2 => Some(PermuteWidth::B16),
            4 => Some(PermuteWidth::B32),
            _ => None,
        }
    }

    /// Bytes per element.
    pub fn bytes(self) -> usize {
        match self {
            PermuteWidth::B16 => 2,
            PermuteWidth::B32 => 4,
        }
    }

    /// The entry-point suffix (`b16`, `b32`).
    pub fn suffix(self) -> &'static str {
        match self {
            PermuteWidth::B16 => "b16",
            PermuteWidth::B32 => "b32",
        }
    }
}

/// Mirrors `struct Perm`: `rank` output axes, outermost first, each with its size, the input's
/// element stride along it and the (contiguous) output's; `tile_axis` is the output axis the
/// tiled kernel reads contiguously, or -1 for the gather kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PermutePlan {
    size: [i64; PERM_MAX_RANK],
    in_stride: [i64; PERM_MAX_RANK],
    out_stride: [i64; PERM_MAX_RANK],
    rank: i32,
    tile_axis: i32,
}

// SAFETY: a plain #[repr(C)] struct of integers with the layout of `struct Perm`.
unsafe impl DeviceRepr for PermutePlan {}

impl PermutePlan {
    /// The plan for permuting `dims` by `perm` (output axis `i` is input axis `perm[i]`), or
    /// why not: `perm` is not a permutation of `0..dims.len()`, or the permutation needs more
    /// than [`PERM_MAX_RANK`] axes after merging.
    pub fn new(dims: &[usize], perm: &[usize]) -> Result<PermutePlan, String> {
        let mut seen = vec![false; dims.len()];
        if perm.len() != dims.len()
            || !perm.iter().all(|&p| p < dims.len() && !std::mem::replace(&mut seen[p], true))
        {
            return Err(format!("{perm:?} is not a permutation of the dimensions of {dims:?}"));
        }
        let mut in_strides = vec![1usize; dims.len()];
        for i in (0..dims.len().saturating_sub(1)).rev() {
            in_strides[i] = in_strides[i + 1] * dims[i + 1];
        }
        // Output axes (size, input stride), size-1 ones dropped, merged into the previous axis
        // when the input steps through both as one (outer stride = inner stride * inner size).
        let mut axes: Vec<(usize, usize)> = Vec::new();
        for &p in perm.iter().filter(|&&p| dims[p] != 1) {
            let (size, stride) = (dims[p], in_strides[p]);
            match axes.last_mut() {
                Some(o) if o.1 == stride * size => *o = (o.0 * size, stride),
                _ => axes.push((size, stride)),
            }
        }
        if axes.is_empty() {
            axes.push((1, 1));
        }
        if axes.len() > PERM_MAX_RANK {
            return Err(format!(
                "permuting {dims:?} by {perm:?} needs {} axes after merging, the kernel handles {PERM_MAX_RANK}",
                axes.len()
            ));
        }
        let rank = axes.len();
        let mut plan = PermutePlan {
            size: [1; PERM_MAX_RANK],
            in_stride: [0; PERM_MAX_RANK],
            out_stride: [0; PERM_MAX_RANK],
            rank: rank as i32,
            tile_axis: -1,
        };
        let mut out_stride = 1;
        for (i, &(size, stride)) in axes.iter().enumerate().rev() {
            (plan.size[i], plan.in_stride[i], plan.out_stride[i]) =
                (size as i64, stride as i64, out_stride as i64);
            out_stride *= size;
        }
        // The tiled kernel when the innermost output axis strides through the input and both
        // tile axes are long enough to fill a good part of a tile. The input's stride-1 axis
        // always survives the dropping of size-1 axes (it is the last input axis of size > 1),
        // unless the whole tensor is one element.
        if axes[rank - 1].1 != 1
            && axes[rank - 1].0 >= MIN_TILED_EXTENT
            && let Some(p) = axes.iter().position(|a| a.1 == 1 && a.0 >= MIN_TILED_EXTENT)
        {
            plan.tile_axis = p as i32;
        }
        Ok(plan)
    }

    /// Whether the tiled kernel runs this plan.
    pub fn tiled(&self) -> bool {
        self.tile_axis >= 0
    }

    /// Axes after merging.
    pub fn rank(&self) -> usize {
        self.rank as usize
    }

    /// Elements moved.
    pub fn len(&self) -> usize {
        self.size[..self.rank()].iter().product::<i64>() as usize
    }

    /// Whether there is nothing to move.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the innermost output axis is contiguous in the input.
    fn inner_contiguous(&self) -> bool {
        self.in_stride[self.rank() - 1] == 1
    }

    /// Blocks of the tiled kernel: `tiles_a * tiles_p * batch`.
    fn tiled_blocks(&self) -> usize {
        let (p, a) = (self.tile_axis as usize, self.rank() - 1);
        let tiles = |n: i64| (n as usize).div_ceil(PERM_TILE);
        let batch: usize = (0..a).filter(|&ax| ax != p).map(|ax| self.size[ax] as usize).product();
        tiles(self.size[a]) * tiles(self.size[p]) * batch
    }
}

/// The entry for `plan` at `width`.
pub fn permute_kernel(plan: &PermutePlan, width: PermuteWidth) -> ElementwiseKernel {
    ElementwiseKernel::Permute { width, tiled: plan.tiled() }
}

/// Copies `x` (contiguous, shape `dims`) into `y` permuted by `plan` (from
/// [`PermutePlan::new`]); `func` is the entry [`permute_kernel`] names for the plan and
/// `T`'s size. `T` is any 2- or 4-byte element: the copy is bitwise.
pub fn launch_permute<T: DeviceRepr>(
    stream: &CudaStream,
    func: &CudaFunction,
    x: &CudaView<'_, T>,
    y: &mut CudaViewMut<'_, T>,
    plan: &PermutePlan,
) -> Result<(), LaunchError> {
    const K: &str = "permute";
    let width = PermuteWidth::for_size(std::mem::size_of::<T>()).ok_or_else(|| {
        LaunchError::unsupported(K, format!("no kernel for {}-byte elements", std::mem::size_of::<T>()))
    })?;
    let n = plan.len();
    check_len(K, "x", x.len(), n)?;
    check_len(K, "y", y.len(), n)?;
    if n == 0 {
        return Ok(());
    }
    if plan.tiled() {
        let cfg = LaunchConfig {
            grid_dim: (blocks_for(K, plan.tiled_blocks(), 1)?, 1, 1),
            block_dim: (PERM_TILE as u32, PERM_ROWS as u32, 1),
            shared_mem_bytes: 0,
        };
        let mut b = stream.launch_builder(func);
        b.arg(x).arg(y).arg(plan);
        // SAFETY: matches permute_tiled_<width>(x, y, Perm); the plan's offsets address the n
        // elements of x and y (plan built from the shape whose product is n).
        unsafe { b.launch(cfg) }.map_err(LaunchError::driver(K))?;
    } else {
        let vec = 16 / width.bytes();
        let vec = if plan.inner_contiguous()
            && (plan.size[plan.rank() - 1] as usize) % vec == 0
            && aligned16(stream, x)
            && aligned16(stream, y)
        {
            vec
        } else {
            1
        };
        let (n_u, vec_i) = (n as u64, vec as i32);
        let cfg = LaunchConfig {
            grid_dim: (blocks_for(K, n / vec, EW_THREADS)?, 1, 1),
            block_dim: (EW_THREADS as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = stream.launch_builder(func);
        b.arg(x).arg(y).arg(plan).arg(&n_u).arg(&vec_i);
        // SAFETY: matches permute_<width>(x, y, Perm, n, vec); as above, and vec > 1 only where
        // one thread's vec elements are contiguous and 16-byte aligned in both buffers.
        unsafe { b.launch(cfg) }.map_err(LaunchError::driver(K))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Row-major permute, the plain way.
    fn reference(x: &[u32], dims: &[usize], perm: &[usize]) -> Vec<u32> {
        let out_dims: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
        let mut strides = vec![1; dims.len()];
        for i in (0..dims.len().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * dims[i + 1];
        }
        (0..x.len())
            .map(|o| {
                let (mut rem, mut src) = (o, 0);
                for ax in (0..out_dims.len()).rev() {
                    src += rem % out_dims[ax] * strides[perm[ax]];
                    rem /= out_dims[ax];
                }
                x[src]
            })
            .collect()
    }

    /// The gather kernel's index math, thread by thread (`vec` outputs each).
    fn gather(x: &[u32], p: &PermutePlan, vec: usize) -> Vec<Option<u32>> {
        let n = p.len();
        let mut y = vec![None; n];
        for thread in 0..n.div_ceil(vec) {
            let o = thread * vec;
            let (mut rem, mut src) = (o as i64, 0i64);
            for ax in (0..PERM_MAX_RANK).rev() {
                if ax < p.rank() {
                    let k = rem % p.size[ax];
                    rem /= p.size[ax];
                    src += k * p.in_stride[ax];
                }
            }
            for j in 0..vec {
                assert!(y[o + j].is_none(), "output {} written twice", o + j);
                y[o + j] = Some(x[src as usize + j]);
            }
        }
        y
    }

    /// The tiled kernel's index math, block by block and thread by thread.
    fn tiled(x: &[u32], p: &PermutePlan) -> Vec<Option<u32>> {
        let mut y = vec![None; p.len()];
        let (pa, a) = (p.tile_axis as usize, p.rank() - 1);
        let (n_p, n_a) = (p.size[pa], p.size[a]);
        let t = PERM_TILE as i64;
        let (tiles_a, tiles_p) = ((n_a + t - 1) / t, (n_p + t - 1) / t);
        for block in 0..p.tiled_blocks() as i64 {
            let mut rest = block;
            let ta = rest % tiles_a;
            rest /= tiles_a;
            let tp = rest % tiles_p;
            rest /= tiles_p;
            let (mut in_base, mut out_base) = (0, 0);
            for ax in (0..PERM_MAX_RANK).rev() {
                if ax < a && ax != pa {
                    let k = rest % p.size[ax];
                    rest /= p.size[ax];
                    in_base += k * p.in_stride[ax];
                    out_base += k * p.out_stride[ax];
                }
            }
            assert_eq!(rest, 0, "block {block} past the batch");
            let mut tile = vec![vec![None; PERM_TILE + 1]; PERM_TILE];
            for ty in 0..PERM_ROWS as i64 {
                for tx in 0..t {
                    let ip = tp * t + tx;
                    for i in (0..t).step_by(PERM_ROWS) {
                        let ia = ta * t + ty + i;
                        if ip < n_p && ia < n_a {
                            tile[(ty + i) as usize][tx as usize] =
                                Some(x[(in_base + ip + ia * p.in_stride[a]) as usize]);
                        }
                    }
                }
            }
            for ty in 0..PERM_ROWS as i64 {
                for tx in 0..t {
                    let oa = ta * t + tx;
                    for i in (0..t).step_by(PERM_ROWS) {
                        let op = tp * t + ty + i;
                        if op < n_p && oa < n_a {
                            let dst = (out_base + op * p.out_stride[pa] + oa) as usize;
                            assert!(y[dst].is_none(), "output {dst} written twice");
                            y[dst] = tile[tx as usize][(ty + i) as usize];
                        }
                    }
                }
            }
        }
        y
    }

    /// Every permutation of `0..n`.
    fn permutations(n: usize) -> Vec<Vec<usize>> {
        if n == 0 {
            return vec![vec![]];
        }
        let mut out = Vec::new();
        for p in permutations(n - 1) {
            for i in 0..=p.len() {
                let mut q = p.clone();
                q.insert(i, n - 1);
                out.push(q);
            }
        }
        out
    }

    /// Both kernels' index math reproduce the plain permute for every permutation of shapes
    /// with size-1, odd and tile-crossing dimensions, up to rank 5 (and a rank-6 case).
    #[test]
    fn kernel_index_math_matches_a_plain_permute() {
        let shapes: [&[usize]; 9] = [
            &[7],
            &[3, 5],
            &[40, 33],
            &[2, 9, 35],
            &[1, 45, 1, 17],
            &[2, 33, 9, 40],
            &[2, 3, 5, 7, 11],
            &[3, 1, 19, 2, 9],
            &[2, 2, 3, 2, 3, 9],
        ];
        let (mut n_tiled, mut n_gather) = (0, 0);
        for dims in shapes {
            let x: Vec<u32> = (0..dims.iter().product::<usize>() as u32).map(|i| i * 7 + 3).collect();
            for perm in permutations(dims.len()) {
                let plan = PermutePlan::new(dims, &perm).unwrap();
                let want: Vec<Option<u32>> = reference(&x, dims, &perm).into_iter().map(Some).collect();
                let got = if plan.tiled() {
                    n_tiled += 1;
                    tiled(&x, &plan)
                } else {
                    n_gather += 1;
                    let w = PermuteWidth::B16;
                    let vec = 16 / w.bytes();
                    let v = if plan.inner_contiguous() && plan.size[plan.rank() - 1] as usize % vec == 0 {
                        vec
                    } else {
                        1
                    };
                    gather(&x, &plan, v)
                };
                assert_eq!(got, want, "{dims:?} by {perm:?}: {plan:?}");
            }
        }
        assert!(n_tiled > 20 && n_gather > 20, "tiled {n_tiled}, gather {n_gather}");
    }

    #[test]
    fn plans_merge_and_choose() {
        // NHWC -> NCHW: [N, C, HW], input strides [HWC, 1, C]; tiled over (C, HW).
        let p = PermutePlan::new(&[2, 16, 16, 320], &[0, 3, 1, 2]).unwrap();
        assert_eq!(
            (p.rank(), &p.size[..3], &p.in_stride[..3]),
            (3, &[2, 320, 256][..], &[81920, 1, 320][..])
        );
        assert_eq!((p.tile_axis, &p.out_stride[..3]), (1, &[81920, 256, 1][..]));
        // The identity is one contiguous run.
        let p = PermutePlan::new(&[2, 3, 4], &[0, 1, 2]).unwrap();
        assert_eq!((p.rank(), p.size[0], p.in_stride[0], p.tiled()), (1, 24, 1, false));
        // [B, L, H, D] -> [B, H, L, D]: inner axis contiguous, gather.
        let p = PermutePlan::new(&[2, 77, 8, 40], &[0, 2, 1, 3]).unwrap();
        assert!(!p.tiled() && p.inner_contiguous());
        // A short contiguous axis is gathered rather than tiled.
        assert!(!PermutePlan::new(&[1, 64, 64, 3], &[0, 3, 1, 2]).unwrap().tiled());
        // Empty and scalar tensors.
        assert!(PermutePlan::new(&[3, 0, 2], &[2, 1, 0]).unwrap().is_empty());
        assert_eq!(PermutePlan::new(&[], &[]).unwrap().len(), 1);
        // Not permutations; too many axes.
        assert!(PermutePlan::new(&[2, 3], &[0, 0]).is_err());
        assert!(PermutePlan::new(&[2, 3], &[1]).is_err());
        assert!(PermutePlan::new(&[2; 7], &[6, 5, 4, 3, 2, 1, 0]).is_err());
    }
}
