//! The benchmarked cases and precisions: which model part, at which sizes, in which dtype, with
//! the three spellings of a dtype each engine and the checkpoint writer want.

use std::fmt;

/// The model family, which picks the key manifest and candle's config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// Stable Diffusion 1.5 (`fixtures/manifests/sd15.diffusers.json`).
    Sd15,
    /// SDXL base 1.0 (`fixtures/manifests/sdxl_base.diffusers.json`).
    Sdxl,
}

impl Model {
    /// The diffusers-format key manifest's file name under `fixtures/manifests/`.
    pub fn manifest(self) -> &'static str {
        match self {
            Model::Sd15 => "sd15.diffusers.json",
            Model::Sdxl => "sdxl_base.diffusers.json",
        }
    }
}

/// The part of the model a case calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// One UNet call (one classifier-free-guidance step: batch 2).
    Unet,
    /// One VAE decode (batch 1).
    Vae,
}

impl Part {
    /// The safetensors file of this part inside a diffusers folder: the only file given random
    /// values (the others are sparse zeros neither engine reads).
    pub fn weights_file(self) -> &'static str {
        match self {
            Part::Unet => "unet/diffusion_pytorch_model.safetensors",
            Part::Vae => "vae/diffusion_pytorch_model.safetensors",
        }
    }
}

/// One benchmarked call: model, part and input sizes.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    /// The name on the command line and in the table (`sd15-unet`).
    pub name: &'static str,
    pub model: Model,
    pub part: Part,
    /// Batch of the call.
    pub batch: usize,
    /// Latent side (64 for SD 1.5's 512², 128 for SDXL's 1024²).
    pub latent: usize,
    /// Text context width (UNet only).
    pub context_dim: usize,
    /// SDXL's pooled text width, when the UNet takes added conditioning.
    pub pooled_dim: Option<usize>,
}

/// Tokens in one CLIP prompt chunk.
pub const CONTEXT_TOKENS: usize = 77;

/// SDXL's time ids at 1024²: original size, crop top-left, target size.
pub const SDXL_TIME_IDS: [f32; 6] = [1024.0, 1024.0, 0.0, 0.0, 1024.0, 1024.0];

/// The timestep of the UNet call (mid-schedule).
pub const TIMESTEP: f32 = 500.0;

/// Every case, in the order the table lists them.
pub const CASES: [Case; 4] = [
    Case {
        name: "sd15-unet",
        model: Model::Sd15,
        part: Part::Unet,
        batch: 2,
        latent: 64,
        context_dim: 768,
        pooled_dim: None,
    },
    Case {
        name: "sd15-vae",
        model: Model::Sd15,
        part: Part::Vae,
        batch: 1,
        latent: 64,
        context_dim: 0,
        pooled_dim: None,
    },
    Case {
        name: "sdxl-unet",
        model: Model::Sdxl,
        part: Part::Unet,
        batch: 2,
        latent: 128,
        context_dim: 2048,
        pooled_dim: Some(1280),
    },
    Case {
        name: "sdxl-vae",
        model: Model::Sdxl,
        part: Part::Vae,
        batch: 1,
        latent: 128,
        context_dim: 0,
        pooled_dim: None,
    },
];

/// The case named `name`, if any.
pub fn find(name: &str) -> Option<Case> {
    CASES.iter().copied().find(|c| c.name == name)
}

/// A storage and compute precision, as requested of both engines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    F32,
    Bf16,
    F16,
}

impl Precision {
    /// Parses `f32`, `bf16` or `f16`.
    pub fn parse(s: &str) -> Option<Precision> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" => Some(Precision::F32),
            "bf16" => Some(Precision::Bf16),
            "f16" | "fp16" => Some(Precision::F16),
            _ => None,
        }
    }

    /// kiln's compute dtype.
    pub fn kiln(self) -> kiln_runtime::DType {
        match self {
            Precision::F32 => kiln_runtime::DType::F32,
            Precision::Bf16 => kiln_runtime::DType::BF16,
            Precision::F16 => kiln_runtime::DType::F16,
        }
    }

    /// candle's dtype.
    pub fn candle(self) -> candle_core::DType {
        match self {
            Precision::F32 => candle_core::DType::F32,
            Precision::Bf16 => candle_core::DType::BF16,
            Precision::F16 => candle_core::DType::F16,
        }
    }

    /// The dtype the random weights are stored in: the compute dtype itself, so that both
    /// engines read bit-identical values and neither converts them.
    pub fn stored(self) -> kiln_runtime::checkpoint::Dtype {
        use kiln_runtime::checkpoint::Dtype;
        match self {
            Precision::F32 => Dtype::F32,
            Precision::Bf16 => Dtype::BF16,
            Precision::F16 => Dtype::F16,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        })
    }
}
