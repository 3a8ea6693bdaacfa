//! Prompts to the UNet's conditioning: token windows through the text encoder(s), as diffusers'
//! `encode_prompt` for a prompt of at most 75 tokens, and as AUTOMATIC1111 for longer ones.
//!
//! - SD 1.5: CLIP-L's [`LayerSelection::sd15`] hidden state, `[1, 77 k, 768]`.
//! - SDXL: CLIP-L (`prompt`) and OpenCLIP-G (`prompt_2`, defaulting to `prompt` as in
//!   diffusers) with [`LayerSelection::sdxl`], concatenated on channels, `[1, 77 k, 2048]`, and
//!   OpenCLIP-G's pooled output `[1, 1280]`. The SDXL refiner has OpenCLIP-G alone:
//!   `[1, 77 k, 1280]` and the pooled output (untested: no tiny refiner fixture yet).
//!
//! A prompt of more than 75 tokens becomes `k` windows (at most 3; see [`WindowOptions`]), each
//! encoded on its own, concatenated along the tokens; the pooled output is the first window's
//! (A1111 does the same). Whatever needs lining up is padded with windows of the empty prompt,
//! A1111's rule: the negative prompt to the positive one's window count (so the CFG batch
//! stacks) and the other way round, and SDXL's two encoders to each other (their prompts, or
//! tokenizer_2's `!` tokens, can give different counts).
//!
//! Choices where diffusers differs: `clip_skip` applies to negative prompts too (diffusers
//! ignores it there); an SDXL negative prompt given as `None` gives zeros, as diffusers does
//! with the published `force_zeros_for_empty_prompt = true`.

use kiln_runtime::checkpoint::{Checkpoint, Component};
use kiln_runtime::{DType, Device, Tensor};

use super::clip::{ClipTextModel, LayerSelection};
use super::{Result, Weights};
use crate::tokenizer::{ClipTokenizer, WindowOptions};

/// One encoder with its tokenizer.
#[derive(Debug)]
struct Encoder {
    tokenizer: ClipTokenizer,
    model: ClipTextModel,
}

/// A prompt's embeddings.
#[derive(Clone, Debug)]
pub struct PromptEmbedding {
    /// `[1, 77 k, C]` (C = 768 for SD 1.5, 2048 for SDXL at full size).
    pub hidden: Tensor,
    /// SDXL's pooled embedding `[1, P]`; `None` for SD 1.5.
    pub pooled: Option<Tensor>,
    /// The number of 77-token windows `k`.
    pub windows: usize,
    /// Prompt tokens beyond the last window, dropped (the largest over the encoders).
    pub dropped_tokens: usize,
}

/// The positive and negative embeddings of one request, with the same window count.
#[derive(Clone, Debug)]
pub struct Conditioning {
    /// The prompt's.
    pub positive: PromptEmbedding,
    /// The negative prompt's (zeros for an SDXL negative given as `None`).
    pub negative: PromptEmbedding,
}

/// Turns prompts into conditioning with a checkpoint's text encoder(s).
#[derive(Debug)]
pub struct TextConditioner {
    /// The family's text encoders in pipeline order: CLIP-L (SD 1.5), CLIP-L and OpenCLIP-G
    /// (SDXL base, inpainting), OpenCLIP-G alone (SDXL refiner).
    encoders: Vec<Encoder>,
    sdxl: bool,
    options: WindowOptions,
}

/// Windows of one encoder for one prompt.
struct Tokenized {
    windows: Vec<Vec<u32>>,
    dropped: usize,
}

impl TextConditioner {
    /// Loads the text encoder(s) of `ckpt`'s family in `dtype` on `device`, with the folder's
    /// tokenizers or the embedded ones.
    pub fn load(ckpt: &Checkpoint, dtype: DType, device: Device) -> Result<TextConditioner> {
        let encoder = |component: Component| -> Result<Encoder> {
            let tokenizer = ClipTokenizer::for_checkpoint(ckpt, component)?;
            let model = ClipTextModel::load(&Weights::new(ckpt, component, dtype, device), component)?;
            Ok(Encoder { tokenizer, model })
        };
        let family = ckpt.family();
        let encoders = family
            .components()
            .iter()
            .filter(|c| matches!(c, Component::TextEncoder | Component::TextEncoder2))
            .map(|&c| encoder(c))
            .collect::<Result<Vec<_>>>()?;
        Ok(TextConditioner { encoders, sdxl: family.is_sdxl(), options: WindowOptions::default() })
    }

    /// Changes how long prompts are cut into windows.
    pub fn with_window_options(mut self, options: WindowOptions) -> TextConditioner {
        self.options = options;
        self
    }

    /// Whether this is an SDXL family (penultimate layers, pooled output).
    pub fn is_sdxl(&self) -> bool {
        self.sdxl
    }

    /// Embeds `prompt` (and, for SDXL, `prompt_2`, defaulting to `prompt`). `clip_skip` follows
    /// diffusers: see [`LayerSelection::sd15`] and [`LayerSelection::sdxl`].
    pub fn encode(
        &self,
        prompt: &str,
        prompt_2: Option<&str>,
        clip_skip: Option<usize>,
    ) -> Result<PromptEmbedding> {
        let tokens = self.tokenize(prompt, prompt_2);
        let windows = tokens.iter().map(|t| t.windows.len()).max().unwrap_or(1);
        self.embed(tokens, windows, clip_skip)
    }

    /// Embeds a prompt and its negative, padded to the same window count. An SDXL `negative`
    /// of `None` gives zeros (diffusers' `force_zeros_for_empty_prompt`); for SD 1.5 it is the
    /// empty prompt. `negative_2` defaults to `negative`.
    pub fn encode_pair(
        &self,
        prompt: &str,
        prompt_2: Option<&str>,
        negative: Option<&str>,
        negative_2: Option<&str>,
        clip_skip: Option<usize>,
    ) -> Result<Conditioning> {
        let positive_tokens = self.tokenize(prompt, prompt_2);
        let zero_negative = negative.is_none() && self.is_sdxl();
        let negative_tokens = self.tokenize(negative.unwrap_or(""), negative_2.or(negative));
        let count = |t: &[Tokenized]| t.iter().map(|t| t.windows.len()).max().unwrap_or(1);
        let windows = count(&positive_tokens).max(if zero_negative { 1 } else { count(&negative_tokens) });
        let positive = self.embed(positive_tokens, windows, clip_skip)?;
        let negative = if zero_negative {
            let zeros = |t: &Tensor| Tensor::full(0.0, t.dims(), t.dtype(), t.device());
            PromptEmbedding {
                hidden: zeros(&positive.hidden)?,
                pooled: positive.pooled.as_ref().map(zeros).transpose()?,
                windows,
                dropped_tokens: 0,
            }
        } else {
            self.embed(negative_tokens, windows, clip_skip)?
        };
        Ok(Conditioning { positive, negative })
    }

    fn encoders(&self) -> impl Iterator<Item = &Encoder> {
        self.encoders.iter()
    }

    /// Each encoder's windows: `prompt` for the first, `prompt_2` (or `prompt`) for the second
    /// (diffusers pairs them by position, so the refiner's lone OpenCLIP-G gets `prompt`).
    fn tokenize(&self, prompt: &str, prompt_2: Option<&str>) -> Vec<Tokenized> {
        let prompts = [prompt, prompt_2.unwrap_or(prompt)];
        self.encoders()
            .zip(prompts)
            .map(|(e, p)| {
                let w = e.tokenizer.windows(p, self.options);
                Tokenized { windows: w.windows, dropped: w.dropped_tokens }
            })
            .collect()
    }

    /// Runs each encoder on its windows padded with empty-prompt windows to `count`.
    fn embed(
        &self,
        tokens: Vec<Tokenized>,
        count: usize,
        clip_skip: Option<usize>,
    ) -> Result<PromptEmbedding> {
        let select =
            if self.is_sdxl() { LayerSelection::sdxl(clip_skip) } else { LayerSelection::sd15(clip_skip) };
        let dropped_tokens = tokens.iter().map(|t| t.dropped).max().unwrap_or(0);
        let mut hiddens = Vec::new();
        let mut pooled = None;
        for (e, t) in self.encoders().zip(tokens) {
            let mut windows = t.windows;
            windows.resize_with(count.max(windows.len()), || e.tokenizer.empty_window());
            let out = e.model.forward(&windows, select)?;
            let [k, l, c] = out.hidden.dims_n::<3>("conditioning")?;
            hiddens.push(out.hidden.reshape(&[1, k * l, c])?); // [1, 77 k, C]
            if let Some(p) = out.pooled {
                pooled = Some(p.narrow(0, 0, 1)?); // [1, P]: the first window's
            }
        }
        let hidden = match hiddens.as_slice() {
            [one] => one.clone(),
            many => Tensor::concat(&many.iter().collect::<Vec<_>>(), 2)?, // [1, 77 k, C1 + C2]
        };
        let pooled = if self.is_sdxl() { pooled } else { None };
        Ok(PromptEmbedding { hidden, pooled, windows: count, dropped_tokens })
    }
}
