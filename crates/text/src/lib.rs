//! # thrum-text
//!
//! Text in, embeddings out, in thrum's [`Translator`] API (DJL's `TextEmbeddingTranslator`):
//!
//! - [`TextTokenizer`]: a model's own `tokenizer.json` through Hugging Face's `tokenizers`
//!   crate (pure Rust: no Oniguruma, no network), with the file's padding switched off (a batch
//!   is padded to its longest text, not to a fixed 128) and truncation at the model's limit.
//! - [`TextEmbedding`]: one text → `input_ids`, `attention_mask`, `token_type_ids` (padded per
//!   batch by the predictor) → the encoder → pooling as `1_Pooling/config.json` says (mean over
//!   the text's own tokens, or its CLS token) → L2 normalisation (optional).
//!
//! ```no_run
//! # fn demo(model: thrum_core::Model) -> thrum_core::Result<()> {
//! let dir = std::path::Path::new("all-minilm-l6-v2");
//! let embedding = thrum_text::TextEmbedding::from_dir(dir)?;
//! let mut predictor = model.predictor_with(embedding)?;
//! let vectors = predictor.batch_predict(vec!["a text".into(), "another".into()])?;
//! let similarity = thrum_text::cosine_matrix(&vectors);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use thrum_core::translator::{Batchifier, Translator};
use thrum_core::{DType, Error, Model, Result, Tensor};

const NAME: &str = "text-embedding";

fn fail(reason: impl Into<String>) -> Error {
    Error::Translator { translator: NAME.into(), reason: reason.into() }
}

fn invalid_file(path: &Path, expected: impl Into<String>) -> Error {
    Error::InvalidValue {
        what: "model file".into(),
        value: path.display().to_string(),
        expected: expected.into(),
    }
}

/// One text's tokens, unpadded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tokens {
    /// Token ids, special tokens included.
    pub ids: Vec<i64>,
    /// Token type (segment) ids.
    pub type_ids: Vec<i64>,
    /// 1 for every token (padding is added per batch, later).
    pub attention_mask: Vec<i64>,
    /// Whether the text was cut at the limit.
    pub truncated: bool,
}

/// A model's tokenizer: its `tokenizer.json`, without the file's padding, truncating at
/// `max_tokens`.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    max_tokens: usize,
    /// Whether a prefix of a text cut at whitespace gives the first tokens of the whole text
    /// (BERT's normaliser and pre-tokeniser: both work character by character and split at
    /// whitespace), so that a long text is tokenized only as far as its limit needs.
    prefix_stable: bool,
}

/// Texts longer than this many bytes are tokenized a prefix at a time (the prefix doubling)
/// where the tokenizer allows: tokenizing a 12 MiB text whole costs ~14 s and 1.2 GB, of
/// which a model reading 256 tokens uses the first kilobytes.
const PREFIX_BYTES: usize = 8 * 1024;

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer").field("max_tokens", &self.max_tokens).finish()
    }
}

impl TextTokenizer {
    /// Reads `tokenizer.json`; inputs longer than `max_tokens` tokens (special tokens
    /// included) are cut there.
    pub fn from_file(path: &Path, max_tokens: usize) -> Result<TextTokenizer> {
        if !path.is_file() {
            return Err(invalid_file(path, "a tokenizer.json (the file is missing)"));
        }
        let mut inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| invalid_file(path, format!("a Hugging Face tokenizer.json ({e})")))?;
        inner.with_padding(None);
        inner
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: max_tokens,
                ..Default::default()
            }))
            .map_err(|e| {
                invalid_file(path, format!("a truncation to {max_tokens} tokens ({e})"))
            })?;
        // An added token with whitespace in it ("new york") could be split by a cut.
        let prefix_stable = matches!(
            inner.get_normalizer(),
            None | Some(tokenizers::NormalizerWrapper::BertNormalizer(_))
        ) && matches!(
            inner.get_pre_tokenizer(),
            Some(tokenizers::PreTokenizerWrapper::BertPreTokenizer(_))
        ) && !inner
            .get_added_tokens_decoder()
            .values()
            .any(|t| t.content.chars().any(char::is_whitespace));
        Ok(TextTokenizer { inner, max_tokens, prefix_stable })
    }

    /// `text` encoded and truncated at the limit. A long text is encoded a prefix at a time,
    /// each cut at ASCII whitespace (which splits no word), doubling, until a prefix already
    /// runs past the limit: its truncated tokens are then the whole text's, whose tail is
    /// never tokenized.
    fn encode_truncated(&self, text: &str) -> Result<tokenizers::Encoding> {
        let encode =
            |t: &str| self.inner.encode(t, true).map_err(|e| fail(format!("tokenizing: {e}")));
        if self.prefix_stable {
            let mut len = PREFIX_BYTES;
            while len < text.len() {
                // A space, tab or line break: whitespace to BERT's normaliser (a form feed or
                // a vertical tab is a control character it deletes, joining the words around
                // it). ASCII bytes are never inside a UTF-8 character: the cut is a char
                // boundary.
                let Some(at) = text.as_bytes()[len..]
                    .iter()
                    .position(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
                else {
                    break;
                };
                let cut = len + at;
                let encoding = encode(&text[..cut])?;
                if !encoding.get_overflowing().is_empty() {
                    return Ok(encoding);
                }
                len = cut.saturating_mul(2);
            }
        }
        encode(text)
    }

    /// The most tokens one text may have.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// The tokens of `text`, special tokens added.
    pub fn encode(&self, text: &str) -> Result<Tokens> {
        let encoding = self.encode_truncated(text)?;
        let widen = |v: &[u32]| v.iter().map(|&x| i64::from(x)).collect::<Vec<i64>>();
        Ok(Tokens {
            ids: widen(encoding.get_ids()),
            type_ids: widen(encoding.get_type_ids()),
            attention_mask: widen(encoding.get_attention_mask()),
            truncated: !encoding.get_overflowing().is_empty(),
        })
    }

    /// Each token of `text` (what `/tokenize` shows): its id, its string, and whether it is a
    /// special token the tokenizer added.
    pub fn tokens(&self, text: &str) -> Result<Vec<(i64, String, bool)>> {
        let encoding = self.encode_truncated(text)?;
        Ok(encoding
            .get_ids()
            .iter()
            .zip(encoding.get_tokens())
            .zip(encoding.get_special_tokens_mask())
            .map(|((&id, token), &special)| (i64::from(id), token.clone(), special == 1))
            .collect())
    }
}

/// How token vectors become one vector per text (sentence-transformers' `Pooling`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// The mean over the text's tokens (its attention mask).
    Mean,
    /// The first token's vector (`[CLS]`).
    Cls,
    /// The element-wise maximum over the text's tokens.
    Max,
}

impl Pooling {
    /// Reads `1_Pooling/config.json`: the mode whose flag is true.
    pub fn from_file(path: &Path) -> Result<Pooling> {
        #[derive(serde::Deserialize)]
        struct Config {
            #[serde(default)]
            pooling_mode_cls_token: bool,
            #[serde(default)]
            pooling_mode_mean_tokens: bool,
            #[serde(default)]
            pooling_mode_max_tokens: bool,
            #[serde(default)]
            pooling_mode_mean_sqrt_len_tokens: bool,
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::read(path, e))?;
        let c: Config = serde_json::from_str(&text).map_err(|e| {
            invalid_file(path, format!("a sentence-transformers pooling config ({e})"))
        })?;
        match (
            c.pooling_mode_cls_token,
            c.pooling_mode_mean_tokens,
            c.pooling_mode_max_tokens,
            c.pooling_mode_mean_sqrt_len_tokens,
        ) {
            (true, false, false, false) => Ok(Pooling::Cls),
            (false, true, false, false) => Ok(Pooling::Mean),
            (false, false, true, false) => Ok(Pooling::Max),
            _ => Err(invalid_file(
                path,
                "exactly one of pooling_mode_cls_token, pooling_mode_mean_tokens, \
                 pooling_mode_max_tokens (mean_sqrt_len and combinations are not supported)",
            )),
        }
    }

    /// Pools the first `tokens` rows of `hidden` (`[S, H]`, row-major); an error when there
    /// is no row to pool.
    pub fn pool(self, hidden: &[f32], width: usize, tokens: usize) -> Result<Vec<f32>> {
        if width == 0 || tokens == 0 || hidden.len() < width {
            return Err(fail(format!(
                "nothing to pool: {tokens} tokens of width {width} in {} values; a text needs \
                 at least one token",
                hidden.len()
            )));
        }
        let rows = hidden.chunks_exact(width).take(tokens);
        Ok(match self {
            Pooling::Cls => hidden[..width].to_vec(),
            Pooling::Mean => {
                let mut sum = vec![0.0f64; width];
                let mut n = 0usize;
                for row in rows {
                    n += 1;
                    for (s, &v) in sum.iter_mut().zip(row) {
                        *s += f64::from(v);
                    }
                }
                sum.iter().map(|&s| (s / n.max(1) as f64) as f32).collect()
            }
            Pooling::Max => {
                let mut max = vec![f32::NEG_INFINITY; width];
                for row in rows {
                    for (m, &v) in max.iter_mut().zip(row) {
                        *m = m.max(v);
                    }
                }
                max
            }
        })
    }
}

/// `v / ‖v‖₂` (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
    if norm > 0.0 {
        for x in v {
            *x = (f64::from(*x) / norm) as f32;
        }
    }
}

/// Cosine similarity of every pair of vectors.
pub fn cosine_matrix(vectors: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let norm = |v: &[f32]| v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    vectors
        .iter()
        .map(|a| {
            vectors
                .iter()
                .map(|b| {
                    let dot: f64 =
                        a.iter().zip(b).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum();
                    let n = norm(a) * norm(b);
                    if n > 0.0 { (dot / n) as f32 } else { 0.0 }
                })
                .collect()
        })
        .collect()
}

/// What a sentence-embedding model's directory says about its pre- and post-processing.
#[derive(Clone, Debug)]
pub struct EmbeddingFiles {
    /// `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// The most tokens per text: `sentence_bert_config.json`'s `max_seq_length`, else the
    /// encoder's `max_position_embeddings` (`config.json`), else 512.
    pub max_tokens: usize,
    /// From `1_Pooling/config.json` (mean when the file is absent).
    pub pooling: Pooling,
}

impl EmbeddingFiles {
    /// Reads what `dir` has.
    pub fn from_dir(dir: &Path) -> Result<EmbeddingFiles> {
        let read_number = |file: &str, key: &str| -> Result<Option<usize>> {
            let path = dir.join(file);
            if !path.is_file() {
                return Ok(None);
            }
            let text = std::fs::read_to_string(&path).map_err(|e| Error::read(&path, e))?;
            let value: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| invalid_file(&path, format!("JSON ({e})")))?;
            Ok(value.get(key).and_then(serde_json::Value::as_u64).map(|n| n as usize))
        };
        let positions = read_number("config.json", "max_position_embeddings")?;
        let max_tokens = read_number("sentence_bert_config.json", "max_seq_length")?
            .map(|n| positions.map_or(n, |p| n.min(p)))
            .or(positions)
            .unwrap_or(512);
        let pooling_file = dir.join("1_Pooling").join("config.json");
        let pooling =
            if pooling_file.is_file() { Pooling::from_file(&pooling_file)? } else { Pooling::Mean };
        Ok(EmbeddingFiles { tokenizer: dir.join("tokenizer.json"), max_tokens, pooling })
    }
}

/// The text-embedding translator: a text in, its embedding out (see the crate's docs).
///
/// Items are padded per batch ([`Batchifier::Pad`]: ids, mask and types with 0), and each
/// text is pooled over its own tokens only.
#[derive(Clone, Debug)]
pub struct TextEmbedding {
    tokenizer: TextTokenizer,
    pooling: Pooling,
    normalize: bool,
    truncate: bool,
}

/// The encoder inputs the translator feeds, by name.
pub const INPUT_NAMES: [&str; 3] = ["input_ids", "attention_mask", "token_type_ids"];

impl TextEmbedding {
    /// The translator `dir`'s files describe, normalising and truncating.
    pub fn from_dir(dir: &Path) -> Result<TextEmbedding> {
        let files = EmbeddingFiles::from_dir(dir)?;
        Ok(TextEmbedding::new(
            TextTokenizer::from_file(&files.tokenizer, files.max_tokens)?,
            files.pooling,
        ))
    }

    /// A translator over `tokenizer` and `pooling`, normalising and truncating.
    pub fn new(tokenizer: TextTokenizer, pooling: Pooling) -> TextEmbedding {
        TextEmbedding { tokenizer, pooling, normalize: true, truncate: true }
    }

    /// Whether embeddings are L2-normalised (default: yes).
    pub fn normalize(mut self, yes: bool) -> TextEmbedding {
        self.normalize = yes;
        self
    }

    /// Whether a text over the token limit is cut (default) or refused.
    pub fn truncate(mut self, yes: bool) -> TextEmbedding {
        self.truncate = yes;
        self
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// The pooling.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// The tokens of one text, checked: not empty, within the limit unless truncating.
    pub fn tokenize(&self, text: &str) -> Result<Tokens> {
        self.tokenize_with(text, self.truncate)
    }

    /// [`TextEmbedding::tokenize`], cutting a text over the limit when `truncate`, else
    /// refusing it (a request's own choice, as TEI's `truncate`).
    pub fn tokenize_with(&self, text: &str, truncate: bool) -> Result<Tokens> {
        if text.trim().is_empty() {
            return Err(fail("an empty text; expected at least one word to embed"));
        }
        let tokens = self.tokenizer.encode(text)?;
        if tokens.truncated && !truncate {
            return Err(fail(format!(
                "a text of more than {} tokens (the model's limit); shorten it or ask for \
                 truncation",
                self.tokenizer.max_tokens
            )));
        }
        Ok(tokens)
    }
}

impl Translator for TextEmbedding {
    type Input = String;
    type Output = Vec<f32>;

    fn name(&self) -> &str {
        NAME
    }

    fn batchifier(&self) -> Batchifier {
        Batchifier::Pad
    }

    fn preprocess(&self, model: &Model, input: String) -> Result<Vec<Tensor>> {
        let tokens = self.tokenize(&input)?;
        let n = tokens.ids.len();
        let mut by_name = [
            (INPUT_NAMES[0], tokens.ids),
            (INPUT_NAMES[1], tokens.attention_mask),
            (INPUT_NAMES[2], tokens.type_ids),
        ];
        model
            .inputs()
            .iter()
            .map(|spec| {
                let slot =
                    by_name.iter_mut().find(|(name, _)| *name == spec.name).ok_or_else(|| {
                        fail(format!(
                            "model `{}` has an input `{}`; a text-embedding model takes {}",
                            model.name(),
                            spec.name,
                            INPUT_NAMES.join(", ")
                        ))
                    })?;
                if spec.dtype != DType::I64 {
                    return Err(fail(format!(
                        "input `{}` of model `{}` is {}; token inputs are int64",
                        spec.name,
                        model.name(),
                        spec.dtype
                    )));
                }
                Tensor::from_vec(vec![n], std::mem::take(&mut slot.1))
            })
            .collect()
    }

    fn postprocess(&self, model: &Model, outputs: Vec<Tensor>) -> Result<Vec<f32>> {
        // Without its inputs a text's length is unknown: every row counts.
        self.pool(model, None, outputs)
    }

    fn postprocess_with(
        &self,
        model: &Model,
        inputs: &[Tensor],
        outputs: Vec<Tensor>,
    ) -> Result<Vec<f32>> {
        let tokens = inputs.first().map(|t| t.shape().first().copied().unwrap_or(0));
        self.pool(model, tokens, outputs)
    }
}

impl TextEmbedding {
    fn pool(&self, model: &Model, tokens: Option<usize>, outputs: Vec<Tensor>) -> Result<Vec<f32>> {
        let hidden = outputs
            .into_iter()
            .next()
            .ok_or_else(|| fail(format!("model `{}` returned no output to pool", model.name())))?;
        let &[rows, width] = hidden.shape() else {
            return Err(fail(format!(
                "model `{}`'s first output has shape {:?} per text; expected [tokens, width] \
                 (the encoder's last hidden state)",
                model.name(),
                hidden.shape()
            )));
        };
        let values = hidden.as_slice::<f32>().map_err(|_| {
            fail(format!(
                "model `{}`'s first output is {}, not float32",
                model.name(),
                hidden.dtype()
            ))
        })?;
        let mut v = self.pooling.pool(values, width, tokens.unwrap_or(rows).min(rows))?;
        if self.normalize {
            normalize(&mut v);
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_pooling_counts_only_the_texts_own_tokens() {
        // Two real rows and a padded one that must not count.
        let hidden = [1.0, 2.0, 3.0, 4.0, 100.0, 100.0];
        assert_eq!(Pooling::Mean.pool(&hidden, 2, 2).unwrap(), vec![2.0, 3.0]);
        assert_eq!(Pooling::Cls.pool(&hidden, 2, 2).unwrap(), vec![1.0, 2.0]);
        assert_eq!(Pooling::Max.pool(&hidden, 2, 2).unwrap(), vec![3.0, 4.0]);
        assert!(Pooling::Cls.pool(&[], 2, 0).unwrap_err().to_string().contains("nothing to pool"));
    }

    #[test]
    fn cosine_of_a_vector_with_itself_is_one() {
        let mut v = vec![3.0, 4.0];
        normalize(&mut v);
        assert_eq!(v, vec![0.6, 0.8]);
        let m = cosine_matrix(&[vec![1.0, 0.0], vec![0.0, 2.0], vec![1.0, 1.0]]);
        assert!((m[0][0] - 1.0).abs() < 1e-6 && m[0][1].abs() < 1e-6);
        assert!((m[0][2] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
    }

    /// A BERT tokenizer.json (normaliser, pre-tokeniser, WordPiece, `[CLS] $A [SEP]`) of a
    /// small vocabulary, in `dir`.
    fn small_bert(dir: &Path) -> std::path::PathBuf {
        let vocab = [
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cafe", "naive", "rust", "long", "text",
            "##s", "a", ",", ".", "!", "東", "京", "word", "##y", "1", "2",
        ];
        let vocab: String = vocab
            .iter()
            .enumerate()
            .map(|(i, t)| format!("{t:?}: {i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let json = format!(
            r###"{{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": {{"type": "BertNormalizer", "clean_text": true,
                "handle_chinese_chars": true, "strip_accents": null, "lowercase": true}},
            "pre_tokenizer": {{"type": "BertPreTokenizer"}},
            "post_processor": {{"type": "TemplateProcessing",
                "single": [{{"SpecialToken": {{"id": "[CLS]", "type_id": 0}}}},
                           {{"Sequence": {{"id": "A", "type_id": 0}}}},
                           {{"SpecialToken": {{"id": "[SEP]", "type_id": 0}}}}],
                "pair": [{{"SpecialToken": {{"id": "[CLS]", "type_id": 0}}}},
                         {{"Sequence": {{"id": "A", "type_id": 0}}}},
                         {{"SpecialToken": {{"id": "[SEP]", "type_id": 0}}}},
                         {{"Sequence": {{"id": "B", "type_id": 1}}}},
                         {{"SpecialToken": {{"id": "[SEP]", "type_id": 1}}}}],
                "special_tokens": {{
                    "[CLS]": {{"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]}},
                    "[SEP]": {{"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}}}}},
            "decoder": null,
            "model": {{"type": "WordPiece", "unk_token": "[UNK]",
                "continuing_subword_prefix": "##", "max_input_chars_per_word": 100,
                "vocab": {{{vocab}}}}}}}"###
        );
        let path = dir.join("tokenizer.json");
        std::fs::write(&path, json).unwrap();
        path
    }

    /// A long text tokenized a prefix at a time gives the tokens of the whole text tokenized
    /// at once, truncated or not, whatever sits at the cuts (accents, CJK, punctuation, runs
    /// of whitespace, a text whose first tokens come after kilobytes of blanks).
    #[test]
    fn long_texts_tokenized_by_prefixes_equal_the_whole_texts_tokens() {
        let dir = std::env::temp_dir().join(format!("thrum-text-prefix-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = small_bert(&dir);
        let ours = TextTokenizer::from_file(&path, 256).unwrap();
        assert!(ours.prefix_stable);
        let whole = |t: &str| ours.inner.encode(t, true).unwrap();
        let piece = "Café, naïve RUST! long texts 東京 wordy\t12.\n  the ";
        let texts = [
            piece.repeat(2_000),
            format!("{}{}", " ".repeat(20_000), piece.repeat(40)),
            format!("{}{}", "\n".repeat(9_000), "word ".repeat(300)),
            "abcdefgh".repeat(3_000), // no whitespace at all: tokenized whole
            // Prefixes that never reach the limit: the whole text, under it.
            format!("{}{}", " ".repeat(12_000), "the long text ".repeat(17)),
            // A form feed, the first blank past 8 KiB, joins the words around it (BERT's
            // normaliser deletes it): `wordythe`, one unknown word, is token 254 of the whole
            // text; a prefix cut at the form feed would end in `word ##y`.
            format!("{}{}wordy\u{c}the {}", " ".repeat(7_686), "a ".repeat(253), "a ".repeat(9)),
        ];
        for (i, text) in texts.iter().enumerate() {
            let reference = whole(text);
            let got = ours.encode(text).unwrap();
            let ids: Vec<i64> = reference.get_ids().iter().map(|&x| i64::from(x)).collect();
            assert_eq!(got.ids, ids, "text {i}");
            assert_eq!(got.truncated, !reference.get_overflowing().is_empty(), "text {i}");
            let tokens: Vec<String> =
                ours.tokens(text).unwrap().into_iter().map(|(_, t, _)| t).collect();
            assert_eq!(tokens, reference.get_tokens(), "text {i}");
        }
        // A tokenizer that is not BERT's is tokenized whole.
        let mut other = ours.clone();
        other.prefix_stable = false;
        assert_eq!(other.encode(&texts[0]).unwrap(), ours.encode(&texts[0]).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_or_corrupt_tokenizer_names_the_file() {
        let dir = std::env::temp_dir().join(format!("thrum-text-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = TextTokenizer::from_file(&dir.join("tokenizer.json"), 8).unwrap_err();
        assert!(
            missing.to_string().contains("tokenizer.json")
                && missing.to_string().contains("missing"),
            "{missing}"
        );
        std::fs::write(dir.join("tokenizer.json"), "{\"version\": \"1.0\", \"model\": 3}").unwrap();
        let corrupt = TextTokenizer::from_file(&dir.join("tokenizer.json"), 8).unwrap_err();
        assert!(corrupt.to_string().contains("tokenizer.json"), "{corrupt}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
