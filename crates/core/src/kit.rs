//! A kit for engine authors: the pieces every engine crate needs that are not its runtime's.
//!
//! - [`SpawnPerCall`]: a shared predictor for engines whose plan can make per-call state cheaply
//!   (tract's `Runnable::run`): each call gets a fresh per-thread predictor;
//! - [`Forward`]: per-thread and shared predictor alike for runtimes that take concurrent
//!   calls on one handle ([`RunConcurrently`]: a TensorFlow session, a TorchScript module, an
//!   ONNX Runtime session on the CPU provider);
//! - [`dims_i64`] / [`shape_from_i64`]: shapes across the FFI edge, checked both ways (a
//!   dimension that does not fit, a negative one, a product that overflows are errors);
//! - [`discover_outputs`]: run zeros once (twice with a batch axis) to learn output specs, for
//!   runtimes that do not declare them (TorchScript, MXNet symbols);
//! - [`dtype_from`] / [`dtype_to`]: one table per engine between its dtype codes and thrum's;
//!   the per-element conversions are [`dispatch_dtype!`](crate::dispatch_dtype) with a list of
//!   the dtypes the runtime has.
//!
//! Engines that load their native library at run time use the `thrum-native` crate for that.

use std::sync::Arc;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::model::{ModelBackend, PredictorBackend, SharedPredictorBackend};
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

/// A model whose runtime takes concurrent calls on one handle: its predictors are [`Forward`]s.
pub trait RunConcurrently: Send + Sync + 'static {
    /// One forward pass (inputs already checked against the model's specs).
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>>;
}

/// Per-thread and shared predictor alike, for a model whose runtime takes concurrent calls on
/// one handle: every call forwards to the model.
///
/// ```ignore
/// fn predictor(&self) -> Result<Box<dyn PredictorBackend>> {
///     Ok(Box::new(Forward(self.0.clone())))
/// }
/// fn shared_predictor(&self) -> Result<Box<dyn SharedPredictorBackend>> {
///     Ok(Box::new(Forward(self.0.clone())))
/// }
/// ```
pub struct Forward<M: RunConcurrently>(pub Arc<M>);

impl<M: RunConcurrently> PredictorBackend for Forward<M> {
    fn predict(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        self.0.run(inputs)
    }
}

impl<M: RunConcurrently> SharedPredictorBackend for Forward<M> {
    fn predict(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        self.0.run(inputs)
    }
}

/// A thrum shape as the `i64` dimensions C APIs take (ONNX Runtime, TensorFlow, libtorch):
/// every dimension of a [`Tensor`] fits (its invariant), so this only fails for shapes made
/// elsewhere.
pub fn dims_i64(shape: &[usize]) -> Result<Vec<i64>> {
    shape
        .iter()
        .map(|&d| {
            i64::try_from(d).map_err(|_| Error::InvalidValue {
                what: "tensor shape".into(),
                value: format!("{shape:?}"),
                expected: "dimensions of at most 2^63 - 1".into(),
            })
        })
        .collect()
}

/// The shape and element count of a `dtype` tensor whose dimensions a runtime reports as
/// `i64`: a negative dimension (a runtime's "unknown") is an error, never a silent 0, and the
/// count is checked ([`crate::tensor::checked_len`]) before anything is read or allocated.
pub fn shape_from_i64(dtype: DType, dims: &[i64]) -> Result<(Vec<usize>, usize)> {
    let shape = dims
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<std::result::Result<Vec<usize>, _>>()
        .map_err(|_| Error::InvalidValue {
            what: "a shape the engine reported".into(),
            value: format!("{dims:?}"),
            expected: "dimensions of at least 0 (the engine left one unknown)".into(),
        })?;
    let count = crate::tensor::checked_len(dtype, &shape)?;
    Ok((shape, count))
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
    fn shapes_cross_the_ffi_edge_checked() {
        assert_eq!(dims_i64(&[2, 3]).unwrap(), vec![2, 3]);
        assert!(dims_i64(&[usize::MAX]).is_err());
        assert_eq!(shape_from_i64(DType::F32, &[2, 0, 3]).unwrap(), (vec![2, 0, 3], 0));
        let e = shape_from_i64(DType::F32, &[2, -1]).unwrap_err().to_string();
        assert!(e.contains("[2, -1]") && e.contains("unknown"), "{e}");
        // An overflowing product, and one past the size limit: errors, not a wrap or an abort.
        assert!(shape_from_i64(DType::F32, &[1 << 40, 1 << 40]).is_err());
        assert!(shape_from_i64(DType::F32, &[1 << 20, 1 << 20, 1 << 10]).is_err());
        // Zero-element tensors with huge dimensions: every partial product stays in range.
        assert!(crate::tensor::checked_len(DType::F32, &[0, 1 << 40, 1 << 40]).is_err());
        assert!(crate::tensor::checked_len(DType::F32, &[0, usize::MAX]).is_err());
        assert_eq!(crate::tensor::checked_len(DType::F32, &[0, 3]).unwrap(), 0);
    }

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
