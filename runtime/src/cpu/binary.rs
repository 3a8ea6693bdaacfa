//! Element-wise binary ops with numpy broadcasting, and affine maps.
//!
//! Shapes align at the right; a dimension of size 1 (or a missing leading one) repeats. Before
//! looping, dimensions of size 1 are dropped and neighbouring dimensions that both operands
//! traverse the same way are merged, so the common cases (same shape, a `[C]` bias over NHWC,
//! a `[N, 1, 1, C]` per-sample term) become one or two flat loops whose innermost stride is
//! 1 or 0 for each operand.

use super::{produce_rows, unary_map, widen};
use crate::{CpuStorage, DType};

/// An element-wise binary op.
#[derive(Clone, Copy, Debug)]
pub(crate) enum BinaryOp {
    /// `lhs + rhs`.
    Add,
    /// `lhs * rhs`.
    Mul,
}

/// `lhs op rhs` broadcast to `out_dims` (which the op has checked is the broadcast shape).
pub(crate) fn binary(
    op: BinaryOp,
    lhs: &CpuStorage,
    lhs_dims: &[usize],
    rhs: &CpuStorage,
    rhs_dims: &[usize],
    out_dims: &[usize],
) -> CpuStorage {
    let (a, b) = (widen(lhs), widen(rhs));
    let dtype = lhs.dtype();
    match op {
        BinaryOp::Add => broadcast_zip(dtype, (&a, lhs_dims), (&b, rhs_dims), out_dims, |x, y| x + y),
        BinaryOp::Mul => broadcast_zip(dtype, (&a, lhs_dims), (&b, rhs_dims), out_dims, |x, y| x * y),
    }
}

/// `x * mul + add`, element-wise.
pub(crate) fn affine(x: &CpuStorage, mul: f32, add: f32) -> CpuStorage {
    unary_map(x, |v| v * mul + add)
}

/// One loop level after merging: its size and each operand's stride along it.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Axis {
    size: usize,
    lhs: usize,
    rhs: usize,
}

/// Row-major strides of `dims` placed at the right of an `out_rank` shape, 0 where broadcast.
fn broadcast_strides(dims: &[usize], out_dims: &[usize]) -> Vec<usize> {
    let lead = out_dims.len() - dims.len();
    let mut strides = vec![0; out_dims.len()];
    let mut s = 1;
    for (i, &d) in dims.iter().enumerate().rev() {
        strides[lead + i] = if d == 1 { 0 } else { s };
        s *= d;
    }
    strides
}

/// The loop nest for a broadcast: size-1 axes dropped, mergeable neighbours merged, and at
/// least one axis.
fn axes(lhs_dims: &[usize], rhs_dims: &[usize], out_dims: &[usize]) -> Vec<Axis> {
    let (ls, rs) = (broadcast_strides(lhs_dims, out_dims), broadcast_strides(rhs_dims, out_dims));
    let mut axes: Vec<Axis> = Vec::new();
    for (i, &size) in out_dims.iter().enumerate() {
        if size == 1 {
            continue;
        }
        let inner = Axis { size, lhs: ls[i], rhs: rs[i] };
        match axes.last_mut() {
            Some(outer) if outer.lhs == inner.lhs * size && outer.rhs == inner.rhs * size => {
                *outer = Axis { size: outer.size * size, ..inner };
            }
            _ => axes.push(inner),
        }
    }
    if axes.is_empty() {
        axes.push(Axis { size: 1, lhs: 0, rhs: 0 });
    }
    axes
}

/// The broadcasting loop, generic over the scalar function so each op gets its own inner loop.
///
/// Tasks take equal flat ranges of the output, not whole rows, so that a single long row (two
/// operands of the same shape merge into one) still splits across threads.
fn broadcast_zip(
    dtype: DType,
    (a, lhs_dims): (&[f32], &[usize]),
    (b, rhs_dims): (&[f32], &[usize]),
    out_dims: &[usize],
    f: impl Fn(f32, f32) -> f32 + Sync,
) -> CpuStorage {
    let len: usize = out_dims.iter().product();
    let axes = axes(lhs_dims, rhs_dims, out_dims);
    let (outer, last) = axes.split_at(axes.len() - 1);
    let last = last[0];
    let n = last.size;
    produce_rows(dtype, len, 1, |start, block| {
        let mut done = 0;
        while done < block.len() {
            // The output row holding flat position `start + done`, and the column within it.
            let (row, col) = ((start + done) / n, (start + done) % n);
            let seg = (n - col).min(block.len() - done);
            let out = &mut block[done..done + seg];
            // Offsets of this row in each operand, from its multi-index over the outer axes.
            let (mut r, mut ao, mut bo) = (row, 0, 0);
            for ax in outer.iter().rev() {
                let idx = r % ax.size;
                r /= ax.size;
                ao += idx * ax.lhs;
                bo += idx * ax.rhs;
            }
            let (ao, bo) = (ao + col * last.lhs, bo + col * last.rhs);
            match (last.lhs, last.rhs) {
                (1, 1) => zip_into(out, &a[ao..ao + seg], &b[bo..bo + seg], &f),
                (1, _) => out.iter_mut().zip(&a[ao..ao + seg]).for_each(|(o, &x)| *o = f(x, b[bo])),
                (_, 1) => out.iter_mut().zip(&b[bo..bo + seg]).for_each(|(o, &y)| *o = f(a[ao], y)),
                _ => out.fill(f(a[ao], b[bo])),
            }
            done += seg;
        }
    })
}

#[inline]
fn zip_into(out: &mut [f32], a: &[f32], b: &[f32], f: &impl Fn(f32, f32) -> f32) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        *o = f(x, y);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_axes_that_broadcast_alike() {
        // A [C] bias over NHWC: one broadcast outer axis, one contiguous inner axis.
        let ax = axes(&[2, 3, 4, 5], &[5], &[2, 3, 4, 5]);
        assert_eq!(ax, vec![Axis { size: 24, lhs: 5, rhs: 0 }, Axis { size: 5, lhs: 1, rhs: 1 }]);
        // Same shapes: a single flat loop.
        assert_eq!(axes(&[2, 3], &[2, 3], &[2, 3]), vec![Axis { size: 6, lhs: 1, rhs: 1 }]);
        // A per-sample [N, 1, 1, C] term.
        let ax = axes(&[2, 3, 4, 5], &[2, 1, 1, 5], &[2, 3, 4, 5]);
        assert_eq!(ax.len(), 3);
    }
}
