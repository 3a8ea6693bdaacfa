//! Prompts to the UNet's conditioning: token windows through the text encoder(s), as diffusers'
//! `encode_prompt` for a prompt of at most 75 tokens, and as AUTOMATIC1111 for longer ones.
//!
//! - SD 1.5: CLIP-L's [`LayerSelection::sd15`] hidden state, `[1, 77 k, 768]`.
//! - SDXL: CLIP-L (`prompt`) and OpenCLIP-G (`prompt_2`, defaulting to `prompt` as in
//!   diffusers) with [`LayerSelection::sdxl`], concatenated on channels, `[1, 77 k, 2048]`, and
//!   OpenCLIP-G's pooled output `[1, 1280]`. The SDXL refiner has OpenCLIP-G alone:
//!   `[1, 77 k, 1280]` and the pooled output, with `prompt` (diffusers pairs prompts with
//!   encoders by position).
//!
//! Prompt length follows OctoAI's documented limits. SDXL truncates as diffusers does: one
//! window, the first 75 prompt tokens ([`WindowOptions::TRUNCATE`]; `BREAK` is then the word
//! "break"). SD 1.5, and SDXL after [`TextConditioner::with_long_prompts`], cut a prompt of more
//! than 75 tokens into `k` windows (at most 3; see [`WindowOptions`]), each encoded on its own,
//! concatenated along the tokens; the pooled output is the first window's (A1111 does the same).
//! [`TextConditioner::dropped_tokens`] says, per request field, what did not fit. Whatever
//! needs lining up is padded with windows of the empty prompt, A1111's rule: the negative prompt
//! to the positive one's window count (so the CFG batch stacks) and the other way round, and
//! SDXL's two encoders to each other (their prompts, or tokenizer_2's `!` tokens, can give
//! different counts).
//!
//! Prompt weighting follows AUTOMATIC1111 (see [`crate::prompt`]): each window's hidden state,
//! per encoder, is multiplied by its tokens' weights and then rescaled so that its mean is the
//! mean it had before (A1111's "Original" emphasis); the pooled output is not weighted. A window
//! whose weights are all 1 is left as the encoder gave it, so an unweighted prompt gives exactly
//! what it gave without weighting. When the weighted mean is 0 the rescaling is skipped (A1111
//! would divide by zero).
//!
//! As in diffusers, `clip_skip` applies to the prompt only: the negative prompt is always
//! encoded at the default layer (A1111 and ComfyUI skip layers for both). An SDXL negative
//! prompt given as `None` gives zeros, as diffusers does with the published
//! `force_zeros_for_empty_prompt = true`; the refiner publishes `false`, so its `None` negative
//! is the empty prompt.

use kiln_runtime::checkpoint::{Checkpoint, Component, Family};
use kiln_runtime::{DType, Device, Tensor};

use super::clip::{ClipTextModel, LayerSelection};
use super::patch::PatchTable;
use super::weights::Loans;
use super::{ModelError, Result, Weights};
use crate::embeddings::{EmbeddingError, EmbeddingFile};
use crate::prompt::DroppedTokens;
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
    /// Whether a negative prompt of `None` gives zeros (diffusers' `force_zeros_for_empty_prompt`,
    /// true in SDXL base's published model_index.json, false in the refiner's).
    zeros_for_no_negative: bool,
    /// How long prompts are cut into windows, unless SDXL truncates them.
    options: WindowOptions,
    /// Whether SDXL cuts long prompts into windows instead of truncating them as diffusers.
    long_prompts: bool,
    /// Whether prompts are read as A1111's weighting syntax (the default) or literally.
    weighting: bool,
}

/// Windows of one encoder for one prompt, with each position's weight.
struct Tokenized {
    windows: Vec<Vec<u32>>,
    weights: Vec<Vec<f32>>,
    dropped: usize,
}

impl TextConditioner {
    /// Loads the text encoder(s) of `ckpt`'s family in `dtype` on `device`, with the folder's
    /// tokenizers or the embedded ones.
    pub fn load(ckpt: &Checkpoint, dtype: DType, device: Device) -> Result<TextConditioner> {
        TextConditioner::load_with_loans(ckpt, dtype, device, None)
    }

    /// [`TextConditioner::load`] taking the tensors `loans` holds instead of reading them.
    pub fn load_with_loans(
        ckpt: &Checkpoint,
        dtype: DType,
        device: Device,
        loans: Option<&Loans>,
    ) -> Result<TextConditioner> {
        let encoder = |component: Component| -> Result<Encoder> {
            let tokenizer = ClipTokenizer::for_checkpoint(ckpt, component)?;
            let weights = Weights::new(ckpt, component, dtype, device).with_loans(loans);
            let model = ClipTextModel::load(&weights, component)?;
            Ok(Encoder { tokenizer, model })
        };
        let family = ckpt.family();
        let encoders = family
            .components()
            .iter()
            .filter(|c| matches!(c, Component::TextEncoder | Component::TextEncoder2))
            .map(|&c| encoder(c))
            .collect::<Result<Vec<_>>>()?;
        Ok(TextConditioner {
            encoders,
            sdxl: family.is_sdxl(),
            zeros_for_no_negative: family.is_sdxl() && family != Family::SdxlRefiner,
            options: WindowOptions::default(),
            long_prompts: false,
            weighting: true,
        })
    }

    /// Turns prompt weighting off (`false`: brackets, colons and `BREAK` are ordinary text, as
    /// diffusers reads them) or back on (the default).
    pub fn with_prompt_weighting(mut self, weighting: bool) -> TextConditioner {
        self.weighting = weighting;
        self
    }

    /// Cuts long prompts into windows by `options`, on SDXL too.
    pub fn with_window_options(mut self, options: WindowOptions) -> TextConditioner {
        self.options = options;
        self.long_prompts = true;
        self
    }

    /// `true`: SDXL reads long prompts as A1111's windows (up to 3, 231 tokens), as SD 1.5
    /// does; `false` (the default): SDXL truncates to one 77-token window, as diffusers does.
    /// SD 1.5 always uses windows.
    pub fn with_long_prompts(mut self, long_prompts: bool) -> TextConditioner {
        self.long_prompts = long_prompts;
        self
    }

    /// Whether long SDXL prompts become windows ([`TextConditioner::with_long_prompts`]).
    pub fn long_prompts(&self) -> bool {
        self.long_prompts
    }

    /// Whether prompts are truncated to one window as diffusers does (SDXL by default).
    fn truncates(&self) -> bool {
        self.sdxl && !self.long_prompts
    }

    /// The windows prompts are cut into: [`WindowOptions::TRUNCATE`] or the window options.
    pub fn window_options(&self) -> WindowOptions {
        if self.truncates() { WindowOptions::TRUNCATE } else { self.options }
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
        let tokens = self.tokenize(prompt, prompt_2)?;
        let mut out = self.embed(vec![tokens], clip_skip, 1)?;
        Ok(out.remove(0))
    }

    /// Embeds a prompt and its negative, padded to the same window count, in one batch per
    /// encoder. An SDXL `negative` of `None` gives zeros (diffusers'
    /// `force_zeros_for_empty_prompt`); for SD 1.5 and the SDXL refiner it is the empty prompt.
    /// `negative_2` defaults to `negative`.
    pub fn encode_pair(
        &self,
        prompt: &str,
        prompt_2: Option<&str>,
        negative: Option<&str>,
        negative_2: Option<&str>,
        clip_skip: Option<usize>,
    ) -> Result<Conditioning> {
        let positive_tokens = self.tokenize(prompt, prompt_2)?;
        if negative.is_none() && self.zeros_for_no_negative {
            let mut out = self.embed(vec![positive_tokens], clip_skip, 1)?;
            let positive = out.remove(0);
            let zeros = |t: &Tensor| Tensor::full(0.0, t.dims(), t.dtype(), t.device());
            let negative = PromptEmbedding {
                hidden: zeros(&positive.hidden)?,
                pooled: positive.pooled.as_ref().map(zeros).transpose()?,
                windows: positive.windows,
                dropped_tokens: 0,
            };
            return Ok(Conditioning { positive, negative });
        }
        let negative_tokens = self.tokenize(negative.unwrap_or(""), negative_2.or(negative))?;
        if clip_skip.is_some_and(|k| k > 0) {
            // Different layers: one batch each, padded to the same window count.
            let count =
                positive_tokens.iter().chain(&negative_tokens).map(|t| t.windows.len()).max().unwrap_or(1);
            let positive = self.embed(vec![positive_tokens], clip_skip, count)?.remove(0);
            let negative = self.embed(vec![negative_tokens], None, count)?.remove(0);
            return Ok(Conditioning { positive, negative });
        }
        let mut out = self.embed(vec![positive_tokens, negative_tokens], None, 1)?.into_iter();
        match (out.next(), out.next()) {
            (Some(positive), Some(negative)) => Ok(Conditioning { positive, negative }),
            _ => unreachable!("embed returns one embedding per prompt"),
        }
    }

    /// The tokens [`TextConditioner::encode_pair`] drops from each field, one entry per field
    /// that loses some, in field order. Only what is encoded counts: an SDXL `negative` of
    /// `None` (zeros) loses nothing, and `prompt_2` / `negative_2` speak for the second encoder
    /// only when given (otherwise its text is `prompt`'s, and so are its dropped tokens).
    pub fn dropped_tokens(
        &self,
        prompt: &str,
        prompt_2: Option<&str>,
        negative: Option<&str>,
        negative_2: Option<&str>,
    ) -> Result<Vec<DroppedTokens>> {
        let limit = self.window_options().token_limit();
        let mut out: Vec<DroppedTokens> = Vec::new();
        // (the first encoder's text, the second's, whether the second's has a field of its own)
        let mut texts = vec![(prompt, prompt_2, prompt_2.is_some(), ["prompt", "prompt_2"])];
        if negative.is_some() || !self.zeros_for_no_negative {
            let fields = ["negative_prompt", "negative_prompt_2"];
            texts.push((negative.unwrap_or(""), negative_2.or(negative), negative_2.is_some(), fields));
        }
        for (first, second, second_given, fields) in texts {
            for (e, tokens) in self.tokenize(first, second)?.iter().enumerate() {
                let field = if e == 1 && second_given { fields[1] } else { fields[0] };
                match out.iter_mut().find(|d| d.field == field) {
                    Some(d) => d.tokens = d.tokens.max(tokens.dropped),
                    None if tokens.dropped > 0 => {
                        out.push(DroppedTokens { field, tokens: tokens.dropped, limit })
                    }
                    None => {}
                }
            }
        }
        Ok(out)
    }

    /// Makes each `(trigger, embedding)` a word of the prompts: in every encoder's tokenizer the
    /// trigger (matched as transformers matches added tokens: anywhere, case-insensitively)
    /// stands for the embedding's vectors for that encoder, as new ids past the vocabulary
    /// (`trigger_1`, `trigger_2`, … name the later vectors, as diffusers adds them). Replaces the
    /// set given before; an empty set removes them. Triggers must be single words that the
    /// vocabulary does not have, distinct within the set; embeddings must fit the encoders. On
    /// error nothing changes.
    pub fn set_textual_inversions(
        &mut self,
        set: &[(String, &EmbeddingFile)],
        model: &str,
    ) -> std::result::Result<(), EmbeddingError> {
        let widths: Vec<usize> = self.encoders().map(|e| e.model.hidden_size()).collect();
        let mut seen: Vec<String> = Vec::new();
        // Per encoder: the added words with their ids, and their rows `[n, C]`.
        type Added = (Vec<(String, Vec<u32>)>, Vec<f32>);
        let mut per_encoder: Vec<Added> = vec![(Vec::new(), Vec::new()); widths.len()];
        for (trigger, file) in set {
            let bad =
                |reason: &str| EmbeddingError::Trigger { trigger: trigger.clone(), reason: reason.into() };
            if trigger.is_empty() || trigger.chars().any(char::is_whitespace) {
                return Err(bad("must be one word, without spaces"));
            }
            if seen.contains(&trigger.to_lowercase()) {
                return Err(bad("names two embeddings of the request"));
            }
            seen.push(trigger.to_lowercase());
            if self.encoders().any(|e| e.tokenizer.knows(trigger)) {
                return Err(bad(
                    "is already a word of the vocabulary: the embedding would hide it; pick another trigger",
                ));
            }
            let sets = file.for_encoders(&widths, self.sdxl, model)?;
            for ((encoder, (words, rows)), vectors) in self.encoders.iter().zip(&mut per_encoder).zip(sets) {
                let first = (encoder.model.config().vocab_size + rows.len() / vectors.width) as u32;
                let ids: Vec<u32> = (first..first + vectors.rows as u32).collect();
                words.push((trigger.clone(), ids.clone()));
                words.extend(
                    ids.iter().enumerate().skip(1).map(|(i, &id)| (format!("{trigger}_{i}"), vec![id])),
                );
                rows.extend_from_slice(&vectors.values);
            }
        }
        for (encoder, (words, rows)) in self.encoders.iter_mut().zip(per_encoder) {
            encoder.model.set_added_embedding(rows).expect("rows are whole vectors of the encoder's width");
            encoder.tokenizer.set_added_words(&words);
        }
        Ok(())
    }

    /// The text encoders' patchable weights, by canonical name.
    pub fn patchable(&self) -> PatchTable {
        self.encoders().flat_map(|e| e.model.patchable().clone()).collect()
    }

    fn encoders(&self) -> impl Iterator<Item = &Encoder> {
        self.encoders.iter()
    }

    /// Each encoder's windows: `prompt` for the first, `prompt_2` (or `prompt`) for the second
    /// (diffusers pairs them by position, so the refiner's lone OpenCLIP-G gets `prompt`).
    /// A prompt weight that is not a number is an input error.
    fn tokenize(&self, prompt: &str, prompt_2: Option<&str>) -> Result<Vec<Tokenized>> {
        let prompts = [prompt, prompt_2.unwrap_or(prompt)];
        self.encoders()
            .zip(prompts)
            .map(|(e, p)| {
                if self.weighting {
                    let w = if self.truncates() {
                        e.tokenizer.weighted_truncated(p)
                    } else {
                        e.tokenizer.weighted_windows(p, self.options)
                    };
                    let w = w.map_err(|err| ModelError::input("prompt weighting", err.to_string()))?;
                    Ok(Tokenized { windows: w.windows, weights: w.weights, dropped: w.dropped_tokens })
                } else {
                    let w = e.tokenizer.windows(p, self.window_options());
                    let weights = vec![vec![1.0; w.windows.first().map_or(0, Vec::len)]; w.windows.len()];
                    Ok(Tokenized { windows: w.windows, weights, dropped: w.dropped_tokens })
                }
            })
            .collect()
    }

    /// Runs each encoder once on the windows of all `prompts` (each padded with empty-prompt
    /// windows to the largest window count among them and the encoders, and at least
    /// `min_windows`) and splits the result back into one embedding per prompt.
    fn embed(
        &self,
        prompts: Vec<Vec<Tokenized>>,
        clip_skip: Option<usize>,
        min_windows: usize,
    ) -> Result<Vec<PromptEmbedding>> {
        let select =
            if self.is_sdxl() { LayerSelection::sdxl(clip_skip) } else { LayerSelection::sd15(clip_skip) };
        let count = prompts.iter().flatten().map(|t| t.windows.len()).max().unwrap_or(1).max(min_windows);
        let n = prompts.len();
        // Per prompt: one [1, 77 k, C_e] per encoder, and the pooled [1, P].
        let mut hiddens: Vec<Vec<Tensor>> = vec![Vec::new(); n];
        let mut pooled: Vec<Option<Tensor>> = vec![None; n];
        for (e, encoder) in self.encoders().enumerate() {
            let mut batch = Vec::with_capacity(n * count);
            let mut weights = Vec::with_capacity(n * count);
            for tokens in &prompts {
                let start = batch.len();
                batch.extend(tokens[e].windows.iter().cloned());
                batch.resize_with(start + count, || encoder.tokenizer.empty_window());
                weights.extend(tokens[e].weights.iter().cloned());
                weights.resize_with(start + count, || vec![1.0; batch[start].len()]);
            }
            let out = encoder.model.forward(&batch, select)?;
            let weighted = apply_weights(out.hidden, &weights)?; // [N k, 77, C]
            let [_, l, c] = weighted.dims_n::<3>("conditioning")?;
            let hidden = weighted.reshape(&[n, count * l, c])?; // [N, 77 k, C]
            for (i, h) in hiddens.iter_mut().enumerate() {
                h.push(hidden.narrow(0, i, 1)?); // [1, 77 k, C]
            }
            if let Some(p) = out.pooled {
                for (i, slot) in pooled.iter_mut().enumerate() {
                    *slot = Some(p.narrow(0, i * count, 1)?); // [1, P]: the prompt's first window
                }
            }
        }
        let dropped = |tokens: &[Tokenized]| tokens.iter().map(|t| t.dropped).max().unwrap_or(0);
        hiddens
            .into_iter()
            .zip(pooled)
            .zip(&prompts)
            .map(|((h, p), tokens)| {
                let hidden = match h.as_slice() {
                    [one] => one.clone(),
                    many => Tensor::concat(&many.iter().collect::<Vec<_>>(), 2)?, // [1, 77 k, C1 + C2]
                };
                let pooled = if self.is_sdxl() { p } else { None };
                Ok(PromptEmbedding { hidden, pooled, windows: count, dropped_tokens: dropped(tokens) })
            })
            .collect()
    }
}

/// A1111's "Original" emphasis on `hidden` `[W, 77, C]` with `weights[w][i]` for window `w`,
/// position `i`: each window that has a weight other than 1 is multiplied position by position,
/// then scaled back to the mean it had before. Computed on the host in f32 (means in f64); the
/// other windows keep their exact values. Returns `hidden` itself when nothing is weighted.
fn apply_weights(hidden: Tensor, weights: &[Vec<f32>]) -> Result<Tensor> {
    let unit = |w: &Vec<f32>| w.iter().all(|&x| x == 1.0);
    if weights.iter().all(unit) {
        return Ok(hidden);
    }
    let [w, l, c] = hidden.dims_n::<3>("prompt weighting")?;
    if weights.len() != w || weights.iter().any(|m| m.len() != l) {
        let message = format!("{} weight rows for hidden states {:?}", weights.len(), hidden.dims());
        return Err(ModelError::input("prompt weighting", message));
    }
    let mean = |v: &[f32]| (v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len().max(1) as f64) as f32;
    let mut data = hidden.to_vec_f32()?;
    for (window, m) in data.chunks_exact_mut(l * c).zip(weights) {
        if unit(m) {
            continue;
        }
        let before = mean(window);
        for (row, &weight) in window.chunks_exact_mut(c).zip(m) {
            row.iter_mut().for_each(|x| *x *= weight);
        }
        let ratio = before / mean(window);
        if ratio.is_finite() {
            window.iter_mut().for_each(|x| *x *= ratio);
        }
    }
    Ok(Tensor::from_f32(data, &[w, l, c], hidden.dtype(), hidden.device())?)
}
