//! libmxnet reads its engine type and thread counts once per process, and supports one
//! thread-safe cached op at a time with fixed shapes: each limit is an error that says so.
//! (One test: the settings are process-wide.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use thrum_core::{DType, Engine, Error, ModelSource, Options, Tensor};
use thrum_mxnet::MxnetEngine;
use thrum_mxnet::library::Started;

#[test]
fn process_wide_settings_and_thread_safe_limits_are_enforced() {
    thrum_testkit::require_engine!("mxnet");
    let (dir, model) = common::mxnet("mlp", &common::multithreaded());
    let loaded = thrum_mxnet::library::loaded().unwrap();
    assert_eq!(loaded.engine_type(), "NaiveEngine");
    assert_eq!(loaded.variable("OMP_NUM_THREADS"), Some("1"));
    assert_eq!(model.threads().omp, Some(1));

    // The same settings again load; another engine type is refused, naming both.
    let source = ModelSource::path(dir.path().join("mlp-symbol.json"));
    MxnetEngine.load(&source, &common::multithreaded()).unwrap();
    let mut threaded = Options::default();
    threaded.set("mxnet.engine_type", "ThreadedEngine").unwrap();
    let err = MxnetEngine.load(&source, &threaded).unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("MXNET_ENGINE_TYPE=ThreadedEngine")
            && message.contains("MXNET_ENGINE_TYPE=NaiveEngine"),
        "{message}"
    );
    let err = MxnetEngine.load(&source, &Options::default().with_intra_op_threads(2)).unwrap_err();
    assert!(err.to_string().contains("OMP_NUM_THREADS=2"), "{err}");

    // One thread-safe predictor per process.
    let shared = model.shared_predictor().unwrap();
    let err = match model.shared_predictor() {
        Ok(_) => panic!("a second thread-safe predictor"),
        Err(e) => e,
    };
    assert!(err.to_string().contains("one thread-safe cached op per process"), "{err}");

    // Its input shape is fixed by the first call.
    shared.predict(vec![Tensor::zeros(DType::F32, &[2, 64]).unwrap()]).unwrap();
    let err = shared.predict(vec![Tensor::zeros(DType::F32, &[3, 64]).unwrap()]).unwrap_err();
    assert!(err.to_string().contains("no dynamic shapes"), "{err}");

    // Dropped, another can be made.
    drop(shared);
    model.shared_predictor().unwrap();
}
