//! The agreement check on real outputs: tract runs a zoo model, and a copy of its outputs
//! with a small perturbation stands for an engine that computes something else.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use thrum_core::{ModelFormat, ModelSource, Options, Tensor};
use thrum_tune::compare::{self, DEFAULT_TOLERANCE, EngineRun};

fn tract_run(model: &str) -> EngineRun {
    let zoo = thrum_zoo::find(model).unwrap();
    let bytes = thrum_zoo::onnx::export(&zoo.build(thrum_zoo::DEFAULT_SEED));
    let source = ModelSource::memory(model, ModelFormat::ONNX, bytes);
    let engine = (thrum_tract::INFO.engine)();
    compare::run_engine(engine.as_ref(), &source, &Options::default()).unwrap()
}

/// The same run under another name, every output value moved by `delta` × its largest
/// magnitude at element `at`.
fn perturbed(run: &EngineRun, name: &str, delta: f32, at: usize) -> EngineRun {
    let mut copy = run.clone();
    copy.engine = name.into();
    for (_, tensor) in &mut copy.outputs {
        let mut values = tensor.as_slice::<f32>().unwrap().to_vec();
        let scale = values.iter().fold(0f32, |m, v| m.max(v.abs()));
        values[at] += delta * scale;
        *tensor = Tensor::from_vec(tensor.shape().to_vec(), values).unwrap();
    }
    copy
}

#[test]
fn an_engine_whose_outputs_are_perturbed_is_flagged_and_the_others_agree() {
    let run = tract_run("mlp");
    let runs = vec![
        run.clone(),
        perturbed(&run, "within-tolerance", 1e-6, 3),
        perturbed(&run, "perturbed", 1e-3, 3),
    ];
    let comparison = compare::compare("zoo:mlp", runs, Vec::new(), DEFAULT_TOLERANCE);
    assert_eq!(comparison.disagreeing(), vec!["perturbed".to_string()]);
    assert_eq!(comparison.agreeing(), vec!["tract".to_string(), "within-tolerance".to_string()]);
    let flagged = comparison.diffs.iter().find(|d| d.engine == "perturbed").unwrap();
    assert!((flagged.max_rel - 1e-3).abs() < 1e-4, "{flagged:?}");
    let mut table = Vec::new();
    comparison.write_table(&mut table).unwrap();
    let table = String::from_utf8(table).unwrap();
    assert!(table.contains("DISAGREES") && table.contains("Disagreeing: perturbed"), "{table}");
}

#[test]
fn a_different_output_shape_is_a_disagreement_with_the_shapes_named() {
    let run = tract_run("mlp");
    let mut other = run.clone();
    other.engine = "reshaped".into();
    let t = &other.outputs[0].1;
    let flat = t.reshape(vec![t.len()]).unwrap();
    other.outputs[0].1 = flat;
    let comparison = compare::compare("zoo:mlp", vec![run, other], Vec::new(), DEFAULT_TOLERANCE);
    let d = &comparison.diffs[0];
    assert!(!d.agrees && d.note.as_deref().unwrap().contains("shape"), "{d:?}");
}
