//! Model families kiln runs, and their detection from the UNet's canonical tensor shapes.
//!
//! Three numbers decide: the UNet's input channels (`conv_in.weight [C, in, 3, 3]`: 4, or 9 for
//! inpainting), its cross-attention context dim (`attn2.to_k.weight [C, ctx]`: 768 for SD 1.5,
//! 2048 for SDXL base, 1280 for the refiner) and its added embedding's input width
//! (`add_embedding.linear_1.weight [T, a]`: absent for SD 1.5, 2816 for SDXL base, 2560 for the
//! refiner) — the same features diffusers' and ComfyUI's single-file loaders look at.
//!
//! Reduced-size test models (random weights, real topology, tiny widths: `fixtures/tiny/`) have
//! none of those widths. A UNet whose first level is narrower than any real model's (320
//! channels) is classified by topology instead: an added embedding with 3 levels is SDXL base,
//! with 4 levels the refiner, none with 4 levels SD 1.5; the channels pick inpainting. Real-width
//! models must match exactly, so SD 2.x (context 1024) is still refused.
//!
//! SSD-1B (Segmind's distilled SDXL) has SDXL base's widths; what sets it apart is its mid
//! block, a lone resnet without a transformer (ComfyUI's `transformer_depth_middle: -1`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use super::Component;
use super::error::CheckpointError;

/// Canonical tensor name to canonical shape.
pub type Shapes = BTreeMap<String, Vec<usize>>;

/// A model family kiln runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Stable Diffusion 1.5 (and 1.x fine-tunes): CLIP-L, 4-level UNet, context 768.
    Sd15,
    /// SD 1.5 inpainting: as SD 1.5 with 9 UNet input channels (latent, mask, masked latent).
    Sd15Inpaint,
    /// SDXL base: CLIP-L + OpenCLIP-G, 3-level UNet, context 2048, added embedding of 2816.
    SdxlBase,
    /// SDXL refiner: OpenCLIP-G only, 4-level UNet, context 1280, added embedding of 2560.
    SdxlRefiner,
    /// SDXL inpainting: as SDXL base with 9 UNet input channels.
    SdxlInpaint,
    /// SSD-1B: SDXL base distilled to fewer transformer blocks per level and a mid block
    /// without attention; SDXL's encoders, sizes and conditioning.
    Ssd1b,
}

impl Family {
    /// Every family, in a fixed order.
    pub const ALL: [Family; 6] = [
        Family::Sd15,
        Family::Sd15Inpaint,
        Family::SdxlBase,
        Family::SdxlRefiner,
        Family::SdxlInpaint,
        Family::Ssd1b,
    ];

    /// A short identifier (`sd15`, `sdxl_base`, ...), as used by the fixture manifests.
    pub fn id(self) -> &'static str {
        match self {
            Family::Sd15 => "sd15",
            Family::Sd15Inpaint => "sd15_inpaint",
            Family::SdxlBase => "sdxl_base",
            Family::SdxlRefiner => "sdxl_refiner",
            Family::SdxlInpaint => "sdxl_inpaint",
            Family::Ssd1b => "ssd_1b",
        }
    }

    /// The family with identifier `id`.
    pub fn from_id(id: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.id() == id)
    }

    /// Whether this is one of the SDXL families.
    pub fn is_sdxl(self) -> bool {
        matches!(self, Family::SdxlBase | Family::SdxlRefiner | Family::SdxlInpaint | Family::Ssd1b)
    }

    /// Whether the SDXL refiner can follow this family (diffusers' ensemble of experts): the
    /// SDXL families but the refiner itself.
    pub fn takes_refiner(self) -> bool {
        self.is_sdxl() && self != Family::SdxlRefiner
    }

    /// Whether the UNet takes the 9-channel inpainting input.
    pub fn is_inpainting(self) -> bool {
        matches!(self, Family::Sd15Inpaint | Family::SdxlInpaint)
    }

    /// The components a pipeline of this family needs.
    pub fn components(self) -> &'static [Component] {
        match self {
            Family::Sd15 | Family::Sd15Inpaint => &[Component::Unet, Component::Vae, Component::TextEncoder],
            Family::SdxlBase | Family::SdxlInpaint | Family::Ssd1b => {
                &[Component::Unet, Component::Vae, Component::TextEncoder, Component::TextEncoder2]
            }
            Family::SdxlRefiner => &[Component::Unet, Component::Vae, Component::TextEncoder2],
        }
    }

    /// The UNet's input channels.
    pub fn unet_in_channels(self) -> usize {
        if self.is_inpainting() { 9 } else { 4 }
    }

    /// The UNet's cross-attention context width.
    pub fn context_dim(self) -> usize {
        match self {
            Family::Sd15 | Family::Sd15Inpaint => 768,
            Family::SdxlBase | Family::SdxlInpaint | Family::Ssd1b => 2048,
            Family::SdxlRefiner => 1280,
        }
    }

    /// The input width of the UNet's added (pooled text + size) embedding, if it has one.
    pub fn addition_embed_inputs(self) -> Option<usize> {
        match self {
            Family::Sd15 | Family::Sd15Inpaint => None,
            Family::SdxlBase | Family::SdxlInpaint | Family::Ssd1b => Some(2816),
            Family::SdxlRefiner => Some(2560),
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::Sd15 => "SD 1.5",
            Family::Sd15Inpaint => "SD 1.5 inpainting",
            Family::SdxlBase => "SDXL base",
            Family::SdxlRefiner => "SDXL refiner",
            Family::SdxlInpaint => "SDXL inpainting",
            Family::Ssd1b => "SSD-1B",
        })
    }
}

/// The features of a UNet that decide its family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnetSignature {
    /// `conv_in`'s input channels.
    pub in_channels: usize,
    /// The cross-attention context width, if the UNet has cross-attention.
    pub context_dim: Option<usize>,
    /// The added embedding's input width, if it has one.
    pub addition_embed_inputs: Option<usize>,
    /// Number of resolution levels (down blocks).
    pub levels: usize,
    /// `conv_in`'s output channels: the first level's width.
    pub first_width: usize,
    /// Whether the mid block has a transformer (all but SSD-1B).
    pub mid_attention: bool,
}

/// Narrowest first level of any real SD / SDXL UNet; narrower ones are reduced test models.
const REAL_MIN_WIDTH: usize = 320;

impl UnetSignature {
    /// Reads the signature from canonical shapes; `None` without `unet.conv_in.weight`.
    pub fn read(shapes: &Shapes) -> Option<UnetSignature> {
        let conv_in = shapes.get("unet.conv_in.weight")?;
        let (first_width, in_channels) = (*conv_in.first()?, *conv_in.get(1)?);
        let levels = shapes
            .keys()
            .filter_map(|k| k.strip_prefix("unet.down_blocks.")?.split_once('.')?.0.parse::<usize>().ok())
            .max()
            .map_or(0, |m| m + 1);
        let context_dim = shapes
            .iter()
            .find(|(n, s)| n.starts_with("unet.") && n.ends_with(".attn2.to_k.weight") && s.len() == 2)
            .map(|(_, s)| s[1]);
        let addition_embed_inputs =
            shapes.get("unet.add_embedding.linear_1.weight").and_then(|s| s.get(1)).copied();
        let mid_attention = shapes.keys().any(|k| k.starts_with("unet.mid_block.attentions."));
        Some(UnetSignature {
            in_channels,
            context_dim,
            addition_embed_inputs,
            levels,
            first_width,
            mid_attention,
        })
    }

    /// Whether this is a reduced-size test model (first level narrower than any real model's).
    pub fn is_reduced(self) -> bool {
        self.first_width < REAL_MIN_WIDTH
    }

    /// The family with this signature, if kiln supports it: by exact widths for real models,
    /// by topology for reduced ones. SDXL base without mid-block attention is SSD-1B; no other
    /// family comes without it.
    pub fn family(self) -> Option<Family> {
        match self.family_by_widths()? {
            Family::SdxlBase if !self.mid_attention => Some(Family::Ssd1b),
            _ if !self.mid_attention => None,
            family => Some(family),
        }
    }

    fn family_by_widths(self) -> Option<Family> {
        if self.is_reduced() {
            let inpaint = match self.in_channels {
                4 => false,
                9 => true,
                _ => return None,
            };
            self.context_dim?;
            return match (self.addition_embed_inputs.is_some(), self.levels, inpaint) {
                (true, 3, false) => Some(Family::SdxlBase),
                (true, 3, true) => Some(Family::SdxlInpaint),
                (true, 4, false) => Some(Family::SdxlRefiner),
                (false, 4, false) => Some(Family::Sd15),
                (false, 4, true) => Some(Family::Sd15Inpaint),
                _ => None,
            };
        }
        Family::ALL.into_iter().filter(|&f| f != Family::Ssd1b).find(|f| {
            f.unet_in_channels() == self.in_channels
                && Some(f.context_dim()) == self.context_dim
                && f.addition_embed_inputs() == self.addition_embed_inputs
        })
    }

    /// What the signature says, in words, with a guess at what the model is.
    pub fn describe(self) -> String {
        let context =
            self.context_dim.map_or("no cross-attention".into(), |c| format!("cross-attention dim {c}"));
        let add = self
            .addition_embed_inputs
            .map_or("no added embedding".into(), |a| format!("an added embedding of {a} inputs"));
        let guess = match (self.context_dim, self.in_channels) {
            (Some(1024), _) => " (looks like SD 2.x, which kiln does not run)",
            (_, 8) => " (8 input channels: looks like an InstructPix2Pix model)",
            (Some(768 | 2048 | 1280), _) => {
                " (a known context width with unexpected channels or added embedding)"
            }
            _ => "",
        };
        let mid = if self.mid_attention { "" } else { ", no mid-block attention" };
        format!(
            "UNet with {} levels, {} input channels, {context} and {add}{mid}{guess}",
            self.levels, self.in_channels
        )
    }
}

/// Detects the family from canonical shapes, or says what was found. Also returns whether the
/// model is a reduced-size test model.
pub fn detect(path: &Path, shapes: &Shapes) -> Result<(Family, bool), CheckpointError> {
    let signature = UnetSignature::read(shapes).ok_or_else(|| CheckpointError::UnsupportedFamily {
        path: path.into(),
        found: "the UNet has no conv_in weight of shape [C, in, kh, kw]".into(),
    })?;
    signature
        .family()
        .map(|f| (f, signature.is_reduced()))
        .ok_or_else(|| CheckpointError::UnsupportedFamily { path: path.into(), found: signature.describe() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signature(
        in_channels: usize,
        ctx: usize,
        add: Option<usize>,
        levels: usize,
        width: usize,
    ) -> UnetSignature {
        UnetSignature {
            in_channels,
            context_dim: Some(ctx),
            addition_embed_inputs: add,
            levels,
            first_width: width,
            mid_attention: true,
        }
    }

    fn sig(
        in_channels: usize,
        ctx: usize,
        add: Option<usize>,
        levels: usize,
        width: usize,
    ) -> Option<Family> {
        signature(in_channels, ctx, add, levels, width).family()
    }

    #[test]
    fn sdxl_without_mid_attention_is_ssd_1b() {
        let lone_resnet = |s: UnetSignature| UnetSignature { mid_attention: false, ..s }.family();
        assert_eq!(lone_resnet(signature(4, 2048, Some(2816), 3, 320)), Some(Family::Ssd1b));
        assert_eq!(lone_resnet(signature(4, 48, Some(80), 3, 16)), Some(Family::Ssd1b), "reduced");
        assert_eq!(lone_resnet(signature(4, 768, None, 4, 320)), None, "no SD 1.5 comes without");
        assert_eq!(lone_resnet(signature(9, 2048, Some(2816), 3, 320)), None, "nor SDXL inpainting");
        let d = UnetSignature { mid_attention: false, ..signature(4, 768, None, 4, 320) }.describe();
        assert!(d.contains("no mid-block attention"), "{d}");
    }

    #[test]
    fn real_widths_must_match_exactly() {
        assert_eq!(sig(4, 768, None, 4, 320), Some(Family::Sd15));
        assert_eq!(sig(9, 768, None, 4, 320), Some(Family::Sd15Inpaint));
        assert_eq!(sig(4, 2048, Some(2816), 3, 320), Some(Family::SdxlBase));
        assert_eq!(sig(9, 2048, Some(2816), 3, 320), Some(Family::SdxlInpaint));
        assert_eq!(sig(4, 1280, Some(2560), 4, 384), Some(Family::SdxlRefiner));
        assert_eq!(sig(4, 1024, None, 4, 320), None, "SD 2.x");
        assert_eq!(sig(8, 768, None, 4, 320), None, "InstructPix2Pix");
        assert_eq!(sig(9, 1280, Some(2560), 4, 384), None, "no refiner inpainting");
    }

    #[test]
    fn reduced_models_are_classified_by_topology() {
        assert_eq!(sig(4, 32, None, 4, 16), Some(Family::Sd15));
        assert_eq!(sig(4, 48, Some(80), 3, 16), Some(Family::SdxlBase));
        assert_eq!(sig(9, 48, Some(80), 3, 16), Some(Family::SdxlInpaint));
        assert_eq!(sig(4, 32, Some(72), 4, 16), Some(Family::SdxlRefiner));
        assert_eq!(sig(4, 32, None, 3, 16), None);
    }

    #[test]
    fn description_guesses_sd2() {
        let d = signature(4, 1024, None, 4, 320).describe();
        assert!(d.contains("cross-attention dim 1024") && d.contains("SD 2.x"), "{d}");
    }
}
