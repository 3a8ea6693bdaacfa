//! OpenAI CLIP's byte-level BPE: every byte of a word becomes one of 256 printable characters,
//! the last one marked end-of-word (`</w>`), then the lowest-ranked adjacent pair is merged
//! until no ranked pair remains.

use std::collections::HashMap;
use std::path::Path;

use super::TokenizerError;

/// GPT-2's `bytes_to_unicode` order: the printable Latin-1 bytes map to themselves, the other
/// 68 bytes to U+0100 onwards. Index `i` of the result is the `i`-th vocabulary entry.
fn byte_order() -> Vec<(u8, char)> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut order: Vec<(u8, char)> =
        (0..=255u8).filter(|&b| printable(b)).map(|b| (b, char::from(b))).collect();
    let others = (0..=255u8).filter(|&b| !printable(b));
    order.extend(others.enumerate().map(|(n, b)| (b, char::from_u32(256 + n as u32).unwrap_or('\u{fffd}'))));
    order
}

/// The character each byte is written as in the vocabulary.
pub(crate) fn byte_chars() -> [char; 256] {
    let mut chars = ['\0'; 256];
    for (b, c) in byte_order() {
        chars[usize::from(b)] = c;
    }
    chars
}

/// Parses `merges.txt` (an optional `#version` line, then one `left right` pair per line).
pub(crate) fn parse_merges(text: &str, path: &Path) -> Result<Vec<(String, String)>, TokenizerError> {
    let mut merges = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if (i == 0 && line.starts_with("#version")) || line.is_empty() {
            continue;
        }
        let mut parts = line.split(' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty() => {
                merges.push((a.to_string(), b.to_string()))
            }
            _ => {
                return Err(TokenizerError::Parse {
                    path: path.into(),
                    // The line itself is not echoed: the file failed validation, and may be
                    // anything (errors never print a rejected file's bytes).
                    reason: format!(
                        "line {} is not a `left right` merge (two tokens and one space; it has {} \
                         space-separated parts)",
                        i + 1,
                        line.split(' ').count()
                    ),
                });
            }
        }
    }
    Ok(merges)
}

/// The vocabulary OpenAI's CLIP derives from its merges: the 256 byte characters, the same with
/// `</w>`, one entry per merge, then `<|startoftext|>` and `<|endoftext|>` (49408 entries for
/// the published 48894 merges).
pub(crate) fn vocab_from_merges(merges: &[(String, String)]) -> HashMap<String, u32> {
    let bytes: Vec<String> = byte_order().into_iter().map(|(_, c)| c.to_string()).collect();
    let ended = bytes.iter().map(|s| format!("{s}</w>"));
    let merged = merges.iter().map(|(a, b)| format!("{a}{b}"));
    let special = ["<|startoftext|>", "<|endoftext|>"].map(String::from);
    let all: Vec<String> = bytes.iter().cloned().chain(ended).chain(merged).chain(special).collect();
    // A repeated string keeps its first id, as a dict built in order would keep the last;
    // CLIP's merges produce no repeats, so the two agree.
    let mut vocab = HashMap::with_capacity(all.len());
    for (id, s) in all.into_iter().enumerate() {
        vocab.entry(s).or_insert(id as u32);
    }
    vocab
}

/// The merge table over token ids, with each byte's ids.
#[derive(Debug)]
pub(crate) struct Bpe {
    /// `(left, right) -> (rank, merged)`.
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// Id of each byte inside a word.
    byte_ids: [u32; 256],
    /// Id of each byte ending a word (`x</w>`).
    end_ids: [u32; 256],
}

impl Bpe {
    /// Builds the table; every byte (plain and `</w>`) and every merge's parts and result must
    /// be in `vocab`, else a parse error naming `merges_path` (or `vocab_path`).
    pub(crate) fn new(
        vocab: &HashMap<String, u32>,
        merges: &[(String, String)],
        vocab_path: &Path,
        merges_path: &Path,
    ) -> Result<Bpe, TokenizerError> {
        let lookup = |s: &str, path: &Path, what: &str| {
            vocab.get(s).copied().ok_or_else(|| TokenizerError::Parse {
                path: path.into(),
                reason: format!("{what} {s:?} is not in the vocabulary"),
            })
        };
        let chars = byte_chars();
        let mut byte_ids = [0; 256];
        let mut end_ids = [0; 256];
        for b in 0..256 {
            byte_ids[b] = lookup(&chars[b].to_string(), vocab_path, "byte token")?;
            end_ids[b] = lookup(&format!("{}</w>", chars[b]), vocab_path, "byte token")?;
        }
        let mut table = HashMap::with_capacity(merges.len());
        for (rank, (a, b)) in merges.iter().enumerate() {
            let key = (lookup(a, merges_path, "merge part")?, lookup(b, merges_path, "merge part")?);
            let merged = lookup(&format!("{a}{b}"), merges_path, "merge result")?;
            table.entry(key).or_insert((rank as u32, merged));
        }
        Ok(Bpe { merges: table, byte_ids, end_ids })
    }

    /// Appends the ids of one pre-tokenized word (raw UTF-8; byte-level mapped here).
    pub(crate) fn encode_word(&self, word: &str, out: &mut Vec<u32>) {
        let bytes = word.as_bytes();
        let Some((&last, init)) = bytes.split_last() else { return };
        let mut symbols: Vec<u32> = init.iter().map(|&b| self.byte_ids[usize::from(b)]).collect();
        symbols.push(self.end_ids[usize::from(last)]);
        while symbols.len() > 1 {
            let best = symbols
                .windows(2)
                .filter_map(|p| {
                    self.merges.get(&(p[0], p[1])).map(|&(rank, merged)| (rank, p[0], p[1], merged))
                })
                .min_by_key(|&(rank, ..)| rank);
            let Some((_, left, right, merged)) = best else { break };
            // Merge every occurrence of the pair, left to right.
            let mut next = Vec::with_capacity(symbols.len());
            let mut i = 0;
            while i < symbols.len() {
                if i + 1 < symbols.len() && symbols[i] == left && symbols[i + 1] == right {
                    next.push(merged);
                    i += 2;
                } else {
                    next.push(symbols[i]);
                    i += 1;
                }
            }
            symbols = next;
        }
        out.extend(symbols);
    }
}
