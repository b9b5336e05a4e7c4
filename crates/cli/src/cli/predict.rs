//! `thrum predict`: one inference, a summary of the outputs, optionally saved as `.npy`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use thrum::{Engine, Model, ModelRef, Tensor};

use super::options::{ImageRecipeArgs, OptionArgs};
use super::report::{self, OutputSummary};
use crate::io;

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// Engine: tract (default, built in), ort, torch, mxnet, tensorflow.
    #[arg(short, long, default_value = "tract")]
    engine: String,

    /// Model file (.onnx, .nnef…), or zoo:NAME for a model built by thrum (see `thrum zoo list`).
    #[arg(short = 'p', long = "model-path", value_name = "MODEL")]
    model_path: String,

    /// Input tensor (.npy, .pb, .json), by position or as NAME=FILE; repeat for several inputs.
    /// Default: zeros of the model's input spec, dynamic dimensions at 1.
    #[arg(short, long = "input", value_name = "[NAME=]FILE")]
    inputs: Vec<String>,

    /// A text to embed with a text model (zoo:all-minilm-l6-v2): prints each text's embedding
    /// and the texts' cosine similarity matrix. Repeat for several texts (one batch).
    #[arg(long = "text", value_name = "TEXT", conflicts_with = "inputs")]
    texts: Vec<String>,

    /// An image (JPEG, PNG, GIF, WebP) to classify with an image model (zoo:efficientnet-lite0,
    /// or a file, pre-processed as TorchServe does unless --image-* say otherwise): prints its
    /// top-k classes. Repeat for several images (one batch).
    #[arg(long = "image", value_name = "FILE", conflicts_with_all = ["inputs", "texts"])]
    images: Vec<PathBuf>,

    /// A file whose content type to identify with zoo:magika (Google's Magika: 214 types from
    /// the file's first and last KiB). Repeat for several files (one batch).
    #[arg(long = "file", value_name = "FILE", conflicts_with_all = ["inputs", "texts", "images"])]
    files: Vec<PathBuf>,

    /// With precision=int8: the quantized form of the model to run (`thrum quantize`'s
    /// output), while -p still decides the pipeline (tokenizer, image recipe, labels).
    #[arg(long = "int8-model", value_name = "FILE")]
    int8_model: Option<PathBuf>,

    /// Classes printed per image.
    #[arg(long = "top-k", value_name = "K", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    top_k: u32,

    /// Class names, one per line in output order, for an image model given as a file.
    #[arg(long, value_name = "FILE", requires = "images")]
    labels: Option<PathBuf>,

    #[command(flatten)]
    image_recipe: ImageRecipeArgs,

    /// Save the first output to FILE.npy, or every output to DIR/<output name>.npy.
    #[arg(short, long, value_name = "FILE.npy|DIR")]
    output: Option<PathBuf>,

    #[command(flatten)]
    options: OptionArgs,

    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Where inputs come from.
#[derive(Debug)]
enum Inputs {
    /// Zeros of the model's input spec.
    Zeros,
    /// Files in the model's input order.
    Positional(Vec<PathBuf>),
    /// Files by input name.
    Named(Vec<(String, PathBuf)>),
}

/// Where outputs go.
#[derive(Debug)]
enum OutputTarget {
    /// The first output, to one `.npy` file.
    File(PathBuf),
    /// Every output, to `DIR/<name>.npy`.
    Dir(PathBuf),
}

/// A validated `predict` command. Building it does no I/O: files are read, and zoo models
/// built, when it runs.
pub struct PredictPlan {
    engine: Arc<dyn Engine>,
    model_path: String,
    model: ModelRef,
    options: OptionArgs,
    inputs: Inputs,
    texts: Vec<String>,
    images: Vec<PathBuf>,
    files: Vec<PathBuf>,
    int8_model: Option<PathBuf>,
    top_k: usize,
    labels: Option<PathBuf>,
    /// `--image-*`, laid over a `--config` thrum.toml's `[image]` table.
    image_flags: thrum_serve::config::ImageSettings,
    /// The recipe for `--image` files: the flags', or (once `run` read a `--config` file) the
    /// flags' over its table's.
    image_recipe: Option<thrum::ImageRecipe>,
    output: Option<OutputTarget>,
    json: bool,
}

impl PredictPlan {
    /// Checks everything that can be checked without reading a file.
    pub fn from_args(args: PredictArgs) -> anyhow::Result<PredictPlan> {
        let engine = thrum::registry().get(&args.engine)?;
        let model = ModelRef::parse(&args.model_path)?;
        let inputs = parse_inputs(&args.inputs)?;
        if !args.texts.is_empty() && model.text_dir().is_none() {
            anyhow::bail!(
                "--text needs a text model that brings its tokenizer, such as zoo:{}; `{}` is not one",
                thrum::zoo::pretrained::ALL_MINILM_L6_V2.name,
                args.model_path
            );
        }
        if !args.texts.is_empty() && args.output.is_some() {
            anyhow::bail!("--output saves tensors; with --text use --json to keep the embeddings");
        }
        if !args.images.is_empty() && args.output.is_some() {
            anyhow::bail!("--output saves tensors; with --image use --json to keep the classes");
        }
        if !args.files.is_empty() && model.content_type_dir().is_none() {
            anyhow::bail!(
                "--file needs a content-type model, zoo:{}; `{}` is not one",
                thrum::zoo::pretrained::MAGIKA.name,
                args.model_path
            );
        }
        if !args.files.is_empty() && args.output.is_some() {
            anyhow::bail!(
                "--output saves tensors; with --file use --json to keep the content types"
            );
        }
        // With --config, its [image] table may set what the flags leave: checked with it.
        let image_recipe = args.image_recipe.recipe_or_check(&model, args.options.has_config())?;
        if let Some(flag) = args.image_recipe.first_given()
            && args.images.is_empty()
        {
            anyhow::bail!("{flag} pre-processes --image files; none is given");
        }
        let output = args.output.map(output_target);
        Ok(PredictPlan {
            engine,
            model_path: args.model_path,
            model,
            options: args.options,
            inputs,
            texts: args.texts,
            images: args.images,
            files: args.files,
            int8_model: args.int8_model,
            top_k: args.top_k as usize,
            labels: args.labels,
            image_flags: args.image_recipe.settings(),
            image_recipe,
            output,
            json: args.json,
        })
    }

    pub fn run(mut self) -> anyhow::Result<()> {
        let options = self.options.resolve()?;
        self.inputs.check_files()?;
        if let Some(target) = &self.output {
            target.prepare()?;
        }
        let file = self.options.model_file()?;
        // A `--config` thrum.toml's [image], under the flags (for this model's images).
        if self.options.has_config() {
            let table = file
                .as_ref()
                .filter(|_| !self.images.is_empty())
                .and_then(|f| f.image_for(Some(&self.model_path)));
            self.image_recipe = super::options::image_recipe(self.image_flags, table, &self.model)?;
        }
        // A `--config` thrum.toml's int8 graph, when the precision is int8.
        let file_int8 = match file {
            Some(file) if options.precision == Some(thrum::Precision::Int8) => {
                file.entry.int8_model.map(PathBuf::from)
            }
            _ => None,
        };
        let source = super::model_source(
            &self.model,
            self.engine.as_ref(),
            self.int8_model.as_deref().or(file_int8.as_deref()),
            &options,
        )?;
        let start = Instant::now();
        let model = self.engine.load(&source, &options)?;
        let load_time = start.elapsed();
        if let Some(dir) = self.model.text_dir().filter(|_| !self.texts.is_empty()) {
            return self.embed(&model, &dir, load_time);
        }
        if !self.images.is_empty() {
            return self.classify(&model, load_time);
        }
        if let Some(dir) = self.model.content_type_dir().filter(|_| !self.files.is_empty()) {
            return self.identify(&model, &dir, load_time);
        }
        let (inputs, described) = self.read_inputs(&model)?;
        let mut predictor = model.predictor()?;
        let start = Instant::now();
        let outputs = predictor.predict(inputs)?;
        let inference_time = start.elapsed();
        let saved = self.save(&model, &outputs)?;
        let summary = Summary {
            model: model.name().to_string(),
            model_path: self.model_path.clone(),
            engine: model.engine().to_string(),
            engine_version: self.engine.check().version,
            load_ms: ms(load_time),
            inference_ms: ms(inference_time),
            inputs: described,
            outputs: model
                .outputs()
                .iter()
                .zip(&outputs)
                .map(|(spec, t)| OutputSummary::of(&spec.name, t))
                .collect(),
            saved,
        };
        if self.json { report::print_json(&summary) } else { summary.print() }
    }

    /// `--text`: the texts' embeddings (one batch) and their cosine similarities.
    fn embed(
        &self,
        model: &Model,
        dir: &std::path::Path,
        load_time: Duration,
    ) -> anyhow::Result<()> {
        let translator = thrum::text::TextEmbedding::from_dir(dir)?;
        let tokens = self
            .texts
            .iter()
            .map(|t| translator.tokenize(t).map(|t| t.ids.len()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut predictor = model.predictor_with(translator)?;
        let embeddings = predictor.batch_predict(self.texts.clone())?;
        let stages = predictor.last_timings();
        let report = EmbedReport {
            model: model.name().to_string(),
            model_path: self.model_path.clone(),
            engine: model.engine().to_string(),
            load_ms: ms(load_time),
            tokenize_ms: ms(stages.preprocess),
            inference_ms: ms(stages.inference),
            pool_ms: ms(stages.postprocess),
            dimension: embeddings.first().map_or(0, Vec::len),
            tokens,
            similarity: thrum::text::cosine_matrix(&embeddings),
            texts: self.texts.clone(),
            embeddings,
        };
        if self.json { report::print_json(&report) } else { report.print() }
    }

    /// `--image`: each image's top-k classes (one batch).
    fn classify(&self, model: &Model, load_time: Duration) -> anyhow::Result<()> {
        let translator = self.model.image_classifier(
            model,
            self.top_k,
            self.labels.as_deref(),
            self.image_recipe.as_ref(),
        )?;
        let images = self
            .images
            .iter()
            .map(|path| std::fs::read(path).map_err(|e| thrum::Error::read(path, e)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut predictor = model.predictor_with(translator)?;
        let classes = match predictor.batch_predict(images.clone()) {
            Ok(classes) => classes,
            Err(e) => {
                // One bad image fails the batch: name it (the decoder's error does not know the
                // file).
                let check = self.model.image_classifier(
                    model,
                    self.top_k,
                    None,
                    self.image_recipe.as_ref(),
                )?;
                for (path, bytes) in self.images.iter().zip(images) {
                    if let Err(why) = thrum::Translator::preprocess(&check, model, bytes) {
                        return Err(anyhow::Error::from(why)
                            .context(format!("--image `{}`", path.display())));
                    }
                }
                return Err(e.into());
            }
        };
        let stages = predictor.last_timings();
        let report = ClassifyReport {
            model: model.name().to_string(),
            model_path: self.model_path.clone(),
            engine: model.engine().to_string(),
            load_ms: ms(load_time),
            preprocess_ms: ms(stages.preprocess),
            inference_ms: ms(stages.inference),
            postprocess_ms: ms(stages.postprocess),
            images: self
                .images
                .iter()
                .zip(classes)
                .map(|(path, classes)| ImageReport { image: path.display().to_string(), classes })
                .collect(),
        };
        if self.json { report::print_json(&report) } else { report.print() }
    }

    /// `--file`: each file's content type (the files the model needs, in one batch).
    fn identify(
        &self,
        model: &Model,
        dir: &std::path::Path,
        load_time: Duration,
    ) -> anyhow::Result<()> {
        let magika = thrum::magika::Magika::from_dir(dir)?;
        let translator = thrum::magika::ContentTypeTranslator::new(magika.clone());
        translator.check_model(model)?;
        let start = Instant::now();
        let samples = self
            .files
            .iter()
            .map(|path| magika.sample_file(path))
            .collect::<Result<Vec<_>, _>>()?;
        let read_time = start.elapsed();
        let mut predictor = model.predictor_with(translator)?;
        let mut ran = 0;
        let types = thrum::magika::identify(&magika, samples, |samples| {
            ran = samples.len();
            predictor.batch_predict(samples)
        })?;
        let stages = predictor.last_timings();
        let report = IdentifyReport {
            model: model.name().to_string(),
            model_path: self.model_path.clone(),
            engine: model.engine().to_string(),
            load_ms: ms(load_time),
            read_ms: ms(read_time),
            inference_ms: ms(stages.inference),
            model_files: ran,
            files: self
                .files
                .iter()
                .zip(types)
                .map(|(path, result)| FileReport { path: path.display().to_string(), result })
                .collect(),
        };
        if self.json { report::print_json(&report) } else { report.print() }
    }

    fn read_inputs(&self, model: &Model) -> anyhow::Result<(Vec<Tensor>, Vec<String>)> {
        let specs = model.inputs();
        let dtype_of = |name: &str| specs.iter().find(|s| s.name == name).map(|s| s.dtype);
        let (tensors, described) = match &self.inputs {
            Inputs::Zeros => {
                let tensors = model.zero_inputs(1)?;
                let described = specs
                    .iter()
                    .zip(&tensors)
                    .map(|(s, t)| format!("{}: zeros {:?}", s.name, t.shape()))
                    .collect();
                (tensors, described)
            }
            Inputs::Positional(paths) => {
                if paths.len() != specs.len() {
                    return Err(thrum::Error::InputCount {
                        model: model.name().into(),
                        expected: specs.len(),
                        names: specs
                            .iter()
                            .map(|s| format!("`{}`", s.name))
                            .collect::<Vec<_>>()
                            .join(", "),
                        found: paths.len(),
                    }
                    .into());
                }
                let mut tensors = Vec::new();
                for (spec, path) in specs.iter().zip(paths) {
                    tensors.push(io::read_tensor(path, Some(spec.dtype))?);
                }
                let described = specs
                    .iter()
                    .zip(paths)
                    .map(|(s, p)| format!("{}: {}", s.name, p.display()))
                    .collect();
                (tensors, described)
            }
            Inputs::Named(pairs) => {
                let mut named = Vec::new();
                for (name, path) in pairs {
                    named.push((name.clone(), io::read_tensor(path, dtype_of(name))?));
                }
                let described =
                    pairs.iter().map(|(n, p)| format!("{n}: {}", p.display())).collect();
                (model.order_named_inputs(named)?, described)
            }
        };
        Ok((tensors, described))
    }

    fn save(&self, model: &Model, outputs: &[Tensor]) -> anyhow::Result<Vec<String>> {
        let mut saved = Vec::new();
        match &self.output {
            None => {}
            Some(OutputTarget::File(path)) => {
                if let Some(first) = outputs.first() {
                    io::write_npy(path, first)?;
                    saved.push(path.display().to_string());
                }
            }
            Some(OutputTarget::Dir(dir)) => {
                for (spec, tensor) in model.outputs().iter().zip(outputs) {
                    let path = dir.join(io::npy_file_name(&spec.name));
                    io::write_npy(&path, tensor)?;
                    saved.push(path.display().to_string());
                }
            }
        }
        Ok(saved)
    }
}

fn parse_inputs(raw: &[String]) -> anyhow::Result<Inputs> {
    if raw.is_empty() {
        return Ok(Inputs::Zeros);
    }
    let mut positional = Vec::new();
    let mut named = Vec::new();
    for arg in raw {
        // NAME=FILE, unless the whole argument is an existing file whose name contains '='.
        match arg.split_once('=') {
            Some((name, file)) if !std::path::Path::new(arg).is_file() => {
                named.push((name.to_string(), PathBuf::from(file)))
            }
            _ => positional.push(PathBuf::from(arg)),
        }
    }
    match (positional.is_empty(), named.is_empty()) {
        (false, true) => Ok(Inputs::Positional(positional)),
        (true, false) => Ok(Inputs::Named(named)),
        _ => anyhow::bail!(
            "give inputs either all by position (--input FILE) or all by name (--input NAME=FILE), not a mix"
        ),
    }
}

impl Inputs {
    /// Checks that every input file exists, before the model loads.
    fn check_files(&self) -> anyhow::Result<()> {
        let paths: Vec<&PathBuf> = match self {
            Inputs::Zeros => Vec::new(),
            Inputs::Positional(paths) => paths.iter().collect(),
            Inputs::Named(pairs) => pairs.iter().map(|(_, p)| p).collect(),
        };
        for path in paths {
            if !path.is_file() {
                return Err(thrum::Error::Io {
                    action: "read input file",
                    path: path.clone(),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "it does not exist"),
                }
                .into());
            }
        }
        Ok(())
    }
}

fn output_target(path: PathBuf) -> OutputTarget {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy")) {
        OutputTarget::File(path)
    } else {
        OutputTarget::Dir(path)
    }
}

impl OutputTarget {
    /// Checks the file's directory exists, or creates the output directory, before the model
    /// loads.
    fn prepare(&self) -> anyhow::Result<()> {
        match self {
            OutputTarget::File(path) => {
                let parent = path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(std::path::Path::new("."));
                if !parent.is_dir() {
                    anyhow::bail!(
                        "cannot write `{}`: directory `{}` does not exist",
                        path.display(),
                        parent.display()
                    );
                }
                Ok(())
            }
            OutputTarget::Dir(path) => std::fs::create_dir_all(path)
                .with_context(|| format!("cannot create output directory `{}`", path.display())),
        }
    }
}

/// Output names like `gpu_0/softmax_1` become file names `gpu_0_softmax_1`.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[derive(serde::Serialize)]
struct EmbedReport {
    model: String,
    model_path: String,
    engine: String,
    load_ms: f64,
    tokenize_ms: f64,
    inference_ms: f64,
    pool_ms: f64,
    dimension: usize,
    texts: Vec<String>,
    tokens: Vec<usize>,
    embeddings: Vec<Vec<f32>>,
    similarity: Vec<Vec<f32>>,
}

impl EmbedReport {
    fn print(&self) -> anyhow::Result<()> {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        write_model_line(&mut out, &self.model, &self.model_path, &self.engine, self.load_ms)?;
        writeln!(
            out,
            "stages     tokenize {:.3} ms, inference {:.3} ms, pool {:.3} ms ({} texts, one batch)",
            self.tokenize_ms,
            self.inference_ms,
            self.pool_ms,
            self.texts.len()
        )?;
        for (i, ((text, v), n)) in
            self.texts.iter().zip(&self.embeddings).zip(&self.tokens).enumerate()
        {
            let head: Vec<String> = v.iter().take(4).map(|x| format!("{x:.4}")).collect();
            writeln!(
                out,
                "text {i}     {n} tokens, [{}, …] ({} values): {text}",
                head.join(", "),
                self.dimension
            )?;
        }
        writeln!(out, "cosine similarity")?;
        for (i, row) in self.similarity.iter().enumerate() {
            let cells: Vec<String> = row.iter().map(|x| format!("{x:7.4}")).collect();
            writeln!(out, "  {i:>3}  {}", cells.join(" "))?;
        }
        Ok(())
    }
}

/// The first line of `--text` and `--image` reports: the model, its engine and load time.
fn write_model_line(
    out: &mut impl std::io::Write,
    model: &str,
    path: &str,
    engine: &str,
    load_ms: f64,
) -> std::io::Result<()> {
    writeln!(out, "model      {model} ({path}) on {engine}, loaded in {load_ms:.1} ms")
}

#[derive(serde::Serialize)]
struct ClassifyReport {
    model: String,
    model_path: String,
    engine: String,
    load_ms: f64,
    preprocess_ms: f64,
    inference_ms: f64,
    postprocess_ms: f64,
    images: Vec<ImageReport>,
}

#[derive(serde::Serialize)]
struct ImageReport {
    image: String,
    classes: Vec<thrum::Classification>,
}

impl ClassifyReport {
    fn print(&self) -> anyhow::Result<()> {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        write_model_line(&mut out, &self.model, &self.model_path, &self.engine, self.load_ms)?;
        writeln!(
            out,
            "stages     decode + resize {:.3} ms, inference {:.3} ms, top-k {:.3} ms ({} images, one batch)",
            self.preprocess_ms,
            self.inference_ms,
            self.postprocess_ms,
            self.images.len()
        )?;
        for image in &self.images {
            writeln!(out, "{}", image.image)?;
            for c in &image.classes {
                let label = c.label.as_deref().unwrap_or("-");
                writeln!(out, "  {:>6.2} %  {:>4}  {label}", 100.0 * c.probability, c.index)?;
            }
        }
        Ok(())
    }
}

#[derive(serde::Serialize)]
struct IdentifyReport {
    model: String,
    model_path: String,
    engine: String,
    load_ms: f64,
    read_ms: f64,
    inference_ms: f64,
    /// Files the model ran on (the others were empty or too short).
    model_files: usize,
    files: Vec<FileReport>,
}

#[derive(serde::Serialize)]
struct FileReport {
    path: String,
    result: thrum::magika::ContentType,
}

impl IdentifyReport {
    fn print(&self) -> anyhow::Result<()> {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        write_model_line(&mut out, &self.model, &self.model_path, &self.engine, self.load_ms)?;
        writeln!(
            out,
            "stages     read {:.3} ms, inference {:.3} ms ({} of {} files needed the model, one batch)",
            self.read_ms,
            self.inference_ms,
            self.model_files,
            self.files.len()
        )?;
        for file in &self.files {
            let r = &file.result;
            let note = match r.overwrite_reason {
                thrum::magika::OverwriteReason::None => String::new(),
                _ => format!("  (model: {} {:.3})", r.dl.label, r.score),
            };
            writeln!(
                out,
                "{}: {} ({}, {}) {:.3}{note}",
                file.path, r.output.label, r.output.group, r.output.mime_type, r.score
            )?;
        }
        Ok(())
    }
}

#[derive(serde::Serialize)]
struct Summary {
    model: String,
    model_path: String,
    engine: String,
    engine_version: Option<String>,
    load_ms: f64,
    inference_ms: f64,
    inputs: Vec<String>,
    outputs: Vec<OutputSummary>,
    saved: Vec<String>,
}

impl Summary {
    fn print(&self) -> anyhow::Result<()> {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let version = self.engine_version.as_deref().map(|v| format!(" {v}")).unwrap_or_default();
        writeln!(
            out,
            "model      {} ({}) on {}{version}, loaded in {:.1} ms",
            self.model, self.model_path, self.engine, self.load_ms
        )?;
        for input in &self.inputs {
            writeln!(out, "input      {input}")?;
        }
        writeln!(out, "inference  {:.3} ms", self.inference_ms)?;
        for output in &self.outputs {
            writeln!(out, "output     {}", output.line())?;
        }
        for path in &self.saved {
            writeln!(out, "saved      {path}")?;
        }
        Ok(())
    }
}
