//! thrum's per-call overhead over calling tract directly, on the same optimized plan.
//!
//! Direct: tract's `SimpleState::run` with the input already a tract tensor behind an `Arc`
//! (no copy per call) — the fastest way to call tract. thrum: `Predictor::predict` with a thrum
//! tensor, which adds input validation, one copy in, one copy out and stage timing.
//!
//! `cargo bench -p thrum-tract --bench overhead`; results in docs/performance.md.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // a benchmark, not library code

use std::collections::HashMap;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use thrum_core::{Engine, ModelFormat, ModelSource, Options};
use thrum_tract::TractEngine;
use tract_onnx::prelude::*;

fn overhead(c: &mut Criterion) {
    for name in ["mlp", "resnet50"] {
        let graph = thrum_zoo::find(name).unwrap().build(thrum_zoo::DEFAULT_SEED);
        let bytes = thrum_zoo::onnx::export(&graph);
        let input = thrum_zoo::sample_inputs(&graph.inputs, 1, 7).unwrap().remove(0);

        // The same pipeline thrum-tract runs: decluttered, N=1, optimized, one plan, one state.
        let typed =
            tract_onnx::onnx().model_for_read(&mut &bytes[..]).unwrap().into_typed().unwrap();
        let typed = typed.into_decluttered().unwrap();
        let n = typed.symbols.sym("N");
        let concrete = typed
            .set_symbols(&HashMap::from([(n, TDim::Val(1))]))
            .unwrap()
            .into_optimized()
            .unwrap();
        let plan = TypedSimplePlan::new(concrete).unwrap();
        let mut state = plan.spawn().unwrap();
        let raw_input =
            Arc::new(Tensor::from_shape(input.shape(), input.as_slice::<f32>().unwrap()).unwrap());

        let source = ModelSource::memory(name, ModelFormat::ONNX, bytes);
        let model = TractEngine.load(&source, &Options::default()).unwrap();
        let mut predictor = model.predictor().unwrap();
        let inputs = vec![input];

        let mut group = c.benchmark_group(name);
        if name == "resnet50" {
            group.sample_size(30);
        }
        group.bench_function("tract-direct", |b| {
            b.iter(|| state.run(tvec![TValue::from_const(raw_input.clone())]).unwrap())
        });
        group.bench_function("thrum-predictor", |b| {
            b.iter(|| predictor.predict(inputs.clone()).unwrap())
        });
        group.finish();
    }
}

criterion_group!(benches, overhead);
criterion_main!(benches);
