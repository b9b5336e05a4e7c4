//! A kit for engine authors: the pieces every engine crate needs that are not its runtime's.
//!
//! - [`SpawnPerCall`]: a shared predictor for engines whose plan can make per-call state cheaply
//!   (tract's `Runnable::run`): each call gets a fresh per-thread predictor;
//! - [`discover_outputs`]: run zeros once (twice with a batch axis) to learn output specs, for
//!   runtimes that do not declare them (TorchScript, MXNet symbols);
//! - [`dtype_from`] / [`dtype_to`]: one table per engine between its dtype codes and thrum's;
//!   the per-element conversions are [`dispatch_dtype!`](crate::dispatch_dtype) with a list of
//!   the dtypes the runtime has.
//!
//! Engines that load their native library at run time use the `thrum-native` crate for that.

use std::sync::Arc;

use crate::dtype::DType;
use crate::error::Result;
use crate::model::{ModelBackend, SharedPredictorBackend};
use crate::spec::{Dim, TensorSpec};
use crate::tensor::Tensor;

/// A shared predictor that makes a fresh per-thread predictor for every call, for engines
/// whose per-thread state is cheap to make (a tract plan's state: scratch buffers only).
///
/// ```ignore
/// fn shared_predictor(&self) -> Result<Box<dyn SharedPredictorBackend>> {
///     Ok(Box::new(SpawnPerCall(self.0.clone())))
/// }
/// ```
pub struct SpawnPerCall<B: ModelBackend>(pub Arc<B>);

impl<B: ModelBackend> SharedPredictorBackend for SpawnPerCall<B> {
    fn predict(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        self.0.predictor()?.predict(inputs)
    }
}

/// Output specs found by running the model on zeros: `run` is called with batch 1, and once
/// more with batch 2 when the inputs have a batch axis, so that the output axes that follow
/// the batch become dynamic (named as the inputs' batch dimension) and the others fixed.
/// `names` gives output names where the runtime has them (`output_K` otherwise).
pub fn discover_outputs(
    inputs: &[TensorSpec],
    names: &[String],
    mut run: impl FnMut(&[Tensor]) -> Result<Vec<Tensor>>,
) -> Result<Vec<TensorSpec>> {
    let zeros = |batch: usize| -> Result<Vec<Tensor>> {
        inputs.iter().map(|s| Tensor::zeros(s.dtype, &s.shape_at(batch, 1))).collect()
    };
    let one = run(&zeros(1)?)?;
    let batch_dim = crate::spec::common_batch_axis(inputs)
        .and_then(|axis| inputs.first().map(|s| s.shape[axis].clone()));
    let two = match batch_dim {
        Some(_) => Some(run(&zeros(2)?)?),
        None => None,
    };
    Ok(one
        .iter()
        .enumerate()
        .map(|(k, t)| {
            let other = two.as_ref().and_then(|two| two.get(k)).map(|t| t.shape().to_vec());
            let shape = t
                .shape()
                .iter()
                .enumerate()
                .map(|(axis, &d)| match (&other, &batch_dim) {
                    (Some(other), Some(dim)) if other.get(axis) != Some(&d) => match dim {
                        Dim::Dynamic(Some(name)) => Dim::named(name.clone()),
                        _ => Dim::named("N"),
                    },
                    _ => Dim::Fixed(d),
                })
                .collect();
            let name = names.get(k).cloned().unwrap_or_else(|| format!("output_{k}"));
            TensorSpec::new(name, t.dtype(), shape)
        })
        .collect())
}

/// thrum's dtype for an engine's dtype code, from the engine's table.
pub fn dtype_from<C: PartialEq>(table: &[(DType, C)], code: &C) -> Option<DType> {
    table.iter().find(|(_, c)| c == code).map(|(d, _)| *d)
}

/// The engine's dtype code for thrum's dtype, from the engine's table.
pub fn dtype_to<C: Copy>(table: &[(DType, C)], dtype: DType) -> Option<C> {
    table.iter().find(|(d, _)| *d == dtype).map(|(_, c)| *c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_axes_that_follow_the_batch_become_dynamic() {
        let inputs =
            vec![TensorSpec::new("x", DType::F32, vec![Dim::named("batch"), Dim::Fixed(4)])];
        // A model whose output is [N, 4] and a constant [3].
        let outputs = discover_outputs(&inputs, &["y".into()], |x| {
            Ok(vec![x[0].clone(), Tensor::zeros(DType::I64, &[3])?])
        })
        .unwrap();
        assert_eq!(outputs[0].name, "y");
        assert_eq!(outputs[0].shape, vec![Dim::named("batch"), Dim::Fixed(4)]);
        assert_eq!(outputs[0].batch_axis, Some(0));
        assert_eq!(
            (outputs[1].name.as_str(), &outputs[1].shape[..]),
            ("output_1", &[Dim::Fixed(3)][..])
        );
    }

    #[test]
    fn dtype_tables_map_both_ways() {
        let table = [(DType::F32, 0), (DType::I64, 6)];
        assert_eq!(dtype_from(&table, &6), Some(DType::I64));
        assert_eq!(dtype_to(&table, DType::F32), Some(0));
        assert_eq!(dtype_to(&table, DType::Bool), None);
    }
}
