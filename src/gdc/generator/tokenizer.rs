//! The CLIP byte-level BPE tokenizer (Radford et al. 2021), as the Hugging
//! Face fast `CLIPTokenizer` runs it: NFC, whitespace runs → one space,
//! lower case; split into words with CLIP's regex; bytes mapped to GPT-2's
//! printable characters; BPE merges by rank with `</w>` on each word's last
//! symbol; `<|startoftext|>` ... `<|endoftext|>` around at most
//! `model_max_length - 2` tokens, padded to `model_max_length`.
//!
//! Reads a tokenizer folder in either layout real repositories use:
//! `tokenizer.json` (what transformers 5 saves) or `vocab.json` + `merges.txt`
//! (what SD/SDXL repositories ship), plus `tokenizer_config.json` for the pad
//! token and maximum length (SD 1.x pads with `<|endoftext|>`, SD 2.x and the
//! second SDXL tokenizer with `!`). Parity with transformers:
//! tests/generator_parity.rs.

use super::GeneratorError;
use regex::Regex;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use unicode_normalization::UnicodeNormalization;

const BOS: &str = "<|startoftext|>";
const EOS: &str = "<|endoftext|>";
const SUFFIX: &str = "</w>";
/// CLIP's word pattern (identical in the original `simple_tokenizer.py` and `tokenizer.json`).
const WORD_PATTERN: &str = r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

#[derive(Debug)]
pub struct ClipTokenizer {
    vocab: HashMap<String, i64>,
    ranks: HashMap<(String, String), usize>,
    byte_chars: [char; 256],
    words: Regex,
    whitespace: Regex,
    /// Special tokens matched in the raw text before anything else, longest
    /// first (transformers registers bos/eos/pad so; SD 2.x's pad "!" too).
    specials: Vec<(String, i64)>,
    pub bos_id: i64,
    pub eos_id: i64,
    pub pad_id: i64,
    pub max_length: usize,
}

/// GPT-2's reversible map from bytes to printable characters.
fn bytes_to_unicode() -> [char; 256] {
    let mut map = ['\0'; 256];
    let mut extra = 0u32;
    for b in 0..256u32 {
        let printable = (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
        let c = if printable {
            b
        } else {
            extra += 1;
            255 + extra
        };
        map[b as usize] = char::from_u32(c).unwrap_or('\u{fffd}');
    }
    map
}

impl ClipTokenizer {
    /// From a vocabulary and merges ("a b" pairs, by rank); `pad` names the pad token.
    pub fn new(vocab: HashMap<String, i64>, merges: Vec<(String, String)>, pad: &str, max_length: usize) -> Result<Self, GeneratorError> {
        let id = |t: &str| vocab.get(t).copied().ok_or_else(|| GeneratorError::Tokenizer { path: "<vocab>".into(), reason: format!("vocabulary has no {t:?}") });
        let (bos_id, eos_id, pad_id) = (id(BOS)?, id(EOS)?, id(pad)?);
        if max_length < 2 {
            return Err(GeneratorError::Tokenizer { path: "<config>".into(), reason: format!("model_max_length {max_length} < 2") });
        }
        let ranks = merges.into_iter().enumerate().map(|(i, m)| (m, i)).collect();
        let mut specials: Vec<(String, i64)> = [BOS, EOS, pad].iter().map(|t| (t.to_string(), vocab[*t])).collect();
        specials.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        specials.dedup();
        let regex = |p: &str| Regex::new(p).map_err(|e| GeneratorError::Tokenizer { path: "<regex>".into(), reason: e.to_string() });
        Ok(Self {
            vocab,
            ranks,
            byte_chars: bytes_to_unicode(),
            words: regex(WORD_PATTERN)?,
            whitespace: regex(r"\s+")?,
            specials,
            bos_id,
            eos_id,
            pad_id,
            max_length,
        })
    }

    /// Loads `dir/tokenizer.json`, else `dir/vocab.json` + `dir/merges.txt`;
    /// pad token and length from `dir/tokenizer_config.json` when present.
    pub fn load(dir: &Path) -> Result<Self, GeneratorError> {
        let err = |path: &Path, reason: String| GeneratorError::Tokenizer { path: path.display().to_string(), reason };
        let read_json = |path: &Path| -> Result<Value, GeneratorError> {
            let text = std::fs::read_to_string(path).map_err(|e| err(path, e.to_string()))?;
            serde_json::from_str(&text).map_err(|e| err(path, e.to_string()))
        };
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg = if cfg_path.is_file() { read_json(&cfg_path)? } else { Value::Null };
        let pad = match &cfg["pad_token"] {
            Value::String(s) => s.clone(),
            Value::Object(o) => o.get("content").and_then(Value::as_str).unwrap_or(EOS).to_owned(),
            _ => EOS.to_owned(),
        };
        // unset or absurd ("1e30": no limit) lengths fall back to CLIP's 77 positions
        let max_length = cfg["model_max_length"].as_f64().filter(|m| (2.0..=4096.0).contains(m)).map_or(77, |m| m as usize);

        let json_path = dir.join("tokenizer.json");
        let mut added = Vec::new();
        let (vocab, merges) = if json_path.is_file() {
            let j = read_json(&json_path)?;
            for t in j["added_tokens"].as_array().into_iter().flatten() {
                if let (Some(content), Some(id)) = (t["content"].as_str(), t["id"].as_i64()) {
                    added.push((content.to_owned(), id));
                }
            }
            let model = &j["model"];
            if model["type"].as_str() != Some("BPE") || model["end_of_word_suffix"].as_str() != Some(SUFFIX) {
                return Err(err(&json_path, "not a CLIP BPE model (type BPE, end_of_word_suffix </w>)".into()));
            }
            let vocab = parse_vocab(&model["vocab"]).ok_or_else(|| err(&json_path, "model.vocab is not a token → id map".into()))?;
            let merges = model["merges"].as_array().ok_or_else(|| err(&json_path, "model.merges is not a list".into()))?;
            let merges = merges
                .iter()
                .map(|m| match m {
                    // tokenizers < 0.20 writes "a b", newer versions ["a", "b"]
                    Value::String(s) => split_merge(s),
                    Value::Array(a) => match (a.first().and_then(Value::as_str), a.get(1).and_then(Value::as_str)) {
                        (Some(x), Some(y)) if a.len() == 2 => Some((x.to_owned(), y.to_owned())),
                        _ => None,
                    },
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| err(&json_path, "model.merges has an entry that is not a pair".into()))?;
            (vocab, merges)
        } else {
            let vocab_path = dir.join("vocab.json");
            let merges_path = dir.join("merges.txt");
            let vocab = parse_vocab(&read_json(&vocab_path)?).ok_or_else(|| err(&vocab_path, "not a token → id map".into()))?;
            let text = std::fs::read_to_string(&merges_path).map_err(|e| err(&merges_path, e.to_string()))?;
            let mut merges = Vec::new();
            for (i, line) in text.lines().enumerate() {
                if (i == 0 && line.starts_with("#version")) || line.trim().is_empty() {
                    continue;
                }
                merges.push(split_merge(line).ok_or_else(|| err(&merges_path, format!("line {}: not a pair: {line:?}", i + 1)))?);
            }
            (vocab, merges)
        };
        let mut tok = Self::new(vocab, merges, &pad, max_length).map_err(|e| match e {
            GeneratorError::Tokenizer { reason, .. } => err(dir, reason),
            e => e,
        })?;
        tok.specials.extend(added);
        tok.specials.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        tok.specials.dedup();
        Ok(tok)
    }

    /// Token ids of `text` without the start/end tokens and without truncation.
    pub fn encode_words(&self, text: &str) -> Vec<i64> {
        let mut ids = Vec::new();
        let mut rest = text;
        // leftmost special token (longest at a tie), as the reference's added-token split
        while let Some((at, (tok, id))) =
            self.specials.iter().filter_map(|s| rest.find(s.0.as_str()).map(|at| (at, s))).min_by_key(|(at, s)| (*at, usize::MAX - s.0.len()))
        {
            ids.extend(self.encode_plain(&rest[..at]));
            ids.push(*id);
            rest = &rest[at + tok.len()..];
        }
        ids.extend(self.encode_plain(rest));
        ids
    }

    fn encode_plain(&self, text: &str) -> Vec<i64> {
        let text: String = text.nfc().collect();
        let text = self.whitespace.replace_all(&text, " ").to_lowercase();
        let mut ids = Vec::new();
        for word in self.words.find_iter(&text) {
            let word = word.as_str();
            let chars: String = word.bytes().map(|b| self.byte_chars[b as usize]).collect();
            ids.extend(self.bpe(&chars));
        }
        ids
    }

    /// `[bos, words..., eos, pad...]`, exactly `max_length` ids (as the
    /// pipelines call it: padding="max_length", truncation=True).
    pub fn encode(&self, text: &str) -> Vec<i64> {
        let mut ids = vec![self.bos_id];
        ids.extend(self.encode_words(text).into_iter().take(self.max_length - 2));
        ids.push(self.eos_id);
        ids.resize(self.max_length, self.pad_id);
        ids
    }

    fn bpe(&self, word: &str) -> Vec<i64> {
        let chars: Vec<char> = word.chars().collect();
        let mut symbols: Vec<String> = chars.iter().map(|c| c.to_string()).collect();
        if let Some(last) = symbols.last_mut() {
            last.push_str(SUFFIX);
        }
        // merge the lowest-ranked adjacent pair until none is in the merge list
        loop {
            let best = symbols
                .windows(2)
                .enumerate()
                .filter_map(|(i, w)| self.ranks.get(&(w[0].clone(), w[1].clone())).map(|&r| (r, i)))
                .min();
            let Some((_, i)) = best else { break };
            let merged = format!("{}{}", symbols[i], symbols[i + 1]);
            symbols.splice(i..i + 2, [merged]);
        }
        // symbols outside the vocabulary become the unknown token, as the reference BPE does
        symbols.iter().map(|s| self.vocab.get(s).copied().unwrap_or(self.eos_id)).collect()
    }
}

fn parse_vocab(v: &Value) -> Option<HashMap<String, i64>> {
    v.as_object()?.iter().map(|(k, id)| id.as_i64().map(|id| (k.clone(), id))).collect()
}

fn split_merge(s: &str) -> Option<(String, String)> {
    let (a, b) = s.split_once(' ')?;
    (!a.is_empty() && !b.is_empty() && !b.contains(' ')).then(|| (a.to_owned(), b.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ClipTokenizer {
        let chars = bytes_to_unicode();
        let mut vocab: HashMap<String, i64> = HashMap::new();
        for c in chars.iter() {
            vocab.insert(c.to_string(), vocab.len() as i64);
        }
        for c in chars.iter() {
            vocab.insert(format!("{c}</w>"), vocab.len() as i64);
        }
        for t in ["ca", "car</w>", BOS, EOS] {
            vocab.insert(t.into(), vocab.len() as i64);
        }
        let merges = vec![("c".into(), "a".into()), ("ca".into(), "r</w>".into())];
        ClipTokenizer::new(vocab, merges, "!", 8).unwrap()
    }

    #[test]
    fn merges_words_pads_and_truncates() {
        let t = tiny();
        let car = t.vocab["car</w>"];
        let pad = t.vocab["!"];
        assert_eq!(t.pad_id, pad);
        assert_eq!(t.encode("  CAR\t car"), vec![t.bos_id, car, car, t.eos_id, pad, pad, pad, pad]);
        let long = t.encode("car car car car car car car car");
        assert_eq!(long.len(), 8);
        assert_eq!((long[0], long[6], long[7]), (t.bos_id, car, t.eos_id));
        // "cars": c+a merge, then "ca"+"r" is not a merge ("r" is not word-final)
        assert_eq!(t.encode_words("cars"), vec![t.vocab["ca"], t.vocab["r"], t.vocab["s</w>"]]);
        // special tokens (the pad "!" here) split the raw text before the BPE
        assert_eq!(t.encode_words("car!car<|endoftext|>"), vec![car, pad, car, t.eos_id]);
    }

    #[test]
    fn bytes_map_is_a_bijection() {
        let m = bytes_to_unicode();
        let set: std::collections::HashSet<char> = m.iter().copied().collect();
        assert_eq!(set.len(), 256);
        assert_eq!(m[b'!' as usize], '!');
        assert_eq!(m[b' ' as usize], 'Ġ');
    }
}
