//! The weight update of one module, in the checkpoint layout of the weight it patches
//! (`[out, in]` or `[out, in, k, k]`), scaled by the file's `alpha / rank` and the request's
//! weight, added into a sum of updates. The formulas are LoRA's and LyCORIS's:
//!
//! - LoRA / LoCon: `up · down`, with `up [out, r]` (or `[out, r, 1, 1]`) and `down [r, in]` (or
//!   `[r, in, k, k]`); scale `alpha / r`, `alpha = r` when absent.
//! - LoHa: `(w1_a · w1_b) ⊙ (w2_a · w2_b)`, each `[out, r] · [r, in·k·k]`; scale `alpha / r`
//!   with `r` the rows of `w1_b`.
//! - LoKr: `w1 ⊗ w2` (Kronecker product), each factor whole or as `a · b`; scale `alpha / r`
//!   with `r` the rows of the first decomposed factor's `b`, and 1 when neither is decomposed.
//! - Full: the stored difference itself.

use kiln_runtime::cpu::matmul::accumulate_product;
use kiln_runtime::{DType, Device, Tensor};
use rayon::prelude::*;

use super::LoraError;
use super::file::{LoraFile, Module, Part};

/// A matrix read from a LoRA file: row-major values and `[rows, cols]`.
struct Matrix {
    values: Vec<f32>,
    rows: usize,
    cols: usize,
}

/// Adds `weight ×` the update `module` makes to a weight of checkpoint shape `target` (scaled by
/// `alpha / rank`) into `sum`, row-major values of `target`'s shape.
pub fn add_update(
    file: &LoraFile,
    key: &str,
    module: &Module,
    target: &[usize],
    weight: f32,
    sum: &mut [f32],
) -> Result<(), LoraError> {
    let ctx = Context { file, key, target };
    let parts = &module.parts;
    let has = |part| parts.contains_key(&part);
    for (part, what) in [
        (Part::Mid, "LoCon's Tucker decomposition (lora_mid)"),
        (Part::HadaTucker, "LoHa's Tucker decomposition (hada_t1 / hada_t2)"),
        (Part::LokrTucker, "LoKr's Tucker decomposition (lokr_t2)"),
        (Part::Dora, "DoRA (a magnitude vector)"),
        (Part::DiffBias, "a bias difference (diff_b)"),
    ] {
        if has(part) {
            return Err(ctx.error(format!("uses {what}, which kiln does not apply")));
        }
    }
    let alpha = file.scalar(module, Part::Alpha)?;
    if has(Part::Down) || has(Part::Up) {
        // The product goes straight into the sum: the one pass over the weight's size.
        let (up, down) = (ctx.matrix(module, Part::Up, 2)?, ctx.matrix(module, Part::Down, 1)?);
        let (out, cols) = ctx.target_matrix();
        if (up.rows, down.cols, up.cols) != (out, cols, down.rows) {
            return Err(ctx.error(format!(
                "up [{}, {}] and down [{}, {}] do not make an update of the model's weight {:?} ([{out}, {cols}] as a matrix)",
                up.rows, up.cols, down.rows, down.cols, target
            )));
        }
        let rank = down.rows;
        let scale = weight * alpha.map_or(1.0, |a| a / rank as f32);
        return accumulate_product(sum, &up.values, &down.values, (out, rank, cols), scale)
            .map_err(|e| ctx.error(e.to_string()));
    }
    if has(Part::HadaW1A) {
        let w1b = ctx.matrix(module, Part::HadaW1B, 1)?;
        let rank = w1b.rows;
        let w1 = ctx.product(&ctx.matrix(module, Part::HadaW1A, 2)?, &w1b)?;
        let w2 =
            ctx.product(&ctx.matrix(module, Part::HadaW2A, 2)?, &ctx.matrix(module, Part::HadaW2B, 1)?)?;
        if (w1.rows, w1.cols) != (w2.rows, w2.cols) {
            return Err(ctx.error(format!(
                "LoHa's two products differ in shape: [{}, {}] and [{}, {}]",
                w1.rows, w1.cols, w2.rows, w2.cols
            )));
        }
        let values = w1.values.iter().zip(&w2.values).map(|(a, b)| a * b).collect();
        return ctx.add_scaled(Matrix { values, ..w1 }, weight * alpha.map_or(1.0, |a| a / rank as f32), sum);
    }
    if has(Part::LokrW1) || has(Part::LokrW1A) {
        let (w1, rank1) = ctx.factor(module, Part::LokrW1, Part::LokrW1A, Part::LokrW1B)?;
        let (w2, rank2) = ctx.factor(module, Part::LokrW2, Part::LokrW2A, Part::LokrW2B)?;
        let scale = match (alpha, rank1.or(rank2)) {
            (Some(alpha), Some(rank)) => alpha / rank as f32,
            _ => 1.0,
        };
        let (rows, cols) = ctx.target_matrix();
        return ctx.add_scaled(Matrix { values: ctx.kronecker(&w1, &w2)?, rows, cols }, weight * scale, sum);
    }
    if has(Part::Diff) {
        return ctx.add_scaled(ctx.matrix(module, Part::Diff, 1)?, weight, sum);
    }
    Err(ctx.error(format!("has no update tensors (parts: {:?})", parts.keys().collect::<Vec<_>>())))
}

struct Context<'a> {
    file: &'a LoraFile,
    key: &'a str,
    target: &'a [usize],
}

impl Context<'_> {
    fn error(&self, reason: String) -> LoraError {
        LoraError::Tensor { path: self.file.path_buf(), key: self.key.to_owned(), reason }
    }

    /// `[out, in·k·k]`: the target as a matrix.
    fn target_matrix(&self) -> (usize, usize) {
        (self.target[0], self.target[1..].iter().product())
    }

    /// `part` of `module` as a matrix: its first dimension by the rest. `trailing_ones_from`
    /// is the first dimension past which every size must be 1 (an up projection stored as a
    /// 1×1 conv), or 1 to fold every later dimension into the columns.
    fn matrix(&self, module: &Module, part: Part, trailing_ones_from: usize) -> Result<Matrix, LoraError> {
        let name = module.parts.get(&part).ok_or_else(|| self.error(format!("lacks its {part:?} tensor")))?;
        let (values, shape) = self.file.values(name)?;
        let (rows, rest) = match shape.split_first() {
            Some((&rows, rest)) if shape.len() >= 2 => (rows, rest),
            _ => return Err(self.error(format!("{name} has shape {shape:?}; a matrix was expected"))),
        };
        if trailing_ones_from == 2 && rest[1..].iter().any(|&d| d != 1) {
            return Err(
                self.error(format!("{name} has shape {shape:?}; expected [out, rank] or [out, rank, 1, 1]"))
            );
        }
        Ok(Matrix { cols: rest.iter().product(), rows, values })
    }

    /// A LoKr factor: the whole tensor `whole`, or `a · b`, with `b`'s rows when decomposed.
    fn factor(
        &self,
        module: &Module,
        whole: Part,
        a: Part,
        b: Part,
    ) -> Result<(Matrix, Option<usize>), LoraError> {
        if module.parts.contains_key(&whole) {
            return Ok((self.matrix(module, whole, 1)?, None));
        }
        let (a, b) = (self.matrix(module, a, 2)?, self.matrix(module, b, 1)?);
        let rank = b.rows;
        Ok((self.product(&a, &b)?, Some(rank)))
    }

    /// `a · b`.
    fn product(&self, a: &Matrix, b: &Matrix) -> Result<Matrix, LoraError> {
        if a.cols != b.rows {
            return Err(self.error(format!(
                "factors [{}, {}] and [{}, {}] do not multiply (their ranks differ)",
                a.rows, a.cols, b.rows, b.cols
            )));
        }
        let tensor =
            |m: &Matrix| Tensor::from_f32(m.values.clone(), &[m.rows, m.cols], DType::F32, Device::Cpu);
        let run = || tensor(a)?.matmul(&tensor(b)?)?.to_vec_f32();
        let values = run().map_err(|e| self.error(e.to_string()))?;
        Ok(Matrix { values, rows: a.rows, cols: b.cols })
    }

    /// `w1 ⊗ w2` laid out as the target `[o1·o2, i1·i2, k, k]`, where `w1` is `[o1, i1]` and `w2`
    /// holds `[o2, i2, k, k]` (whole) or `[o2, i2·k·k]` (decomposed).
    fn kronecker(&self, w1: &Matrix, w2: &Matrix) -> Result<Vec<f32>, LoraError> {
        let (out, cols) = self.target_matrix();
        let in_ch = self.target.get(1).copied().unwrap_or(1);
        let taps = cols / in_ch.max(1); // k·k
        let fits = w1.rows > 0
            && w1.cols > 0
            && out % w1.rows == 0
            && in_ch % w1.cols == 0
            && w2.rows == out / w1.rows
            && w2.cols == (in_ch / w1.cols) * taps;
        if !fits {
            return Err(self.error(format!(
                "Kronecker factors [{}, {}] and [{}, {}] do not make a weight of shape {:?}",
                w1.rows, w1.cols, w2.rows, w2.cols, self.target
            )));
        }
        let (o2, i2) = (w2.rows, in_ch / w1.cols);
        let mut values = vec![0.0; out * cols];
        for a in 0..w1.rows {
            for c in 0..w1.cols {
                let scale = w1.values[a * w1.cols + c];
                for b in 0..o2 {
                    let row = (a * o2 + b) * cols;
                    for d in 0..i2 {
                        let from = &w2.values[(b * i2 + d) * taps..][..taps];
                        let to = &mut values[row + (c * i2 + d) * taps..][..taps];
                        to.iter_mut().zip(from).for_each(|(t, f)| *t = scale * f);
                    }
                }
            }
        }
        Ok(values)
    }

    /// Adds the update times `scale` into `sum`, after checking it is the target's
    /// `[out, in·k·k]`.
    fn add_scaled(&self, update: Matrix, scale: f32, sum: &mut [f32]) -> Result<(), LoraError> {
        let (out, cols) = self.target_matrix();
        if (update.rows, update.cols) != (out, cols) || sum.len() != out * cols {
            return Err(self.error(format!(
                "makes an update of shape [{}, {}]; the model's weight has shape {:?}, [{out}, {cols}] as a matrix",
                update.rows, update.cols, self.target
            )));
        }
        sum.par_iter_mut().zip(update.values.par_iter()).for_each(|(s, u)| *s += scale * u);
        Ok(())
    }
}
