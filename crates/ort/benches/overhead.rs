//! thrum's per-call overhead over calling ONNX Runtime directly through the `ort` crate, on
//! the same model and library.
//!
//! - `ort-run`: `Session::run` with a `TensorRef` over the input (what a Rust user writes);
//! - `ort-iobinding`: `run_binding` with input and output bound once — no per-call lookups or
//!   allocations: ONNX Runtime's floor;
//! - `thrum-predictor`: `Predictor::predict` on a per-thread predictor (an IoBinding kept
//!   across calls);
//! - `thrum-shared-predictor`: `SharedPredictor::predict` (the C API's `Run`, as the shared
//!   predictor must, serving concurrent callers).
//!
//! `cargo bench -p thrum-ort --bench overhead` (needs `thrum engines install ort`).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // a benchmark, not library code

use criterion::{Criterion, criterion_group, criterion_main};
use ort::session::Session;
use ort::value::{Tensor, TensorRef};
use thrum_core::{Engine, ModelSource, Options};
use thrum_ort::OrtEngine;

fn overhead(c: &mut Criterion) {
    for name in ["mlp", "resnet50"] {
        let graph = thrum_zoo::find(name).unwrap().build(thrum_zoo::DEFAULT_SEED);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("{name}.onnx"));
        std::fs::write(&path, thrum_zoo::onnx::export(&graph)).unwrap();
        let input = thrum_zoo::sample_inputs(&graph.inputs, 1, 7).unwrap().remove(0);
        let options = Options::default().with_intra_op_threads(1);

        // thrum first: it finds and loads the library and creates the environment.
        let model = OrtEngine.load(&ModelSource::path(&path), &options).unwrap();
        let mut predictor = model.predictor().unwrap();
        let shared = model.shared_predictor().unwrap();
        let inputs = vec![input.clone()];

        let env = thrum_ort::ort_environment().unwrap();
        let mut session = Session::builder(env)
            .unwrap()
            .with_intra_threads(1)
            .unwrap()
            .commit_from_file(&path)
            .unwrap();
        let shape: Vec<i64> = input.shape().iter().map(|&d| d as i64).collect();
        let data = input.as_slice::<f32>().unwrap();
        let in_name = graph.inputs[0].name.clone();
        let out_name = graph.outputs[0].name.clone();

        let mut group = c.benchmark_group(format!("ort-{name}"));
        if name == "resnet50" {
            group.sample_size(20);
        }
        group.bench_function("ort-run", |b| {
            b.iter(|| {
                let outputs = session
                    .run(ort::inputs![TensorRef::from_array_view((shape.clone(), data)).unwrap()])
                    .unwrap();
                outputs[0].try_extract_tensor::<f32>().unwrap().1.to_vec()
            })
        });
        let mut binding = session.create_binding().unwrap();
        let bound_in = Tensor::from_array((shape.clone(), data.to_vec())).unwrap();
        let out_shape: Vec<i64> =
            graph.outputs[0].concrete_shape(1).iter().map(|&d| d as i64).collect();
        let bound_out = Tensor::<f32>::new(session.allocator(), out_shape).unwrap();
        binding.bind_input(&in_name, &bound_in).unwrap();
        binding.bind_output(&out_name, bound_out).unwrap();
        group.bench_function("ort-iobinding", |b| {
            b.iter(|| session.run_binding(&binding).unwrap().len())
        });
        group.bench_function("thrum-predictor", |b| {
            b.iter(|| predictor.predict(inputs.clone()).unwrap())
        });
        group.bench_function("thrum-shared-predictor", |b| {
            b.iter(|| shared.predict(inputs.clone()).unwrap())
        });
        group.finish();
    }
}

criterion_group!(benches, overhead);
criterion_main!(benches);
