//! # thrum-core
//!
//! The engine-neutral inference API of thrum, after Deep Java Library's
//! Engine / Model / Predictor / Translator, with Rust's types enforcing what DJL documents:
//!
//! - an [`Engine`] loads a [`Model`] once; engines are found by name in a [`Registry`];
//! - a [`Model`] is immutable and `Send + Sync`: share it across threads;
//! - a [`Predictor`] is cheap, one per thread, shares the model's weights, and is `Send` but
//!   not `Sync` (a `compile_fail` doctest on [`Predictor`] proves it);
//! - a [`SharedPredictor`] is `Sync` and exists only where the engine's runtime allows
//!   concurrent calls;
//! - a [`Translator`] turns typed inputs into tensors and tensors into typed outputs, with a
//!   [`Batchifier`] so that `batch_predict` is one forward pass (a padded batch: one per
//!   group of similar lengths);
//! - [`Options`] carries every configuration key: the engine-neutral ones ([`config::KEYS`])
//!   as typed fields, each engine's by name from the engine's own table;
//! - every engine registers an [`EngineInfo`] (name, formats, options, installer, feature) in
//!   [`engine::ENGINES`]; the [`Registry`], option parsing and format detection read it;
//! - every error has an [`ErrorKind`] ([`Error::kind`]): callers decide by kind, never by
//!   message;
//! - [`kit`] holds what engine authors need besides their runtime.
//!
//! Resources are released by `Drop` when the last handle goes: DJL's
//! `disable_close_resource_on_finalize` flag exists because the JVM frees native memory from a
//! finalizer thread that can race with inference threads; Rust has no finalizers, so thrum has
//! nothing to disable.
//!
//! This crate has no native dependency and no `unsafe` code.
#![forbid(unsafe_code)]

pub mod config;
pub mod cpu;
pub mod dtype;
pub mod engine;
pub mod error;
pub mod install;
pub mod kit;
pub mod model;
pub mod precision;
pub mod spec;
pub mod tensor;
pub mod translator;

pub use config::{OptionKey, Options, Scope};
pub use cpu::CpuFeatures;
pub use dtype::{DType, Element};
pub use engine::{
    Capabilities, Engine, EngineCheck, EngineInfo, ModelFormat, ModelSource, NotCompiled, Registry,
    Support,
};
pub use error::{Error, ErrorKind, NativeCode, NativeError, Result};
pub use model::{
    Model, ModelBackend, Predictor, PredictorBackend, PredictorKind, SharedPredictor,
    SharedPredictorBackend, StageTimings, ThreadConfig,
};
pub use precision::{Int8Form, Precision};
pub use spec::{Dim, TensorSpec};
pub use tensor::{Tensor, TensorData};
pub use translator::{Batchifier, Classification, Classifier, Identity, Translator, length_passes};

#[doc(hidden)]
pub use half;
#[doc(hidden)]
pub use linkme;
