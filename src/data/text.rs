//! Text for language models (`[dataset] kind = "text"`): a UTF-8 file (or the embedded
//! Shakespeare corpus, data/README.md) as a sequence of tokens, characters (the vocabulary
//! is the file's distinct characters, sorted) or bytes (all 256). The last
//! `validation_split` of the text, by position, is the validation part. A sample is a
//! window of `context` tokens and its target the same window one token on; training draws
//! windows at random start positions, evaluation a fixed, seeded set of them.

use crate::error::input_error;
use anyhow::{Context as _, Result};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::Read;
use std::path::Path;

/// Eight plays of Shakespeare, 1,036,467 bytes of ASCII (source and licence: data/README.md).
const SHAKESPEARE_GZ: &[u8] = include_bytes!("../../data/shakespeare.txt.gz");

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tokens {
    /// One token per character; the vocabulary is the text's characters.
    Char,
    /// One token per byte of the UTF-8 encoding; the vocabulary is all 256 bytes.
    Byte,
}

impl Tokens {
    /// "char" or "byte": what bits per token are bits per.
    pub fn unit(self) -> &'static str {
        match self {
            Tokens::Char => "char",
            Tokens::Byte => "byte",
        }
    }
}

/// The tokens of a text and back: stored with every run as vocab.json, so that `runner
/// sample` needs the run's directory only.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Vocab {
    pub tokens: Tokens,
    /// The characters, token i being `chars[i]` (char tokens only; empty for bytes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chars: Vec<char>,
}

impl Vocab {
    /// The vocabulary of `text` for `tokens`.
    pub fn of(text: &str, tokens: Tokens) -> Vocab {
        let chars = match tokens {
            Tokens::Char => {
                let mut chars: Vec<char> =
                    text.chars().collect::<std::collections::BTreeSet<_>>().into_iter().collect();
                chars.shrink_to_fit();
                chars
            }
            Tokens::Byte => Vec::new(),
        };
        Vocab { tokens, chars }
    }

    /// Number of distinct tokens.
    pub fn len(&self) -> usize {
        match self.tokens {
            Tokens::Char => self.chars.len(),
            Tokens::Byte => 256,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tokens of `text`, or which character the vocabulary lacks.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        match self.tokens {
            Tokens::Byte => Ok(text.bytes().map(u32::from).collect()),
            Tokens::Char => text
                .chars()
                .map(|c| {
                    self.chars.binary_search(&c).map(|i| i as u32).map_err(|_| {
                        format!(
                            "the character {c:?} (U+{:04X}) is not in the vocabulary of {} characters the model was trained on",
                            c as u32,
                            self.chars.len()
                        )
                    })
                })
                .collect(),
        }
    }

    /// The text of `tokens` (bytes that are not whole UTF-8 characters become U+FFFD).
    pub fn decode(&self, tokens: &[u32]) -> String {
        match self.tokens {
            Tokens::Byte => String::from_utf8_lossy(&tokens.iter().map(|&t| t as u8).collect::<Vec<u8>>()).into_owned(),
            Tokens::Char => tokens.iter().filter_map(|&t| self.chars.get(t as usize)).collect(),
        }
    }
}

/// A text data set's tokens, split by position.
#[derive(Debug, Clone)]
pub struct TextData {
    pub vocab: Vocab,
    /// Window length: tokens a model reads to predict the next one at each position.
    pub context: usize,
    pub train: Vec<u32>,
    pub validation: Vec<u32>,
    /// Seeds the evaluation windows (the data set's seed, so every run of a sweep is
    /// evaluated on the same windows).
    pub seed: u64,
}

/// Which part of the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Train,
    Validation,
}

impl TextData {
    fn tokens(&self, part: Part) -> &[u32] {
        match part {
            Part::Train => &self.train,
            Part::Validation => &self.validation,
        }
    }

    /// Number of windows (distinct start positions) in `part`.
    pub fn windows(&self, part: Part) -> usize {
        self.tokens(part).len() - self.context
    }

    /// The windows starting at `starts` as model input (n, context) and the tokens that
    /// follow each position as targets (n * context,), both u32, on `device` (gathered
    /// here: a batch is a few kilobytes of tokens).
    pub fn batch(&self, part: Part, starts: &[u32], device: &Device) -> Result<(Tensor, Tensor)> {
        let (tokens, t) = (self.tokens(part), self.context);
        let mut x = Vec::with_capacity(starts.len() * t);
        let mut y = Vec::with_capacity(starts.len() * t);
        for &s in starts {
            let s = s as usize;
            x.extend_from_slice(&tokens[s..s + t]);
            y.extend_from_slice(&tokens[s + 1..s + t + 1]);
        }
        let n = starts.len();
        Ok((Tensor::from_vec(x, (n, t), device)?, Tensor::from_vec(y, n * t, device)?))
    }

    /// `count` validation window starts, the same for every run of this data set.
    pub fn evaluation_starts(&self, count: usize) -> Vec<u32> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0xE7A1_5EED);
        let windows = self.windows(Part::Validation) as u32;
        (0..count).map(|_| rng.random_range(0..windows)).collect()
    }
}

/// Reads `path` (gzipped when it ends in .gz), or the embedded Shakespeare without one.
/// The largest text a data set may hold, after decompression: 256 MiB (enwik8 is 100 MB).
/// Its tokens take four bytes each, and the text is held while they are made.
pub const MAX_TEXT_BYTES: u64 = 256 << 20;

fn too_large(what: &str) -> anyhow::Error {
    input_error(format!(
        "{what} is larger than the {} MiB of text a data set may hold; use a part of it",
        MAX_TEXT_BYTES >> 20
    ))
}

pub fn read(path: Option<&Path>) -> Result<String> {
    let bytes = match path {
        None => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(SHAKESPEARE_GZ)
                .read_to_end(&mut out)
                .context("the embedded Shakespeare text is corrupt")?;
            out
        }
        Some(p) => {
            let cannot = |e: std::io::Error| input_error(format!("cannot read the text file {}: {e}", p.display()));
            let file = std::fs::File::open(p).map_err(cannot)?;
            if file.metadata().map_err(cannot)?.len() > MAX_TEXT_BYTES {
                return Err(too_large(&p.display().to_string()));
            }
            // Read (and inflated) through a bound one byte past the limit: a small gzip
            // that inflates to gigabytes stops there.
            let mut out = Vec::new();
            if p.extension().is_some_and(|e| e == "gz") {
                flate2::read::GzDecoder::new(std::io::BufReader::new(file))
                    .take(MAX_TEXT_BYTES + 1)
                    .read_to_end(&mut out)
                    .map_err(|e| input_error(format!("{} is not a valid gzip file: {e}", p.display())))?;
                if out.len() as u64 > MAX_TEXT_BYTES {
                    return Err(too_large(&format!("{}, inflated,", p.display())));
                }
            } else {
                file.take(MAX_TEXT_BYTES + 1).read_to_end(&mut out).map_err(cannot)?;
                if out.len() as u64 > MAX_TEXT_BYTES {
                    return Err(too_large(&p.display().to_string()));
                }
            }
            out
        }
    };
    let name = path.map_or_else(|| "the embedded Shakespeare text".to_string(), |p| p.display().to_string());
    String::from_utf8(bytes).map_err(|e| {
        input_error(format!(
            "{name} is not UTF-8 text: the bytes at offset {} are not a valid character",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// The tokens of `text`, split by position: the last `validation_split` is validation.
pub fn prepare(
    text: &str,
    name: &str,
    tokens: Tokens,
    context: usize,
    validation_split: f64,
    seed: u64,
) -> Result<TextData> {
    if text.is_empty() {
        return Err(input_error(format!("{name} is empty: a language model needs text to learn from")));
    }
    let vocab = Vocab::of(text, tokens);
    let all = vocab.encode(text).map_err(input_error)?;
    let cut = all.len() - ((all.len() as f64 * validation_split).round() as usize).min(all.len());
    let (train, validation) = (all[..cut].to_vec(), all[cut..].to_vec());
    for (part, len) in [("training", train.len()), ("validation", validation.len())] {
        if len <= context {
            return Err(input_error(format!(
                "{name} has {} {}s; with validation_split = {validation_split} its {part} part holds {len}, \
                 not more than context = {context}: a window needs context + 1 tokens. Use a smaller context \
                 (or validation_split), or a longer text",
                all.len(),
                tokens.unit()
            )));
        }
    }
    Ok(TextData { vocab, context, train, validation, seed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_shakespeare_is_the_shipped_corpus() {
        let text = read(None).unwrap();
        assert_eq!(text.len(), 1_036_467);
        let vocab = Vocab::of(&text, Tokens::Char);
        assert_eq!(vocab.len(), 76, "plain ASCII, 76 distinct bytes (data/README.md)");
        assert!(text.starts_with("HAMLET, PRINCE OF DENMARK"));
    }

    #[test]
    fn char_vocabulary_round_trips_and_names_a_missing_character() {
        let vocab = Vocab::of("hello world", Tokens::Char);
        assert_eq!(vocab.chars, vec![' ', 'd', 'e', 'h', 'l', 'o', 'r', 'w']);
        let t = vocab.encode("world hello").unwrap();
        assert_eq!(t[0], 7);
        assert_eq!(vocab.decode(&t), "world hello");
        let e = vocab.encode("hi").unwrap_err();
        assert!(e.contains("'i' (U+0069) is not in the vocabulary of 8 characters"), "{e}");
    }

    #[test]
    fn bytes_cover_any_text() {
        let vocab = Vocab::of("a", Tokens::Byte);
        assert_eq!(vocab.len(), 256);
        let t = vocab.encode("é!").unwrap();
        assert_eq!(t, vec![0xC3, 0xA9, b'!' as u32]);
        assert_eq!(vocab.decode(&t), "é!");
    }

    #[test]
    fn validation_is_the_end_of_the_text() {
        let d = prepare("abcdefghij", "t", Tokens::Char, 2, 0.3, 1).unwrap();
        assert_eq!(d.vocab.decode(&d.train), "abcdefg");
        assert_eq!(d.vocab.decode(&d.validation), "hij");
        assert_eq!(d.windows(Part::Train), 5);
        assert_eq!(d.windows(Part::Validation), 1);
        let (x, y) = d.batch(Part::Train, &[0, 4], &Device::Cpu).unwrap();
        assert_eq!(x.to_vec2::<u32>().unwrap(), vec![vec![0, 1], vec![4, 5]]);
        assert_eq!(y.to_vec1::<u32>().unwrap(), vec![1, 2, 5, 6]);
    }

    #[test]
    fn evaluation_windows_are_fixed_by_the_data_seed() {
        let text: String = (0..500).map(|i| char::from(b'a' + (i * 7 % 26) as u8)).collect();
        let a = prepare(&text, "t", Tokens::Char, 8, 0.5, 3).unwrap();
        let b = prepare(&text, "t", Tokens::Char, 8, 0.5, 3).unwrap();
        let c = prepare(&text, "t", Tokens::Char, 8, 0.5, 4).unwrap();
        assert_eq!(a.evaluation_starts(16), b.evaluation_starts(16));
        assert_ne!(a.evaluation_starts(16), c.evaluation_starts(16));
        assert!(a.evaluation_starts(100).iter().all(|&s| (s as usize) < a.windows(Part::Validation)));
    }

    #[test]
    fn empty_and_too_short_texts_are_refused() {
        let e = prepare("", "empty.txt", Tokens::Char, 4, 0.1, 1).unwrap_err().to_string();
        assert!(e.contains("empty.txt is empty"), "{e}");
        let e = prepare("abcdefghij", "short.txt", Tokens::Char, 8, 0.5, 1).unwrap_err().to_string();
        assert!(e.contains("short.txt has 10 chars") && e.contains("not more than context = 8"), "{e}");
    }
}
