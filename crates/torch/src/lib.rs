//! # thrum-torch
//!
//! thrum engine backed by libtorch through [tch](https://github.com/LaurentMazare/tch-rs):
//! TorchScript models (`.pt`). libtorch comes from the PyPI `torch` wheel
//! (`thrum engines install torch`) and is linked at build time (`LIBTORCH`): it is the one
//! engine behind a feature of the `thrum` crate (`--features torch`), which turns on this
//! crate's `runtime` feature.
//!
//! How thrum maps onto libtorch (DJL guide, "PyTorch" and "oneDNN"):
//! - a [`Model`](thrum_core::Model) holds one TorchScript module; every predictor runs it
//!   (libtorch allows concurrent `forward` on one module), so weights are shared and a shared
//!   predictor exists. Every call runs under no-grad;
//! - thread settings follow libtorch's scopes (see the `threads` module): inter-op threads are
//!   set once per process, intra-op threads and the graph optimiser are applied on the thread
//!   that runs each call;
//! - `onednn=true` (DJL's `use_mkldnn`) runs the model in the MKLDNN layout — inputs converted
//!   to it, outputs back to dense — as DJL treats MKLDNN as a device; a dtype or an operator
//!   oneDNN does not support is an error naming it;
//! - TorchScript records no input shapes or dtypes: they come from `NAME.spec.json` beside the
//!   model ([`SpecFile`], which the zoo's exporter writes) or the `torch.input_specs` option.
//!
//! This file is what thrum knows of libtorch in every build, libtorch or not: [`INFO`],
//! options, the package, the format and its spec file.

#[cfg(feature = "runtime")]
pub mod convert;
#[cfg(feature = "runtime")]
mod engine;
#[cfg(feature = "runtime")]
mod threads;

use std::path::{Path, PathBuf};
use std::sync::Arc;

#[cfg(feature = "runtime")]
pub use engine::{LIBTORCH_VERSION, TorchEngine};
#[cfg(feature = "runtime")]
pub use tch;
use thrum_core::config::{OptionKey, Scope, check_bool, check_specs, parse_specs};
use thrum_core::install::{Member, Package, Wheel};
use thrum_core::{Engine, EngineInfo, ModelFormat, Options, Result, TensorSpec};

/// The engine's name in thrum.
pub const ENGINE: &str = "torch";

/// TorchScript archives.
pub const TORCHSCRIPT: ModelFormat = ModelFormat {
    id: "torchscript",
    name: "TorchScript",
    suffixes: &[".torchscript", ".pth", ".pt"],
    directory_marker: None,
};

/// Input and output specs stored beside a TorchScript file.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SpecFile {
    /// Input specs, in `forward`'s argument order.
    pub inputs: Vec<TensorSpec>,
    /// Output specs, in the order `forward` returns them.
    pub outputs: Vec<TensorSpec>,
}

/// `dir/NAME.spec.json` for `dir/NAME.pt`.
pub fn spec_path(model: &Path) -> PathBuf {
    let stem = model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    model.with_file_name(format!("{stem}.spec.json"))
}

/// libtorch's options, read from [`Options`] when a model loads.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct TorchOptions {
    /// Run libtorch's TorchScript graph optimiser (profiling executor); thread-local in libtorch.
    pub graph_optimizer: bool,
    /// Input specs of a TorchScript model, which does not record them itself.
    pub input_specs: Option<Vec<TensorSpec>>,
    /// Names of the model's outputs, in order (TorchScript returns them unnamed).
    pub output_names: Option<Vec<String>>,
}

impl Default for TorchOptions {
    fn default() -> TorchOptions {
        TorchOptions { graph_optimizer: true, input_specs: None, output_names: None }
    }
}

impl TorchOptions {
    /// libtorch's options as `options` sets them.
    pub fn from_options(o: &Options) -> Result<TorchOptions> {
        Ok(TorchOptions {
            graph_optimizer: o.bool_or("torch.graph_optimizer", true)?,
            input_specs: o.parse_or("torch.input_specs", None, |v| parse_specs(v).map(Some))?,
            output_names: o
                .text("torch.output_names")
                .map(|v| v.split(',').map(|n| n.trim().to_string()).collect()),
        })
    }
}

/// libtorch's option keys.
pub static KEYS: &[OptionKey] = &[
    OptionKey {
        key: "torch.graph_optimizer",
        env: "THRUM_TORCH_GRAPH_OPTIMIZER",
        default: "true",
        engine: ENGINE,
        expected: "true or false",
        effect: "libtorch's TorchScript graph optimisation (profiling executor). The setting is \
                 thread-local in libtorch, so thrum applies it on every thread that runs the model. \
                 DJL: `ai.djl.pytorch.graph_optimizer`.",
        scope: Scope::Predictor,
        tunable: &["true", "false"],
        check: check_bool,
    },
    OptionKey {
        key: "torch.input_specs",
        env: "THRUM_TORCH_INPUT_SPECS",
        default: "from NAME.spec.json",
        engine: ENGINE,
        expected: "name:dtype[dims] specs separated by `;`, e.g. data:f32[N,3,224,224]",
        effect: "Input names, dtypes and shapes of a TorchScript model, which does not record them. \
                 Otherwise read from `NAME.spec.json` beside `NAME.pt` (`thrum zoo export` writes one).",
        scope: Scope::Model,
        tunable: &[],
        check: check_specs,
    },
    OptionKey {
        key: "torch.output_names",
        env: "THRUM_TORCH_OUTPUT_NAMES",
        default: "from NAME.spec.json, else output_0, output_1, …",
        engine: ENGINE,
        expected: "output names separated by `,`, e.g. OUTPUT__0,OUTPUT__1",
        effect: "Names of a TorchScript model's outputs, in order (TorchScript returns them \
                 unnamed): what a Triton model repository's config.pbtxt names them.",
        scope: Scope::Model,
        tunable: &[],
        check: check_names,
    },
];

/// Checks a `,`-separated list of names: none empty.
fn check_names(v: &str) -> std::result::Result<String, String> {
    let names: Vec<&str> = v.split(',').map(str::trim).collect();
    if names.iter().any(|n| n.is_empty()) {
        return Err("an empty name; names are separated by `,`".into());
    }
    Ok(names.join(","))
}

/// libtorch as the `tch` crate builds against (LIBTORCH=$THRUM_HOME/engines/torch): the CPU
/// libraries and headers of the PyPI wheel (a CUDA build; libtorch_cuda is not needed), plus the
/// two small CUDA runtime libraries libtorch_cpu.so loads even without a GPU. Its RPATH has
/// $ORIGIN, so they all go in lib/.
pub static PACKAGES: &[Package] = &[Package {
    name: "torch",
    dir: "torch",
    version: "2.13.0",
    wheels: &[
        Wheel {
            requirement: "torch==2.13.0",
            members: &[
                Member { pattern: "torch/lib/libtorch_cpu.so", strip: "torch/" },
                Member { pattern: "torch/lib/libtorch.so", strip: "torch/" },
                Member { pattern: "torch/lib/libc10.so", strip: "torch/" },
                Member { pattern: "torch/lib/libgomp.so.1", strip: "torch/" },
                Member { pattern: "torch/include/*", strip: "torch/" },
            ],
        },
        Wheel {
            requirement: "nvidia-cuda-runtime==13.0.96",
            members: &[Member {
                pattern: "nvidia/cu13/lib/libcudart.so.13",
                strip: "nvidia/cu13/",
            }],
        },
        Wheel {
            requirement: "nvidia-cuda-cupti==13.0.85",
            members: &[Member { pattern: "nvidia/cu13/lib/libcupti.so.13", strip: "nvidia/cu13/" }],
        },
    ],
}];

fn engine() -> Arc<dyn Engine> {
    #[cfg(feature = "runtime")]
    return Arc::new(TorchEngine::new());
    #[cfg(not(feature = "runtime"))]
    Arc::new(thrum_core::NotCompiled::new(&INFO))
}

thrum_core::register_engine!(
    INFO = EngineInfo {
        name: ENGINE,
        title: "PyTorch (libtorch)",
        aliases: &["pytorch", "libtorch"],
        formats: &[TORCHSCRIPT],
        feature: "torch",
        build_note: " (libtorch is linked at build time: `thrum engines install torch`, then set \
                 LIBTORCH=$THRUM_HOME/engines/torch)",
        options: KEYS,
        process_keys: &["inter_op_threads"],
        packages: PACKAGES,
        order: 20,
        engine,
    }
);

#[cfg(test)]
mod tests {
    #[test]
    fn the_key_table_matches_the_typed_options() {
        thrum_core::config::check_engine_table(
            "torch",
            super::KEYS,
            super::TorchOptions::from_options,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
}
