//! libtorch lets a process set its inter-op thread count once: thrum accepts the same value
//! again and refuses a different one with an error, never a silent no-op. (Its own test
//! binary: the setting is process-wide.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use thrum_core::{Engine, Error, ModelSource, Options};
use thrum_torch::TorchEngine;

#[test]
fn a_second_different_inter_op_thread_count_is_an_error() {
    thrum_testkit::require_engine!("torch");
    let dir = tempfile::tempdir().unwrap();
    let source = ModelSource::path(common::export("mlp", dir.path()));
    let first = TorchEngine.load(&source, &Options::default().with_inter_op_threads(2)).unwrap();
    assert_eq!(first.threads().inter_op, Some(2));
    TorchEngine
        .load(&source, &Options::default().with_inter_op_threads(2))
        .expect("the same value again is accepted");
    let err = TorchEngine.load(&source, &Options::default().with_inter_op_threads(3)).unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("inter_op_threads=3") && message.contains("already set it to 2"),
        "{message}"
    );
    // A model that does not ask keeps working with the process's setting.
    let model = TorchEngine.load(&source, &Options::default()).unwrap();
    assert_eq!(model.threads().inter_op, Some(2));
}
