//! The reference matmul: executes a checked [`Plan`] on device memory.
//!
//! Every operand's whole extent (all batches) is bounds checked against one live allocation
//! before anything runs, so a bad pointer fails the call with a message naming the matrix and
//! nothing is written. Reads also check the sanitizer's shadow: a GEMM that consumes device
//! bytes never written is a bug in the caller, reported like an out-of-bounds pointer. C is
//! neither checked nor read when beta is 0, as cuBLAS documents (it may be uninitialised).
//!
//! Numerics follow `CUBLAS_COMPUTE_32F`: inputs are widened to f32, products are accumulated in
//! f32 (eight interleaved partial sums, a fixed order like a GPU kernel's, rather than f64 which
//! would be more accurate than the hardware and hide precision problems), the epilogue runs in
//! f32 and the result is rounded once to D's type, to nearest even. The `_FAST_` compute types
//! are computed the same way (their reduced-precision inputs are a permission, not a promise).
//!
//! Work is split with rayon over batches and, within a batch, over blocks of D's columns; each
//! task writes only its own columns, which is also what makes `C == D` (in place) safe: a
//! column of C is read by the task that then overwrites it.

use std::sync::Arc;

use rayon::prelude::*;

use super::plan::{Activation, Layout, Plan};
use crate::memory::{Allocation, DeviceMemory};

/// Columns of D per task: a row of the packed A is reused for this many dot products while it
/// is in L1.
const COLUMN_BLOCK: usize = 8;

/// The device addresses of one call's operands.
#[derive(Clone, Copy, Debug)]
pub struct Pointers {
    pub a: u64,
    pub b: u64,
    pub c: u64,
    pub d: u64,
}

/// Why an execution failed (`CUBLAS_STATUS_EXECUTION_FAILED`): the message for stderr.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault(pub String);

/// One operand located in device memory.
struct Operand {
    name: &'static str,
    layout: Layout,
    /// The allocation holding every element, or none when the operand has no elements.
    alloc: Option<Arc<Allocation>>,
    /// Byte offset in `alloc` of element (0, 0) of batch 0.
    origin: i128,
}

/// The element offsets (relative to the pointer) spanned by `l`: `lo..=hi`, or none if empty.
fn extent(l: &Layout) -> Option<(i128, i128)> {
    if l.rows == 0 || l.cols == 0 {
        return None;
    }
    let last = (l.rows as i128 - 1) + (l.cols as i128 - 1) * l.ld as i128;
    let batches = (l.batch as i128 - 1) * l.stride as i128;
    Some((batches.min(0), last + batches.max(0)))
}

impl Operand {
    /// Checks that `addr` is aligned for the element type and that every element of every
    /// batch lies inside one live allocation.
    fn locate(
        memory: &DeviceMemory,
        name: &'static str,
        addr: u64,
        layout: Layout,
    ) -> Result<Operand, Fault> {
        let Some((lo, hi)) = extent(&layout) else {
            return Ok(Operand { name, layout, alloc: None, origin: 0 });
        };
        let es = layout.dtype.size() as i128;
        let describe = || {
            format!(
                "matrix {name} at {addr:#x} ({:?}, {}x{}, ld {}, batch count {}, batch stride {})",
                layout.dtype, layout.rows, layout.cols, layout.ld, layout.batch, layout.stride
            )
        };
        if addr as i128 % es != 0 {
            return Err(Fault(format!("{} is not aligned to its {es}-byte elements", describe())));
        }
        let start = addr as i128 + lo * es;
        let len = (hi - lo + 1) * es;
        let needed = format!("needs bytes {start:#x}..{:#x} ({len} bytes)", start + len);
        if start < 0 || start + len > u64::MAX as i128 {
            return Err(Fault(format!("{} {needed}: outside the address space", describe())));
        }
        let (alloc, offset) = memory
            .range(start as u64, len as u64)
            .map_err(|e| Fault(format!("{} {needed}: {e}", describe())))?;
        Ok(Operand { name, layout, alloc: Some(alloc), origin: offset as i128 - lo * es })
    }

    /// Reads `out.len()` consecutive elements of column `j` of batch `b` (from row 0), widened.
    fn read_column(&self, b: u64, j: u64, bytes: &mut Vec<u8>, out: &mut [f32]) -> Result<(), Fault> {
        if out.is_empty() {
            return Ok(());
        }
        let l = &self.layout;
        let alloc = self.alloc.as_ref().expect("an operand with elements is located");
        let es = l.dtype.size();
        let offset =
            (self.origin + (j as i128 * l.ld as i128 + b as i128 * l.stride as i128) * es as i128) as u64;
        bytes.resize(out.len() * es, 0);
        if let Some(bad) = alloc.first_unwritten(offset, bytes.len() as u64) {
            return Err(Fault(format!(
                "matrix {} (batch {b}, column {j}) reads never-written device memory at {:#x} (byte {bad} of {alloc:?})",
                self.name,
                alloc.base + bad
            )));
        }
        alloc.read(offset, bytes);
        l.dtype.decode(bytes, out);
        Ok(())
    }

    /// Writes `values` as column `j` of batch `b` (from row 0), rounded to the element type.
    fn write_column(&self, b: u64, j: u64, values: &[f32], bytes: &mut Vec<u8>) {
        if values.is_empty() {
            return;
        }
        let l = &self.layout;
        let alloc = self.alloc.as_ref().expect("an operand with elements is located");
        let es = l.dtype.size();
        let offset =
            (self.origin + (j as i128 * l.ld as i128 + b as i128 * l.stride as i128) * es as i128) as u64;
        bytes.resize(values.len() * es, 0);
        l.dtype.encode(values, bytes);
        alloc.write(offset, bytes);
    }
}

/// The dot product of two equally long slices, in f32 with eight partial sums.
fn dot(x: &[f32], y: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (xs, ys) = (x.chunks_exact(8), y.chunks_exact(8));
    let (xr, yr) = (xs.remainder(), ys.remainder());
    for (a, b) in xs.zip(ys) {
        for l in 0..8 {
            lanes[l] += a[l] * b[l];
        }
    }
    for (l, (a, b)) in xr.iter().zip(yr).enumerate() {
        lanes[l] += a * b;
    }
    let quads = [lanes[0] + lanes[4], lanes[1] + lanes[5], lanes[2] + lanes[6], lanes[3] + lanes[7]];
    (quads[0] + quads[2]) + (quads[1] + quads[3])
}

/// GELU, tanh approximation: `x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
fn gelu(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)).tanh())
}

fn activate(act: Activation, x: f32) -> f32 {
    match act {
        Activation::None => x,
        Activation::Relu => x.max(0.0),
        Activation::Gelu => gelu(x),
    }
}

/// Everything one batch's tasks share.
struct Batch<'a> {
    plan: &'a Plan,
    b: u64,
    /// op(A) of this batch, row-major `m x k`: row `i` is `op(A)(i, 0..k)`.
    a_rows: Vec<f32>,
    /// op(B) of this batch, column-major `k x n`.
    b_cols: Vec<f32>,
    bias: Option<Vec<f32>>,
}

/// Runs `plan` with scalars `alpha`, `beta` on the operands at `ptrs`.
pub fn execute(
    memory: &DeviceMemory,
    plan: &Plan,
    ptrs: Pointers,
    alpha: f32,
    beta: f32,
) -> Result<(), Fault> {
    if plan.m == 0 || plan.n == 0 {
        return Ok(());
    }
    let a = Operand::locate(memory, "A", ptrs.a, plan.a)?;
    let b = Operand::locate(memory, "B", ptrs.b, plan.b)?;
    let c = if beta != 0.0 { Some(Operand::locate(memory, "C", ptrs.c, plan.c)?) } else { None };
    let d = Operand::locate(memory, "D", ptrs.d, plan.d)?;
    let bias = match plan.bias {
        Some(bias) => {
            let layout = Layout {
                dtype: bias.dtype,
                rows: plan.m,
                cols: 1,
                ld: plan.m as i64,
                batch: plan.batch,
                stride: bias.stride,
            };
            Some(Operand::locate(memory, "bias", bias.pointer, layout)?)
        }
        None => None,
    };
    let ops = Operands { a, b, c, d, bias };
    (0..plan.batch).into_par_iter().try_for_each(|bi| run_batch(plan, &ops, bi, alpha, beta))
}

struct Operands {
    a: Operand,
    b: Operand,
    c: Option<Operand>,
    d: Operand,
    bias: Option<Operand>,
}

/// Packs batch `bi`'s op(A), op(B) and bias, then computes its columns in parallel blocks.
fn run_batch(plan: &Plan, ops: &Operands, bi: u64, alpha: f32, beta: f32) -> Result<(), Fault> {
    let (m, n, k) = (plan.m as usize, plan.n as usize, plan.k as usize);
    let mut bytes = Vec::new();
    let mut a_rows = vec![0f32; m * k];
    let mut b_cols = vec![0f32; k * n];
    if k > 0 {
        if plan.trans_a {
            // A is k x m: its column i is row i of op(A).
            for (i, row) in a_rows.chunks_exact_mut(k).enumerate() {
                ops.a.read_column(bi, i as u64, &mut bytes, row)?;
            }
        } else {
            let mut col = vec![0f32; m];
            for p in 0..k {
                ops.a.read_column(bi, p as u64, &mut bytes, &mut col)?;
                for (i, v) in col.iter().enumerate() {
                    a_rows[i * k + p] = *v;
                }
            }
        }
        if plan.trans_b {
            // B is n x k: its column p is op(B)(p, 0..n).
            let mut col = vec![0f32; n];
            for p in 0..k {
                ops.b.read_column(bi, p as u64, &mut bytes, &mut col)?;
                for (j, v) in col.iter().enumerate() {
                    b_cols[j * k + p] = *v;
                }
            }
        } else {
            for (j, column) in b_cols.chunks_exact_mut(k).enumerate() {
                ops.b.read_column(bi, j as u64, &mut bytes, column)?;
            }
        }
    }
    let bias = match &ops.bias {
        Some(op) => {
            let mut v = vec![0f32; m];
            // The bias is one packed column per batch: "column 0" of batch `bi`.
            op.read_column(bi, 0, &mut bytes, &mut v)?;
            Some(v)
        }
        None => None,
    };
    let batch = Batch { plan, b: bi, a_rows, b_cols, bias };
    (0..n.div_ceil(COLUMN_BLOCK)).into_par_iter().try_for_each(|blk| {
        run_columns(&batch, ops, blk * COLUMN_BLOCK..((blk + 1) * COLUMN_BLOCK).min(n), alpha, beta)
    })
}

/// Computes and writes D's columns `cols` of one batch.
fn run_columns(
    batch: &Batch<'_>,
    ops: &Operands,
    cols: std::ops::Range<usize>,
    alpha: f32,
    beta: f32,
) -> Result<(), Fault> {
    let (m, k) = (batch.plan.m as usize, batch.plan.k as usize);
    let width = cols.len();
    // acc[jj * m + i] = op(A)(i, :) . op(B)(:, cols.start + jj)
    let mut acc = vec![0f32; width * m];
    if k > 0 {
        for (i, a_row) in batch.a_rows.chunks_exact(k).enumerate() {
            for (jj, j) in cols.clone().enumerate() {
                acc[jj * m + i] = dot(a_row, &batch.b_cols[j * k..(j + 1) * k]);
            }
        }
    }
    let mut bytes = Vec::new();
    let mut c_col = vec![0f32; m];
    for (jj, j) in cols.enumerate() {
        let out = &mut acc[jj * m..(jj + 1) * m];
        if let Some(c) = &ops.c {
            c.read_column(batch.b, j as u64, &mut bytes, &mut c_col)?;
        }
        for (i, v) in out.iter_mut().enumerate() {
            let mut x = alpha * *v;
            if ops.c.is_some() {
                x += beta * c_col[i];
            }
            if let Some(bias) = &batch.bias {
                x += bias[i];
            }
            *v = activate(batch.plan.activation, x);
        }
        ops.d.write_column(batch.b, j as u64, out, &mut bytes);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_a_plain_sum() {
        let x: Vec<f32> = (0..19).map(|i| i as f32 * 0.5).collect();
        let y: Vec<f32> = (0..19).map(|i| 1.0 - i as f32).collect();
        let plain: f32 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
        assert_eq!(dot(&x, &y), plain);
    }

    #[test]
    fn extents_cover_negative_and_interleaved_strides() {
        let l = |stride| Layout {
            dtype: crate::blaslt::types::Dtype::F32,
            rows: 4,
            cols: 3,
            ld: 16,
            batch: 4,
            stride,
        };
        assert_eq!(extent(&l(4)), Some((0, 3 + 32 + 12)));
        assert_eq!(extent(&l(0)), Some((0, 35)));
        assert_eq!(extent(&l(-64)), Some((-192, 35)));
        assert_eq!(extent(&Layout { rows: 0, ..l(4) }), None);
    }

    #[test]
    fn gelu_values() {
        assert_eq!(gelu(0.0), 0.0);
        assert!((gelu(1.0) - 0.841_192).abs() < 1e-5);
        assert!((gelu(-3.0) + 0.003_637).abs() < 1e-5);
    }
}
