//! Prompt weighting in AUTOMATIC1111's attention syntax: `(word)` multiplies the weight of
//! `word`'s tokens by 1.1, `[word]` divides it by 1.1, `(word:1.5)` sets the factor, nesting
//! multiplies, `\(` `\)` `\[` `\]` `\\` are literal characters, and `BREAK` starts a new
//! 77-token window where prompts have several.
//!
//! [`parse_attention`] gives what A1111's `parse_prompt_attention` gives, quirks included, so
//! that a prompt written for the web UI means the same here; the tokenizer turns its segments
//! into weighted windows and the conditioner scales the encoder outputs by the weights.
//!
//! Like A1111, `(a:1.2.3)` is an error (Python's `float` refuses it); unlike A1111, so is a
//! token weight beyond f32's range, the dtype weights are applied in: a 40-digit `(a:1000...)`
//! or nesting whose product overflows (A1111 would scale by infinity). Each product is checked
//! as it is made, so a request fails validation on its prompt field rather than rendering an
//! infinite embedding. (`(a:1e40)` is not a weight at all: A1111's syntax has no exponents, so
//! it is the text `a:1e40` weighted 1.1.)
//!
//! Length limits are OctoAI's ("a 77 token limit on prompts for SDXL and 231 for SD 1.5"): an
//! SDXL prompt is one window truncated as diffusers truncates it (`BREAK` is then the word
//! "break", as diffusers reads it), SD 1.5 (and SDXL with `--long-prompts`) keeps up to three
//! A1111 windows. What is cut off is reported as [`DroppedTokens`], never silently.

mod attention;
mod limit;

pub use attention::{PromptError, Segment, parse_attention};
pub use limit::DroppedTokens;
