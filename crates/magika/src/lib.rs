//! # thrum-magika
//!
//! Files in, content types out, the way Google's Magika does it: what the model sees of a
//! file, the files it never needs to see, and how its scores become a label. This crate holds
//! no model: the ONNX model runs on any engine that reads ONNX, and [`ContentTypeTranslator`]
//! is the translator in between.
//!
//! What the Python package (`magika` 1.0.3, `Magika._extract_features_from_seekable` and
//! `_get_output_label_from_dl_label_and_score`) does, and this crate does the same:
//! - **Features.** At most `block_size` (4,096) bytes are read from each end of the file;
//!   the head is stripped of leading ASCII whitespace and its first `beg_size` (1,024) bytes
//!   kept, padded after with `padding_token` (256); the tail is stripped of trailing
//!   whitespace and its last `end_size` bytes kept, padded before. The model's input is the
//!   2,048 tokens as int32.
//! - **Short files.** An empty file is `empty`; a file under `min_file_size_for_dl` (8) bytes,
//!   or one whose head has fewer than 8 bytes once stripped, is `txt` if its first
//!   `block_size` bytes are UTF-8 and `unknown` otherwise — the model does not run.
//! - **Output.** The best of the 214 scores names the model's label; `overwrite_map` may
//!   rename it (`randombytes` → `unknown`); below its type's threshold (or
//!   `medium_confidence_threshold`), the label falls back to `txt` or `unknown` by whether
//!   the type is text (the "high-confidence" prediction mode, the package's default).
//!
//! ```no_run
//! # fn demo(model: thrum_core::Model, home: &std::path::Path) -> thrum_core::Result<()> {
//! use thrum_magika::{ContentTypeTranslator, Magika, identify};
//! let magika = Magika::from_dir(home)?; // the installed `magika` package
//! let mut predictor = model.predictor_with(ContentTypeTranslator::new(magika.clone()))?;
//! let samples = vec![magika.sample_file("report.pdf".as_ref())?];
//! let types = identify(&magika, samples, |s| predictor.batch_predict(s))?;
//! println!("{}", types[0].output.label); // pdf
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use thrum_core::translator::Translator;
use thrum_core::{Batchifier, DType, Error, Model, Result, Tensor};

/// The translator's name in errors.
pub const NAME: &str = "magika";

/// Where the package keeps the model's configuration, relative to its install directory.
pub const CONFIG_FILE: &str = "magika/models/standard_v3_3/config.min.json";
/// Where the package keeps what each content type is (MIME type, group, text or not).
pub const KB_FILE: &str = "magika/config/content_types_kb.min.json";

/// ASCII whitespace as Python's `bytes.strip()` takes it (vertical tab included, unlike
/// [`u8::is_ascii_whitespace`]).
fn is_python_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// `config.min.json`: how the model reads files and how its scores are read.
#[derive(Clone, Debug, serde::Deserialize)]
struct ModelConfig {
    beg_size: usize,
    mid_size: usize,
    end_size: usize,
    use_inputs_at_offsets: bool,
    medium_confidence_threshold: f32,
    min_file_size_for_dl: usize,
    padding_token: i32,
    block_size: usize,
    target_labels_space: Vec<String>,
    thresholds: HashMap<String, f32>,
    overwrite_map: HashMap<String, String>,
}

/// One entry of `content_types_kb.min.json`.
#[derive(Clone, Debug, serde::Deserialize)]
struct KbEntry {
    mime_type: Option<String>,
    group: Option<String>,
    description: Option<String>,
    #[serde(default)]
    extensions: Vec<String>,
    is_text: bool,
}

/// What a content type is.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ContentTypeInfo {
    /// Magika's label (`pdf`, `python`, `txt`, `unknown`, `empty`…).
    pub label: String,
    /// Its MIME type (`text/plain` or `application/octet-stream` where the knowledge base
    /// has none, as the Python package does).
    pub mime_type: String,
    /// Its group (`document`, `code`, `archive`…; `unknown` where none).
    pub group: String,
    /// One line on what it is.
    pub description: String,
    /// Usual file extensions.
    pub extensions: Vec<String>,
    /// Whether it is text.
    pub is_text: bool,
}

/// Why the label differs from the model's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OverwriteReason {
    /// It does not.
    None,
    /// The score was below the type's threshold: `txt` or `unknown` instead.
    LowConfidence,
    /// The configuration renames the model's label (`randombytes` → `unknown`).
    OverwriteMap,
}

/// A file's content type, as the Python package's `MagikaResult` reports it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ContentType {
    /// The answer.
    pub output: ContentTypeInfo,
    /// What the model said (`undefined` when the model did not run: empty and short files).
    pub dl: ContentTypeInfo,
    /// The model's probability for its label (1.0 when it did not run).
    pub score: f32,
    /// Why `output` differs from `dl`.
    pub overwrite_reason: OverwriteReason,
}

/// What the model sees of a file: its size and at most `block_size` bytes from each end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// The file's size in bytes.
    pub size: u64,
    /// Its first `min(size, block_size)` bytes.
    pub head: Vec<u8>,
    /// Its last `min(size, block_size)` bytes.
    pub tail: Vec<u8>,
}

/// A file's sample after Magika's rules: either its answer already (empty and short files),
/// or the model's input.
#[derive(Clone, Debug, PartialEq)]
pub enum Features {
    /// Decided without the model.
    Decided(Box<ContentType>),
    /// The model's input tokens (`beg_size + end_size` of them, bytes 0–255 and padding).
    Tokens(Vec<i32>),
}

/// Magika's configuration and knowledge base: feature extraction and output rules.
#[derive(Clone, Debug)]
pub struct Magika {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ModelConfig,
    kb: HashMap<String, ContentTypeInfo>,
}

fn invalid(path: &Path, expected: impl Into<String>) -> Error {
    Error::InvalidValue {
        what: "Magika configuration".into(),
        value: path.display().to_string(),
        expected: expected.into(),
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::read(path, e))?;
    serde_json::from_str(&text).map_err(|e| invalid(path, format!("{what} ({e})")))
}

impl Magika {
    /// Reads the configuration and knowledge base of an installed `magika` package.
    pub fn from_dir(dir: &Path) -> Result<Magika> {
        let config_path = dir.join(CONFIG_FILE);
        let config: ModelConfig =
            read_json(&config_path, "Magika's model configuration (config.min.json)")?;
        let kb_path = dir.join(KB_FILE);
        let entries: HashMap<String, KbEntry> =
            read_json(&kb_path, "Magika's content types (content_types_kb.min.json)")?;
        Magika::new(config, entries).map_err(|reason| invalid(&config_path, reason))
    }

    fn new(
        config: ModelConfig,
        entries: HashMap<String, KbEntry>,
    ) -> std::result::Result<Magika, String> {
        // What the Python package asserts of the configurations it reads.
        if config.mid_size != 0 || config.use_inputs_at_offsets {
            return Err("no middle bytes and no inputs at offsets (features v2)".into());
        }
        if config.beg_size >= config.block_size || config.end_size >= config.block_size {
            return Err(format!(
                "beg_size and end_size below block_size ({}, {} vs {})",
                config.beg_size, config.end_size, config.block_size
            ));
        }
        if config.target_labels_space.is_empty() {
            return Err("at least one content type in target_labels_space".into());
        }
        if config.min_file_size_for_dl == 0 || config.min_file_size_for_dl > config.beg_size {
            return Err(format!(
                "min_file_size_for_dl between 1 and beg_size ({})",
                config.min_file_size_for_dl
            ));
        }
        let kb: HashMap<String, ContentTypeInfo> = entries
            .into_iter()
            .map(|(label, e)| {
                let default_mime =
                    if e.is_text { "text/plain" } else { "application/octet-stream" };
                let info = ContentTypeInfo {
                    mime_type: e.mime_type.unwrap_or_else(|| default_mime.into()),
                    group: e.group.unwrap_or_else(|| "unknown".into()),
                    description: e.description.unwrap_or_else(|| label.clone()),
                    extensions: e.extensions,
                    is_text: e.is_text,
                    label: label.clone(),
                };
                (label, info)
            })
            .collect();
        let needed = config
            .target_labels_space
            .iter()
            .chain(config.overwrite_map.values())
            .map(String::as_str)
            .chain(["txt", "unknown", "empty", "undefined"]);
        for label in needed {
            if !kb.contains_key(label) {
                return Err(format!("the content type `{label}` in the knowledge base"));
            }
        }
        Ok(Magika { inner: Arc::new(Inner { config, kb }) })
    }

    /// Content types the model outputs, in output order.
    pub fn labels(&self) -> &[String] {
        &self.inner.config.target_labels_space
    }

    /// Tokens per sample (`beg_size + end_size`: 2,048).
    pub fn input_len(&self) -> usize {
        self.inner.config.beg_size + self.inner.config.end_size
    }

    /// What Magika knows of `label`.
    pub fn info(&self, label: &str) -> Option<&ContentTypeInfo> {
        self.inner.kb.get(label)
    }

    fn known(&self, label: &str) -> ContentTypeInfo {
        // `new` checked every label this crate names or the configuration can produce.
        self.inner.kb.get(label).cloned().unwrap_or_else(|| ContentTypeInfo {
            label: label.into(),
            mime_type: "application/octet-stream".into(),
            group: "unknown".into(),
            description: label.into(),
            extensions: Vec::new(),
            is_text: false,
        })
    }

    /// The sample of bytes held in memory.
    pub fn sample(&self, bytes: &[u8]) -> Sample {
        let n = bytes.len().min(self.inner.config.block_size);
        Sample {
            size: bytes.len() as u64,
            head: bytes[..n].to_vec(),
            tail: bytes[bytes.len() - n..].to_vec(),
        }
    }

    /// The sample of a file, reading at most `block_size` bytes from each end.
    pub fn sample_file(&self, path: &Path) -> Result<Sample> {
        // Checked before opening: opening a named pipe would wait for a writer.
        let regular = |meta: &std::fs::Metadata| {
            if meta.is_file() {
                Ok(())
            } else {
                Err(Error::InvalidValue {
                    what: "file".into(),
                    value: path.display().to_string(),
                    expected: "a regular file".into(),
                })
            }
        };
        regular(&std::fs::metadata(path).map_err(|e| Error::read(path, e))?)?;
        let mut file = std::fs::File::open(path).map_err(|e| Error::read(path, e))?;
        let meta = file.metadata().map_err(|e| Error::read(path, e))?;
        regular(&meta)?;
        let size = meta.len();
        let block = self.inner.config.block_size as u64;
        let n = size.min(block);
        let read_at = |file: &mut std::fs::File, offset: u64| -> std::io::Result<Vec<u8>> {
            file.seek(SeekFrom::Start(offset))?;
            let mut buf = Vec::with_capacity(n as usize);
            file.by_ref().take(n).read_to_end(&mut buf)?;
            Ok(buf)
        };
        let head = read_at(&mut file, 0).map_err(|e| Error::read(path, e))?;
        let tail = read_at(&mut file, size - n).map_err(|e| Error::read(path, e))?;
        if head.len() as u64 != n || tail.len() as u64 != n {
            return Err(Error::InvalidValue {
                what: "file".into(),
                value: path.display().to_string(),
                expected: format!("{size} bytes, as its metadata says (it changed while read)"),
            });
        }
        Ok(Sample { size, head, tail })
    }

    /// Magika's rules on a sample: the answer for empty and short files, else the tokens.
    pub fn features(&self, sample: &Sample) -> Features {
        let c = &self.inner.config;
        if sample.size == 0 {
            return Features::Decided(Box::new(self.decided("empty")));
        }
        if sample.size < c.min_file_size_for_dl as u64 {
            return Features::Decided(Box::new(self.few_bytes(&sample.head)));
        }
        let tokens = self.tokens(sample);
        if tokens[c.min_file_size_for_dl - 1] == c.padding_token {
            // Once stripped, too few bytes for the model to mean anything.
            return Features::Decided(Box::new(self.few_bytes(&sample.head)));
        }
        Features::Tokens(tokens)
    }

    /// The model's input for a sample, whatever its size: the head stripped on the left, its
    /// first `beg_size` bytes padded after; the tail stripped on the right, its last
    /// `end_size` bytes padded before. ([`Magika::features`] decides short files without it;
    /// a server's v2 input gives the model's raw scores for every file.)
    pub fn tokens(&self, sample: &Sample) -> Vec<i32> {
        let c = &self.inner.config;
        let head = {
            let start = sample.head.iter().position(|&b| !is_python_whitespace(b));
            &sample.head[start.unwrap_or(sample.head.len())..]
        };
        let tail = {
            let end = sample.tail.iter().rposition(|&b| !is_python_whitespace(b));
            &sample.tail[..end.map_or(0, |e| e + 1)]
        };
        let mut tokens = Vec::with_capacity(c.beg_size + c.end_size);
        let beg = &head[..head.len().min(c.beg_size)];
        tokens.extend(beg.iter().map(|&b| i32::from(b)));
        tokens.resize(c.beg_size, c.padding_token);
        let end = &tail[tail.len().saturating_sub(c.end_size)..];
        tokens.extend(std::iter::repeat_n(c.padding_token, c.end_size - end.len()));
        tokens.extend(end.iter().map(|&b| i32::from(b)));
        tokens
    }

    fn decided(&self, label: &str) -> ContentType {
        ContentType {
            output: self.known(label),
            dl: self.known("undefined"),
            score: 1.0,
            overwrite_reason: OverwriteReason::None,
        }
    }

    /// Files too short for the model: text if UTF-8.
    fn few_bytes(&self, head: &[u8]) -> ContentType {
        self.decided(if std::str::from_utf8(head).is_ok() { "txt" } else { "unknown" })
    }

    /// The content type from the model's scores for one sample (high-confidence mode).
    pub fn decide(&self, scores: &[f32]) -> Result<ContentType> {
        let c = &self.inner.config;
        if scores.len() != c.target_labels_space.len() {
            return Err(Error::Translator {
                translator: NAME.into(),
                reason: format!(
                    "the model gave {} scores; Magika's configuration has {} content types",
                    scores.len(),
                    c.target_labels_space.len()
                ),
            });
        }
        // The first of equal maxima, as Python's max over indices picks it (a NaN first
        // score stays, as there).
        let (best, score) = scores
            .iter()
            .copied()
            .enumerate()
            .fold((0, scores[0]), |acc, (i, s)| if s > acc.1 { (i, s) } else { acc });
        let dl_label = &c.target_labels_space[best];
        let mut output = c.overwrite_map.get(dl_label).unwrap_or(dl_label).clone();
        let mut reason =
            if &output != dl_label { OverwriteReason::OverwriteMap } else { OverwriteReason::None };
        let threshold =
            c.thresholds.get(dl_label).copied().unwrap_or(c.medium_confidence_threshold);
        // Kept only at or above the threshold: a NaN score is not trusted.
        if score.is_nan() || score < threshold {
            reason = OverwriteReason::LowConfidence;
            output = if self.known(&output).is_text { "txt" } else { "unknown" }.into();
            if &output == dl_label {
                reason = OverwriteReason::None;
            }
        }
        Ok(ContentType {
            output: self.known(&output),
            dl: self.known(dl_label),
            score,
            overwrite_reason: reason,
        })
    }
}

/// A file's sample → its tokens → the model → a content type. The model runs on every sample
/// it is given (as a v2 request's files do); [`identify`] first decides the empty and short
/// files that Magika never shows its model, as the Python package does.
#[derive(Clone, Debug)]
pub struct ContentTypeTranslator {
    magika: Magika,
}

impl ContentTypeTranslator {
    /// The translator of `magika`'s configuration.
    pub fn new(magika: Magika) -> ContentTypeTranslator {
        ContentTypeTranslator { magika }
    }

    /// Its configuration.
    pub fn magika(&self) -> &Magika {
        &self.magika
    }

    /// Checks that `model` takes `[N, beg_size + end_size]` int32 tokens and gives one score
    /// per content type.
    pub fn check_model(&self, model: &Model) -> Result<()> {
        let wrong = |what: String| Error::Translator { translator: NAME.into(), reason: what };
        let [input] = model.inputs() else {
            return Err(wrong(format!(
                "model `{}` has {} inputs; Magika's has one (int32 tokens)",
                model.name(),
                model.inputs().len()
            )));
        };
        let width = self.magika.input_len();
        if input.dtype != DType::I32
            || input.shape.len() != 2
            || input.shape[1].fixed().is_some_and(|n| n != width)
        {
            return Err(wrong(format!(
                "model `{}` takes `{}` {} {}; Magika's model takes int32 [N, {width}]",
                model.name(),
                input.name,
                input.dtype,
                input.shape_string(),
            )));
        }
        let classes = self.magika.labels().len();
        if let Some(output) = model.outputs().first()
            && output.shape.last().and_then(|d| d.fixed()).is_some_and(|n| n != classes)
        {
            return Err(wrong(format!(
                "model `{}` gives `{}` {}; Magika's configuration has {classes} content types",
                model.name(),
                output.name,
                output.shape_string(),
            )));
        }
        Ok(())
    }
}

impl Translator for ContentTypeTranslator {
    type Input = Sample;
    type Output = ContentType;

    fn name(&self) -> &str {
        NAME
    }

    fn batchifier(&self) -> Batchifier {
        Batchifier::Stack
    }

    fn preprocess(&self, _model: &Model, sample: Sample) -> Result<Vec<Tensor>> {
        let tokens = self.magika.tokens(&sample);
        Ok(vec![Tensor::from_vec(vec![tokens.len()], tokens)?])
    }

    fn postprocess(&self, model: &Model, outputs: Vec<Tensor>) -> Result<ContentType> {
        let scores = outputs.first().ok_or_else(|| Error::Translator {
            translator: NAME.into(),
            reason: format!("model `{}` gave no output", model.name()),
        })?;
        self.magika.decide(scores.as_slice::<f32>()?)
    }
}

/// The content types of `samples`: the ones Magika's rules decide without the model, and the
/// others in one batch through `predict` (a predictor's or shared predictor's
/// `batch_predict` with a [`ContentTypeTranslator`]).
pub fn identify(
    magika: &Magika,
    samples: Vec<Sample>,
    predict: impl FnOnce(Vec<Sample>) -> Result<Vec<ContentType>>,
) -> Result<Vec<ContentType>> {
    let mut decided = Vec::with_capacity(samples.len());
    let mut for_model = Vec::new();
    for sample in samples {
        match magika.features(&sample) {
            Features::Decided(answer) => decided.push(Some(*answer)),
            Features::Tokens(_) => {
                decided.push(None);
                for_model.push(sample);
            }
        }
    }
    let mut predicted =
        if for_model.is_empty() { Vec::new() } else { predict(for_model)? }.into_iter();
    decided
        .into_iter()
        .map(|d| match d {
            Some(answer) => Ok(answer),
            None => predicted.next().ok_or_else(|| Error::Translator {
                translator: NAME.into(),
                reason: "fewer answers than samples from the model".into(),
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn magika() -> Magika {
        let labels: Vec<String> =
            ["python", "randombytes", "markdown", "pdf"].map(String::from).into();
        let config = ModelConfig {
            beg_size: 8,
            mid_size: 0,
            end_size: 8,
            use_inputs_at_offsets: false,
            medium_confidence_threshold: 0.5,
            min_file_size_for_dl: 4,
            padding_token: 256,
            block_size: 16,
            target_labels_space: labels,
            thresholds: HashMap::from([("markdown".into(), 0.75)]),
            overwrite_map: HashMap::from([("randombytes".into(), "unknown".into())]),
        };
        let entry = |is_text| KbEntry {
            mime_type: None,
            group: None,
            description: None,
            extensions: Vec::new(),
            is_text,
        };
        let kb = HashMap::from([
            ("python".into(), entry(true)),
            ("randombytes".into(), entry(false)),
            ("markdown".into(), entry(true)),
            ("pdf".into(), entry(false)),
            ("txt".into(), entry(true)),
            ("unknown".into(), entry(false)),
            ("empty".into(), entry(false)),
            ("undefined".into(), entry(false)),
        ]);
        Magika::new(config, kb).unwrap()
    }

    fn tokens(m: &Magika, bytes: &[u8]) -> Vec<i32> {
        match m.features(&m.sample(bytes)) {
            Features::Tokens(t) => t,
            Features::Decided(d) => panic!("decided {}", d.output.label),
        }
    }

    #[test]
    fn features_strip_whitespace_and_pad_each_end() {
        let m = magika();
        // The head is stripped on the left only, the tail on the right only; vertical tab and
        // form feed count as whitespace, as in Python's bytes.strip().
        let t = tokens(&m, b"\x0b\x0c \tabcdef  \n");
        assert_eq!(&t[..8], &[97, 98, 99, 100, 101, 102, 32, 32]);
        assert_eq!(&t[8..], &[32, 9, 97, 98, 99, 100, 101, 102]);
        let t = tokens(&m, b"abcdef");
        assert_eq!(&t[..8], &[97, 98, 99, 100, 101, 102, 256, 256]);
        assert_eq!(&t[8..], &[256, 256, 97, 98, 99, 100, 101, 102]);
        // Longer than a block: the head is the first block's first 8, the tail the last
        // block's last 8.
        let long: Vec<u8> = (0..40u8).map(|i| b'a' + i % 26).collect();
        let t = tokens(&m, &long);
        assert_eq!(t[0], i32::from(b'a'));
        assert_eq!(t[15], i32::from(*long.last().unwrap()));
    }

    #[test]
    fn short_and_empty_files_never_reach_the_model() {
        let m = magika();
        let label = |bytes: &[u8]| match m.features(&m.sample(bytes)) {
            Features::Decided(d) => (d.output.label, d.dl.label, d.score),
            Features::Tokens(_) => panic!("went to the model"),
        };
        assert_eq!(label(b""), ("empty".into(), "undefined".into(), 1.0));
        assert_eq!(label(b"a").0, "txt");
        assert_eq!(label(b"\xff\xfe").0, "unknown");
        // Long enough, but not once stripped.
        assert_eq!(label(b"      ab").0, "txt");
        assert_eq!(label(b"      \xffb").0, "unknown");
    }

    #[test]
    fn thresholds_and_the_overwrite_map_decide_the_label() {
        let m = magika();
        let d = m.decide(&[0.9, 0.05, 0.05, 0.0]).unwrap();
        assert_eq!(
            (d.output.label.as_str(), d.overwrite_reason),
            ("python", OverwriteReason::None)
        );
        // markdown needs 0.75: below it, text falls back to txt.
        let d = m.decide(&[0.0, 0.0, 0.7, 0.3]).unwrap();
        assert_eq!((d.output.label.as_str(), d.dl.label.as_str()), ("txt", "markdown"));
        assert_eq!(d.overwrite_reason, OverwriteReason::LowConfidence);
        // randombytes is renamed unknown.
        let d = m.decide(&[0.0, 0.9, 0.1, 0.0]).unwrap();
        assert_eq!(
            (d.output.label.as_str(), d.overwrite_reason),
            ("unknown", OverwriteReason::OverwriteMap)
        );
        // A binary type below 0.5 falls back to unknown.
        let d = m.decide(&[0.3, 0.0, 0.3, 0.4]).unwrap();
        assert_eq!(d.output.label, "unknown");
        assert!(m.decide(&[1.0]).is_err());
    }

    #[test]
    fn a_file_is_read_only_at_its_ends() {
        let m = magika();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let bytes: Vec<u8> = (0..100u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let s = m.sample_file(&path).unwrap();
        assert_eq!(s, m.sample(&bytes));
        assert_eq!((s.head.len(), s.tail.len()), (16, 16));
        assert!(m.sample_file(dir.path()).is_err());
    }
}
