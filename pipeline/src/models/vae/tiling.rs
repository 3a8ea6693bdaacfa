//! Tiled decoding, as diffusers' `AutoencoderKL.tiled_decode`: the latents are cut into
//! overlapping square tiles, each decoded alone, and each tile's top and left edges are blended
//! linearly into its already-blended upper and left neighbours, so large images decode in the
//! memory of one tile. The result equals diffusers' for the same tile sizes.
//!
//! Tiles are processed row by row, keeping only the previous row's blended tiles: the same
//! arithmetic as diffusers (which decodes every tile first), with less memory held.

use kiln_runtime::Tensor;
use kiln_runtime::checkpoint::VaeConfig;

use super::super::{ModelError, Result};

/// Tile sizes of a tiled decode, named as diffusers' attributes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tiling {
    /// Side of a latent tile (`tile_latent_min_size`; diffusers: `sample_size / 8`).
    pub latent_tile: usize,
    /// Side of a decoded tile (`tile_sample_min_size`; diffusers: `sample_size`). Blending and
    /// cropping are measured against it, as in diffusers.
    pub sample_tile: usize,
    /// Fraction of a tile shared with its neighbour (`tile_overlap_factor`, 0.25).
    pub overlap_factor: f64,
}

impl Tiling {
    /// diffusers' defaults for `config`: tiles of `sample_size` pixels, overlap 0.25.
    pub fn for_config(config: &VaeConfig) -> Tiling {
        let down = 1usize << config.levels().saturating_sub(1);
        Tiling {
            latent_tile: config.sample_size / down,
            sample_tile: config.sample_size,
            overlap_factor: 0.25,
        }
    }

    /// Latent tiles start every `stride` latents; `blend` rows and columns are blended; each
    /// tile keeps its first `keep` rows and columns. Python's `int()` truncation is kept.
    fn steps(&self) -> Result<(usize, usize, usize)> {
        let stride = (self.latent_tile as f64 * (1.0 - self.overlap_factor)) as usize;
        let blend = (self.sample_tile as f64 * self.overlap_factor) as usize;
        let keep = self.sample_tile.saturating_sub(blend);
        if stride == 0 || keep == 0 || !(0.0..1.0).contains(&self.overlap_factor) {
            return Err(ModelError::input("vae", format!("tiling {self:?} leaves no step between tiles")));
        }
        Ok((stride, blend, keep))
    }

    /// Whether latents of `height × width` are larger than one tile (diffusers decodes them
    /// whole otherwise).
    pub fn applies_to(&self, height: usize, width: usize) -> bool {
        height > self.latent_tile || width > self.latent_tile
    }

    /// Decodes `z [N, h, w, C]` tile by tile with `decode_tile` (which maps a latent tile to
    /// its image) -> `[N, 8h, 8w, out]`.
    pub fn decode(&self, z: &Tensor, decode_tile: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
        let (stride, blend, keep) = self.steps()?;
        let [_, h, w, _] = z.dims_n::<4>("vae tiled decode")?;
        let mut above: Vec<Tensor> = Vec::new();
        let mut out_rows = Vec::new();
        for i in (0..h).step_by(stride) {
            let band = z.narrow(1, i, self.latent_tile.min(h - i))?;
            let mut row: Vec<Tensor> = Vec::new();
            for (col, j) in (0..w).step_by(stride).enumerate() {
                let mut tile = decode_tile(&band.narrow(2, j, self.latent_tile.min(w - j))?)?;
                if let Some(up) = above.get(col) {
                    tile = blend_edge(up, &tile, blend, 1)?;
                }
                if let Some(left) = row.last() {
                    tile = blend_edge(left, &tile, blend, 2)?;
                }
                row.push(tile);
            }
            let cropped = row.iter().map(|t| crop(t, keep)).collect::<Result<Vec<_>>>()?;
            out_rows.push(Tensor::concat(&cropped.iter().collect::<Vec<_>>(), 2)?);
            above = row;
        }
        Ok(Tensor::concat(&out_rows.iter().collect::<Vec<_>>(), 1)?)
    }
}

/// The first `keep` rows and columns of `t [N, H, W, C]` (all of a smaller tile).
fn crop(t: &Tensor, keep: usize) -> Result<Tensor> {
    let (h, w) = (t.dims()[1], t.dims()[2]);
    Ok(t.narrow(1, 0, keep.min(h))?.narrow(2, 0, keep.min(w))?)
}

/// `b` with its first `extent` entries along `dim` (1: rows, as `blend_v`; 2: columns, as
/// `blend_h`) replaced by `a`'s last ones weighted `1 - k/extent` plus `b`'s weighted `k/extent`.
fn blend_edge(a: &Tensor, b: &Tensor, extent: usize, dim: usize) -> Result<Tensor> {
    let extent = extent.min(a.dims()[dim]).min(b.dims()[dim]);
    if extent == 0 {
        return Ok(b.clone());
    }
    // The ramp, rounded to f32 as torch rounds a Python float multiplying an f32 tensor.
    let ramp = |from_b: bool| -> Vec<f32> {
        (0..extent)
            .map(|k| {
                let t = k as f64 / extent as f64;
                (if from_b { t } else { 1.0 - t }) as f32
            })
            .collect()
    };
    let mut shape = [1usize; 4];
    shape[dim] = extent; // [1, e, 1, 1] or [1, 1, e, 1]
    let weight = |from_b| Tensor::from_f32(ramp(from_b), &shape, b.dtype(), b.device());
    let a_tail = a.narrow(dim, a.dims()[dim] - extent, extent)?;
    let b_head = b.narrow(dim, 0, extent)?;
    let mixed = a_tail.mul(&weight(false)?)?.add(&b_head.mul(&weight(true)?)?)?;
    if extent == b.dims()[dim] {
        return Ok(mixed);
    }
    let rest = b.narrow(dim, extent, b.dims()[dim] - extent)?;
    Ok(Tensor::concat(&[&mixed, &rest], dim)?)
}
