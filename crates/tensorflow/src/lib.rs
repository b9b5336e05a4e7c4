//! # thrum-tensorflow
//!
//! thrum engine backed by TensorFlow's C API, loaded at run time (`libloading`) from the PyPI
//! `tensorflow-cpu` wheel (`thrum engines install tensorflow`): `libtensorflow_framework.so.2`
//! opened globally, then `libtensorflow_cc.so.2`, which exports the C API. Nothing native is
//! needed to build it, so it is in thrum's default build.
//!
//! Models:
//! - a **SavedModel** directory (what `tf.saved_model.save` and Keras write): a tag set
//!   (default `serve`) picks the meta graph and a signature (default `serving_default`) its
//!   inputs and outputs, named by the signature's keys, with dtypes and shapes from its
//!   `TensorInfo`s;
//! - a **frozen graph** (`.pb`, a `GraphDef` with its weights as constants; what the zoo
//!   exports): inputs are its `Placeholder`s and outputs the nodes nothing consumes, unless
//!   `tensorflow.inputs` / `tensorflow.outputs` name them.
//!
//! How thrum maps onto TensorFlow (DJL guide, "TensorFlow"):
//! - one session per model holds the weights; `TF_SessionRun` may be called from many threads
//!   at once, so per-thread predictors share the session (no weight copy) and the shared
//!   thread-safe predictor is offered;
//! - intra-op and inter-op threads go into the session's `ConfigProto`. TensorFlow sizes its
//!   CPU thread pools once per process (the first session's settings win), so thrum treats
//!   both as process settings and refuses a later model asking for others; oneDNN is
//!   `TF_ENABLE_ONEDNN_OPTS`, read once when the library loads.
//!
//! This file is what thrum knows of TensorFlow in every build: [`INFO`], options, the package
//! and TensorFlow's file formats; [`proto`] holds the protobuf messages thrum reads and writes
//! (the zoo's exporter writes frozen graphs with them). The engine is compiled with the
//! `runtime` feature (on by default).

#[cfg(feature = "runtime")]
mod engine;
#[cfg(feature = "runtime")]
mod ffi;
#[cfg(feature = "runtime")]
pub mod library;
pub mod proto;

use std::sync::Arc;

#[cfg(feature = "runtime")]
pub use engine::TensorflowEngine;
use thrum_core::config::{OptionKey, Scope, check_path};
use thrum_core::install::{Member, Package, Wheel};
use thrum_core::{DType, Engine, EngineInfo, ModelFormat, Options, Result};

/// The engine's name in thrum.
pub const ENGINE: &str = "tensorflow";

/// A SavedModel: a directory with `saved_model.pb` and `variables/`.
pub const SAVED_MODEL: ModelFormat = ModelFormat {
    id: "savedmodel",
    name: "TensorFlow SavedModel",
    suffixes: &[],
    directory_marker: Some("saved_model.pb"),
};

/// A frozen graph: one `GraphDef` file with the weights as constants (`.pb`, or Triton's
/// `model.graphdef`).
pub const FROZEN_GRAPH: ModelFormat = ModelFormat {
    id: "tf-graph",
    name: "TensorFlow frozen graph",
    suffixes: &[".pb", ".graphdef"],
    directory_marker: None,
};

/// TensorFlow's options, read from [`Options`] when a model loads.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct TensorflowOptions {
    /// `libtensorflow_cc.so.2` to load (`libtensorflow_framework.so.2` is taken from beside
    /// it); otherwise the environment and the install directory are searched.
    pub library_path: Option<std::path::PathBuf>,
    /// The SavedModel tag set; `None`: `serve`.
    pub tags: Option<Vec<String>>,
    /// The SavedModel signature; `None`: `serving_default`.
    pub signature: Option<String>,
    /// Frozen graph inputs (placeholder names) in the order thrum takes them.
    pub inputs: Option<Vec<String>>,
    /// Frozen graph outputs (`node` or `node:k`) in the order thrum returns them.
    pub outputs: Option<Vec<String>>,
}

fn names(v: &str) -> Vec<String> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

fn check_names(v: &str) -> std::result::Result<String, String> {
    if names(v).is_empty() { Err("at least one name".into()) } else { Ok(names(v).join(",")) }
}

impl TensorflowOptions {
    /// TensorFlow's options as `options` sets them.
    pub fn from_options(o: &Options) -> Result<TensorflowOptions> {
        Ok(TensorflowOptions {
            library_path: o.text("tensorflow.library_path").map(std::path::PathBuf::from),
            tags: o.text("tensorflow.tags").map(names).filter(|t| t != &["serve"]),
            signature: o
                .text("tensorflow.signature")
                .filter(|s| *s != "serving_default")
                .map(String::from),
            inputs: o.text("tensorflow.inputs").map(names),
            outputs: o.text("tensorflow.outputs").map(names),
        })
    }

    /// The SavedModel tag set to load.
    pub fn tag_set(&self) -> Vec<String> {
        self.tags.clone().unwrap_or_else(|| vec!["serve".into()])
    }

    /// The SavedModel signature to use.
    pub fn signature_key(&self) -> &str {
        self.signature.as_deref().unwrap_or("serving_default")
    }
}

/// TensorFlow's option keys.
pub static KEYS: &[OptionKey] = &[
    OptionKey {
        key: "tensorflow.library_path",
        env: "THRUM_TENSORFLOW_LIBRARY_PATH",
        default: "searched",
        engine: ENGINE,
        expected: "a path to libtensorflow_cc.so.2",
        effect: "The TensorFlow C API library to load (`libtensorflow_framework.so.2` must be beside \
                 it). Otherwise `$TENSORFLOW_LIBRARY_PATH`, then `$THRUM_HOME/engines/tensorflow/` \
                 (`thrum engines install tensorflow`) are searched.",
        scope: Scope::Process,
        tunable: &[],
        check: check_path,
    },
    OptionKey {
        key: "tensorflow.tags",
        env: "THRUM_TENSORFLOW_TAGS",
        default: "serve",
        engine: ENGINE,
        expected: "tags separated by `,`",
        effect: "The SavedModel meta graph to load, by its tag set (`saved_model_cli show --dir D` \
                 lists them).",
        scope: Scope::Model,
        tunable: &[],
        check: check_names,
    },
    OptionKey {
        key: "tensorflow.signature",
        env: "THRUM_TENSORFLOW_SIGNATURE",
        default: "serving_default",
        engine: ENGINE,
        expected: "a signature key",
        effect: "The SavedModel signature whose inputs and outputs the model takes and returns, \
                 named by the signature's keys.",
        scope: Scope::Model,
        tunable: &[],
        check: check_names,
    },
    OptionKey {
        key: "tensorflow.inputs",
        env: "THRUM_TENSORFLOW_INPUTS",
        default: "every Placeholder",
        engine: ENGINE,
        expected: "placeholder names separated by `,`",
        effect: "A frozen graph's inputs, in the order thrum takes them.",
        scope: Scope::Model,
        tunable: &[],
        check: check_names,
    },
    OptionKey {
        key: "tensorflow.outputs",
        env: "THRUM_TENSORFLOW_OUTPUTS",
        default: "every node nothing consumes",
        engine: ENGINE,
        expected: "node names (`node` or `node:k`) separated by `,`",
        effect: "A frozen graph's outputs, in the order thrum returns them.",
        scope: Scope::Model,
        tunable: &[],
        check: check_names,
    },
];

/// TensorFlow's version thrum is built and tested against.
pub const VERSION: &str = "2.21.0";

/// The libraries `thrum engines install tensorflow` takes from the PyPI `tensorflow-cpu`
/// wheel: the C API and the framework library it needs.
pub static PACKAGES: &[Package] = &[Package {
    name: "tensorflow",
    dir: "tensorflow",
    version: VERSION,
    wheels: &[Wheel {
        requirement: "tensorflow-cpu==2.21.0",
        members: &[
            Member { pattern: "tensorflow/libtensorflow_cc.so.2", strip: "tensorflow/" },
            Member { pattern: "tensorflow/libtensorflow_framework.so.2", strip: "tensorflow/" },
        ],
    }],
}];

/// thrum's dtypes and TensorFlow's `DataType` codes (`types.proto`). TensorFlow's strings are
/// thrum's byte strings.
pub const DTYPE_CODES: &[(DType, i32)] = &[
    (DType::F32, 1),
    (DType::F64, 2),
    (DType::I32, 3),
    (DType::U8, 4),
    (DType::I16, 5),
    (DType::I8, 6),
    (DType::Bytes, 7),
    (DType::I64, 9),
    (DType::Bool, 10),
    (DType::BF16, 14),
    (DType::U16, 17),
    (DType::F16, 19),
    (DType::U32, 22),
    (DType::U64, 23),
];

/// TensorFlow's `DataType` code for `dtype`.
pub fn dtype_code(dtype: DType) -> Option<i32> {
    thrum_core::kit::dtype_to(DTYPE_CODES, dtype)
}

/// thrum's dtype for TensorFlow's `DataType` `code`.
pub fn dtype_of(code: i32) -> Option<DType> {
    DTYPE_CODES.iter().find(|(_, c)| *c == code).map(|(d, _)| *d)
}

/// TensorFlow's name for a `DataType` code, for messages (`DT_COMPLEX64`).
pub fn dtype_name(code: i32) -> String {
    const NAMES: &[(i32, &str)] = &[
        (1, "DT_FLOAT"),
        (2, "DT_DOUBLE"),
        (3, "DT_INT32"),
        (4, "DT_UINT8"),
        (5, "DT_INT16"),
        (6, "DT_INT8"),
        (7, "DT_STRING"),
        (8, "DT_COMPLEX64"),
        (9, "DT_INT64"),
        (10, "DT_BOOL"),
        (11, "DT_QINT8"),
        (12, "DT_QUINT8"),
        (13, "DT_QINT32"),
        (14, "DT_BFLOAT16"),
        (15, "DT_QINT16"),
        (16, "DT_QUINT16"),
        (17, "DT_UINT16"),
        (18, "DT_COMPLEX128"),
        (19, "DT_HALF"),
        (20, "DT_RESOURCE"),
        (21, "DT_VARIANT"),
        (22, "DT_UINT32"),
        (23, "DT_UINT64"),
    ];
    NAMES
        .iter()
        .find(|(c, _)| *c == code)
        .map_or_else(|| format!("DataType {code}"), |(_, n)| (*n).to_string())
}

fn engine() -> Arc<dyn Engine> {
    #[cfg(feature = "runtime")]
    return Arc::new(TensorflowEngine::new());
    #[cfg(not(feature = "runtime"))]
    Arc::new(thrum_core::NotCompiled::new(&INFO))
}

thrum_core::register_engine!(
    INFO = EngineInfo {
        name: ENGINE,
        title: "TensorFlow",
        aliases: &["tf"],
        formats: &[SAVED_MODEL, FROZEN_GRAPH],
        feature: "tensorflow",
        build_note: "",
        options: KEYS,
        process_keys: &["intra_op_threads", "inter_op_threads", "onednn"],
        packages: PACKAGES,
        order: 40,
        engine,
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_table_matches_the_typed_options() {
        thrum_core::config::check_engine_table(ENGINE, KEYS, TensorflowOptions::from_options)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn dtype_codes_go_both_ways() {
        for (dtype, code) in DTYPE_CODES {
            assert_eq!((dtype_code(*dtype), dtype_of(*code)), (Some(*code), Some(*dtype)));
        }
        assert_eq!(dtype_name(8), "DT_COMPLEX64");
    }

    #[test]
    fn formats_are_told_apart() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("saved_model.pb"), b"").unwrap_or_else(|e| panic!("{e}"));
        assert!(SAVED_MODEL.matches(dir.path()));
        assert!(FROZEN_GRAPH.matches(std::path::Path::new("m.pb")));
        assert!(!FROZEN_GRAPH.matches(dir.path()));
    }
}
