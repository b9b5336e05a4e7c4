//! # thrum-zoo
//!
//! Models built by code, so that benchmarks and tests need no download: a tiny MLP (per-call
//! overhead), ResNet-18 and ResNet-50 (the real torchvision architectures) and a small
//! transformer encoder. Weights are deterministic functions of a seed and the weight's name.
//!
//! Models are described once in a framework-neutral [`Graph`], and every exporter writes the
//! same weights, so one model can be compared across engines: [`onnx`] (ONNX), [`mxnet`] (MXNet
//! symbol + params, written by thrum itself), [`tensorflow`] (a frozen graph, written by thrum
//! itself) and, with the `torch` feature, [`torchscript`]
//! (traced through libtorch). Exporters live here, beside the graphs they read, and use only
//! the always-compiled part of each engine crate (its format and file conventions); engine
//! crates never depend on the zoo. [`export`] picks the exporter for a format.
//!
//! ```
//! let model = thrum_zoo::find("mlp")?;
//! let graph = model.build(thrum_zoo::DEFAULT_SEED);
//! assert_eq!(graph.inputs[0].shape_string(), "[N,64]");
//! let onnx_bytes = thrum_zoo::onnx::export(&graph);
//! assert!(!onnx_bytes.is_empty());
//! # Ok::<(), thrum_core::Error>(())
//! ```
#![forbid(unsafe_code)]

mod graph;
mod models;
pub mod mxnet;
pub mod onnx;
pub mod pickle;
pub mod pretrained;
pub mod tensorflow;
#[cfg(feature = "torch")]
pub mod torchscript;

use std::path::Path;

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use thrum_core::{DType, Error, ModelFormat, Result, Tensor, TensorSpec};

pub use graph::{Graph, Node, Op};
pub use models::{MLP_FEATURES, TRANSFORMER_SEQ, TRANSFORMER_VOCAB};
pub use pretrained::{PretrainedModel, find_pretrained, pretrained};

/// The seed used when none is given.
pub const DEFAULT_SEED: u64 = 42;

/// A model the zoo can build.
#[derive(Clone, Copy, Debug)]
pub struct ZooModel {
    /// Name used on the command line (`zoo:NAME`).
    pub name: &'static str,
    /// One line saying what it is and what it is for.
    pub description: &'static str,
    build: fn(u64) -> Graph,
}

impl ZooModel {
    /// Builds the graph with weights drawn from `seed`.
    pub fn build(&self, seed: u64) -> Graph {
        (self.build)(seed)
    }
}

static MODELS: &[ZooModel] = &[
    ZooModel {
        name: "mlp",
        description: "3-layer perceptron 64→128→128→10; tiny, to measure per-call overhead",
        build: models::mlp,
    },
    ZooModel {
        name: "resnet18",
        description: "ResNet-18 (torchvision layout), 3×224×224 image → 1000 logits",
        build: models::resnet18,
    },
    ZooModel {
        name: "resnet50",
        description: "ResNet-50 (torchvision layout), 3×224×224 image → 1000 logits",
        build: models::resnet50,
    },
    ZooModel {
        name: "transformer",
        description: "BERT-style encoder: 2 layers, hidden 128, 4 heads, sequence 128",
        build: models::transformer,
    },
];

/// Every zoo model.
pub fn models() -> &'static [ZooModel] {
    MODELS
}

/// The zoo model called `name`.
pub fn find(name: &str) -> Result<&'static ZooModel> {
    MODELS.iter().find(|m| m.name == name).ok_or_else(|| Error::Unknown {
        what: "zoo model",
        name: name.into(),
        known: MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", "),
    })
}

/// The formats the zoo writes: ONNX, TorchScript, MXNet and TensorFlow frozen graphs.
pub fn export_formats() -> [ModelFormat; 4] {
    [
        ModelFormat::ONNX,
        thrum_torch::TORCHSCRIPT,
        thrum_mxnet::SYMBOL,
        thrum_tensorflow::FROZEN_GRAPH,
    ]
}

/// The export format `path`'s name implies, or an error asking for one.
pub fn format_of(path: &Path) -> Result<ModelFormat> {
    let formats = export_formats();
    formats.into_iter().find(|f| f.matches(path)).ok_or_else(|| Error::InvalidValue {
        what: "export file name".into(),
        value: path.display().to_string(),
        expected: format!(
            "a name that tells the format ({}), or --format {}",
            formats.iter().map(|f| f.suffixes[0]).collect::<Vec<_>>().join(", "),
            formats.iter().map(|f| f.id).collect::<Vec<_>>().join("|")
        ),
    })
}

/// Writes `graph` to `path` in `format`: ONNX, MXNet and TensorFlow always (thrum writes them itself),
/// TorchScript with the `torch` feature (traced through libtorch).
pub fn export(graph: &Graph, format: ModelFormat, path: &Path) -> Result<()> {
    export_with(graph, format, path, thrum_core::Precision::Fp32)
}

/// [`export`] with the graph's float weights and arithmetic in `precision`. Only TorchScript
/// takes bf16 (libtorch's `module.to(bf16)` converts parameters, and a traced graph holds its
/// weights as constants, so the bf16 graph is traced in bf16); the other formats' engines
/// convert at load, and are written in fp32 only.
pub fn export_with(
    graph: &Graph,
    format: ModelFormat,
    path: &Path,
    precision: thrum_core::Precision,
) -> Result<()> {
    if precision != thrum_core::Precision::Fp32
        && !(format.id == "torchscript" && precision == thrum_core::Precision::Bf16)
    {
        return Err(Error::UnsupportedFormat {
            engine: "zoo",
            model: graph.name.clone(),
            reason: format!(
                "the zoo writes {} weights for TorchScript only, and fp32 for {}: its engine \
                 converts at load",
                precision, format.name
            ),
        });
    }
    match format.id {
        "onnx" => std::fs::write(path, onnx::export(graph)).map_err(|e| Error::write(path, e)),
        "mxnet" => mxnet::export(graph, path),
        "tf-graph" => tensorflow::export(graph, path),
        #[cfg(feature = "torch")]
        "torchscript" => torchscript::export(graph, path, precision),
        #[cfg(not(feature = "torch"))]
        "torchscript" => Err(Error::EngineNotCompiled {
            engine: thrum_torch::INFO.name,
            feature: thrum_torch::INFO.feature,
            note: thrum_torch::INFO.build_note,
        }),
        _ => Err(Error::UnsupportedFormat {
            engine: "zoo",
            model: graph.name.clone(),
            reason: format!(
                "the zoo exports {}, not {}",
                export_formats().iter().map(|f| f.id).collect::<Vec<_>>().join(", "),
                format.name
            ),
        }),
    }
}

/// Random inputs for `specs` with every dynamic dimension at `batch`: floats uniform in
/// [-1, 1], integers in [0, 1000) (valid token ids for the zoo's transformer), deterministic
/// from `seed`.
pub fn sample_inputs(specs: &[TensorSpec], batch: usize, seed: u64) -> Result<Vec<Tensor>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    specs
        .iter()
        .map(|spec| {
            let shape = spec.concrete_shape(batch);
            let len = thrum_core::tensor::checked_len(spec.dtype, &shape)?;
            match spec.dtype {
                DType::F32 => Tensor::from_vec(
                    shape.clone(),
                    (0..len).map(|_| unit(&mut rng) * 2.0 - 1.0).collect::<Vec<f32>>(),
                ),
                DType::F64 => Tensor::from_vec(
                    shape.clone(),
                    (0..len).map(|_| f64::from(unit(&mut rng)) * 2.0 - 1.0).collect::<Vec<f64>>(),
                ),
                DType::I64 => Tensor::from_vec(
                    shape.clone(),
                    (0..len)
                        .map(|_| i64::from(rng.next_u32() % TRANSFORMER_VOCAB as u32))
                        .collect::<Vec<i64>>(),
                ),
                DType::I32 => Tensor::from_vec(
                    shape.clone(),
                    (0..len)
                        .map(|_| (rng.next_u32() % TRANSFORMER_VOCAB as u32) as i32)
                        .collect::<Vec<i32>>(),
                ),
                other => Tensor::zeros(other, &shape),
            }
        })
        .collect()
}

fn unit(rng: &mut ChaCha8Rng) -> f32 {
    (rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_deterministic_from_the_seed() {
        let a = find("mlp").unwrap().build(7);
        let b = find("mlp").unwrap().build(7);
        let c = find("mlp").unwrap().build(8);
        assert!(a.weights.iter().zip(&b.weights).all(|((_, x), (_, y))| x.bit_eq(y)));
        assert!(!a.weights[0].1.bit_eq(&c.weights[0].1));
    }

    #[test]
    fn resnet_parameter_counts_match_torchvision() {
        // torchvision: resnet18 11,689,512 and resnet50 25,557,032 parameters, of which the
        // batch-norm running statistics are buffers (not parameters) and counted here too.
        let r18 = find("resnet18").unwrap().build(DEFAULT_SEED);
        let bn18: usize = r18
            .weights
            .iter()
            .filter(|(n, _)| n.ends_with("running_mean") || n.ends_with("running_var"))
            .map(|(_, t)| t.len())
            .sum();
        assert_eq!(r18.parameter_count() - bn18, 11_689_512);
        let r50 = find("resnet50").unwrap().build(DEFAULT_SEED);
        let bn50: usize = r50
            .weights
            .iter()
            .filter(|(n, _)| n.ends_with("running_mean") || n.ends_with("running_var"))
            .map(|(_, t)| t.len())
            .sum();
        assert_eq!(r50.parameter_count() - bn50, 25_557_032);
    }

    #[test]
    fn flops_match_the_published_figures() {
        // ResNet-18 ≈ 1.82 GMACs, ResNet-50 ≈ 4.11 GMACs per 224×224 image.
        let gmacs = |name: &str| find(name).unwrap().build(1).flops_per_sample as f64 / 2e9;
        assert!((gmacs("resnet18") - 1.82).abs() < 0.03, "{}", gmacs("resnet18"));
        assert!((gmacs("resnet50") - 4.11).abs() < 0.05, "{}", gmacs("resnet50"));
        assert_eq!(
            find("mlp").unwrap().build(1).flops_per_sample,
            2 * (64 * 128 + 128 * 128 + 128 * 10)
        );
    }

    #[test]
    fn unknown_model_lists_the_zoo() {
        let err = find("vgg").unwrap_err().to_string();
        assert!(
            err.contains("`vgg`") && err.contains("resnet50") && err.contains("transformer"),
            "{err}"
        );
    }

    #[test]
    fn format_comes_from_the_extension() {
        assert_eq!(format_of(Path::new("a/m.onnx")).unwrap(), ModelFormat::ONNX);
        assert_eq!(format_of(Path::new("m.pt")).unwrap(), thrum_torch::TORCHSCRIPT);
        assert_eq!(format_of(Path::new("m-symbol.json")).unwrap(), thrum_mxnet::SYMBOL);
        assert!(format_of(Path::new("m.bin")).unwrap_err().to_string().contains("--format"));
    }
}
