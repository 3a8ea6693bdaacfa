//! Long prompts as several 77-token windows, the way AUTOMATIC1111's web UI splits them
//! (`tokenize_line`): 75 prompt tokens per window, and a window that fills up within a few
//! tokens after a comma is cut after that comma instead, so that a phrase is not torn in two.
//! A weighted prompt keeps each token's weight, and `BREAK` starts a new window.

/// How a prompt is cut into windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowOptions {
    /// Prompt tokens per window (75: the 77 positions less BOS and EOS).
    pub chunk_tokens: usize,
    /// When a window fills up and the last comma is at most this many tokens back, the tokens
    /// after the comma move to the next window (A1111's `comma_padding_backtrack`, default 20;
    /// 0 turns it off).
    pub comma_backtrack: usize,
    /// Windows kept; the tokens of later windows are dropped and counted. 3 windows hold 225
    /// prompt tokens (OctoAI accepts up to 231 tokens on SD 1.5).
    pub max_windows: usize,
}

impl Default for WindowOptions {
    fn default() -> Self {
        WindowOptions { chunk_tokens: 75, comma_backtrack: 20, max_windows: 3 }
    }
}

impl WindowOptions {
    /// diffusers' truncation (`truncation=True` to `model_max_length`): one window of the
    /// first 75 prompt tokens, the rest dropped, no comma moves.
    pub const TRUNCATE: WindowOptions =
        WindowOptions { chunk_tokens: 75, comma_backtrack: 0, max_windows: 1 };

    /// The most tokens the windows hold, each window's BOS and EOS counted: 77 for
    /// [`WindowOptions::TRUNCATE`], 231 for the default (the limits OctoAI documents for SDXL
    /// and SD 1.5).
    pub fn token_limit(&self) -> usize {
        self.max_windows.max(1) * (self.chunk_tokens.max(1) + 2)
    }
}

/// A prompt as windows of `chunk_tokens + 2` ids each: BOS, the window's prompt tokens, EOS,
/// then the pad token (the layout diffusers gives a short prompt, so a prompt of at most 75
/// tokens gives exactly diffusers' single window).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Windows {
    /// The windows, each `chunk_tokens + 2` ids long; never empty.
    pub windows: Vec<Vec<u32>>,
    /// Prompt tokens (without BOS/EOS) in the windows beyond `max_windows`, which were dropped.
    pub dropped_tokens: usize,
}

/// The special ids a window is built with.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WindowIds {
    pub bos: u32,
    pub eos: u32,
    pub pad: u32,
    pub comma: Option<u32>,
}

/// Prompt windows with a weight for every position (BOS, EOS and padding weigh 1), as
/// AUTOMATIC1111 builds them from a weighted prompt.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightedWindows {
    /// The windows, each `chunk_tokens + 2` ids long; never empty.
    pub windows: Vec<Vec<u32>>,
    /// `weights[w][i]` is the weight of `windows[w][i]`.
    pub weights: Vec<Vec<f32>>,
    /// Prompt tokens (without BOS/EOS) in the windows beyond `max_windows`, which were dropped.
    pub dropped_tokens: usize,
}

impl WeightedWindows {
    /// Whether some position weighs other than 1 (when none does, the weighting is skipped).
    pub fn is_weighted(&self) -> bool {
        self.weights.iter().flatten().any(|&w| w != 1.0)
    }
}

/// What the window builder reads: a prompt token with its weight, or a forced window break.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Item {
    Token(u32, f32),
    Break,
}

/// Cuts prompt `tokens` (no BOS/EOS) into windows.
pub(crate) fn split(tokens: &[u32], ids: WindowIds, opts: WindowOptions) -> Windows {
    let weighted = split_weighted(tokens.iter().map(|&t| Item::Token(t, 1.0)), ids, opts);
    Windows { windows: weighted.windows, dropped_tokens: weighted.dropped_tokens }
}

/// Cuts weighted prompt tokens into windows; [`Item::Break`] closes the current window even
/// when it is empty (A1111's `BREAK`), and a break at the very end adds nothing.
pub(crate) fn split_weighted(
    items: impl IntoIterator<Item = Item>,
    ids: WindowIds,
    opts: WindowOptions,
) -> WeightedWindows {
    let n = opts.chunk_tokens.max(1);
    let mut chunks: Vec<Vec<(u32, f32)>> = Vec::new();
    let mut current: Vec<(u32, f32)> = Vec::with_capacity(n);
    let mut last_comma: Option<usize> = None;
    for item in items {
        let (token, weight) = match item {
            Item::Token(token, weight) => (token, weight),
            Item::Break => {
                chunks.push(std::mem::take(&mut current));
                last_comma = None;
                continue;
            }
        };
        if Some(token) == ids.comma {
            last_comma = Some(current.len());
        } else if let Some(comma) =
            last_comma.filter(|&c| current.len() == n && n - c <= opts.comma_backtrack)
        {
            let moved = current.split_off(comma + 1);
            chunks.push(std::mem::replace(&mut current, moved));
            last_comma = None;
        }
        if current.len() == n {
            chunks.push(std::mem::take(&mut current));
            last_comma = None;
        }
        current.push((token, weight));
    }
    if !current.is_empty() || chunks.is_empty() {
        chunks.push(current);
    }
    let keep = opts.max_windows.max(1).min(chunks.len());
    let dropped_tokens = chunks[keep..].iter().map(Vec::len).sum();
    let (windows, weights) = chunks[..keep]
        .iter()
        .map(|c| {
            let mut w = Vec::with_capacity(n + 2);
            w.push(ids.bos);
            w.extend(c.iter().map(|&(t, _)| t));
            w.push(ids.eos);
            w.resize(n + 2, ids.pad);
            let mut m = Vec::with_capacity(n + 2);
            m.push(1.0);
            m.extend(c.iter().map(|&(_, weight)| weight));
            m.resize(n + 2, 1.0);
            (w, m)
        })
        .unzip();
    WeightedWindows { windows, weights, dropped_tokens }
}
