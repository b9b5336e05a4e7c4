//! Every zoo model loads on tract and gives finite, non-degenerate outputs at any batch size.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use thrum_core::{Batchifier, Classifier, Dim, Identity, Options, Tensor};

fn stats(t: &Tensor) -> (f64, f64, bool) {
    let v = t.to_f64_vec().unwrap();
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
    (mean, var.sqrt(), v.iter().all(|x| x.is_finite()))
}

#[test]
fn zoo_models_give_finite_varied_outputs() {
    for name in ["mlp", "resnet18", "resnet50", "transformer"] {
        let model = common::load_zoo(name, &Options::default());
        assert_eq!(model.inputs()[0].shape[0], Dim::named("N"), "{name} batch axis");
        let x = thrum_zoo::sample_inputs(model.inputs(), 1, 7).unwrap();
        let y = model.predictor().unwrap().predict(x).unwrap();
        let (mean, std, finite) = stats(&y[0]);
        eprintln!("{name}: output {:?} mean {mean:.4} std {std:.4}", y[0].shape());
        assert!(finite, "{name}: non-finite output");
        assert!(std > 1e-3, "{name}: output is nearly constant (std {std})");
    }
}

#[test]
fn dynamic_batch_rows_match_single_sample_runs() {
    let model = common::load_zoo("transformer", &Options::default());
    let mut predictor = model.predictor().unwrap();
    let batch = thrum_zoo::sample_inputs(model.inputs(), 3, 11).unwrap();
    let together = predictor.predict(batch.clone()).unwrap();
    assert_eq!(together[0].shape(), &[3, 128, 128]);
    for (row, item) in batch[0].unstack().unwrap().into_iter().enumerate() {
        let single = predictor.predict(vec![item.reshape([1, 128]).unwrap()]).unwrap();
        let a = together[0].unstack().unwrap()[row].to_f64_vec().unwrap();
        let b = single[0].to_f64_vec().unwrap();
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-4, "row {row} differs by {worst}");
    }
}

#[test]
fn more_batch_sizes_than_cached_plans_still_run() {
    let mut options = Options::default();
    options.set("tract.max_cached_plans", "2").unwrap();
    let model = common::load_zoo("mlp", &options);
    let mut predictor = model.predictor().unwrap();
    for batch in [1, 2, 3, 4, 1, 5, 2] {
        let y =
            predictor.predict(thrum_zoo::sample_inputs(model.inputs(), batch, 1).unwrap()).unwrap();
        assert_eq!(y[0].shape(), &[batch, 10]);
    }
}

#[test]
fn batch_predict_with_a_stack_batchifier_is_one_forward_matching_single_predictions() {
    let model = common::load_zoo("mlp", &Options::default());
    let items: Vec<Vec<Tensor>> = (0..4)
        .map(|i| {
            let x = thrum_zoo::sample_inputs(model.inputs(), 1, i).unwrap();
            vec![x[0].reshape([64]).unwrap()]
        })
        .collect();
    let mut batched = model.predictor_with(Identity::with_batchifier(Batchifier::Stack)).unwrap();
    let outputs = batched.batch_predict(items.clone()).unwrap();
    let mut single = model.predictor_with(Identity::with_batchifier(Batchifier::Stack)).unwrap();
    for (item, out) in items.into_iter().zip(outputs) {
        assert_eq!(out[0].shape(), &[10]);
        let alone = single.predict(item).unwrap();
        let (a, b) = (alone[0].to_f64_vec().unwrap(), out[0].to_f64_vec().unwrap());
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5));
    }
    let timings = batched.last_timings();
    assert!(timings.inference > std::time::Duration::ZERO);
}

#[test]
fn classifier_translator_turns_features_into_ranked_classes() {
    let model = common::load_zoo("mlp", &Options::default());
    let mut predictor = model.predictor_with(Classifier::new(3)).unwrap();
    let features: Vec<f32> = (0..64).map(|i| (i as f32 / 32.0) - 1.0).collect();
    let top = predictor.predict(features.clone()).unwrap();
    assert_eq!(top.len(), 3);
    assert!(top[0].probability >= top[1].probability && top[1].probability >= top[2].probability);
    let batch = predictor.batch_predict(vec![features.clone(), features]).unwrap();
    // A batch of 2 runs another plan than a batch of 1: same classes, last-ulp differences.
    for (a, b) in batch[0].iter().zip(&top) {
        assert_eq!(a.index, b.index);
        assert!((a.probability - b.probability).abs() < 1e-6);
    }
    let err = predictor.predict(vec![0.0; 63]).unwrap_err().to_string();
    assert!(err.contains("64 values") && err.contains("got 63"), "{err}");
}
