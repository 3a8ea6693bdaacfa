//! Data movement: nearest 2x upsampling, concatenation, permutation, narrowing.
//!
//! These ops do no arithmetic, so they copy the stored elements in their own dtype (exact,
//! and half the traffic of widening halves to f32). Each is written once, generic over
//! `Elem`, and instantiated per dtype by `with_elem!`.

use rayon::prelude::*;

use super::{ELEMWISE_CHUNK, Elem, with_elem};
use crate::CpuStorage;

/// The elements of `s` as `T`. The op has checked every operand's dtype, so a mismatch here is
/// a bug in the backend.
fn elems<T: Elem>(s: &CpuStorage) -> &[T] {
    T::slice(s).expect("operand dtypes are checked by the op before dispatch")
}

/// Nearest-neighbour 2x upsampling of `x [n, h, w, c]` -> `[n, 2h, 2w, c]`.
pub(crate) fn upsample_nearest2x(x: &CpuStorage, (n, h, w, c): (usize, usize, usize, usize)) -> CpuStorage {
    fn go<T: Elem>(x: &CpuStorage, (n, h, w, c): (usize, usize, usize, usize)) -> CpuStorage {
        let x = elems::<T>(x);
        let out_row = 2 * w * c; // one output image row
        let mut out = Vec::with_capacity(n * 2 * h * out_row);
        if out.capacity() == 0 {
            return T::wrap(out);
        }
        out.resize(n * 2 * h * out_row, x[0]);
        // Each input row becomes two identical output rows.
        out.par_chunks_mut(2 * out_row).zip(x.par_chunks(w * c)).for_each(|(pair, src)| {
            let (first, second) = pair.split_at_mut(out_row);
            for (dst, px) in first.chunks_exact_mut(2 * c).zip(src.chunks_exact(c)) {
                dst[..c].copy_from_slice(px);
                dst[c..].copy_from_slice(px);
            }
            second.copy_from_slice(first);
        });
        T::wrap(out)
    }
    with_elem!(x.dtype(), go(x, (n, h, w, c)))
}

/// Concatenation along `dim` of tensors whose shapes agree except along `dim`.
/// `outer` is the product of the dimensions before `dim`, `blocks[i]` the number of elements of
/// input `i` per outer index (its size along `dim` times the dimensions after it).
pub(crate) fn concat(xs: &[&CpuStorage], outer: usize, blocks: &[usize]) -> CpuStorage {
    fn go<T: Elem>(xs: &[&CpuStorage], outer: usize, blocks: &[usize]) -> CpuStorage {
        let srcs: Vec<&[T]> = xs.iter().map(|s| elems::<T>(s)).collect();
        let row: usize = blocks.iter().sum();
        let mut out: Vec<T> = Vec::with_capacity(outer * row);
        if outer * row == 0 {
            return T::wrap(out);
        }
        let rows_per_task = (ELEMWISE_CHUNK / row).max(1);
        out.resize(outer * row, first_elem(&srcs));
        out.par_chunks_mut(rows_per_task * row).enumerate().for_each(|(t, chunk)| {
            for (i, dst) in chunk.chunks_exact_mut(row).enumerate() {
                let o = t * rows_per_task + i;
                let mut at = 0;
                for (src, &bl) in srcs.iter().zip(blocks) {
                    dst[at..at + bl].copy_from_slice(&src[o * bl..(o + 1) * bl]);
                    at += bl;
                }
            }
        });
        T::wrap(out)
    }
    with_elem!(xs[0].dtype(), go(xs, outer, blocks))
}

/// Any element of a non-empty set of slices, to initialise a buffer that is then overwritten.
fn first_elem<T: Elem>(srcs: &[&[T]]) -> T {
    *srcs.iter().find_map(|s| s.first()).expect("a non-empty output has a non-empty input")
}

/// `x` with its dimensions reordered: output dimension `i` is input dimension `perm[i]`.
pub(crate) fn permute(x: &CpuStorage, dims: &[usize], perm: &[usize]) -> CpuStorage {
    fn go<T: Elem>(x: &CpuStorage, dims: &[usize], perm: &[usize]) -> CpuStorage {
        let x = elems::<T>(x);
        let mut out: Vec<T> = Vec::with_capacity(x.len());
        if x.is_empty() {
            return T::wrap(out);
        }
        let mut in_strides = vec![1; dims.len()];
        for i in (0..dims.len().saturating_sub(1)).rev() {
            in_strides[i] = in_strides[i + 1] * dims[i + 1];
        }
        let out_dims: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
        let strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect(); // input stride per output dim
        let (n, inner_stride) = match (out_dims.last(), strides.last()) {
            (Some(&n), Some(&s)) => (n, s),
            _ => (1, 1), // rank 0
        };
        out.resize(x.len(), x[0]);
        let rows_per_task = (ELEMWISE_CHUNK / n).max(1);
        out.par_chunks_mut(rows_per_task * n).enumerate().for_each(|(t, chunk)| {
            for (i, row) in chunk.chunks_exact_mut(n).enumerate() {
                // Input offset of this output row, from its multi-index over the leading dims.
                let (mut r, mut base) = (t * rows_per_task + i, 0);
                for d in (0..out_dims.len().saturating_sub(1)).rev() {
                    base += r % out_dims[d] * strides[d];
                    r /= out_dims[d];
                }
                if inner_stride == 1 {
                    row.copy_from_slice(&x[base..base + n]);
                } else {
                    row.iter_mut().enumerate().for_each(|(j, o)| *o = x[base + j * inner_stride]);
                }
            }
        });
        T::wrap(out)
    }
    with_elem!(x.dtype(), go(x, dims, perm))
}

/// `len` entries from `start` along a dimension of size `size`: `outer` is the product of the
/// dimensions before it, `inner` of those after it.
pub(crate) fn narrow(
    x: &CpuStorage,
    (outer, size, inner): (usize, usize, usize),
    start: usize,
    len: usize,
) -> CpuStorage {
    fn go<T: Elem>(
        x: &CpuStorage,
        (outer, size, inner): (usize, usize, usize),
        start: usize,
        len: usize,
    ) -> CpuStorage {
        let x = elems::<T>(x);
        let block = len * inner;
        let mut out: Vec<T> = Vec::with_capacity(outer * block);
        for o in 0..outer {
            let from = (o * size + start) * inner;
            out.extend_from_slice(&x[from..from + block]);
        }
        T::wrap(out)
    }
    with_elem!(x.dtype(), go(x, (outer, size, inner), start, len))
}
