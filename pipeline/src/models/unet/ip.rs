//! IP-Adapter's decoupled cross-attention inside the UNet (diffusers'
//! `IPAdapterAttnProcessor2_0`): each cross-attention also attends to the image tokens through
//! its own `to_k_ip` / `to_v_ip`, and adds that output, times the layer's scale (and a mask), to
//! the text attention's before the output projection. A layer whose scale is 0 in every row is
//! skipped, as diffusers skips it.

use std::collections::HashMap;

use kiln_runtime::Tensor;

use crate::models::ip_adapter::IpAdapter;
use crate::models::{ModelError, Result};

/// What every transformer block reads besides its input: the text context and, under an
/// IP-Adapter, the image side.
#[derive(Clone, Copy)]
pub(crate) struct Cond<'a> {
    pub context: &'a Tensor,
    pub ip: Option<&'a IpCall>,
}

/// One layer's image keys and values `[rows, T, width]` and the rows' scales `[rows, 1, 1]`.
type LayerInputs = (Tensor, Tensor, Tensor);

/// Each row's mask (`height x width` values, row-major; `None`: everywhere) and that
/// (height, width).
pub type RowMasks<'a> = (&'a [Option<Vec<f32>>], (usize, usize));

/// One UNet call's IP-Adapter inputs, rows in the UNet's row order. The image keys and values
/// of every layer are computed once, so a denoising loop builds this once per batch.
#[derive(Clone, Debug)]
pub struct IpCall {
    /// Per layer (processor order): `to_k_ip(tokens)`, `to_v_ip(tokens)` `[rows, T, width]`, and
    /// the rows' scales `[rows, 1, 1]`, or `None` where every row's scale is 0.
    layers: Vec<Option<LayerInputs>>,
    /// Per query count (a level's `h x w`): each row's mask at that grid, `[rows, h w, 1]`.
    masks: HashMap<usize, Tensor>,
}

impl IpCall {
    /// `tokens [rows, T, C]` through `adapter`, with `scales[layer][row]`; `masks[row]` (each
    /// `height x width` values, 1 where the adapter applies; `None`: everywhere) bicubic-resized
    /// to each attention grid of a `latent` (h, w) UNet with `levels` levels.
    pub fn new(
        adapter: &IpAdapter,
        tokens: &Tensor,
        scales: &[Vec<f32>],
        masks: Option<RowMasks>,
        latent: (usize, usize),
        levels: usize,
    ) -> Result<IpCall> {
        let rows = tokens.dims()[0];
        if scales.len() != adapter.layers.len() || scales.iter().any(|s| s.len() != rows) {
            return Err(ModelError::input(
                "ip adapter",
                format!(
                    "{} layers of scales for an adapter of {} layers and {rows} rows",
                    scales.len(),
                    adapter.layers.len()
                ),
            ));
        }
        let (dtype, device) = (tokens.dtype(), tokens.device());
        let layers = adapter
            .layers
            .iter()
            .zip(scales)
            .map(|((k, v), row_scales)| -> Result<Option<LayerInputs>> {
                if row_scales.iter().all(|&s| s == 0.0) {
                    return Ok(None);
                }
                let s = Tensor::from_f32(row_scales.clone(), &[rows, 1, 1], dtype, device)?;
                Ok(Some((k.forward(tokens)?, v.forward(tokens)?, s)))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut grids = HashMap::new();
        if let Some((row_masks, (height, width))) = masks {
            for level in 0..levels {
                let (h, w) = (latent.0 >> level, latent.1 >> level);
                let mut values = Vec::with_capacity(rows * h * w);
                for mask in row_masks {
                    match mask {
                        Some(m) => values.extend(bicubic(m, (height, width), (h, w))),
                        None => values.extend(std::iter::repeat_n(1.0, h * w)),
                    }
                }
                grids.insert(h * w, Tensor::from_f32(values, &[rows, h * w, 1], dtype, device)?);
            }
        }
        Ok(IpCall { layers, masks: grids })
    }

    /// The image attention of layer `slot` for `q [B, L, H, D]`, scaled per row (and masked),
    /// `[B, L, H D]`; `None` when the layer is skipped.
    pub(crate) fn attend(
        &self,
        slot: usize,
        q: &Tensor,
        scale: f32,
        heads: usize,
        head_dim: usize,
    ) -> Result<Option<Tensor>> {
        let Some(Some((k, v, s))) = self.layers.get(slot) else { return Ok(None) };
        let (b, l, t) = (q.dims()[0], q.dims()[1], k.dims()[1]);
        if k.dims()[0] != b || k.dims()[2] != heads * head_dim {
            return Err(ModelError::input(
                "ip adapter",
                format!("layer {slot}: image keys {:?} for queries {:?}", k.dims(), q.dims()),
            ));
        }
        let k = k.reshape(&[b, t, heads, head_dim])?;
        let v = v.reshape(&[b, t, heads, head_dim])?;
        let out = Tensor::attention(q, &k, &v, scale)?.reshape(&[b, l, heads * head_dim])?;
        let out = out.mul(s)?;
        Ok(Some(match self.masks.get(&l) {
            Some(mask) => out.mul(&mask.to_dtype(out.dtype())?)?,
            None => out,
        }))
    }
}

/// `mask` (`from` = (height, width), row-major) resized to `to` with PyTorch's bicubic
/// (`F.interpolate(mode="bicubic")`: a = -0.75, half-pixel centres, edge taps clamped, no
/// antialiasing, no clamping of the result), as diffusers' `IPAdapterMaskProcessor.downsample`.
pub fn bicubic(mask: &[f32], from: (usize, usize), to: (usize, usize)) -> Vec<f32> {
    const A: f32 = -0.75;
    let coefficients = |t: f32| {
        let cubic1 = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
        let cubic2 = |x: f32| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
        [cubic2(t + 1.0), cubic1(t), cubic1(1.0 - t), cubic2(2.0 - t)]
    };
    let taps = |out: usize, len_in: usize, len_out: usize| {
        let scale = len_in as f32 / len_out as f32;
        let src = (out as f32 + 0.5) * scale - 0.5;
        let x0 = src.floor();
        let clamp = |i: f32| (i.max(0.0) as usize).min(len_in - 1);
        ([clamp(x0 - 1.0), clamp(x0), clamp(x0 + 1.0), clamp(x0 + 2.0)], coefficients(src - x0))
    };
    let ((h_in, w_in), (h_out, w_out)) = (from, to);
    let mut out = Vec::with_capacity(h_out * w_out);
    for y in 0..h_out {
        let (ys, wy) = taps(y, h_in, h_out);
        for x in 0..w_out {
            let (xs, wx) = taps(x, w_in, w_out);
            // Along x in each of the four rows, then along y, as PyTorch's kernel does.
            let row = |r: usize| (0..4).map(|i| mask[r * w_in + xs[i]] * wx[i]).sum::<f32>();
            out.push((0..4).map(|j| row(ys[j]) * wy[j]).sum());
        }
    }
    out
}

/// Each row's mask as diffusers' `IPAdapterMaskProcessor` makes it: 1 where the 8-bit luma is at
/// least 128 (its binarisation of `value / 255` at 0.5), else 0.
pub fn mask_values(mask: &image::GrayImage) -> Vec<f32> {
    mask.as_raw().iter().map(|&v| if v >= 128 { 1.0 } else { 0.0 }).collect()
}
