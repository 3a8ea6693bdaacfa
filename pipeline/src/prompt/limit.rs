//! What a prompt lost to its family's token limit, said the way the response line's
//! `warnings` and standard error say it.

use std::fmt;

/// Prompt tokens of one request field that did not fit the windows and were dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DroppedTokens {
    /// The request field: `prompt`, `prompt_2`, `negative_prompt` or `negative_prompt_2`.
    pub field: &'static str,
    /// Prompt tokens dropped (BOS and EOS not counted).
    pub tokens: usize,
    /// The limit they were past, BOS and EOS of each window counted (77 for SDXL, 231 for SD 1.5
    /// and for `--long-prompts`).
    pub limit: usize,
}

impl fmt::Display for DroppedTokens {
    /// `prompt: 14 tokens past the 77-token limit were dropped`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (noun, verb) = if self.tokens == 1 { ("token", "was") } else { ("tokens", "were") };
        write!(f, "{}: {} {noun} past the {}-token limit {verb} dropped", self.field, self.tokens, self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warning_names_the_field_the_count_and_the_limit() {
        let many = DroppedTokens { field: "prompt", tokens: 14, limit: 77 };
        assert_eq!(many.to_string(), "prompt: 14 tokens past the 77-token limit were dropped");
        let one = DroppedTokens { field: "negative_prompt_2", tokens: 1, limit: 231 };
        assert_eq!(one.to_string(), "negative_prompt_2: 1 token past the 231-token limit was dropped");
    }
}
