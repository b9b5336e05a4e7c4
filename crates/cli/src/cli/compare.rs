//! `thrum compare`: every engine runs the model on the same seeded input; a table of the
//! differences per output against the first engine, and each engine's single-call latency.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use thrum::{Engine, ModelFormat, ModelRef, ModelSource, Options, Precision};
use thrum_tune::accuracy;
use thrum_tune::compare::{self, Comparison, DEFAULT_TOLERANCE, EngineFailure};

use super::options::ImageRecipeArgs;
use super::samples::SampleSource;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  thrum compare -p zoo:resnet50\n  thrum compare -p model.onnx -e tract,ort --json diff.json\n  thrum compare -p zoo:efficientnet-lite0 -e ort --precision fp32,bf16,int8 --images eval/ --calibration-images calib/\n\nExit status: 0 when every engine agrees (with --precision: every precision that ran meets the target), 1 when one disagrees (falls short), 2 for bad arguments or when fewer than two engines can run the model (no engine runs it in fp32)."
)]
pub struct CompareArgs {
    /// Model file, or zoo:NAME (every engine reads zoo models).
    #[arg(short = 'p', long = "model-path", value_name = "MODEL")]
    model_path: String,

    /// Engines to compare, comma-separated (the first is the reference). Default: every
    /// engine compiled in, installed, and reading the model's format.
    #[arg(short, long, value_name = "E1,E2", value_delimiter = ',')]
    engines: Vec<String>,

    /// Relative tolerance: max |difference| over max |reference output|.
    #[arg(long, value_name = "REL", default_value_t = DEFAULT_TOLERANCE)]
    tolerance: f64,

    /// Write the table as JSON to FILE ('-' for stdout).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// Compare precisions instead of engines: each engine runs the model at each precision
    /// (fp32, bf16, fp16, int8) against its own fp32, on real samples (--images, --texts, --npy) or
    /// seeded ones; int8 runs a quantized model (--int8-model, else quantized now).
    #[arg(long, value_name = "P1,P2", value_delimiter = ',')]
    precision: Vec<String>,

    /// With --precision: evaluation images (JPEG, PNG, GIF, WebP), pre-processed as the model's
    /// own.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["npy", "texts"])]
    images: Option<PathBuf>,

    /// With --precision: evaluation texts, one per line, tokenized as the model's own (a text
    /// model: zoo:all-minilm-l6-v2); their pooled, normalised embeddings are compared (by
    /// cosine, unless --metric says otherwise).
    #[arg(long, value_name = "FILE", conflicts_with = "npy")]
    texts: Option<PathBuf>,

    /// With --precision: evaluation samples as .npy files: one per sample (a model with one
    /// input), or one folder per sample holding INPUT.npy for each input.
    #[arg(long, value_name = "DIR")]
    npy: Option<PathBuf>,

    /// With --precision: evaluation samples (the first N files, or N seeded inputs).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    samples: u32,

    /// With --precision int8: the quantized model every engine runs; otherwise the model is
    /// quantized now, as `thrum quantize` does by default, on the calibration data below, in
    /// each engine's fastest form (a text model: dynamically, as `thrum quantize --dynamic`
    /// does).
    #[arg(long, value_name = "FILE")]
    int8_model: Option<PathBuf>,

    /// Calibration images for the int8 model quantized now (default: seeded inputs, other
    /// than the evaluation ones).
    #[arg(long, value_name = "DIR", conflicts_with = "calibration_npy")]
    calibration_images: Option<PathBuf>,

    /// Calibration .npy files for the int8 model quantized now.
    #[arg(long, value_name = "DIR")]
    calibration_npy: Option<PathBuf>,

    /// With --images or --calibration-images: their pre-processing, for an image model file.
    #[command(flatten)]
    image_recipe: ImageRecipeArgs,

    /// With --precision: what decides PASS / FAIL: top1 (agreement with fp32's class),
    /// cosine (mean cosine to fp32's output), or auto (top1 when the first output is
    /// [1, classes], else cosine; a pooled embedding of that shape wants cosine).
    #[arg(long, value_name = "METRIC", default_value = "auto", value_parser = ["auto", "top1", "cosine"])]
    metric: String,

    /// With --precision: options every run gets (`key=value,…`, e.g.
    /// ort.execution_providers=openvino for bf16 on ort), besides the precision itself.
    #[arg(long, value_name = "K=V,…")]
    model_options: Option<String>,

    /// With --precision: PASS when top-1 agreement (classifiers) or mean cosine (other
    /// outputs) reaches this fraction of fp32 (MLPerf's closed division: 0.99).
    #[arg(long, value_name = "FRACTION", default_value_t = thrum_tune::accuracy::DEFAULT_TARGET)]
    target: f64,

    /// Check one configuration instead: the thrum.toml FILE (what `thrum tune` writes: engine,
    /// model, precision and engine settings) runs the evaluation samples against its engine's
    /// fp32 with default settings on -p (on the same backend: ONNX Runtime's OpenVINO provider
    /// when the file asks for it), one call per sample; PASS / FAIL against --target. `thrum
    /// tune` runs this in a child before it writes its pick.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["precision", "int8_model", "engines", "model_options"])]
    config: Option<PathBuf>,
}

/// `--precision`'s part of a compare command.
struct PrecisionPlan {
    precisions: Vec<Precision>,
    evaluation: SampleSource,
    samples: usize,
    int8_model: Option<PathBuf>,
    calibration: SampleSource,
    target: f64,
    metric: Option<accuracy::Metric>,
    options: Options,
    /// `--config`: one configuration checked against its engine's fp32.
    config: Option<PathBuf>,
    /// The `--image-*` flags, laid over the `--config` file's `[image]` table.
    image_flags: thrum_serve::config::ImageSettings,
}

/// A validated `compare` command.
pub struct ComparePlan {
    model_path: String,
    model: ModelRef,
    engines: Vec<Arc<dyn Engine>>,
    explicit: bool,
    tolerance: f64,
    json: Option<PathBuf>,
    precision: Option<PrecisionPlan>,
}

impl ComparePlan {
    pub fn from_args(args: CompareArgs) -> anyhow::Result<ComparePlan> {
        let model = ModelRef::parse(&args.model_path)?;
        let registry = thrum::registry();
        let explicit = !args.engines.is_empty();
        let engines = if explicit {
            args.engines.iter().map(|e| registry.get(e)).collect::<Result<Vec<_>, _>>()?
        } else {
            registry.engines().cloned().collect()
        };
        if !(args.tolerance >= 0.0 && args.tolerance.is_finite()) {
            return Err(thrum_tune::TuneError::Config {
                what: format!("--tolerance {}", args.tolerance),
                expected: "a relative tolerance of 0 or more".into(),
            }
            .into());
        }
        // With --config, its [image] table may set what the flags leave: checked with it.
        let recipe = args.image_recipe.recipe_or_check(&model, args.config.is_some())?;
        if let Some(flag) = args.image_recipe.first_given()
            && ((args.images.is_none() && args.calibration_images.is_none())
                || (args.precision.is_empty() && args.config.is_none()))
        {
            anyhow::bail!(
                "{flag} pre-processes --images and --calibration-images (with --precision or \
                 --config); neither is given"
            );
        }
        let precision = if args.precision.is_empty() && args.config.is_none() {
            None
        } else {
            let mut precisions = vec![Precision::Fp32];
            for p in &args.precision {
                let p: Precision = p.parse()?;
                if !precisions.contains(&p) {
                    precisions.push(p);
                }
            }
            if !(args.target > 0.0 && args.target <= 1.0) {
                anyhow::bail!(
                    "--target {}: expected a fraction of fp32 above 0 and at most 1",
                    args.target
                );
            }
            Some(PrecisionPlan {
                precisions,
                evaluation: SampleSource::from_flags(args.images, args.texts, args.npy, recipe, 0),
                samples: args.samples as usize,
                int8_model: args.int8_model,
                // Other seeds than the evaluation's: calibration never sees the test set.
                calibration: SampleSource::from_flags(
                    args.calibration_images,
                    None,
                    args.calibration_npy,
                    recipe,
                    1_000_000,
                ),
                target: args.target,
                metric: match args.metric.as_str() {
                    "top1" => Some(accuracy::Metric::Top1),
                    "cosine" => Some(accuracy::Metric::Cosine),
                    _ => None,
                },
                options: {
                    let mut options = Options::default();
                    if let Some(pairs) = &args.model_options {
                        options.apply_pairs(pairs)?;
                    }
                    if options.precision.is_some() {
                        anyhow::bail!(
                            "--model-options sets precision; --precision says which to compare"
                        );
                    }
                    options
                },
                config: args.config,
                image_flags: args.image_recipe.settings(),
            })
        };
        Ok(ComparePlan {
            model_path: args.model_path,
            model,
            engines,
            explicit,
            tolerance: args.tolerance,
            json: args.json,
            precision,
        })
    }

    pub fn run(self) -> anyhow::Result<()> {
        if let Some(plan) = &self.precision {
            if let Some(config) = &plan.config {
                return self.run_check(plan, config);
            }
            return self.run_precision(plan);
        }
        let comparison = run_comparison(
            &self.model_path,
            &self.model,
            &self.engines,
            self.explicit,
            self.tolerance,
        )?;
        let to_stdout = self.json.as_deref() == Some(std::path::Path::new("-"));
        if to_stdout {
            comparison.write_table(&mut std::io::stderr().lock())?;
        } else {
            comparison.write_table(&mut std::io::stdout().lock())?;
        }
        if let Some(path) = &self.json {
            let json = serde_json::to_string_pretty(&comparison)?;
            super::report::write_output(path, &json)?;
        }
        if comparison.runs.len() < 2 {
            return Err(thrum_tune::TuneError::Config {
                what: format!(
                    "{} engine(s) able to run `{}`",
                    comparison.runs.len(),
                    self.model_path
                ),
                expected: "at least two to compare".into(),
            }
            .into());
        }
        let bad = comparison.disagreeing();
        if !bad.is_empty() {
            return Err(thrum_tune::TuneError::Disagree {
                engines: bad,
                tolerance: self.tolerance,
            }
            .into());
        }
        Ok(())
    }
}

impl ComparePlan {
    /// `--precision`: every engine × precision against the engine's own fp32.
    fn run_precision(&self, plan: &PrecisionPlan) -> anyhow::Result<()> {
        // Texts for a model without a tokenizer are refused before anything is quantized.
        let judged = Judged::new(plan, &self.model)?;
        let engines: Vec<&Arc<dyn Engine>> = self
            .engines
            .iter()
            .filter(|e| self.explicit || not_tried(e.as_ref(), &self.model).is_none())
            .collect();
        // The int8 model: given, or quantized now in the form each engine runs fastest
        // (removed when done); a model that cannot be quantized makes every int8 row say why.
        let reads_onnx = |e: &dyn Engine| e.info().formats.contains(&ModelFormat::ONNX);
        let forms = int8_forms(engines.iter().copied());
        let int8: Option<Int8Models> =
            match (&plan.int8_model, plan.precisions.contains(&Precision::Int8)) {
                (Some(path), true) => Some(Int8Models::given(path)),
                (None, true) if !forms.is_empty() => Some(self.quantize_now(plan, &forms)),
                _ => None,
            };
        // A text model is quantized dynamically, without calibration.
        if int8.is_some()
            && plan.int8_model.is_none()
            && self.model.text_dir().is_none()
            && let Some(warning) =
                super::samples::calibration_warning(&plan.calibration, &plan.evaluation)
        {
            eprintln!("{warning}");
        }
        let mut rows = Vec::new();
        let mut metric = None;
        let mut described = String::new();
        for engine in engines {
            let name = engine.name();
            let fp32_source = match self.model.source(engine.as_ref()) {
                Ok(source) => source,
                Err(e) => {
                    rows.push(accuracy::refused(name, Precision::Fp32, e.to_string()));
                    continue;
                }
            };
            // The samples as this engine's model takes them (layouts differ between exports).
            let samples = engine
                .load(&fp32_source, &plan.options)
                .map_err(anyhow::Error::from)
                .and_then(|m| plan.evaluation.samples(&self.model, &m, plan.samples, "evaluation"));
            let samples = match samples {
                Ok(s) => s,
                Err(e) => {
                    rows.push(accuracy::refused(name, Precision::Fp32, super::describe(&e)));
                    continue;
                }
            };
            described = plan.evaluation.describe(samples.len());
            let reference = match judged.evaluate(engine, &fp32_source, &plan.options, &samples, 2)
            {
                Ok(r) => r,
                Err(e) => {
                    rows.push(accuracy::refused(name, Precision::Fp32, e.to_string()));
                    continue;
                }
            };
            let metric = *metric.get_or_insert(judged.metric(&reference));
            rows.push(accuracy::row(
                name,
                Precision::Fp32,
                &reference,
                &reference,
                metric,
                plan.target,
            ));
            for &p in plan.precisions.iter().filter(|p| **p != Precision::Fp32) {
                let options = plan.options.clone().with("precision", &p.to_string())?;
                // int8 runs the quantized ONNX model on engines that read ONNX; the others are
                // given their own model, and refuse int8 with their reason.
                let made =
                    int8.as_ref().filter(|_| p == Precision::Int8 && reads_onnx(engine.as_ref()));
                let source = match made.and_then(|m| m.for_engine(engine.as_ref())) {
                    Some(Ok(path)) => ModelSource::path(path),
                    Some(Err(why)) => {
                        rows.push(accuracy::refused(name, p, why.to_string()));
                        continue;
                    }
                    // A zoo model read as TorchScript is traced in bf16 for bf16.
                    _ => match self.model.source_for(engine.as_ref(), p) {
                        Ok(source) => source,
                        Err(e) if e.kind() == thrum::ErrorKind::Unsupported => {
                            rows.push(accuracy::refused(name, p, e.to_string()));
                            continue;
                        }
                        Err(e) => {
                            rows.push(accuracy::failed(name, p, e.to_string()));
                            continue;
                        }
                    },
                };
                // A refusal (the engine or the CPU cannot) is a row without a verdict; any
                // other failure (a broken model, inputs that do not fit) is a FAIL.
                match judged.evaluate(engine, &source, &options, &samples, 2) {
                    Ok(e) => rows.push(accuracy::row(name, p, &reference, &e, metric, plan.target)),
                    Err(e) if e.kind() == thrum::ErrorKind::Unsupported => {
                        rows.push(accuracy::refused(name, p, e.to_string()))
                    }
                    Err(e) => rows.push(accuracy::failed(name, p, e.to_string())),
                }
            }
        }
        drop(int8);
        self.finish(plan, metric, described, rows)
    }

    /// `--config`: the configuration of a thrum.toml against its engine's fp32 with default
    /// settings, on the evaluation samples of -p.
    fn run_check(&self, plan: &PrecisionPlan, config: &std::path::Path) -> anyhow::Result<()> {
        let entry = thrum_serve::config::read_file(config, Some("model"), None)?
            .pop()
            .with_context(|| format!("`{}` describes no model", config.display()))?;
        // The file's [image] pre-processes the evaluation images of its own model.
        let file =
            super::options::ModelFile { entry, names_model: true, path: config.to_path_buf() };
        let evaluation = match &plan.evaluation {
            SampleSource::Images { dir, .. } => SampleSource::Images {
                dir: dir.clone(),
                recipe: super::options::image_recipe(
                    plan.image_flags,
                    file.image_for(Some(&self.model_path)),
                    &self.model,
                )?,
            },
            other => other.clone(),
        };
        let entry = file.entry;
        let engine = thrum::registry().get(&entry.engine)?;
        // The reference: fp32 with default settings, on the configuration's backend where a
        // key switches it (ONNX Runtime's OpenVINO provider runs on another library, and one
        // process holds one ONNX Runtime).
        let mut reference_options = Options::default();
        for (key, _) in engine.capabilities().concurrency_needs {
            if let Some(value) = entry.options.get(key) {
                reference_options = reference_options.with(key, &value)?;
            }
        }
        let reference_source = self.model.source(engine.as_ref())?;
        let reference_model = engine.load(&reference_source, &reference_options)?;
        let samples =
            evaluation.samples(&self.model, &reference_model, plan.samples, "evaluation")?;
        drop(reference_model);
        let judged = Judged::new(plan, &self.model)?;
        let reference =
            judged.evaluate(&engine, &reference_source, &reference_options, &samples, 1)?;
        let metric = judged.metric(&reference);
        let precision = entry.options.precision.unwrap_or_default();
        let label = format!("{} ({})", engine.name(), config.display());
        let mut rows = vec![accuracy::row(
            engine.name(),
            Precision::Fp32,
            &reference,
            &reference,
            metric,
            plan.target,
        )];
        let source = super::model_source(
            &ModelRef::parse(&entry.model)?,
            engine.as_ref(),
            entry.int8_model.as_deref().map(std::path::Path::new),
            &entry.options,
        )?;
        rows.push(match judged.evaluate(&engine, &source, &entry.options, &samples, 1) {
            Ok(e) => accuracy::row(&label, precision, &reference, &e, metric, plan.target),
            Err(e) => accuracy::failed(&label, precision, e.to_string()),
        });
        self.finish(plan, Some(metric), evaluation.describe(samples.len()), rows)
    }

    /// Prints the table (and the JSON), then the verdict: exit 1 when a row falls short.
    fn finish(
        &self,
        plan: &PrecisionPlan,
        metric: Option<accuracy::Metric>,
        described: String,
        rows: Vec<accuracy::PrecisionRow>,
    ) -> anyhow::Result<()> {
        let report = accuracy::PrecisionReport {
            model: self.model_path.clone(),
            metric: metric.unwrap_or(accuracy::Metric::Cosine),
            target: plan.target,
            samples_from: described,
            cpu: thrum::CpuFeatures::detect().summary(),
            rows,
        };
        let to_stdout = self.json.as_deref() == Some(std::path::Path::new("-"));
        if to_stdout {
            report.write_table(&mut std::io::stderr().lock())?;
        } else {
            report.write_table(&mut std::io::stdout().lock())?;
        }
        if let Some(path) = &self.json {
            super::report::write_output(path, &serde_json::to_string_pretty(&report)?)?;
        }
        if !report.rows.iter().any(|r| r.precision == Precision::Fp32 && r.refused.is_none()) {
            anyhow::bail!(
                "no engine ran `{}` in fp32, the reference every precision is judged against",
                self.model_path
            );
        }
        let failed: Vec<String> = report
            .rows
            .iter()
            .filter(|r| r.pass == Some(false))
            .map(|r| format!("{} {}", r.engine, r.precision))
            .collect();
        if !failed.is_empty() {
            return Err(thrum_tune::TuneError::BelowTarget {
                variants: failed,
                metric: match report.metric {
                    accuracy::Metric::Top1 => "top-1 agreement".into(),
                    accuracy::Metric::Cosine => "mean cosine".into(),
                },
                target: plan.target,
            }
            .into());
        }
        Ok(())
    }

    /// Quantizes the model as `thrum quantize` does by default into a temporary file per form.
    fn quantize_now(&self, plan: &PrecisionPlan, forms: &[thrum::Int8Form]) -> Int8Models {
        let path_of = |form| {
            let stem = format!("thrum-compare-{}", std::process::id());
            std::env::temp_dir().join(int8_file_name(&stem, form))
        };
        // Removed when done, however the comparison ends; the QDQ file may stand in for
        // another form (no convolution rewritten, a text model).
        let mut all = forms.to_vec();
        all.push(thrum::Int8Form::Qdq);
        all.sort();
        all.dedup();
        let files = all.into_iter().map(|f| TempModel(path_of(f))).collect();
        let by_form =
            quantize_default(&self.model, &plan.calibration, forms, path_of, &plan.options)
                .map(|files| files.into_iter().map(|(form, path)| (Some(form), path)).collect())
                .map_err(|e| format!("cannot quantize the model: {}", super::describe(&e)));
        Int8Models { _files: files, by_form }
    }
}

/// Quantizes `model` as `thrum quantize` does by default (static, MinMax on 100 samples of
/// `calibration`, 7-bit weights without VNNI) in each of `forms` (the engines',
/// [`thrum::Capabilities::int8_form`]: QDQ with per-channel weights for ONNX Runtime; for
/// tract, ordinary convolutions as QLinearConv with per-tensor weights, the rest QDQ),
/// calibrated once, on ort where it is installed, else tract; a form is written to
/// `path_of(form)`. A form that rewrites no convolution gets the QDQ file (QLinearConv would
/// change nothing but lose per-channel weights), and a text model (a transformer) its dynamic
/// form, as `thrum quantize --dynamic` writes it, without calibration, for every form.
/// Returns each form's file; on an error, no file is written (or one written is removed). ort
/// calibrates on the backend `options` (the runs' options) pick: one process holds one ONNX
/// Runtime, the OpenVINO flavour's when they ask for it.
pub fn quantize_default(
    model: &ModelRef,
    calibration: &SampleSource,
    forms: &[thrum::Int8Form],
    path_of: impl Fn(thrum::Int8Form) -> PathBuf,
    options: &Options,
) -> anyhow::Result<Vec<(thrum::Int8Form, PathBuf)>> {
    use thrum::Int8Form;
    let registry = thrum::registry();
    let ort = registry.get("ort")?;
    // Of the runs' options, only those that pick ort's library (its backend-switching keys).
    let mut backend = Options::default();
    for (key, _) in ort.capabilities().concurrency_needs {
        if let Some(value) = options.get(key) {
            backend = backend.with(key, &value)?;
        }
    }
    let (engine, options) = if ort.check_with(&backend).available {
        (ort, backend)
    } else {
        (registry.get("tract")?, Options::default())
    };
    let source = model.source(engine.as_ref())?;
    let bytes = source.read("an ONNX model")?;
    let name = model.zoo_name().map_or_else(|| source.name(), str::to_string);
    let quantize = |form: Int8Form| thrum_quant::QuantizeOptions {
        reduce_range: !thrum::CpuFeatures::detect().vnni(),
        ..thrum_quant::QuantizeOptions::for_form(form)
    };
    // Each form's file, and the models to write (all made before any is written).
    let mut files: Vec<(Int8Form, PathBuf)> = Vec::new();
    let mut models: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    if model.text_dir().is_some() {
        // A transformer's activations vary too much from text to text for fixed ranges.
        let (quantized, _) =
            thrum_quant::Quantizer::new_dynamic(&name, &bytes, quantize(Int8Form::Qdq))?
                .quantize_dynamic()?;
        models.push((path_of(Int8Form::Qdq), quantized));
        files.extend(forms.iter().map(|f| (*f, path_of(Int8Form::Qdq))));
    } else {
        let quantizer = thrum_quant::Quantizer::new(&name, &bytes, quantize(Int8Form::Qdq))?;
        let loaded = engine.load(&source, &options)?;
        let samples = calibration.samples(model, &loaded, 100, "calibration")?;
        let (ranges, _) = thrum_quant::calibrate(
            engine.as_ref(),
            &options,
            &quantizer,
            thrum_quant::Method::MinMax,
            &samples,
        )?;
        // The tensors to range do not depend on the form: one calibration serves every form.
        for &form in forms {
            let own = match form {
                Int8Form::Qdq => None,
                Int8Form::QLinearPerTensor => {
                    let (quantized, report) =
                        thrum_quant::Quantizer::new(&name, &bytes, quantize(form))?
                            .quantize(&ranges)?;
                    // No convolution rewritten: the form would only lose per-channel weights.
                    (report.qlinear_convs > 0).then_some(quantized)
                }
            };
            let path = match own {
                Some(quantized) => {
                    models.push((path_of(form), quantized));
                    path_of(form)
                }
                None => {
                    let qdq = path_of(Int8Form::Qdq);
                    if !models.iter().any(|(p, _)| *p == qdq) {
                        models.push((qdq.clone(), quantizer.quantize(&ranges)?.0));
                    }
                    qdq
                }
            };
            files.push((form, path));
        }
    }
    let mut written: Vec<&std::path::Path> = Vec::new();
    for (path, quantized) in &models {
        if let Err(e) = std::fs::write(path, quantized) {
            // Nothing half-done is left: a file this call wrote goes, none other.
            for p in written {
                let _ = std::fs::remove_file(p);
            }
            return Err(thrum::Error::write(path, e).into());
        }
        written.push(path);
    }
    Ok(files)
}

/// The name of an int8 model file of `form`: `STEM-int8.onnx` for QDQ, `STEM-int8-qlinear.onnx`
/// for tract's form.
pub fn int8_file_name(stem: &str, form: thrum::Int8Form) -> String {
    match form {
        thrum::Int8Form::Qdq => format!("{stem}-int8.onnx"),
        thrum::Int8Form::QLinearPerTensor => format!("{stem}-int8-qlinear.onnx"),
    }
}

/// The int8 forms `engines` run fastest, each once (an engine with none refuses int8).
pub fn int8_forms<'a>(
    engines: impl IntoIterator<Item = &'a Arc<dyn Engine>>,
) -> Vec<thrum::Int8Form> {
    let forms: std::collections::BTreeSet<thrum::Int8Form> =
        engines.into_iter().filter_map(|e| e.capabilities().int8_form).collect();
    forms.into_iter().collect()
}

/// How a precision's outputs are judged: as they are, or for texts as the embeddings users
/// get (pooled and normalised), by cosine unless `--metric` says otherwise.
struct Judged<'a> {
    plan: &'a PrecisionPlan,
    embedder: Option<super::samples::Embedder>,
}

impl<'a> Judged<'a> {
    fn new(plan: &'a PrecisionPlan, model: &ModelRef) -> anyhow::Result<Judged<'a>> {
        Ok(Judged { plan, embedder: plan.evaluation.embeddings(model)? })
    }

    fn evaluate(
        &self,
        engine: &Arc<dyn Engine>,
        source: &ModelSource,
        options: &Options,
        samples: &[Vec<thrum::Tensor>],
        rounds: usize,
    ) -> Result<accuracy::Evaluation, thrum_tune::TuneError> {
        let run = accuracy::evaluate(engine.as_ref(), source, options, samples, rounds)?;
        match &self.embedder {
            Some(embedder) => Ok(run.map_outputs(|hidden| embedder.embed(hidden))?),
            None => Ok(run),
        }
    }

    fn metric(&self, reference: &accuracy::Evaluation) -> accuracy::Metric {
        match (self.plan.metric, &self.embedder) {
            (Some(metric), _) => metric,
            (None, Some(_)) => accuracy::Metric::Cosine,
            (None, None) => reference.metric(),
        }
    }
}

/// A temporary int8 model file `compare --precision` runs, removed when dropped, however the
/// comparison ends.
struct TempModel(PathBuf);

impl Drop for TempModel {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The int8 models `compare --precision` runs: the one given, or those quantized in the forms
/// the engines run fastest, with each form's file (or why the model could not be quantized).
struct Int8Models {
    /// The files quantized now, held to be removed when dropped.
    _files: Vec<TempModel>,
    /// Each form's file; `None` for the form: the file every engine runs (`--int8-model`).
    by_form: Result<Vec<(Option<thrum::Int8Form>, PathBuf)>, String>,
}

impl Int8Models {
    fn given(path: &std::path::Path) -> Int8Models {
        Int8Models { _files: Vec::new(), by_form: Ok(vec![(None, path.to_path_buf())]) }
    }

    /// The model `engine` runs for int8, or why there is none.
    fn for_engine(&self, engine: &dyn Engine) -> Option<Result<&std::path::Path, &str>> {
        let form = engine.capabilities().int8_form;
        match &self.by_form {
            Ok(files) => files
                .iter()
                .find(|(f, _)| f.is_none() || *f == form)
                .map(|(_, path)| Ok(path.as_path())),
            Err(why) => Some(Err(why.as_str())),
        }
    }
}

/// Why `engine` is not tried on `model` without being asked for: not installed, or it does
/// not read the file's format. `None` when it is tried.
pub fn not_tried(engine: &dyn Engine, model: &ModelRef) -> Option<String> {
    let check = engine.check();
    if !check.available {
        return Some(check.detail.unwrap_or_else(|| "not available".into()));
    }
    if let ModelRef::Path(path) = model
        && let Some(format) = ModelFormat::detect(path)
        && !engine.info().formats.contains(&format)
    {
        return Some(format!(
            "reads {}, not {}",
            engine.info().formats.iter().map(|f| f.name).collect::<Vec<_>>().join(", "),
            format.name
        ));
    }
    None
}

/// Runs every engine (in this process) and compares. Engines not asked for by name that are
/// not installed or do not read the format are left out, as failures with the reason.
pub fn run_comparison(
    model_path: &str,
    model: &ModelRef,
    engines: &[Arc<dyn Engine>],
    explicit: bool,
    tolerance: f64,
) -> anyhow::Result<Comparison> {
    let mut runs = Vec::new();
    let mut failures = Vec::new();
    for engine in engines {
        if !explicit && let Some(reason) = not_tried(engine.as_ref(), model) {
            failures.push(EngineFailure { engine: engine.name().into(), reason });
            continue;
        }
        let result = model
            .source(engine.as_ref())
            .map_err(thrum_tune::TuneError::from)
            .and_then(|source| compare::run_engine(engine.as_ref(), &source, &Options::default()));
        match result {
            Ok(run) => runs.push(run),
            Err(e) => {
                failures.push(EngineFailure { engine: engine.name().into(), reason: e.to_string() })
            }
        }
    }
    Ok(compare::compare(model_path, runs, failures, tolerance))
}
