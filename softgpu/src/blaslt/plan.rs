//! Checking a matmul problem (descriptor plus the four layouts) and reducing it to a [`Plan`]:
//! the one place that decides what is supported, shared by `cublasLtMatmulAlgoGetHeuristic`
//! (which must refuse exactly what `cublasLtMatmul` would) and `cublasLtMatmul` itself.
//!
//! Two kinds of refusal, as cuBLASLt distinguishes them:
//! - `CUBLAS_STATUS_INVALID_VALUE`: the problem is inconsistent (op(A) is not `m x k`, a leading
//!   dimension smaller than the rows, batch counts that differ);
//! - `CUBLAS_STATUS_NOT_SUPPORTED`: consistent but outside what is implemented (row-major or
//!   tiled orders, FP8/integer/complex types, epilogues with auxiliary outputs, scale pointers).
//!
//! Implemented: `D = act(alpha * op(A) op(B) + beta * C + bias)` with A, B, C, D column-major,
//! op = N or T (C, conjugate transpose, is T for real types), strided batches, f32 compute.
//! The type combinations are those cuBLASLt's table lists for `CUBLAS_COMPUTE_32F` with an f32
//! scale: A and B of one type among bf16/f16/f32, C and D of one type, either A's or f32.

use super::desc::{MatmulDesc, MatrixLayout, layout_attr, matmul_attr};
use super::types::{
    Dtype, FILL_MODE_FULL, ORDER_COL, Status, compute_type, data_type, epilogue, operation, pointer_mode,
};

/// A problem refused, with the status to return and what to tell the user.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    pub status: Status,
    pub why: String,
}

fn invalid(why: String) -> Refusal {
    Refusal { status: Status::InvalidValue, why }
}

fn unsupported(why: String) -> Refusal {
    Refusal { status: Status::NotSupported, why }
}

/// One matrix operand's layout: element `(i, j)` of batch `b` is element number
/// `i + j * ld + b * stride` counted from the operand's pointer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Layout {
    pub dtype: Dtype,
    pub rows: u64,
    pub cols: u64,
    pub ld: i64,
    pub batch: u64,
    pub stride: i64,
}

/// The pointwise transform applied last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    None,
    Relu,
    /// GELU with the tanh approximation, as cuBLASLt's GELU epilogues compute it.
    Gelu,
}

/// The bias vector: `m` packed elements per batch, batch `b` at `b * stride` elements.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bias {
    pub dtype: Dtype,
    pub stride: i64,
    pub pointer: u64,
}

/// A checked problem, ready to execute.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub m: u64,
    pub n: u64,
    pub k: u64,
    pub batch: u64,
    pub trans_a: bool,
    pub trans_b: bool,
    pub a: Layout,
    pub b: Layout,
    pub c: Layout,
    pub d: Layout,
    pub bias: Option<Bias>,
    pub activation: Activation,
    /// Alpha and beta are device pointers (`CUBLASLT_POINTER_MODE_DEVICE`) rather than host.
    pub scalars_on_device: bool,
}

/// Reads and checks one layout.
fn layout(name: &str, l: &MatrixLayout) -> Result<Layout, Refusal> {
    use layout_attr::*;
    let raw_type = l.attrs.u32(TYPE);
    let dtype = Dtype::from_raw(raw_type)
        .ok_or_else(|| unsupported(format!("matrix {name}: data type {raw_type} is not bf16, f16 or f32")))?;
    let order = l.attrs.i32(ORDER);
    if order != ORDER_COL {
        return Err(unsupported(format!("matrix {name}: order {order} (only column-major is implemented)")));
    }
    if l.attrs.i64(PLANE_OFFSET) != 0 {
        return Err(unsupported(format!(
            "matrix {name}: a plane offset (planar complex) is not implemented"
        )));
    }
    let (rows, cols, ld) = (l.attrs.u64(ROWS), l.attrs.u64(COLS), l.attrs.i64(LD));
    if ld < 0 || (ld as u64) < rows {
        return Err(invalid(format!(
            "matrix {name}: leading dimension {ld} is smaller than its {rows} rows"
        )));
    }
    let batch = l.attrs.i32(BATCH_COUNT);
    if batch < 1 {
        return Err(invalid(format!("matrix {name}: batch count {batch} is not positive")));
    }
    Ok(Layout { dtype, rows, cols, ld, batch: batch as u64, stride: l.attrs.i64(STRIDED_BATCH_OFFSET) })
}

/// Whether `op` is a transpose (T, or C which is T for real types), or why it is refused.
fn transposed(which: &str, op: i32) -> Result<bool, Refusal> {
    match op {
        operation::N => Ok(false),
        operation::T | operation::C => Ok(true),
        other => Err(unsupported(format!("{which} = {other} (only N, T and C are implemented)"))),
    }
}

/// Checks the problem `D = op(A) op(B) (+ C)` described by `desc` and the layouts.
pub fn plan(
    desc: &MatmulDesc,
    a: &MatrixLayout,
    b: &MatrixLayout,
    c: &MatrixLayout,
    d: &MatrixLayout,
) -> Result<Plan, Refusal> {
    use matmul_attr::*;
    let at = &desc.attrs;
    let compute = at.u32(COMPUTE_TYPE);
    if !matches!(
        compute,
        compute_type::F32
            | compute_type::F32_PEDANTIC
            | compute_type::F32_FAST_16F
            | compute_type::F32_FAST_16BF
            | compute_type::F32_FAST_TF32
    ) {
        return Err(unsupported(format!("compute type {compute} (only the CUBLAS_COMPUTE_32F family)")));
    }
    let scale = at.u32(SCALE_TYPE);
    if scale != data_type::R_32F {
        return Err(unsupported(format!("scale type {scale} with f32 compute (only CUDA_R_32F)")));
    }
    let scalars_on_device = match at.i32(POINTER_MODE) {
        pointer_mode::HOST => false,
        pointer_mode::DEVICE => true,
        other => return Err(unsupported(format!("pointer mode {other} (only host and device scalars)"))),
    };
    let trans_a = transposed("TRANSA", at.i32(TRANSA))?;
    let trans_b = transposed("TRANSB", at.i32(TRANSB))?;
    if at.i32(TRANSC) != operation::N {
        return Err(unsupported(format!("TRANSC = {} (cuBLASLt implements only N)", at.i32(TRANSC))));
    }
    if at.i32(FILL_MODE) != FILL_MODE_FULL {
        return Err(unsupported(format!("fill mode {} (only full matrices)", at.i32(FILL_MODE))));
    }
    for (id, name) in [
        (A_SCALE_POINTER, "A_SCALE_POINTER"),
        (B_SCALE_POINTER, "B_SCALE_POINTER"),
        (C_SCALE_POINTER, "C_SCALE_POINTER"),
        (D_SCALE_POINTER, "D_SCALE_POINTER"),
        (AMAX_D_POINTER, "AMAX_D_POINTER"),
        (D_OUT_SCALE_POINTER, "D_OUT_SCALE_POINTER"),
        (ATOMIC_SYNC_IN_COUNTERS_POINTER, "ATOMIC_SYNC_IN_COUNTERS_POINTER"),
        (ATOMIC_SYNC_OUT_COUNTERS_POINTER, "ATOMIC_SYNC_OUT_COUNTERS_POINTER"),
    ] {
        if at.u64(id) != 0 {
            return Err(unsupported(format!("{name} is set (scaling and atomic sync are not implemented)")));
        }
    }
    for id in A_SCALE_MODE..=D_OUT_SCALE_MODE {
        if matches!(at.size_of(id), Ok(4)) && at.u32(id) != 0 {
            return Err(unsupported(format!("scale mode attribute {id} is not the default scalar mode")));
        }
    }

    let (la, lb, lc, ld) = (layout("A", a)?, layout("B", b)?, layout("C", c)?, layout("D", d)?);
    let ok_types =
        la.dtype == lb.dtype && lc.dtype == ld.dtype && (ld.dtype == la.dtype || ld.dtype == Dtype::F32);
    if !ok_types {
        return Err(unsupported(format!(
            "types A {:?}, B {:?}, C {:?}, D {:?} (A and B must match, C and D must match and be A's type or f32)",
            la.dtype, lb.dtype, lc.dtype, ld.dtype
        )));
    }

    let (m, n) = (ld.rows, ld.cols);
    if (lc.rows, lc.cols) != (m, n) {
        return Err(invalid(format!("C is {}x{} but D is {m}x{n}", lc.rows, lc.cols)));
    }
    let (a_m, k) = if trans_a { (la.cols, la.rows) } else { (la.rows, la.cols) };
    if a_m != m {
        return Err(invalid(format!("op(A) has {a_m} rows but D has {m}")));
    }
    let (b_k, b_n) = if trans_b { (lb.cols, lb.rows) } else { (lb.rows, lb.cols) };
    if (b_k, b_n) != (k, n) {
        return Err(invalid(format!("op(B) is {b_k}x{b_n} but op(A) x op(B) into D needs {k}x{n}")));
    }
    let batch = ld.batch;
    for (name, l) in [("A", &la), ("B", &lb), ("C", &lc)] {
        if l.batch != batch {
            return Err(invalid(format!("matrix {name} has batch count {} but D has {batch}", l.batch)));
        }
    }

    let e = at.u32(EPILOGUE);
    let (has_bias, activation) = match e {
        epilogue::DEFAULT => (false, Activation::None),
        epilogue::RELU => (false, Activation::Relu),
        epilogue::GELU => (false, Activation::Gelu),
        epilogue::BIAS => (true, Activation::None),
        epilogue::RELU_BIAS => (true, Activation::Relu),
        epilogue::GELU_BIAS => (true, Activation::Gelu),
        other => {
            return Err(unsupported(format!(
                "epilogue {other} (only DEFAULT, BIAS, RELU[_BIAS], GELU[_BIAS])"
            )));
        }
    };
    let bias = if has_bias {
        let raw = at.i32(BIAS_DATA_TYPE);
        // -1, the default, means D's type; an f32 bias is also accepted with a 16-bit D.
        let dtype = match raw {
            -1 => ld.dtype,
            r => match Dtype::from_raw(r as u32) {
                Some(t) if t == ld.dtype || t == Dtype::F32 => t,
                _ => return Err(unsupported(format!("bias data type {r} with D of {:?}", ld.dtype))),
            },
        };
        Some(Bias { dtype, stride: at.i64(BIAS_BATCH_STRIDE), pointer: at.u64(BIAS_POINTER) })
    } else {
        None
    };
    Ok(Plan {
        m,
        n,
        k,
        batch,
        trans_a,
        trans_b,
        a: la,
        b: lb,
        c: lc,
        d: ld,
        bias,
        activation,
        scalars_on_device,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blaslt::types::data_type::{R_16BF, R_32F};

    fn lay(t: u32, r: u64, c: u64, ld: i64) -> MatrixLayout {
        MatrixLayout::new(t, r, c, ld)
    }

    #[test]
    fn shapes_follow_the_transposes() {
        let mut desc = MatmulDesc::new(compute_type::F32, R_32F);
        desc.attrs.set(matmul_attr::TRANSA, &1i32.to_ne_bytes()).unwrap();
        // op(A) = A^T: A is k x m = 4 x 3.
        let p = plan(
            &desc,
            &lay(R_16BF, 4, 3, 4),
            &lay(R_16BF, 4, 5, 4),
            &lay(R_16BF, 3, 5, 3),
            &lay(R_16BF, 3, 5, 3),
        )
        .unwrap();
        assert_eq!((p.m, p.n, p.k, p.trans_a, p.trans_b), (3, 5, 4, true, false));
        let e = plan(
            &desc,
            &lay(R_16BF, 3, 4, 3),
            &lay(R_16BF, 4, 5, 4),
            &lay(R_16BF, 3, 5, 3),
            &lay(R_16BF, 3, 5, 3),
        );
        assert_eq!(e.unwrap_err().status, Status::InvalidValue);
    }

    #[test]
    fn refusals() {
        let desc = MatmulDesc::new(compute_type::F32, R_32F);
        let l = |t| lay(t, 2, 2, 2);
        // f16 inputs with a bf16 output is not in the table.
        let e = plan(&desc, &l(2), &l(2), &l(R_16BF), &l(R_16BF)).unwrap_err();
        assert_eq!(e.status, Status::NotSupported);
        let e = plan(&desc, &l(R_32F), &l(R_32F), &lay(R_32F, 2, 2, 1), &l(R_32F)).unwrap_err();
        assert_eq!(e.status, Status::InvalidValue);
        let desc64 = MatmulDesc::new(70, 1);
        assert_eq!(plan(&desc64, &l(1), &l(1), &l(1), &l(1)).unwrap_err().status, Status::NotSupported);
    }
}
