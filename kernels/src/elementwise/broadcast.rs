//! The loop nest of a broadcast binary op, as the kernels take it (`struct Bcast` in
//! elementwise.cu): the CPU backend's axis merging (`runtime/src/cpu/binary.rs`), with at most
//! [`BCAST_MAX_RANK`] axes left.

use cudarc::driver::DeviceRepr;

/// Most axes a broadcast keeps after merging (`BCAST_MAX_RANK` in elementwise.cu).
pub const BCAST_MAX_RANK: usize = 6;

/// Mirrors `struct Bcast`: `rank` axes, outermost first, each with its size and the element
/// stride of each operand along it (0 where broadcast). The output is contiguous over them.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BroadcastPlan {
    size: [i64; BCAST_MAX_RANK],
    lhs: [i64; BCAST_MAX_RANK],
    rhs: [i64; BCAST_MAX_RANK],
    rank: i32,
    pad: i32,
}

// SAFETY: a plain #[repr(C)] struct of integers with the layout of `struct Bcast`.
unsafe impl DeviceRepr for BroadcastPlan {}

/// Row-major strides of `dims` placed at the right of `out`, 0 where a dimension is 1.
fn strides(dims: &[usize], out: &[usize]) -> Vec<usize> {
    let lead = out.len() - dims.len();
    let mut s = vec![0; out.len()];
    let mut acc = 1;
    for (i, &d) in dims.iter().enumerate().rev() {
        s[lead + i] = if d == 1 { 0 } else { acc };
        acc *= d;
    }
    s
}

impl BroadcastPlan {
    /// The plan for `lhs op rhs` and the number of output elements, or why the shapes do not
    /// broadcast or need more than [`BCAST_MAX_RANK`] axes.
    pub fn new(lhs: &[usize], rhs: &[usize]) -> Result<(BroadcastPlan, usize), String> {
        let rank = lhs.len().max(rhs.len());
        let at = |s: &[usize], i: usize| if i + s.len() >= rank { s[i + s.len() - rank] } else { 1 };
        let out: Vec<usize> = (0..rank)
            .map(|i| match (at(lhs, i), at(rhs, i)) {
                (x, y) if x == y || y == 1 => Ok(x),
                (1, y) => Ok(y),
                _ => Err(format!("shapes {lhs:?} and {rhs:?} do not broadcast")),
            })
            .collect::<Result<_, _>>()?;
        let (ls, rs) = (strides(lhs, &out), strides(rhs, &out));
        // Drop size-1 axes; merge an axis into the previous one when both operands step
        // through them as one (outer stride = inner stride * inner size).
        let mut axes: Vec<(usize, usize, usize)> = Vec::new(); // (size, lhs stride, rhs stride)
        for (i, &size) in out.iter().enumerate().filter(|&(_, &s)| s != 1) {
            match axes.last_mut() {
                Some(o) if o.1 == ls[i] * size && o.2 == rs[i] * size => *o = (o.0 * size, ls[i], rs[i]),
                _ => axes.push((size, ls[i], rs[i])),
            }
        }
        if axes.is_empty() {
            axes.push((1, 0, 0));
        }
        if axes.len() > BCAST_MAX_RANK {
            return Err(format!(
                "broadcasting {lhs:?} with {rhs:?} needs {} loop axes, the kernel handles {BCAST_MAX_RANK}",
                axes.len()
            ));
        }
        let mut plan = BroadcastPlan {
            size: [1; BCAST_MAX_RANK],
            lhs: [0; BCAST_MAX_RANK],
            rhs: [0; BCAST_MAX_RANK],
            rank: axes.len() as i32,
            pad: 0,
        };
        for (i, &(s, l, r)) in axes.iter().enumerate() {
            (plan.size[i], plan.lhs[i], plan.rhs[i]) = (s as i64, l as i64, r as i64);
        }
        Ok((plan, out.iter().product()))
    }

    /// Axes in the plan.
    pub fn rank(&self) -> usize {
        self.rank as usize
    }

    /// The innermost axis's size (vector accesses need it to be a multiple of 8).
    pub fn inner_size(&self) -> usize {
        self.size[self.rank() - 1] as usize
    }

    /// The innermost axis's (lhs, rhs) strides: each 0 or 1.
    pub fn inner_strides(&self) -> (i64, i64) {
        (self.lhs[self.rank() - 1], self.rhs[self.rank() - 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_for_the_models_broadcasts() {
        // Same shape: one flat axis.
        let (p, n) = BroadcastPlan::new(&[2, 3, 4], &[2, 3, 4]).unwrap();
        assert_eq!((p.rank(), p.inner_size(), p.inner_strides(), n), (1, 24, (1, 1), 24));
        // A [C] bias over NHWC: rows broadcast, channels contiguous.
        let (p, n) = BroadcastPlan::new(&[2, 8, 8, 320], &[320]).unwrap();
        assert_eq!(
            (p.rank(), p.size[0], p.lhs[0], p.rhs[0], p.inner_size(), n),
            (2, 128, 320, 0, 320, 40960)
        );
        // A per-sample [N, 1, 1, C] time embedding over [N, H, W, C].
        let (p, _) = BroadcastPlan::new(&[2, 8, 8, 320], &[2, 1, 1, 320]).unwrap();
        assert_eq!(p.rank(), 3);
        assert_eq!((p.size[0], p.lhs[0], p.rhs[0]), (2, 8 * 8 * 320, 320));
        assert_eq!((p.size[1], p.lhs[1], p.rhs[1]), (64, 320, 0));
        // Scalar operand: inner stride 0.
        let (p, _) = BroadcastPlan::new(&[5, 7], &[1]).unwrap();
        assert_eq!((p.rank(), p.inner_strides()), (1, (1, 0)));
        // Broadcast on the left operand too.
        let (_, n) = BroadcastPlan::new(&[2, 1, 4], &[3, 1]).unwrap();
        assert_eq!(n, 24);
        assert!(BroadcastPlan::new(&[2, 3], &[2]).is_err());
        // Alternating broadcasts need more axes than the kernel has.
        let a = [2, 1, 2, 1, 2, 1, 2, 1];
        let b = [1, 2, 1, 2, 1, 2, 1, 2];
        assert!(BroadcastPlan::new(&a, &b).is_err());
        assert_eq!(std::mem::size_of::<BroadcastPlan>(), 3 * 48 + 8);
    }
}
