//! `thrum quantize`: static int8 quantization of an ONNX model (QDQ), calibrated on real
//! inputs (a directory of images or of `.npy` files) or the model's seeded sample inputs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use thrum::{Engine, ModelFormat, ModelRef, Options};
use thrum_quant::{Decision, Method, QuantizeOptions, Quantizer, Report};

use super::samples::SampleSource;

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    thrum quantize -p zoo:efficientnet-lite0 --calibration-images photos/ -o lite0-int8.onnx\n  \
    thrum quantize -p model.onnx --calibration-npy inputs/ --method entropy -o model-int8.onnx\n  \
    thrum quantize -p zoo:resnet50 --samples 100 -o resnet50-int8.onnx   (seeded sample inputs)\n\n\
    The output is a QDQ model: ONNX Runtime fuses it into its integer kernels, OpenVINO reads it \
    as its low-precision form. Check its accuracy with `thrum compare`.")]
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

    /// Calibrate on the `.npy` files of DIR, one sample each (a model with one input).
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
    json: Option<PathBuf>,
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
        let method = Method::parse(&args.method, args.percentile)
            .map_err(|why| anyhow::anyhow!("--method {}: expected {why}", args.method))?;
        let calibration =
            match (args.calibration_images, args.calibration_texts, args.calibration_npy) {
                (Some(dir), _, _) => SampleSource::Images(dir),
                (_, Some(file), _) => SampleSource::Texts(file),
                (_, _, Some(dir)) => SampleSource::Npy(dir),
                _ => SampleSource::Seeded { seed: 0 },
            };
        let mut options = QuantizeOptions {
            per_channel: !args.per_tensor,
            reduce_range: match args.reduce_range.as_str() {
                "on" => true,
                "off" => false,
                _ => !thrum::CpuFeatures::detect().vnni(),
            },
            exclude_nodes: args.exclude_nodes,
            ..QuantizeOptions::default()
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
            json: args.json,
        })
    }

    pub fn run(self) -> anyhow::Result<()> {
        let started = Instant::now();
        let engine = self.engine.as_ref();
        let source = self.model.source(engine)?;
        let bytes = source.read("an ONNX model")?;
        let name = self.model.zoo_name().map_or_else(|| source.name(), str::to_string);
        let quantizer = if self.dynamic {
            Quantizer::new_dynamic(&name, &bytes, self.options.clone())?
        } else {
            Quantizer::new(&name, &bytes, self.options.clone())?
        };
        let (quantized, report, calibration, quantize_s) = if self.dynamic {
            let t = Instant::now();
            let (quantized, report) = quantizer.quantize_dynamic()?;
            (quantized, report, None, t.elapsed().as_secs_f64())
        } else {
            let (quantized, report, calibration, quantize_s) = self.quantize_static(&quantizer)?;
            (quantized, report, Some(calibration), quantize_s)
        };
        std::fs::write(&self.output, &quantized)
            .map_err(|e| thrum::Error::write(&self.output, e))?;
        let peak_mib = thrum_bench::system::peak_rss_bytes().map(|b| b as f64 / 1048576.0);
        let summary = Summary {
            model: self.model_path.clone(),
            output: self.output.display().to_string(),
            method: (!self.dynamic).then_some(self.method),
            calibration,
            quantize_s,
            total_s: started.elapsed().as_secs_f64(),
            peak_rss_mib: peak_mib,
            cpu: thrum::CpuFeatures::detect().summary(),
            report,
        };
        let to_stdout = self.json.as_deref() == Some(Path::new("-"));
        if to_stdout {
            summary.write(&mut std::io::stderr().lock())?;
        } else {
            summary.write(&mut std::io::stdout().lock())?;
        }
        if let Some(path) = &self.json {
            super::report::write_output(path, &serde_json::to_string_pretty(&summary)?)?;
        }
        Ok(())
    }

    /// Calibrates on the samples and writes the QDQ model: (bytes, report, calibration,
    /// seconds spent quantizing after calibration).
    fn quantize_static(
        &self,
        quantizer: &Quantizer,
    ) -> anyhow::Result<(Vec<u8>, Report, thrum_quant::CalibrationStats, f64)> {
        let engine = self.engine.as_ref();
        let source = self.model.source(engine)?;
        let model = engine.load(&source, &Options::default())?;
        let flag = match self.calibration {
            SampleSource::Images(_) => "--calibration-images",
            SampleSource::Texts(_) => "--calibration-texts",
            SampleSource::Npy(_) => "--calibration-npy",
            SampleSource::Seeded { .. } => "calibration",
        };
        let samples = self.calibration.samples(&self.model, &model, self.samples, flag)?;
        drop(model);
        let (ranges, calibration) =
            thrum_quant::calibrate(engine, &Options::default(), quantizer, self.method, &samples)?;
        let t = Instant::now();
        let (quantized, report) = quantizer.quantize(&ranges)?;
        Ok((quantized, report, calibration, t.elapsed().as_secs_f64()))
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
            if r.options.per_channel { "per channel" } else { "per tensor" },
            if r.options.reduce_range { ", 7-bit" } else { "" },
            r.int32_biases,
            r.quantized_tensors
        )?;
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
        Ok(())
    }
}
