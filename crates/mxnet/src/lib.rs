//! # thrum-mxnet
//!
//! thrum engine backed by Apache MXNet 1.9's C API, loaded at run time (`libloading`) from the
//! PyPI `mxnet` wheel (`thrum engines install mxnet`). Models are symbolic: `NAME-symbol.json`
//! with its parameters in `NAME-0000.params` (what MXNet's `export()` writes). Nothing native is
//! needed to build it, so it is in thrum's default build.
//!
//! How thrum maps onto MXNet (DJL guide, "Apache MXNet"):
//! - libmxnet reads its engine type, OpenMP threads, worker threads and oneDNN switch once,
//!   when it loads: the first model's options set them (see `library`), a later model asking
//!   for others gets an error. `mxnet.preset=multithreaded` is the seed's recipe for many
//!   predictor threads: NaiveEngine and one OpenMP thread.
//! - per-thread predictors **copy the parameters** and build their own cached op, as DJL's
//!   MXNet predictors do (memory grows with the predictor count);
//! - the shared predictor is MXNet's thread-safe cached op (`MXCreateCachedOpEX` with
//!   `thread_safe`): one copy of the parameters for every thread, with MXNet's limits enforced
//!   as errors: dense inputs only, one input shape, one per process, forward only, symbolic
//!   models only. Its calls run on a fixed pool of threads, one per usable core (see
//!   `callers.rs`): libmxnet keeps about 5 MiB per OS thread that ever runs a cached op, until
//!   the process exits, so calls from any number of threads must not each make one.
//!
//! This file is what thrum knows of MXNet in every build: [`INFO`], options, the package, and
//! MXNet's file format ([`SYMBOL`], [`params_path`], [`encode_params`], which the zoo's
//! exporter writes with). The engine is compiled with the `runtime` feature (on by default).

#[cfg(feature = "runtime")]
mod callers;
#[cfg(feature = "runtime")]
mod engine;
#[cfg(feature = "runtime")]
mod ffi;
#[cfg(feature = "runtime")]
pub mod library;

use std::path::{Path, PathBuf};
use std::sync::Arc;

#[cfg(feature = "runtime")]
pub use engine::{MxnetEngine, save_params_with_mxnet};
use thrum_core::config::{OptionKey, Scope, check_one_of, check_path, check_specs, parse_specs};
use thrum_core::install::{Member, Package, Wheel};
use thrum_core::{
    DType, Engine, EngineInfo, Error, ModelFormat, Options, Result, Tensor, TensorSpec,
};

/// The engine's name in thrum.
pub const ENGINE: &str = "mxnet";

/// MXNet's symbolic format: `NAME-symbol.json` with `NAME-0000.params` beside it. A file of
/// another name loads too when the engine is asked for by name (`-e mxnet`).
pub const SYMBOL: ModelFormat = ModelFormat {
    id: "mxnet",
    name: "MXNet symbol",
    suffixes: &["-symbol.json"],
    directory_marker: None,
};

/// MXNet's engine types (`MXNET_ENGINE_TYPE`).
pub const ENGINE_TYPES: &[&str] = &["NaiveEngine", "ThreadedEngine", "ThreadedEnginePerDevice"];

/// MXNet's options, read from [`Options`] when a model loads (with the engine-neutral thread
/// and oneDNN options, which libmxnet also reads once).
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct MxnetOptions {
    /// `libmxnet.so` to load; otherwise the environment and the install directory are searched.
    pub library_path: Option<PathBuf>,
    /// One of [`ENGINE_TYPES`] (`MXNET_ENGINE_TYPE`). `None`: `$MXNET_ENGINE_TYPE`, else MXNet's
    /// default (`ThreadedEnginePerDevice`); `mxnet.preset=multithreaded` makes it NaiveEngine.
    pub engine_type: Option<String>,
    /// OpenMP threads per operator: `intra_op_threads`, else 1 with the multithreaded preset.
    pub omp_threads: Option<usize>,
    /// Input specs for a symbol whose data variables carry no `__shape__` attribute.
    pub input_specs: Option<Vec<TensorSpec>>,
}

impl MxnetOptions {
    /// MXNet's options as `options` sets them. The preset fills what is not set explicitly.
    pub fn from_options(o: &Options) -> Result<MxnetOptions> {
        let preset = o.text("mxnet.preset") == Some("multithreaded");
        Ok(MxnetOptions {
            library_path: o.text("mxnet.library_path").map(PathBuf::from),
            engine_type: o
                .text("mxnet.engine_type")
                .map(String::from)
                .or_else(|| preset.then(|| "NaiveEngine".into())),
            omp_threads: o.intra_op_threads.or(preset.then_some(1)),
            input_specs: o.parse_or("mxnet.input_specs", None, |v| parse_specs(v).map(Some))?,
        })
    }
}

/// MXNet's option keys.
pub static KEYS: &[OptionKey] = &[
    OptionKey {
        key: "mxnet.library_path",
        env: "THRUM_MXNET_LIBRARY_PATH",
        default: "searched",
        engine: ENGINE,
        expected: "a path to libmxnet.so",
        effect: "The MXNet library to load. Otherwise `$MXNET_LIBRARY_PATH`, then \
                 `$THRUM_HOME/engines/mxnet/` (`thrum engines install mxnet`) are searched.",
        scope: Scope::Process,
        tunable: &[],
        check: check_path,
    },
    OptionKey {
        key: "mxnet.engine_type",
        env: "THRUM_MXNET_ENGINE_TYPE",
        default: "$MXNET_ENGINE_TYPE, else ThreadedEnginePerDevice",
        engine: ENGINE,
        expected: "NaiveEngine, ThreadedEngine or ThreadedEnginePerDevice",
        effect: "MXNet's execution engine (`MXNET_ENGINE_TYPE`), set before libmxnet loads; a later \
                 model asking for another is an error. NaiveEngine runs each operator on the calling \
                 thread: with intra_op_threads=1 it is the seed's recipe for many predictor threads \
                 (preset `mxnet.preset=multithreaded`).",
        scope: Scope::Process,
        tunable: &["NaiveEngine", "ThreadedEnginePerDevice"],
        check: |v| check_one_of(v, ENGINE_TYPES),
    },
    OptionKey {
        key: "mxnet.preset",
        env: "THRUM_MXNET_PRESET",
        default: "none",
        engine: ENGINE,
        expected: "multithreaded",
        effect: "`multithreaded`: the seed's recipe for many predictor threads, NaiveEngine and one \
                 OpenMP thread per operator (mxnet.engine_type=NaiveEngine, intra_op_threads=1), \
                 for whichever of the two is not set explicitly.",
        scope: Scope::Process,
        tunable: &[],
        check: |v| check_one_of(v, &["multithreaded"]),
    },
    OptionKey {
        key: "mxnet.input_specs",
        env: "THRUM_MXNET_INPUT_SPECS",
        default: "from the symbol",
        engine: ENGINE,
        expected: "name:dtype[dims] specs separated by `;`, e.g. data:f32[N,3,224,224]",
        effect: "Input specs of a symbol whose data variables have no `__shape__` attribute \
                 (`thrum zoo export` writes it; a dimension 0 there is dynamic).",
        scope: Scope::Model,
        tunable: &[],
        check: check_specs,
    },
];

/// The libraries `thrum engines install mxnet` takes from the PyPI `mxnet` wheel: libmxnet
/// (built with oneDNN and OpenBLAS) and the two libraries beside it (its RPATH is $ORIGIN); it
/// also needs the system's libgomp.so.1.
pub static PACKAGES: &[Package] = &[Package {
    name: "mxnet",
    dir: "mxnet",
    version: "1.9.1",
    wheels: &[Wheel {
        requirement: "mxnet==1.9.1",
        members: &[
            Member { pattern: "mxnet/libmxnet.so", strip: "mxnet/" },
            Member { pattern: "mxnet/libopenblas.so.0", strip: "mxnet/" },
            Member { pattern: "mxnet/libgfortran.so.3", strip: "mxnet/" },
        ],
    }],
}];

/// thrum's dtypes and MXNet's dtype codes (`mshadow::TypeFlag`).
pub const DTYPE_CODES: &[(DType, i32)] = &[
    (DType::F32, 0),
    (DType::F64, 1),
    (DType::F16, 2),
    (DType::U8, 3),
    (DType::I32, 4),
    (DType::I8, 5),
    (DType::I64, 6),
    (DType::Bool, 7),
    (DType::I16, 8),
    (DType::U16, 9),
    (DType::U32, 10),
    (DType::U64, 11),
    (DType::BF16, 12),
];

/// MXNet's dtype code for `dtype` (`None` for byte strings, which MXNet has no type for).
pub fn dtype_code(dtype: DType) -> Option<i32> {
    thrum_core::kit::dtype_to(DTYPE_CODES, dtype)
}

/// `dir/NAME-0000.params` for `dir/NAME-symbol.json` (or `dir/NAME.json`, or `dir/NAME`).
pub fn params_path(symbol: &Path) -> PathBuf {
    symbol.with_file_name(format!("{}-0000.params", model_stem(symbol)))
}

/// `NAME` of `NAME-symbol.json` (or of `NAME.json`, or of a file named `NAME`).
pub fn model_stem(symbol: &Path) -> String {
    let file = symbol.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    file.strip_suffix("-symbol.json")
        .or_else(|| file.strip_suffix(".json"))
        .unwrap_or(&file)
        .to_string()
}

/// MXNet's NDArray-list file (`NDArray::Save` in MXNet 1.x) of `params` (`arg:NAME` /
/// `aux:NAME` arrays): a list magic and a reserved word, the arrays (each: V2 magic, dense
/// storage type, shape as u32 rank + i64 dims, CPU context, dtype code, raw little-endian
/// data), then the names. All integers little-endian.
///
/// Written here rather than through `MXNDArraySave`: exporting must not load libmxnet, which
/// reads its engine type and thread counts once, when it loads, and those must come from the
/// options of the model that runs next. A test checks the bytes equal `MXNDArraySave`'s.
pub fn encode_params(params: &[(String, Tensor)]) -> Result<Vec<u8>> {
    const LIST_MAGIC: u64 = 0x112;
    const NDARRAY_V2_MAGIC: u32 = 0xF993_FAC9;
    let unsupported = |name: &str, dtype: DType| Error::Unsupported {
        engine: ENGINE,
        feature: format!("{dtype} parameter `{name}`"),
        reason: "MXNet's params files hold numeric arrays".into(),
    };
    let mut out = Vec::new();
    out.extend(LIST_MAGIC.to_le_bytes());
    out.extend(0u64.to_le_bytes());
    out.extend((params.len() as u64).to_le_bytes());
    for (name, tensor) in params {
        let code = dtype_code(tensor.dtype()).ok_or_else(|| unsupported(name, tensor.dtype()))?;
        out.extend(NDARRAY_V2_MAGIC.to_le_bytes());
        out.extend(0i32.to_le_bytes()); // dense storage
        out.extend((tensor.shape().len() as u32).to_le_bytes());
        for &d in tensor.shape() {
            out.extend((d as i64).to_le_bytes());
        }
        out.extend(1i32.to_le_bytes()); // device type: CPU
        out.extend(0i32.to_le_bytes()); // device id
        out.extend(code.to_le_bytes());
        out.extend(tensor.raw_bytes().ok_or_else(|| unsupported(name, tensor.dtype()))?);
    }
    out.extend((params.len() as u64).to_le_bytes());
    for (name, _) in params {
        out.extend((name.len() as u64).to_le_bytes());
        out.extend(name.as_bytes());
    }
    Ok(out)
}

fn engine() -> Arc<dyn Engine> {
    #[cfg(feature = "runtime")]
    return Arc::new(MxnetEngine::new());
    #[cfg(not(feature = "runtime"))]
    Arc::new(thrum_core::NotCompiled::new(&INFO))
}

thrum_core::register_engine!(
    INFO = EngineInfo {
        name: ENGINE,
        title: "Apache MXNet",
        aliases: &["apache-mxnet"],
        formats: &[SYMBOL],
        feature: "mxnet",
        build_note: "",
        options: KEYS,
        process_keys: &["intra_op_threads", "inter_op_threads", "onednn"],
        packages: PACKAGES,
        order: 30,
        engine,
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_table_matches_the_typed_options() {
        thrum_core::config::check_engine_table("mxnet", KEYS, MxnetOptions::from_options)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn the_preset_fills_what_is_not_set() {
        let mut options = Options::default();
        options.set("mxnet.preset", "multithreaded").unwrap_or_else(|e| panic!("{e}"));
        let m = MxnetOptions::from_options(&options).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((m.engine_type.as_deref(), m.omp_threads), (Some("NaiveEngine"), Some(1)));
        options.set("intra_op_threads", "2").unwrap_or_else(|e| panic!("{e}"));
        let m = MxnetOptions::from_options(&options).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.omp_threads, Some(2));
    }

    #[test]
    fn params_paths_follow_the_symbol_name() {
        assert_eq!(params_path(Path::new("d/m-symbol.json")), Path::new("d/m-0000.params"));
        assert_eq!(params_path(Path::new("d/mlp-mx")), Path::new("d/mlp-mx-0000.params"));
    }
}
