//! Merging a set of LoRAs into a model's patchable weights, and putting the originals back.
//!
//! Each patched weight becomes `W + Σᵢ weightᵢ · updateᵢ`: the updates of every LoRA in the set
//! summed in f32 on the host, rounded once to the weight's dtype, and added to the weight where
//! it lives (in one parallel pass for a host weight; uploaded and added by the device's `add`
//! otherwise), each sum in f32 rounded once: the same bits on either device. The original tensors are kept, so restoring swaps them back untouched.

use std::collections::BTreeMap;
use std::path::PathBuf;

use half::slice::HalfFloatSliceExt;
use kiln_runtime::{CpuStorage, DType, Device, Tensor};
use rayon::prelude::*;

use super::delta::add_update;
use super::file::LoraFile;
use super::summary::family_of_width;
use super::{LoraError, TargetIndex};
use crate::models::patch::{PatchTable, WeightLayout};

/// One LoRA of a set with the weight the request gives it.
#[derive(Clone, Copy, Debug)]
pub struct WeightedLora<'a> {
    /// The opened file.
    pub file: &'a LoraFile,
    /// The request's weight (the update's multiplier).
    pub weight: f32,
}

/// What the model offers LoRAs: its weights, their names, and what a LoRA must fit.
#[derive(Clone, Copy, Debug)]
pub struct ModelSide<'a> {
    /// The patchable weights.
    pub table: &'a PatchTable,
    /// Module keys to weight names.
    pub index: &'a TargetIndex,
    /// The family's name, for errors.
    pub family: &'a str,
    /// The UNet's cross-attention width (768 SD 1.5, 2048 SDXL), which a LoRA's `attn2.to_k`
    /// input width must equal.
    pub context_width: usize,
    /// Whether the model has a second text encoder (SDXL).
    pub has_text_encoder_2: bool,
}

/// What merging one LoRA did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoraReport {
    /// The file.
    pub path: PathBuf,
    /// Modules merged.
    pub applied: usize,
    /// Module keys that name no weight of the model, and tensors that belong to no module.
    pub unmapped: Vec<String>,
}

/// The weights a merge replaced, by canonical name, to put back with [`restore`].
#[derive(Debug, Default)]
pub struct Originals(BTreeMap<String, Tensor>);

impl Originals {
    /// How many weights are patched.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing is patched.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The original of the patched weight `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.0.get(name)
    }
}

/// The most unmapped keys an error lists.
const UNMAPPED_LISTED: usize = 8;

/// Merges `loras` into `model`'s weights. On error nothing stays changed.
pub fn merge(
    model: ModelSide<'_>,
    loras: &[WeightedLora<'_>],
) -> Result<(Originals, Vec<LoraReport>), LoraError> {
    // target weight -> (lora, module key), in a stable order.
    let mut plan: BTreeMap<&str, Vec<(usize, &str)>> = BTreeMap::new();
    let mut reports = Vec::with_capacity(loras.len());
    for (i, lora) in loras.iter().enumerate() {
        check_family(model, lora.file)?;
        let mut unmapped = Vec::new();
        let mut applied = 0;
        for key in lora.file.modules().keys() {
            match model.index.target(key) {
                Some(target) => {
                    plan.entry(target).or_default().push((i, key));
                    applied += 1;
                }
                None => unmapped.push(key.clone()),
            }
        }
        let total = lora.file.modules().len();
        if applied * 2 < total {
            return Err(LoraError::MostlyUnmapped {
                path: lora.file.path_buf(),
                model: model.family.to_owned(),
                mapped: applied,
                total,
                unmapped: unmapped.into_iter().take(UNMAPPED_LISTED).collect(),
            });
        }
        unmapped.extend(lora.file.unrecognised().iter().cloned());
        reports.push(LoraReport { path: lora.file.path_buf(), applied, unmapped });
    }

    let mut originals = Originals::default();
    let mut sum = Vec::new(); // reused: fresh pages for every weight would fault them all in
    for (target, sources) in plan {
        if let Err(e) = merge_one(model, loras, target, &sources, &mut sum, &mut originals) {
            restore(model.table, originals);
            return Err(e);
        }
    }
    Ok((originals, reports))
}

/// Puts the original weights back.
pub fn restore(table: &PatchTable, originals: Originals) {
    for (name, tensor) in originals.0 {
        if let Some(weight) = table.get(&name) {
            // The tensor came out of this very weight, so it fits.
            let _ = weight.set(tensor);
        }
    }
}

/// Sums the updates `sources` make to `target` and swaps the merged weight in.
fn merge_one(
    model: ModelSide<'_>,
    loras: &[WeightedLora<'_>],
    target: &str,
    sources: &[(usize, &str)],
    sum: &mut Vec<f32>,
    originals: &mut Originals,
) -> Result<(), LoraError> {
    let weight = &model.table[target];
    let shape = weight.checkpoint_shape();
    sum.clear();
    sum.resize(shape.iter().product(), 0.0);
    for &(i, key) in sources {
        let lora = loras[i];
        add_update(lora.file, key, &lora.file.modules()[key], &shape, lora.weight, sum)?;
    }
    let path = || loras[sources[0].0].file.path_buf();
    let fail = |e: kiln_runtime::Error| LoraError::Merge { path: path(), reason: e.to_string() };
    let base = weight.get();
    let merged = match (weight.layout(), base.cpu_storage()) {
        // A host linear: one parallel pass, no temporaries.
        (WeightLayout::Linear, Some(host)) => {
            Tensor::from_cpu_storage(add_rounded(host, sum), base.dims()).map_err(fail)?
        }
        _ => {
            let held = match weight.layout() {
                WeightLayout::Linear => Tensor::from_f32(sum.clone(), base.dims(), DType::F32, Device::Cpu),
                WeightLayout::Conv => Tensor::from_f32(sum.clone(), &shape, DType::F32, Device::Cpu)
                    .and_then(|oihw| oihw.permute(&[0, 2, 3, 1])),
            };
            let update = held.and_then(|t| t.to_dtype(base.dtype())).and_then(|t| t.to_device(base.device()));
            base.add(&update.map_err(fail)?).map_err(fail)?
        }
    };
    weight.set(merged).map_err(|e| LoraError::Merge { path: path(), reason: e.to_string() })?;
    originals.0.entry(target.to_owned()).or_insert(base);
    Ok(())
}

/// Elements per task of [`add_rounded`].
const CHUNK: usize = 1 << 14;

/// `base + round(update)` in `base`'s dtype: the update rounded to the dtype first, then each sum
/// computed in f32 and rounded once, as the device path's `add` does, so both give the same bits.
/// In parallel chunks, with half's vectorised slice conversions.
fn add_rounded(base: &CpuStorage, update: &[f32]) -> CpuStorage {
    match base {
        CpuStorage::F32(b) => {
            CpuStorage::F32(b.par_iter().zip(update.par_iter()).map(|(b, u)| b + u).collect())
        }
        CpuStorage::F16(b) => CpuStorage::F16(add_rounded_half(b, update)),
        CpuStorage::BF16(b) => CpuStorage::BF16(add_rounded_half(b, update)),
    }
}

fn add_rounded_half<T: Copy + Default + Send + Sync>(base: &[T], update: &[f32]) -> Vec<T>
where
    [T]: HalfFloatSliceExt,
{
    let mut out = vec![T::default(); base.len()];
    out.par_chunks_mut(CHUNK).zip(base.par_chunks(CHUNK)).zip(update.par_chunks(CHUNK)).for_each(
        |((out, base), update)| {
            let mut rounded = vec![T::default(); update.len()];
            rounded.convert_from_f32_slice(update);
            let (mut sum, mut widened) = (vec![0f32; update.len()], vec![0f32; base.len()]);
            rounded.convert_to_f32_slice(&mut sum);
            base.convert_to_f32_slice(&mut widened);
            sum.iter_mut().zip(&widened).for_each(|(s, b)| *s += b);
            out.convert_from_f32_slice(&sum);
        },
    );
    out
}

/// A LoRA for another family: one with SDXL's second text encoder on a model without it, or
/// whose cross-attention keys take another context width than the model's.
fn check_family(model: ModelSide<'_>, file: &LoraFile) -> Result<(), LoraError> {
    let wrong =
        |lora: String| LoraError::WrongFamily { path: file.path_buf(), lora, model: model.family.to_owned() };
    let keys = file.modules().keys();
    if !model.has_text_encoder_2
        && keys.clone().any(|k| k.starts_with("lora_te2_") || k.starts_with("text_encoder_2."))
    {
        return Err(wrong("SDXL (it has weights for a second text encoder)".into()));
    }
    match file.context_width() {
        Some(width) if width != model.context_width => Err(wrong(format!(
            "{} (its cross-attention takes a text context {width} wide; this model's is {})",
            family_of_width(width)
                .map_or_else(|| format!("a model with {width}-wide text context"), str::to_owned),
            model.context_width
        ))),
        _ => Ok(()),
    }
}
