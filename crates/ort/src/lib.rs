//! # thrum-ort
//!
//! thrum engine backed by [ONNX Runtime](https://onnxruntime.ai), through the `ort` crate with
//! the library loaded at run time (`load-dynamic`). The library comes from the PyPI
//! `onnxruntime` wheel: `thrum engines install ort` (see `library` for where it is searched).
//! Nothing native is needed to build it, so it is in thrum's default build.
//!
//! How thrum maps onto ONNX Runtime:
//! - a [`Model`](thrum_core::Model) is one ONNX Runtime session: the weights are loaded and
//!   prepacked once;
//! - per-thread predictors and the shared predictor all run that session, which ONNX Runtime
//!   allows from several threads at once on the CPU provider. A per-thread predictor keeps an
//!   IoBinding across calls (small inputs copied into bound buffers, outputs written into
//!   bound buffers: see `binding.rs`); the shared predictor calls `Run` with inputs as
//!   zero-copy views of thrum's buffers. With an accelerator provider, calls are serialised,
//!   per-thread predictors call `Run` too, and the shared predictor is refused;
//! - every option of [`OrtOptions`] maps onto a session (or, for global thread pools,
//!   environment) setting; a provider the loaded library lacks, or oneDNN on a build without
//!   it, is an error that lists the providers it has;
//! - errors keep ONNX Runtime's `OrtErrorCode`, which decides their kind
//!   (`ORT_INVALID_ARGUMENT` is the caller's input, `ORT_FAIL` an internal failure).
//!
//! This file is what thrum knows of ONNX Runtime in every build ([`INFO`], options, package);
//! the engine itself is compiled with the `runtime` feature (on by default).

#[cfg(feature = "runtime")]
mod binding;
#[cfg(feature = "runtime")]
mod convert;
#[cfg(feature = "runtime")]
mod engine;
#[cfg(feature = "runtime")]
mod ffi;
#[cfg(feature = "runtime")]
pub mod library;

use std::path::PathBuf;
use std::sync::Arc;

#[cfg(feature = "runtime")]
pub use engine::{OrtEngine, ort_environment};
use thrum_core::config::{OptionKey, Scope, check_bool, check_one_of, check_path, parse_bool};
use thrum_core::install::{Member, Package, Wheel};
use thrum_core::{Engine, EngineInfo, ModelFormat, Options, Result};

/// The engine's name in thrum.
pub const ENGINE: &str = "ort";

/// Execution providers thrum can ask ONNX Runtime for.
pub const PROVIDERS: &[&str] = &["cpu", "cuda", "dnnl", "openvino"];

/// Graph optimisation levels (`ort.optimization_level`).
pub const OPTIMIZATION_LEVELS: &[&str] = &["disable", "basic", "extended", "all"];

/// ONNX Runtime's options, read from [`Options`] when a model loads.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct OrtOptions {
    /// `libonnxruntime.so` to load; otherwise the environment and the install directory are searched.
    pub library_path: Option<PathBuf>,
    /// Run independent operators in parallel (inter-op pool) instead of in sequence.
    pub parallel_execution: bool,
    /// Graph optimisation level: one of [`OPTIMIZATION_LEVELS`].
    pub optimization_level: String,
    /// Pre-plan memory from the first run's shapes.
    pub memory_pattern: bool,
    /// Use ONNX Runtime's CPU arena allocator.
    pub cpu_arena: bool,
    /// Let idle intra-/inter-op threads spin; `None`: ONNX Runtime's default (spin).
    pub spinning: Option<bool>,
    /// Intra-op thread affinities in ONNX Runtime's syntax (`1;2`, `1-2;3-4`).
    pub intra_op_affinity: Option<String>,
    /// One intra-/inter-op thread pool for the whole process, shared by every session.
    pub global_thread_pools: bool,
    /// Execution providers in priority order; the CPU provider is always last.
    pub execution_providers: Vec<String>,
    /// Write an ONNX Runtime profile with this file prefix.
    pub profiling: Option<PathBuf>,
    /// Fixed values for named free dimensions (`N` → 1), applied when the session is built.
    pub free_dimension_overrides: Vec<(String, i64)>,
    /// Give each predictor its own session (sharing prepacked weights) instead of running every
    /// predictor on the model's one session.
    pub session_per_predictor: bool,
}

impl Default for OrtOptions {
    fn default() -> OrtOptions {
        OrtOptions {
            library_path: None,
            parallel_execution: false,
            optimization_level: "all".into(),
            memory_pattern: true,
            cpu_arena: true,
            spinning: None,
            intra_op_affinity: None,
            global_thread_pools: false,
            execution_providers: vec!["cpu".into()],
            profiling: None,
            free_dimension_overrides: Vec::new(),
            session_per_predictor: false,
        }
    }
}

impl OrtOptions {
    /// ONNX Runtime's options as `options` sets them.
    pub fn from_options(o: &Options) -> Result<OrtOptions> {
        let d = OrtOptions::default();
        Ok(OrtOptions {
            library_path: o.text("ort.library_path").map(PathBuf::from),
            parallel_execution: o
                .parse_or("ort.execution_mode", d.parallel_execution, |v| Ok(v == "parallel"))?,
            optimization_level: o
                .text("ort.optimization_level")
                .map_or(d.optimization_level, String::from),
            memory_pattern: o.bool_or("ort.memory_pattern", d.memory_pattern)?,
            cpu_arena: o.bool_or("ort.cpu_arena", d.cpu_arena)?,
            spinning: o.parse_or("ort.spinning", d.spinning, |v| parse_bool(v).map(Some))?,
            intra_op_affinity: o.text("ort.intra_op_affinity").map(String::from),
            global_thread_pools: o.bool_or("ort.global_thread_pools", d.global_thread_pools)?,
            execution_providers: o
                .text("ort.execution_providers")
                .map_or(d.execution_providers, |v| v.split(',').map(String::from).collect()),
            profiling: o.text("ort.profiling").map(PathBuf::from),
            free_dimension_overrides: o.parse_or(
                "ort.free_dimension_overrides",
                d.free_dimension_overrides,
                parse_overrides,
            )?,
            session_per_predictor: o
                .bool_or("ort.session_per_predictor", d.session_per_predictor)?,
        })
    }
}

fn parse_overrides(v: &str) -> std::result::Result<Vec<(String, i64)>, String> {
    let mut pairs = Vec::new();
    for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, size) = item.split_once(':').ok_or_else(|| format!("`{item}` has no `:`"))?;
        let size: i64 = size.trim().parse().map_err(|_| format!("`{size}` is not a size"))?;
        if name.trim().is_empty() || size < 1 {
            return Err(format!("`{item}` needs a name and a size of at least 1"));
        }
        pairs.push((name.trim().to_string(), size));
    }
    Ok(pairs)
}

/// ONNX Runtime's option keys.
pub static KEYS: &[OptionKey] = &[
    OptionKey {
        key: "ort.library_path",
        env: "THRUM_ORT_LIBRARY_PATH",
        default: "searched",
        engine: ENGINE,
        expected: "a path to libonnxruntime.so",
        effect: "The ONNX Runtime library to load. Otherwise `$ORT_DYLIB_PATH`, then \
                 `$THRUM_HOME/engines/ort/` (filled by `thrum engines install ort`). One library \
                 per process.",
        scope: Scope::Process,
        tunable: &[],
        check: check_path,
    },
    OptionKey {
        key: "ort.execution_mode",
        env: "THRUM_ORT_EXECUTION_MODE",
        default: "sequential",
        engine: ENGINE,
        expected: "sequential or parallel",
        effect: "`parallel` runs independent operators on the inter-op pool. DJL: `executionMode`.",
        scope: Scope::Model,
        tunable: &["sequential", "parallel"],
        check: |v| check_one_of(v, &["sequential", "parallel"]),
    },
    OptionKey {
        key: "ort.optimization_level",
        env: "THRUM_ORT_OPTIMIZATION_LEVEL",
        default: "all",
        engine: ENGINE,
        expected: "disable, basic, extended or all",
        effect: "Graph optimisations applied when the session is built. DJL: `optLevel`.",
        scope: Scope::Model,
        tunable: &["basic", "extended", "all"],
        check: |v| check_one_of(v, OPTIMIZATION_LEVELS),
    },
    OptionKey {
        key: "ort.memory_pattern",
        env: "THRUM_ORT_MEMORY_PATTERN",
        default: "true",
        engine: ENGINE,
        expected: "true or false",
        effect: "Pre-plan memory from the shapes of the first run. DJL: `memoryPatternOptimization`.",
        scope: Scope::Model,
        tunable: &[],
        check: check_bool,
    },
    OptionKey {
        key: "ort.cpu_arena",
        env: "THRUM_ORT_CPU_ARENA",
        default: "true",
        engine: ENGINE,
        expected: "true or false",
        effect: "ONNX Runtime's CPU arena allocator (faster; holds memory). DJL: `cpuArenaAllocator`.",
        scope: Scope::Model,
        tunable: &[],
        check: check_bool,
    },
    OptionKey {
        key: "ort.spinning",
        env: "THRUM_ORT_SPINNING",
        default: "engine default",
        engine: ENGINE,
        expected: "true or false",
        effect: "Whether idle intra- and inter-op threads spin (ONNX Runtime spins by default: \
                 lower latency, CPU burnt while waiting).",
        scope: Scope::Model,
        tunable: &["true", "false"],
        check: check_bool,
    },
    OptionKey {
        key: "ort.intra_op_affinity",
        env: "THRUM_ORT_INTRA_OP_AFFINITY",
        default: "none",
        engine: ENGINE,
        expected: "logical processors per intra-op thread but the first, e.g. 1;2 or 1-2;3-4",
        effect: "Pins intra-op threads to processors (`session.intra_op_thread_affinities`).",
        scope: Scope::Model,
        tunable: &[],
        check: |v| {
            let v = v.trim();
            if v.is_empty() || !v.chars().all(|c| c.is_ascii_digit() || ";-,".contains(c)) {
                return Err("only digits, `;`, `-` and `,` are allowed".into());
            }
            Ok(v.into())
        },
    },
    OptionKey {
        key: "ort.global_thread_pools",
        env: "THRUM_ORT_GLOBAL_THREAD_POOLS",
        default: "false",
        engine: ENGINE,
        expected: "true or false",
        effect: "One intra-/inter-op pool for the whole process, sized by the thread options of \
                 the first model loaded, shared by every session. DJL: `disablePerSessionThreads`, \
                 `ai.djl.onnxruntime.num_threads`.",
        scope: Scope::Process,
        tunable: &["false", "true"],
        check: check_bool,
    },
    OptionKey {
        key: "ort.execution_providers",
        env: "THRUM_ORT_EXECUTION_PROVIDERS",
        default: "cpu",
        engine: ENGINE,
        expected: "a comma-separated priority list of cpu, cuda, dnnl, openvino",
        effect: "Execution providers in priority order; CPU is always the last fallback. A provider \
                 the loaded library lacks is an error listing those it has. `openvino` without \
                 `ort.library_path` runs on the ort-openvino flavour (`thrum engines install \
                 ort-openvino`). DJL: `ortDevice`.",
        scope: Scope::Model,
        tunable: &["cpu", "openvino"],
        check: |v| {
            let list: Vec<String> = v
                .split(',')
                .map(|p| p.trim().to_ascii_lowercase())
                .filter(|p| !p.is_empty())
                .collect();
            if let Some(bad) = list.iter().find(|p| !PROVIDERS.contains(&p.as_str())) {
                return Err(format!("`{bad}` is not a provider thrum knows"));
            }
            if list.is_empty() {
                return Err("no provider given".into());
            }
            Ok(list.join(","))
        },
    },
    OptionKey {
        key: "ort.profiling",
        env: "THRUM_ORT_PROFILING",
        default: "off",
        engine: ENGINE,
        expected: "a file path prefix",
        effect: "Writes ONNX Runtime's JSON profile (per-operator times) to PREFIX_<date>.json \
                 when the model is dropped. DJL: `profilerOutput`.",
        scope: Scope::Model,
        tunable: &[],
        check: check_path,
    },
    OptionKey {
        key: "ort.free_dimension_overrides",
        env: "THRUM_ORT_FREE_DIMENSION_OVERRIDES",
        default: "none",
        engine: ENGINE,
        expected: "NAME:SIZE pairs separated by commas, e.g. N:1,seq:128",
        effect: "Fixes named dynamic dimensions when the session is built, so ONNX Runtime can \
                 optimise for them; inputs must then have those sizes.",
        scope: Scope::Model,
        tunable: &[],
        check: |v| {
            parse_overrides(v).map(|pairs| {
                pairs.iter().map(|(n, s)| format!("{n}:{s}")).collect::<Vec<_>>().join(",")
            })
        },
    },
    OptionKey {
        key: "ort.session_per_predictor",
        env: "THRUM_ORT_SESSION_PER_PREDICTOR",
        default: "false",
        engine: ENGINE,
        expected: "true or false",
        effect: "Each per-thread predictor builds its own session, sharing prepacked weights through \
                 one container, instead of all predictors calling the model's one session \
                 concurrently. Costs a session build per predictor and more memory; measured in \
                 docs/performance.md.",
        scope: Scope::Predictor,
        tunable: &["false", "true"],
        check: check_bool,
    },
];

/// The libraries `thrum engines install ort` takes from the PyPI `onnxruntime` wheel.
pub static PACKAGES: &[Package] = &[
    Package {
        name: "ort",
        dir: "ort",
        version: "1.32.0",
        wheels: &[Wheel {
            requirement: "onnxruntime==1.32.0",
            members: &[
                Member {
                    pattern: "onnxruntime/capi/libonnxruntime.so*",
                    strip: "onnxruntime/capi/",
                },
                Member {
                    pattern: "onnxruntime/capi/libonnxruntime_providers_shared.so",
                    strip: "onnxruntime/capi/",
                },
            ],
        }],
    },
    // ONNX Runtime with OpenVINO's execution provider and OpenVINO's CPU plugin, all in one
    // directory (each library finds the next through RPATH $ORIGIN, under its SONAME).
    Package {
        name: OPENVINO_FLAVOUR,
        dir: OPENVINO_FLAVOUR,
        version: "1.24.1",
        wheels: &[Wheel {
            requirement: "onnxruntime-openvino==1.24.1",
            members: &[
                Member {
                    pattern: "onnxruntime/capi/libonnxruntime.so*",
                    strip: "onnxruntime/capi/",
                },
                Member {
                    pattern: "onnxruntime/capi/libonnxruntime_providers_*.so",
                    strip: "onnxruntime/capi/",
                },
                Member {
                    pattern: "onnxruntime/capi/libopenvino.so.2541",
                    strip: "onnxruntime/capi/",
                },
                Member {
                    pattern: "onnxruntime/capi/libopenvino_onnx_frontend.so.2541",
                    strip: "onnxruntime/capi/",
                },
                Member {
                    pattern: "onnxruntime/capi/libopenvino_intel_cpu_plugin.so",
                    strip: "onnxruntime/capi/",
                },
                Member { pattern: "onnxruntime/capi/libtbb.so.12", strip: "onnxruntime/capi/" },
            ],
        }],
    },
];

/// The install name and directory of ONNX Runtime's OpenVINO flavour.
pub const OPENVINO_FLAVOUR: &str = "ort-openvino";

fn engine() -> Arc<dyn Engine> {
    #[cfg(feature = "runtime")]
    return Arc::new(OrtEngine::new());
    #[cfg(not(feature = "runtime"))]
    Arc::new(thrum_core::NotCompiled::new(&INFO))
}

thrum_core::register_engine!(
    INFO = EngineInfo {
        name: ENGINE,
        title: "ONNX Runtime",
        aliases: &["onnxruntime", "onnx-runtime"],
        formats: &[ModelFormat::ONNX],
        feature: "ort",
        build_note: "",
        options: KEYS,
        process_keys: &[],
        packages: PACKAGES,
        order: 10,
        engine,
    }
);

#[cfg(test)]
mod tests {
    #[test]
    fn the_key_table_matches_the_typed_options() {
        thrum_core::config::check_engine_table("ort", super::KEYS, super::OrtOptions::from_options)
            .unwrap_or_else(|e| panic!("{e}"));
    }
}
