//! # thrum-tract
//!
//! thrum's embedded default engine: [tract](https://github.com/sonos/tract), a pure-Rust
//! ONNX and NNEF runtime. It needs no native library and works offline.
//!
//! How thrum maps onto tract:
//! - loading parses the model, analyses it into a typed graph and declutters it once;
//! - a *plan* (tract's optimised, runnable graph) is specialised per concrete value of the
//!   model's symbolic input dimensions (usually the batch size) and cached in the model,
//!   least recently used first out beyond `tract.max_cached_plans`;
//! - a [`Predictor`](thrum_core::Predictor) keeps one tract state per plan it has used: the
//!   plan — with its packed weights — is shared, only scratch buffers are per thread;
//! - the shared predictor makes a fresh state per call (tract's `&self` entry point does the
//!   same), so it is safe from any number of threads;
//! - `intra_op_threads` sizes a per-model thread pool for tract's matrix kernels.
//!
//! This file is what thrum knows of tract in every build (its [`INFO`], options and format);
//! the engine itself is compiled with the `runtime` feature (on by default).

#[cfg(feature = "runtime")]
mod convert;
#[cfg(feature = "runtime")]
mod engine;

use std::sync::Arc;

#[cfg(feature = "runtime")]
pub use engine::TractEngine;
use thrum_core::config::{OptionKey, Scope, check_bool, parse_count};
use thrum_core::{Engine, EngineInfo, ModelFormat, Options, Result};

/// The engine's name in thrum.
pub const ENGINE: &str = "tract";

/// Version of the tract crates thrum is built with (pinned in the workspace manifest).
pub const TRACT_VERSION: &str = "0.23.9";

/// NNEF, tract's native format: a file or a directory holding `graph.nnef`.
pub const NNEF: ModelFormat = ModelFormat {
    id: "nnef",
    name: "NNEF",
    suffixes: &[".nnef.tar.gz", ".nnef.tgz", ".nnef.tar", ".nnef"],
    directory_marker: Some("graph.nnef"),
};

/// tract's options, read from [`Options`] when a model loads.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TractOptions {
    /// Run tract's codegen optimiser (on by default); off keeps the decluttered graph.
    pub optimize: bool,
    /// How many shape-specialised plans one model keeps (least recently used dropped first).
    pub max_cached_plans: usize,
}

impl Default for TractOptions {
    fn default() -> TractOptions {
        TractOptions { optimize: true, max_cached_plans: 8 }
    }
}

impl TractOptions {
    /// tract's options as `options` sets them.
    pub fn from_options(options: &Options) -> Result<TractOptions> {
        let default = TractOptions::default();
        Ok(TractOptions {
            optimize: options.bool_or("tract.optimize", default.optimize)?,
            max_cached_plans: options.parse_or(
                "tract.max_cached_plans",
                default.max_cached_plans,
                |v| parse_count(v, 1, 1024),
            )?,
        })
    }
}

/// tract's option keys.
pub static KEYS: &[OptionKey] = &[
    OptionKey {
        key: "tract.optimize",
        env: "THRUM_TRACT_OPTIMIZE",
        default: "true",
        engine: ENGINE,
        expected: "true or false",
        effect: "Run tract's codegen optimiser on each plan; false runs the decluttered graph \
                 (slower; for debugging numerical differences).",
        scope: Scope::Model,
        tunable: &[],
        check: check_bool,
    },
    OptionKey {
        key: "tract.max_cached_plans",
        env: "THRUM_TRACT_MAX_CACHED_PLANS",
        default: "8",
        engine: ENGINE,
        expected: "an integer from 1 to 1024",
        effect: "Plans specialised per concrete input shape (batch size) kept per model; the \
                 least recently used is dropped beyond this. Each plan holds its packed weights.",
        scope: Scope::Model,
        tunable: &[],
        check: |v| parse_count(v, 1, 1024).map(|n| n.to_string()),
    },
];

fn engine() -> Arc<dyn Engine> {
    #[cfg(feature = "runtime")]
    return Arc::new(TractEngine::new());
    #[cfg(not(feature = "runtime"))]
    Arc::new(thrum_core::NotCompiled::new(&INFO))
}

thrum_core::register_engine!(
    INFO = EngineInfo {
        name: ENGINE,
        title: "tract",
        aliases: &[],
        formats: &[ModelFormat::ONNX, NNEF],
        feature: "tract",
        build_note: "",
        options: KEYS,
        process_keys: &[],
        packages: &[],
        order: 0,
        engine,
    }
);

#[cfg(test)]
mod tests {
    #[test]
    fn the_key_table_matches_the_typed_options() {
        thrum_core::config::check_engine_table(
            "tract",
            super::KEYS,
            super::TractOptions::from_options,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
}
