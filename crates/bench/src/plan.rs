//! What a benchmark run does: workers, stop condition, predictor mode, inputs.

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use thrum_core::PredictorKind;
use thrum_core::translator::Translator;
use thrum_core::{DType, Model, Tensor};
use thrum_magika::{ContentTypeTranslator, Magika, Sample};
use thrum_text::TextEmbedding;
use thrum_vision::{ImageClassifier, ImageTransform};

use crate::error::BenchError;
use crate::runner::{Measurement, measure, measure_with};
use crate::shapes::InputShape;

/// When the measured phase ends: after a total number of calls, after a duration, or at
/// whichever comes first.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Stop {
    /// Total calls across all workers.
    pub iterations: Option<u64>,
    /// Wall-clock duration of the measured phase.
    #[serde(rename = "duration_s", serialize_with = "seconds")]
    pub duration: Option<Duration>,
    /// Stop early once throughput is stable: the last [`STABLE_WINDOWS`] windows each within
    /// this many percent of their mean (perf_analyzer's `--stability-percentage`).
    pub stability_percent: Option<f64>,
    /// Length of the windows throughput is sampled in (reported in `window_samples_per_s`).
    #[serde(rename = "window_s", serialize_with = "seconds_always")]
    pub window: Duration,
}

/// Windows that must agree for a stability stop.
pub const STABLE_WINDOWS: usize = 3;

/// The default window length.
pub const DEFAULT_WINDOW: Duration = Duration::from_millis(500);

impl Stop {
    /// Stops after `iterations` calls or `duration`, whichever comes first; default windows,
    /// no stability stop.
    pub fn new(iterations: Option<u64>, duration: Option<Duration>) -> Stop {
        Stop { iterations, duration, stability_percent: None, window: DEFAULT_WINDOW }
    }
}

fn seconds_always<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn seconds<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// The measured phase of a benchmark.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RunPlan {
    /// Worker threads.
    pub workers: usize,
    /// When to stop.
    pub stop: Stop,
    /// Warm-up calls per worker, on the worker's own thread, after its first call.
    pub warmup: usize,
    /// Delay between worker starts.
    #[serde(rename = "delay_ms", serialize_with = "millis")]
    pub delay: Duration,
    /// Per-thread or shared predictor.
    pub predictor: PredictorKind,
    /// Show a progress bar on stderr (only when it is a terminal, and only for runs > 2 s).
    #[serde(skip)]
    pub progress: bool,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1e3)
}

impl RunPlan {
    /// Checks the invariants the runner relies on.
    pub fn validate(&self) -> Result<(), BenchError> {
        if self.workers == 0 {
            return Err(BenchError::Config {
                what: "worker count 0".into(),
                expected: "at least 1 thread".into(),
            });
        }
        match (self.stop.iterations, self.stop.duration) {
            (None, None) => Err(BenchError::Config {
                what: "stop condition".into(),
                expected: "an iteration count or a duration".into(),
            }),
            (Some(0), _) => Err(BenchError::Config {
                what: "iteration count 0".into(),
                expected: "at least 1".into(),
            }),
            (_, Some(d)) if d.is_zero() => Err(BenchError::Config {
                what: "duration 0".into(),
                expected: "more than 0 seconds".into(),
            }),
            _ if self.stop.window < Duration::from_millis(10) => Err(BenchError::Config {
                what: format!("window of {:?}", self.stop.window),
                expected: "at least 10 ms".into(),
            }),
            _ => match self.stop.stability_percent {
                Some(p) if !(p > 0.0 && p <= 100.0) => Err(BenchError::Config {
                    what: format!("stability of {p} %"),
                    expected: "a percentage above 0 and at most 100".into(),
                }),
                _ => Ok(()),
            },
        }
    }
}

/// Where the benchmark's inputs come from.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct InputPlan {
    /// Explicit shapes (djl-bench grammar); otherwise the model's input spec.
    pub shapes: Option<Vec<InputShape>>,
    /// Samples per call: the size of every dynamic dimension when shapes come from the spec
    /// (texts per call with `text`).
    pub batch_size: Option<usize>,
    /// Real texts through the text-embedding translator, instead of tensors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<TextPlan>,
    /// Real images through the image classifier, instead of tensors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ImagePlan>,
    /// Real files through the content-type translator (Magika), instead of tensors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<FilePlan>,
}

/// Files to identify with a content-type model (`--file-dir` with zoo:magika): each call
/// identifies `batch_size` files, the directory's in name order, the next ones each call
/// (wrapping around), each read once at its two ends as Magika reads them; the stages are tokens
/// (pre-processing), inference and Magika's output rules (post-processing). Every file goes to
/// the model, as a v2 request's do.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FilePlan {
    /// A directory of files of any type.
    pub dir: PathBuf,
    /// The installed `magika` package (its configuration).
    pub model_dir: PathBuf,
}

/// Images to classify with an image model (`--image-dir`): each call classifies `batch_size`
/// images, the directory's files in name order, the next ones each call (wrapping around),
/// through the image-classification translator, so the stages are decode + resize + normalise
/// (pre-processing), inference and top-k (post-processing).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ImagePlan {
    /// A directory of JPEG, PNG, GIF or WebP files.
    pub dir: PathBuf,
    /// The shorter side after resizing.
    pub resize: u32,
    /// The center crop's side.
    pub crop: u32,
    /// Per-channel mean, 0–1 scale.
    pub mean: [f32; 3],
    /// Per-channel standard deviation, 0–1 scale.
    pub std: [f32; 3],
    /// The tensor's colour channels.
    pub channels: thrum_vision::ChannelOrder,
}

/// Texts to embed with a text model (`--text-file`): each call embeds `batch_size` texts, the
/// next lines of `file` (wrapping around, so every line is measured), through the
/// text-embedding translator,
/// so the stages are tokenize (pre-processing), inference and pooling (post-processing).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TextPlan {
    /// One text per line; blank lines are skipped.
    pub file: PathBuf,
    /// The model's files: `tokenizer.json`, its pooling and token limit.
    pub model_dir: PathBuf,
}

/// What the calls of a benchmark feed the model: tensors, the same every call, or the items
/// of a text file or a directory, the next batch of them each call.
#[derive(Clone, Debug)]
pub enum Workload {
    /// Tensors, as they are (the identity translator).
    Tensors(Vec<Tensor>),
    /// Texts, through the text-embedding translator.
    Texts(Box<TextEmbedding>, Vec<String>),
    /// Encoded images, through the image classifier.
    Images(Box<ImageClassifier>, Vec<Vec<u8>>),
    /// Files' samples, through the content-type translator.
    Files(Box<ContentTypeTranslator>, Vec<Sample>),
}

/// The workload `plan` describes for `model`, and the samples per call.
pub fn build_workload(model: &Model, plan: &InputPlan) -> Result<(Workload, usize), BenchError> {
    if let Some(image) = &plan.image {
        return image_workload(model, image, plan.batch_size.unwrap_or(1));
    }
    if let Some(file) = &plan.file {
        return file_workload(model, file, plan.batch_size.unwrap_or(1));
    }
    let Some(text) = &plan.text else {
        let (tensors, per_call) = build_inputs(model, plan)?;
        return Ok((Workload::Tensors(tensors), per_call));
    };
    let content =
        std::fs::read_to_string(&text.file).map_err(|e| thrum_core::Error::read(&text.file, e))?;
    let lines: Vec<&str> = content.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if lines.is_empty() {
        return Err(BenchError::Config {
            what: format!("text file `{}`", text.file.display()),
            expected: "at least one non-empty line (one text per line)".into(),
        });
    }
    let batch = plan.batch_size.unwrap_or(1);
    let texts = lines.iter().map(|l| l.to_string()).collect();
    let translator = TextEmbedding::from_dir(&text.model_dir)?;
    Ok((Workload::Texts(Box::new(translator), texts), batch))
}

fn image_workload(
    model: &Model,
    image: &ImagePlan,
    batch: usize,
) -> Result<(Workload, usize), BenchError> {
    let paths = list_dir(&image.dir, "image", "at least one image file (JPEG, PNG, GIF or WebP)")?;
    let files = paths
        .iter()
        .map(|p| std::fs::read(p).map_err(|e| thrum_core::Error::read(p, e)))
        .collect::<thrum_core::Result<Vec<_>>>()?;
    let layout = ImageTransform::layout_of(model, image.crop)?;
    let transform = ImageTransform::new(image.resize, image.crop, image.mean, image.std, layout)?
        .with_channels(image.channels);
    // Every image must decode: a bad file is named now, not as a failed call later.
    for (path, bytes) in paths.iter().zip(&files) {
        transform.tensor(bytes).map_err(|e| BenchError::Config {
            what: format!("image `{}`", path.display()),
            expected: format!("an image this model's pre-processing takes ({e})"),
        })?;
    }
    let images = files;
    let translator = ImageClassifier::new(transform, 5, None);
    Ok((Workload::Images(Box::new(translator), images), batch))
}

/// The files of `dir` in name order, hidden ones (`.DS_Store`, stamps) left out; none is an
/// error saying what was `expected`.
fn list_dir(dir: &Path, what: &str, expected: &str) -> Result<Vec<PathBuf>, BenchError> {
    let unreadable = |e: std::io::Error| thrum_core::Error::read(dir, e);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(unreadable)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(BenchError::Config {
            what: format!("{what} directory `{}`", dir.display()),
            expected: expected.into(),
        });
    }
    Ok(paths)
}

fn file_workload(
    model: &Model,
    file: &FilePlan,
    batch: usize,
) -> Result<(Workload, usize), BenchError> {
    let paths = list_dir(&file.dir, "file", "at least one file")?;
    let magika = Magika::from_dir(&file.model_dir)?;
    let translator = ContentTypeTranslator::new(magika.clone());
    translator.check_model(model)?;
    let samples =
        paths.iter().map(|p| magika.sample_file(p)).collect::<thrum_core::Result<Vec<_>>>()?;
    Ok((Workload::Files(Box::new(translator), samples), batch))
}

impl Workload {
    /// Runs the measured phase of `plan` with this workload.
    pub fn measure(
        &self,
        model: &Model,
        per_call: usize,
        plan: &RunPlan,
        usable_cores: usize,
    ) -> Result<Measurement, BenchError> {
        match self {
            Workload::Tensors(tensors) => measure(model, tensors, per_call, plan, usable_cores),
            Workload::Texts(translator, texts) => measure_with(
                model,
                translator.as_ref(),
                texts,
                per_call,
                per_call,
                plan,
                usable_cores,
            ),
            Workload::Images(translator, images) => measure_with(
                model,
                translator.as_ref(),
                images,
                per_call,
                per_call,
                plan,
                usable_cores,
            ),
            Workload::Files(translator, samples) => measure_with(
                model,
                translator.as_ref(),
                samples,
                per_call,
                per_call,
                plan,
                usable_cores,
            ),
        }
    }

    /// The tensors of the first call's batch, `per_call` samples (texts tokenized and padded
    /// as one pass: the largest the engine can be given, as the predictor may run a padded
    /// batch as passes of similar lengths).
    pub fn tensors(&self, model: &Model, per_call: usize) -> Result<Vec<Tensor>, BenchError> {
        match self {
            Workload::Tensors(tensors) => Ok(tensors.clone()),
            Workload::Texts(translator, texts) => {
                batch_of(model, translator.as_ref(), texts, per_call)
            }
            Workload::Images(translator, images) => {
                batch_of(model, translator.as_ref(), images, per_call)
            }
            Workload::Files(translator, samples) => {
                batch_of(model, translator.as_ref(), samples, per_call)
            }
        }
    }
}

/// The first `count` of `items` (wrapping around) pre-processed by `translator` and batched
/// as it batches them.
fn batch_of<T: Translator>(
    model: &Model,
    translator: &T,
    items: &[T::Input],
    count: usize,
) -> Result<Vec<Tensor>, BenchError>
where
    T::Input: Clone,
{
    let items = items
        .iter()
        .cycle()
        .take(count)
        .map(|i| translator.preprocess(model, i.clone()))
        .collect::<thrum_core::Result<Vec<_>>>()?;
    Ok(translator.batchifier().batchify(items)?)
}

/// Builds the tensors every call feeds: floats uniform in [-1, 1), integers and booleans
/// all ones (valid indices for any embedding, as djl-bench's ones). Returns them with the
/// number of samples per call (the size of the batch axis). Shapes too large to build are an
/// error naming the shape, never an allocation that aborts.
pub fn build_inputs(model: &Model, plan: &InputPlan) -> Result<(Vec<Tensor>, usize), BenchError> {
    let specs = model.inputs();
    let shapes: Vec<(Vec<usize>, DType)> = match &plan.shapes {
        Some(shapes) => {
            if shapes.len() != specs.len() {
                return Err(BenchError::Config {
                    what: format!("{} input shape(s) for model `{}`", shapes.len(), model.name()),
                    expected: format!(
                        "{} ({})",
                        specs.len(),
                        specs
                            .iter()
                            .map(|s| format!("{} {}", s.name, s.shape_string()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
            shapes.iter().map(|s| (s.shape.clone(), s.dtype)).collect()
        }
        None => {
            let batch = plan.batch_size.unwrap_or(1);
            specs.iter().map(|s| (s.shape_at(batch, 1), s.dtype)).collect()
        }
    };
    let tensors: Vec<Tensor> = shapes
        .iter()
        .enumerate()
        .map(|(i, (shape, dtype))| filled(shape, *dtype, i as u64))
        .collect::<Result<_, _>>()?;
    model.check_inputs(&tensors)?;
    let per_call = specs
        .iter()
        .zip(&tensors)
        .find_map(|(s, t)| s.batch_axis.and_then(|axis| t.shape().get(axis).copied()))
        .or_else(|| tensors.first().and_then(|t| t.shape().first().copied()))
        .unwrap_or(1);
    if let (Some(_), Some(b)) = (&plan.shapes, plan.batch_size)
        && b != per_call
    {
        return Err(BenchError::Config {
            what: format!("--batch-size {b} with input shapes whose batch axis is {per_call}"),
            expected: "the same batch size in both, or only one of them".into(),
        });
    }
    Ok((tensors, per_call.max(1)))
}

fn filled(shape: &[usize], dtype: DType, seed: u64) -> Result<Tensor, BenchError> {
    let len = thrum_core::tensor::checked_len(dtype, shape)?;
    // A small LCG: deterministic, cheap, no dependency; quality is irrelevant for timing.
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ seed;
    let mut next = move || {
        state =
            state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    let tensor = match dtype {
        DType::F32 => {
            Tensor::from_vec(shape.to_vec(), (0..len).map(|_| next()).collect::<Vec<f32>>())
        }
        DType::F64 => Tensor::from_vec(
            shape.to_vec(),
            (0..len).map(|_| f64::from(next())).collect::<Vec<f64>>(),
        ),
        DType::F16 => Tensor::from_vec(
            shape.to_vec(),
            (0..len).map(|_| thrum_core::half::f16::from_f32(next())).collect::<Vec<_>>(),
        ),
        DType::I64 => Tensor::from_vec(shape.to_vec(), vec![1i64; len]),
        DType::I32 => Tensor::from_vec(shape.to_vec(), vec![1i32; len]),
        DType::I8 => Tensor::from_vec(shape.to_vec(), vec![1i8; len]),
        DType::U8 => Tensor::from_vec(shape.to_vec(), vec![1u8; len]),
        DType::Bool => Tensor::from_vec(shape.to_vec(), vec![true; len]),
        other => Tensor::zeros(other, shape),
    };
    Ok(tensor?)
}
