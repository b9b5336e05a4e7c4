//! `thrum quantize`: static int8 quantization of an ONNX model (QDQ, or QOperator
//! convolutions), calibrated on real
//! inputs (a directory of images or of `.npy` files) or the model's seeded sample inputs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use thrum::{Engine, ModelFormat, ModelRef, ModelSource, Options, Precision};
use thrum_quant::fallback::{self, Score};
use thrum_quant::{Decision, Method, QuantizeOptions, Quantizer, Report};
use thrum_tune::accuracy;

use super::options::ImageRecipeArgs;
use super::samples::SampleSource;

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    thrum quantize -p zoo:efficientnet-lite0 --calibration-images photos/ -o lite0-int8.onnx\n  \
    thrum quantize -p model.onnx --calibration-npy inputs/ --method entropy -o model-int8.onnx\n  \
    thrum quantize -p zoo:resnet50 --samples 100 -o resnet50-int8.onnx   (seeded sample inputs)\n  \
    thrum quantize -p zoo:resnet18 --for-engine tract -o resnet18-tract-int8.onnx   (tract's form)\n  \
    thrum quantize -p zoo:efficientnet-lite0 --calibration-images calib/ --min-accuracy 0.9 \
    --eval-images eval/ -o lite0-int8.onnx   (layers left in fp32 until 90 % of fp32's top-1 holds)\n\n\
    The output is a QDQ model: ONNX Runtime fuses it into its integer kernels, OpenVINO reads it \
    as its low-precision form. For tract, --for-engine tract writes its ordinary convolutions as \
    QLinearConv nodes with per-tensor weights, which it runs on its integer kernels. -e picks \
    the engine that runs calibration, not the form. Check the accuracy with `thrum compare`.")]
pub struct QuantizeArgs {
    /// ONNX model file, or zoo:NAME.
    #[arg(short = 'p', long = "model-path", value_name = "MODEL")]
    model_path: String,

    /// Where to write the quantized model (.onnx).
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,

    /// Engine that runs calibration (it must read ONNX). Default: ort where it is installed,
    /// else tract.
    #[arg(short, long, value_name = "ENGINE")]
    engine: Option<String>,

    /// Calibrate on the images of DIR (JPEG, PNG, GIF, WebP), pre-processed as the model's
    /// own images are (a zoo image model's recipe, else TorchServe's defaults).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["calibration_npy", "calibration_texts"])]
    calibration_images: Option<PathBuf>,

    /// Calibrate on the texts of FILE, one per line, tokenized as a text model's own
    /// (zoo:all-minilm-l6-v2), one text per sample. (Transformers usually quantize better
    /// with --dynamic.)
    #[arg(long, value_name = "FILE", conflicts_with = "calibration_npy")]
    calibration_texts: Option<PathBuf>,

    /// Calibrate on the `.npy` files of DIR: one per sample (a model with one input), or one
    /// folder per sample holding INPUT.npy for each input.
    #[arg(long, value_name = "DIR")]
    calibration_npy: Option<PathBuf>,

    /// Calibration samples: the first N files of the directory in name order, or N seeded
    /// sample inputs when no directory is given.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    samples: u32,

    /// Dynamic quantization (ONNX Runtime's quantize_dynamic): MatMul and Gemm weights in
    /// int8, their activations quantized on every call; no calibration. For transformers.
    #[arg(long, conflicts_with_all = ["calibration_images", "calibration_npy", "calibration_texts", "method"])]
    dynamic: bool,

    /// Calibration method: minmax (ONNX Runtime's default), percentile, entropy.
    #[arg(long, value_name = "METHOD", default_value = "minmax")]
    method: String,

    /// With --method percentile: the share of values the range keeps, in percent.
    #[arg(long, value_name = "P", default_value_t = 99.999)]
    percentile: f64,

    /// One weight scale per tensor instead of one per output channel.
    #[arg(long)]
    per_tensor: bool,

    /// How quantized convolutions are written: `qdq` (QuantizeLinear / DequantizeLinear pairs,
    /// what ONNX Runtime and OpenVINO fuse into their integer kernels) or `qoperator` (each
    /// quantized Conv as a standard QLinearConv, which tract runs on its integer kernels; for
    /// tract's fastest form, see --for-engine).
    #[arg(long, value_name = "FORMAT", default_value = "qdq", value_parser = |s: &str| s.parse::<thrum_quant::Format>(), conflicts_with = "dynamic")]
    format: thrum_quant::Format,

    /// Write the int8 form ENGINE runs fastest (its `int8_form` in `thrum engines --json`): ort
    /// QDQ with per-channel weights; tract ordinary convolutions as QLinearConv with one
    /// weight scale per tensor (its integer kernel), grouped ones and the rest QDQ per channel.
    /// What `thrum compare --precision` and `thrum tune` give each engine (they give QDQ
    /// instead where tract's form rewrites no convolution).
    #[arg(long, value_name = "ENGINE", conflicts_with_all = ["format", "per_tensor", "dynamic"])]
    for_engine: Option<String>,

    /// Weights in 7 bits (on), 8 bits (off), or 7 bits where this CPU has no VNNI (auto): x86
    /// kernels without VNNI multiply uint8 by int8 with AVX2's `vpmaddubsw`, whose int16 sums
    /// saturate on 8-bit weights (ONNX Runtime's documentation gives the same advice).
    #[arg(long, value_name = "WHEN", default_value = "auto", value_parser = ["auto", "on", "off"])]
    reduce_range: String,

    /// Operators to quantize, comma-separated (default: all thrum quantizes).
    #[arg(long, value_name = "OPS", value_delimiter = ',')]
    op_types: Vec<String>,

    /// Nodes to leave in fp32, by name, comma-separated.
    #[arg(long, value_name = "NODES", value_delimiter = ',')]
    exclude_nodes: Vec<String>,

    /// Accuracy-driven fallback (Intel Neural Compressor's basic strategy): leave Conv, Gemm and
    /// MatMul nodes in fp32, one at a time, until the quantized model keeps this fraction of
    /// fp32's accuracy on the evaluation samples (top-1 agreement for a classifier, else mean
    /// cosine; see --metric). Each candidate alone first, then accumulated, the most helpful
    /// first. When no model meets it, the most accurate one measured is written and the exit
    /// status is 1.
    #[arg(long, value_name = "FRACTION")]
    min_accuracy: Option<f64>,

    /// With --calibration-images or --eval-images: their pre-processing, for an image model
    /// file.
    #[command(flatten)]
    image_recipe: ImageRecipeArgs,

    /// With --min-accuracy: evaluation images (pre-processed as the calibration images are).
    /// Keep them apart from the calibration images.
    #[arg(long, value_name = "DIR", requires = "min_accuracy", conflicts_with_all = ["eval_npy", "eval_texts"])]
    eval_images: Option<PathBuf>,

    /// With --min-accuracy: evaluation texts, one per line (a text model); their pooled,
    /// normalised embeddings are compared.
    #[arg(long, value_name = "FILE", requires = "min_accuracy", conflicts_with = "eval_npy")]
    eval_texts: Option<PathBuf>,

    /// With --min-accuracy: evaluation samples as .npy files, laid out as for
    /// --calibration-npy.
    /// Default for all three: seeded inputs other than the calibration ones.
    #[arg(long, value_name = "DIR", requires = "min_accuracy")]
    eval_npy: Option<PathBuf>,

    /// With --min-accuracy: evaluation samples (the first N files, or N seeded inputs).
    #[arg(long, value_name = "N", default_value_t = 100, requires = "min_accuracy", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    eval_samples: u32,

    /// With --min-accuracy: top1 (agreement with fp32's class), cosine (mean cosine to fp32's
    /// output), or auto (top1 when the first output is [1, classes], else cosine).
    #[arg(long, value_name = "METRIC", default_value = "auto", requires = "min_accuracy", value_parser = ["auto", "top1", "cosine"])]
    metric: String,

    /// With --min-accuracy: the most models quantized and measured besides the first (each
    /// costs one pass over the evaluation samples).
    #[arg(long, value_name = "N", default_value_t = 200, requires = "min_accuracy", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    max_trials: u32,

    /// Write the report (every node, what happened to it and why) as JSON to FILE ('-' for
    /// stdout).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// A validated `quantize` command.
pub struct QuantizePlan {
    model_path: String,
    model: ModelRef,
    output: PathBuf,
    engine: Arc<dyn Engine>,
    calibration: SampleSource,
    samples: usize,
    method: Method,
    dynamic: bool,
    options: QuantizeOptions,
    fallback: Option<FallbackPlan>,
    json: Option<PathBuf>,
}

/// `--min-accuracy`'s part of a quantize command.
struct FallbackPlan {
    target: f64,
    evaluation: SampleSource,
    samples: usize,
    metric: Option<accuracy::Metric>,
    max_trials: usize,
}

impl QuantizePlan {
    pub fn from_args(args: QuantizeArgs) -> anyhow::Result<QuantizePlan> {
        let model = ModelRef::parse(&args.model_path)?;
        if let ModelRef::Path(path) = &model
            && ModelFormat::detect(path) != Some(ModelFormat::ONNX)
        {
            anyhow::bail!(
                "`{}` is not an ONNX file (.onnx); thrum quantize reads ONNX models",
                path.display()
            );
        }
        if ModelFormat::detect(&args.output) != Some(ModelFormat::ONNX) {
            anyhow::bail!(
                "--output `{}`: expected a path ending in .onnx (the quantized model is ONNX)",
                args.output.display()
            );
        }
        let registry = thrum::registry();
        let engine = match &args.engine {
            Some(name) => registry.get(name)?,
            None => {
                let ort = registry.get("ort")?;
                if ort.check().available { ort } else { registry.get("tract")? }
            }
        };
        if !engine.info().formats.contains(&ModelFormat::ONNX) {
            anyhow::bail!(
                "engine `{}` does not read ONNX; calibration runs the ONNX model: use ort or tract",
                engine.name()
            );
        }
        let method = Method::parse(&args.method, args.percentile).map_err(|why| {
            let percentile = match args.method.as_str() {
                "percentile" => format!(" --percentile {}", args.percentile),
                _ => String::new(),
            };
            anyhow::anyhow!("--method {}{percentile}: expected {why}", args.method)
        })?;
        let recipe = args.image_recipe.recipe(&model)?;
        if let Some(flag) = args.image_recipe.first_given()
            && args.calibration_images.is_none()
            && args.eval_images.is_none()
        {
            anyhow::bail!(
                "{flag} pre-processes --calibration-images and --eval-images; neither is given"
            );
        }
        let calibration = SampleSource::from_flags(
            args.calibration_images,
            args.calibration_texts,
            args.calibration_npy,
            recipe,
            0,
        );
        let layout = match &args.for_engine {
            Some(name) => {
                let engine =
                    registry.get(name).map_err(|e| anyhow::anyhow!("--for-engine {name}: {e}"))?;
                let Some(form) = engine.capabilities().int8_form else {
                    let check = engine.check();
                    if !check.available {
                        // A stand-in for an engine left out of this build says nothing else.
                        anyhow::bail!(
                            "--for-engine {name}: {}",
                            check.detail.unwrap_or_else(|| "not available".into())
                        );
                    }
                    anyhow::bail!(
                        "--for-engine {name}: engine `{name}` runs no quantized ONNX model; \
                         expected an engine with an int8 form ({})",
                        registry
                            .engines()
                            .filter(|e| e.capabilities().int8_form.is_some())
                            .map(|e| e.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                };
                QuantizeOptions::for_form(form)
            }
            None => QuantizeOptions {
                per_channel: !args.per_tensor,
                format: args.format,
                ..QuantizeOptions::default()
            },
        };
        let mut options = QuantizeOptions {
            reduce_range: match args.reduce_range.as_str() {
                "on" => true,
                "off" => false,
                _ => !thrum::CpuFeatures::detect().vnni(),
            },
            exclude_nodes: args.exclude_nodes,
            ..layout
        };
        if !args.op_types.is_empty() {
            for op in &args.op_types {
                if !thrum_quant::DEFAULT_OP_TYPES.contains(&op.as_str()) {
                    anyhow::bail!(
                        "--op-types: thrum does not quantize `{op}`; it quantizes {}",
                        thrum_quant::DEFAULT_OP_TYPES.join(", ")
                    );
                }
            }
            options.op_types = args.op_types;
        }
        let fallback = match args.min_accuracy {
            None => None,
            Some(target) if !(target > 0.0 && target <= 1.0) => anyhow::bail!(
                "--min-accuracy {target}: expected a fraction of fp32's accuracy above 0 and at \
                 most 1 (0.99: MLPerf's closed division)"
            ),
            Some(target) => Some(FallbackPlan {
                target,
                // Other seeds than calibration's: the search never judges on those.
                evaluation: SampleSource::from_flags(
                    args.eval_images,
                    args.eval_texts,
                    args.eval_npy,
                    recipe,
                    1_000_000,
                ),
                samples: args.eval_samples as usize,
                metric: match args.metric.as_str() {
                    "top1" => Some(accuracy::Metric::Top1),
                    "cosine" => Some(accuracy::Metric::Cosine),
                    _ => None,
                },
                max_trials: args.max_trials as usize,
            }),
        };
        Ok(QuantizePlan {
            model_path: args.model_path,
            model,
            output: args.output,
            engine,
            calibration,
            samples: args.samples as usize,
            method,
            dynamic: args.dynamic,
            options,
            fallback,
            json: args.json,
        })
    }

    pub fn run(self) -> anyhow::Result<()> {
        let started = Instant::now();
        let engine = self.engine.as_ref();
        let source = self.model.source(engine)?;
        let bytes = source.read("an ONNX model")?;
        let name = self.model.zoo_name().map_or_else(|| source.name(), str::to_string);
        let read = |options: QuantizeOptions| {
            if self.dynamic {
                Quantizer::new_dynamic(&name, &bytes, options)
            } else {
                Quantizer::new(&name, &bytes, options)
            }
        };
        let quantizer = read(self.options.clone())?;
        // A misspelt --exclude-nodes name would quantize everything without a word.
        let nodes = quantizer.nodes();
        if let Some(missing) =
            self.options.exclude_nodes.iter().find(|n| !nodes.iter().any(|r| &r.name == *n))
        {
            let weighted: Vec<&str> = nodes
                .iter()
                .filter(|r| matches!(r.op_type.as_str(), "Conv" | "Gemm" | "MatMul"))
                .map(|r| r.name.as_str())
                .collect();
            anyhow::bail!(
                "--exclude-nodes: model `{name}` has no node `{missing}`; expected node names as \
                 the report lists them (its Conv, Gemm and MatMul nodes: {}{})",
                weighted.iter().take(12).copied().collect::<Vec<_>>().join(", "),
                if weighted.len() > 12 { ", …" } else { "" }
            );
        }
        let calibrated = if self.dynamic { None } else { Some(self.calibrate(&quantizer)?) };
        let ranges = calibrated.as_ref().map(|(ranges, _)| ranges);
        // The quantized model with `fp32` left in fp32 besides --exclude-nodes (the search's
        // candidates), on the ranges calibrated once: leaving a node out only drops tensors
        // from the plan.
        let quantize = |fp32: &[String]| -> anyhow::Result<(Vec<u8>, Report)> {
            let more;
            let q = if fp32.is_empty() {
                &quantizer
            } else {
                let mut options = self.options.clone();
                options.exclude_nodes.extend(fp32.iter().cloned());
                more = read(options)?;
                &more
            };
            Ok(match ranges {
                Some(ranges) => q.quantize(ranges)?,
                None => q.quantize_dynamic()?,
            })
        };
        let t = Instant::now();
        let (mut quantized, mut report) = quantize(&[])?;
        let mut quantize_s = t.elapsed().as_secs_f64();
        let fallback = match &self.fallback {
            None => None,
            Some(plan) => {
                let found = self.search(plan, &source, &name, (&quantized, &report), &quantize)?;
                let fp32 = &found.search.chosen.fp32_nodes;
                if !fp32.is_empty() {
                    let t = Instant::now();
                    (quantized, report) = quantize(fp32)?;
                    quantize_s = t.elapsed().as_secs_f64();
                    for n in report.nodes.iter_mut().filter(|n| fp32.contains(&n.name)) {
                        n.detail = "left in fp32 by the accuracy search (--min-accuracy)".into();
                    }
                }
                Some(found)
            }
        };
        std::fs::write(&self.output, &quantized)
            .map_err(|e| thrum::Error::write(&self.output, e))?;
        let peak_mib = thrum_bench::system::peak_rss_bytes().map(|b| b as f64 / 1048576.0);
        let summary = Summary {
            model: self.model_path.clone(),
            output: self.output.display().to_string(),
            method: (!self.dynamic).then_some(self.method),
            calibration: calibrated.map(|(_, stats)| stats),
            quantize_s,
            total_s: started.elapsed().as_secs_f64(),
            peak_rss_mib: peak_mib,
            cpu: thrum::CpuFeatures::detect().summary(),
            fallback,
            report,
        };
        let to_stdout = self.json.as_deref() == Some(Path::new("-"));
        // The JSON first: a report that cannot be written fails the command, and then the
        // model goes too (nothing is written on failure).
        if let Some(path) = &self.json
            && let Err(e) = serde_json::to_string_pretty(&summary)
                .map_err(anyhow::Error::from)
                .and_then(|json| super::report::write_output(path, &json))
        {
            let _ = std::fs::remove_file(&self.output);
            return Err(e);
        }
        let written = if to_stdout {
            summary.write(&mut std::io::stderr().lock())
        } else {
            summary.write(&mut std::io::stdout().lock())
        };
        // A reader that went away (`| head`) does not hide the exit status below.
        match written {
            Err(e)
                if e.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) => {}
            other => other?,
        }
        if let Some(f) = &summary.fallback
            && !f.search.met()
        {
            return Err(thrum_quant::QuantError::BelowTarget {
                model: self.model_path.clone(),
                shortfall: format!(
                    "{} ≥ {} (the best measured: {} with {} node(s) in fp32)",
                    f.metric_name(),
                    f.value(f.search.target),
                    f.value(f.search.chosen.score.value),
                    f.search.chosen.fp32_nodes.len()
                ),
                written: self.output.display().to_string(),
            }
            .into());
        }
        Ok(())
    }

    /// Calibrates on the samples: the ranges, and what calibration took.
    fn calibrate(
        &self,
        quantizer: &Quantizer,
    ) -> anyhow::Result<(thrum_quant::Ranges, thrum_quant::CalibrationStats)> {
        let engine = self.engine.as_ref();
        let source = self.model.source(engine)?;
        let model = engine.load(&source, &Options::default())?;
        let flag = match self.calibration {
            SampleSource::Images { .. } => "--calibration-images",
            SampleSource::Texts(_) => "--calibration-texts",
            SampleSource::Npy(_) => "--calibration-npy",
            SampleSource::Seeded { .. } => "calibration",
        };
        let samples = self.calibration.samples(&self.model, &model, self.samples, flag)?;
        drop(model);
        Ok(thrum_quant::calibrate(engine, &Options::default(), quantizer, self.method, &samples)?)
    }

    /// `--min-accuracy`: the nodes to leave in fp32, searched on the evaluation samples on the
    /// calibration engine, each candidate model scored against fp32's outputs.
    fn search(
        &self,
        plan: &FallbackPlan,
        source: &ModelSource,
        name: &str,
        baseline: (&[u8], &Report),
        quantize: &QuantizeWith,
    ) -> anyhow::Result<FallbackSummary> {
        let started = Instant::now();
        let engine = self.engine.as_ref();
        // One thread: a model's speed per core, what workers × threads = cores serve at, and
        // steadier on a shared machine than a pool spread over every core.
        let options = Options::default().with_intra_op_threads(1);
        let flag = match plan.evaluation {
            SampleSource::Images { .. } => "--eval-images",
            SampleSource::Texts(_) => "--eval-texts",
            SampleSource::Npy(_) => "--eval-npy",
            SampleSource::Seeded { .. } => "evaluation",
        };
        let samples = {
            let model = engine.load(source, &options)?;
            plan.evaluation.samples(&self.model, &model, plan.samples, flag)?
        };
        if samples.is_empty() {
            anyhow::bail!(
                "{flag}: {}; expected at least one sample to judge the quantized model on",
                plan.evaluation.describe(0)
            );
        }
        let embedder = plan.evaluation.embeddings(&self.model)?;
        // One pass over the samples: the outputs users get (a text model's pooled embeddings).
        let evaluate = |source: &ModelSource| -> anyhow::Result<accuracy::Evaluation> {
            let run = accuracy::evaluate(engine, source, &options, &samples, 1)?;
            Ok(match &embedder {
                Some(embedder) => run.map_outputs(|hidden| embedder.embed(hidden))?,
                None => run,
            })
        };
        let reference = evaluate(source)?;
        let metric = match (plan.metric, &embedder) {
            (Some(metric), _) => metric,
            (None, Some(_)) => accuracy::Metric::Cosine,
            (None, None) => reference.metric(),
        };
        // One quantized model's score against fp32's outputs.
        let score = |bytes: Vec<u8>| -> anyhow::Result<Score> {
            let run = evaluate(&ModelSource::memory(name, ModelFormat::ONNX, bytes))?;
            let row = accuracy::row(
                engine.name(),
                Precision::Int8,
                &reference,
                &run,
                metric,
                plan.target,
            );
            let value = match metric {
                accuracy::Metric::Top1 => row.top1_agreement,
                accuracy::Metric::Cosine => row.mean_cosine,
            };
            Ok(Score { value: value.unwrap_or(0.0), speedup: row.speedup })
        };
        if !self.dynamic
            && let Some(warning) =
                super::samples::calibration_warning(&self.calibration, &plan.evaluation)
        {
            eprintln!("{warning}");
        }
        let candidates = fallback::candidates(baseline.1);
        let search = fallback::search(
            score(baseline.0.to_vec())?,
            &candidates,
            plan.target,
            plan.max_trials,
            |fp32| match quantize(fp32) {
                Ok((bytes, _)) => score(bytes).map(Some),
                // Every quantized node in fp32: that is the fp32 model, not a quantized one.
                Err(e)
                    if e.downcast_ref::<thrum_quant::QuantError>().is_some_and(|q| {
                        matches!(q, thrum_quant::QuantError::NothingQuantizable { .. })
                    }) =>
                {
                    Ok(None)
                }
                Err(e) => Err(e),
            },
        )?;
        // The chosen model's speed against fp32's, on firmer ground than one pass each: three
        // passes of each, alternating, the best of each.
        let (bytes, _) = quantize(&search.chosen.fp32_nodes)?;
        let chosen = ModelSource::memory(name, ModelFormat::ONNX, bytes);
        let (mut reference_best, mut chosen_best) = (0.0f64, 0.0f64);
        for _ in 0..3 {
            reference_best = reference_best.max(evaluate(source)?.samples_per_s());
            chosen_best = chosen_best.max(evaluate(&chosen)?.samples_per_s());
        }
        Ok(FallbackSummary {
            speedup: chosen_best / reference_best,
            metric,
            samples_from: plan.evaluation.describe(samples.len()),
            engine: engine.name().into(),
            fp32_per_s: reference.samples_per_s(),
            candidates: candidates.len(),
            search,
            time_s: started.elapsed().as_secs_f64(),
        })
    }
}

/// Quantizes the model with the given nodes left in fp32 (besides --exclude-nodes).
type QuantizeWith<'a> = dyn Fn(&[String]) -> anyhow::Result<(Vec<u8>, Report)> + 'a;

/// What `--min-accuracy` searched and found.
#[derive(serde::Serialize)]
struct FallbackSummary {
    metric: accuracy::Metric,
    /// The evaluation samples, in words.
    samples_from: String,
    /// The engine that ran them.
    engine: String,
    /// fp32's speed over one pass of the samples (batch 1).
    fp32_per_s: f64,
    /// Nodes the search could leave in fp32.
    candidates: usize,
    /// The chosen model's speed over fp32's: the best of three passes each, alternating.
    speedup: f64,
    search: fallback::Search,
    time_s: f64,
}

impl FallbackSummary {
    fn metric_name(&self) -> &'static str {
        match self.metric {
            accuracy::Metric::Top1 => "top-1 agreement with fp32",
            accuracy::Metric::Cosine => "mean cosine to fp32",
        }
    }

    /// A score as it reads best: top-1 agreement in percent, a cosine as it is.
    fn value(&self, v: f64) -> String {
        match self.metric {
            accuracy::Metric::Top1 => format!("{:.1} %", v * 100.0),
            accuracy::Metric::Cosine => format!("{v:.4}"),
        }
    }

    fn write(&self, out: &mut impl std::io::Write) -> anyhow::Result<()> {
        let s = &self.search;
        let pct = |v: f64| self.value(v);
        let line = |t: &fallback::Trial| {
            format!(
                "{} {}{}",
                self.metric_name(),
                pct(t.score.value),
                t.score.speedup.map_or_else(String::new, |x| format!(", {x:.2}× fp32's speed"))
            )
        };
        writeln!(
            out,
            "  accuracy     target {} ≥ {} on {}, on {} (fp32 {:.1}/s; each step's speed is from \
             one pass, a rough figure); {} model(s) measured in {:.1} s",
            self.metric_name(),
            pct(s.target),
            self.samples_from,
            self.engine,
            self.fp32_per_s,
            s.measured,
            self.time_s
        )?;
        writeln!(out, "    every node quantized: {}", line(&s.baseline))?;
        if !s.singles.is_empty() {
            let mut best: Vec<&fallback::Trial> = s.singles.iter().collect();
            best.sort_by(|a, b| b.score.value.total_cmp(&a.score.value));
            let shown: Vec<String> = best
                .iter()
                .take(5)
                .map(|t| format!("{} {}", t.fp32_nodes[0], pct(t.score.value)))
                .collect();
            writeln!(
                out,
                "    one node in fp32 ({} of {} tried), the best: {}",
                s.singles.len(),
                self.candidates,
                shown.join(", ")
            )?;
        }
        for t in &s.cumulative {
            writeln!(out, "    {:>3} nodes in fp32: {}", t.fp32_nodes.len(), line(t))?;
        }
        let verdict = match s.stop {
            fallback::Stop::Met => "target met",
            fallback::Stop::Exhausted => "target NOT met with every candidate tried",
            fallback::Stop::Budget => "target NOT met within --max-trials",
        };
        let nodes = &s.chosen.fp32_nodes;
        let named = match nodes.len() {
            0 => "none".to_string(),
            n if n <= 8 => nodes.join(", "),
            n => format!("{}, … {} more", nodes[..8].join(", "), n - 8),
        };
        writeln!(
            out,
            "    {verdict}: wrote {} node(s) in fp32 ({named}), {} {}",
            nodes.len(),
            self.metric_name(),
            pct(s.chosen.score.value)
        )?;
        writeln!(
            out,
            "    its speed: {:.2}× fp32's (one thread; the best of three passes each, alternating)",
            self.speedup
        )?;
        if self.speedup < 1.0 {
            writeln!(
                out,
                "    note: it runs slower than fp32 here, so fp32 (or bf16, `thrum compare \
                 --precision`) is the better choice on this CPU"
            )?;
        }
        Ok(())
    }
}

#[derive(serde::Serialize)]
struct Summary {
    model: String,
    output: String,
    method: Option<Method>,
    calibration: Option<thrum_quant::CalibrationStats>,
    quantize_s: f64,
    total_s: f64,
    peak_rss_mib: Option<f64>,
    cpu: String,
    fallback: Option<FallbackSummary>,
    report: Report,
}

impl Summary {
    fn write(&self, out: &mut impl std::io::Write) -> anyhow::Result<()> {
        let r = &self.report;
        writeln!(out, "quantized {} → {}", self.model, self.output)?;
        writeln!(out, "  cpu          {}", self.cpu)?;
        match (&self.calibration, self.method) {
            (Some(c), Some(method)) => writeln!(
                out,
                "  calibration  {} sample(s) × {} pass(es) on {}, {}, {:.2} s",
                c.samples,
                c.passes,
                c.engine,
                match method {
                    Method::MinMax => "minmax".to_string(),
                    Method::Percentile { percentile } => format!("percentile {percentile}"),
                    Method::Entropy => "entropy".to_string(),
                },
                c.time.as_secs_f64()
            )?,
            _ => {
                writeln!(out, "  dynamic      activations quantized on every call; no calibration")?
            }
        }
        writeln!(
            out,
            "  time         quantize {:.2} s, total {:.2} s; peak RSS {}",
            self.quantize_s,
            self.total_s,
            self.peak_rss_mib.map_or_else(|| "?".into(), |m| format!("{m:.0} MiB"))
        )?;
        writeln!(
            out,
            "  size         {:.1} MB → {:.1} MB; {} int8 weights ({}{}), {} int32 biases, {} activations uint8",
            r.bytes_before as f64 / 1e6,
            r.bytes_after as f64 / 1e6,
            r.int8_weights,
            r.options.weight_scales(),
            if r.options.reduce_range { ", 7-bit" } else { "" },
            r.int32_biases,
            r.quantized_tensors
        )?;
        if r.options.format == thrum_quant::Format::QOperator {
            writeln!(
                out,
                "  format       QOperator: {} Conv as QLinearConv, the rest QDQ",
                r.qlinear_convs
            )?;
        }
        for decision in [Decision::Quantized, Decision::Removed, Decision::Folded, Decision::Fp32] {
            let rows: Vec<String> = r
                .summary()
                .into_iter()
                .filter(|(d, _, _)| *d == decision)
                .map(|(_, op, n)| format!("{op} {n}"))
                .collect();
            if rows.is_empty() {
                continue;
            }
            let label = match decision {
                Decision::Quantized => "quantized",
                Decision::Removed => "removed",
                Decision::Folded => "folded",
                Decision::Fp32 => "fp32",
            };
            writeln!(out, "  {label:<12} {}", rows.join(", "))?;
        }
        // Why nodes stayed in fp32, each reason once.
        let mut reasons: Vec<(String, String)> = Vec::new();
        for n in r.nodes.iter().filter(|n| n.decision == Decision::Fp32) {
            if !reasons.iter().any(|(op, why)| *op == n.op_type && *why == n.detail) {
                reasons.push((n.op_type.clone(), n.detail.clone()));
            }
        }
        for (op, why) in reasons {
            writeln!(out, "    {op}: {why}")?;
        }
        if let Some(f) = &self.fallback {
            f.write(out)?;
        }
        Ok(())
    }
}
