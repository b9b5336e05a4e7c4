//! How a per-thread predictor runs: through an ONNX Runtime IoBinding that it keeps across
//! calls. `Run` looks every input and output up by name and sets up its feeds and fetches on
//! each call; a binding does that once. Measured on the zoo MLP, that is most of the per-call
//! cost thrum can remove (docs/performance.md).
//!
//! - Inputs up to [`COPY_LIMIT`] bytes are copied into buffers bound once per shape; larger
//!   ones are bound as views of the caller's buffer on every call (copying them would cost
//!   more than the binding saves, and keep a copy alive per predictor).
//! - Outputs, when the model declares every output dimension as fixed or named after an input
//!   dimension (so same input shapes give same output shapes): the first run with a set of
//!   input shapes lets ONNX Runtime allocate them; their buffers are then bound, so later runs
//!   with the same shapes write into them and thrum reads them without asking for their shape.
//!   Other models (an output whose shape depends on the input values, like `NonZero`'s) have
//!   their outputs rebound for ONNX Runtime to allocate before every run: ONNX Runtime would
//!   otherwise write into the previous run's output and fail when the shape changes. A model
//!   whose declared output shapes are wrong fails once with bound outputs (ONNX Runtime logs
//!   that error); the run is retried with allocated outputs, and the predictor stops binding
//!   them.
//!
//! The shared predictor cannot use a binding (it is one set of buffers) and calls `Run`.

use std::ffi::c_void;

use ort::session::Session;
use thrum_core::{DType, Dim, Error, Result, Tensor};

use crate::convert;
use crate::engine::OrtModel;
use crate::ffi::{self, IoBinding, OwnedValue, RunOptions, TensorParts};

/// Inputs up to this size are copied into bound buffers; larger ones are bound as views.
pub(crate) const COPY_LIMIT: usize = 64 * 1024;

/// What is bound to one input.
struct Slot {
    dtype: DType,
    shape: Vec<usize>,
    /// The buffer bound once, which each call copies into; `None` when the input is bound as
    /// a view of the caller's buffer on each call.
    buffer: Option<(OwnedValue, *mut c_void)>,
}

/// An output buffer bound for the current input shapes.
struct BoundOutput {
    value: OwnedValue,
    parts: TensorParts,
}

/// A per-thread predictor's binding on one session.
pub(crate) struct Binding {
    binding: IoBinding,
    inputs: Vec<Option<Slot>>,
    /// Outputs bound for the current input shapes, once a run with them has succeeded.
    outputs: Option<Vec<BoundOutput>>,
    /// Whether outputs are bound across runs: the model's output shapes follow its input
    /// shapes, and no run with bound outputs has failed where one with allocated outputs did not.
    bind_outputs: bool,
}

// SAFETY: the raw pointers in a `Binding` point into values it owns (`Slot::buffer`,
// `BoundOutput::value`), which live as long as it; it is used only through `&mut self`, from
// one thread at a time, and ONNX Runtime values and bindings are not tied to a thread.
unsafe impl Send for Binding {}

impl Binding {
    /// A binding for `model` on `session` (the model's or the predictor's own), or `None` when
    /// the model has string inputs or outputs, which cannot be bound as raw buffers, or runs on
    /// an accelerator provider.
    pub(crate) fn new(model: &OrtModel, session: &Session) -> Result<Option<Binding>> {
        let strings = model.inputs.iter().chain(&model.outputs).any(|s| s.dtype == DType::Bytes);
        if strings || model.exclusive.is_some() {
            return Ok(None);
        }
        // Named input dimensions: an output dimension named after one has the input's size.
        let symbols: Vec<&str> = model
            .inputs
            .iter()
            .flat_map(|s| &s.shape)
            .filter_map(|d| match d {
                Dim::Dynamic(Some(name)) => Some(name.as_str()),
                _ => None,
            })
            .collect();
        let bind_outputs = model.outputs.iter().flat_map(|s| &s.shape).all(|d| match d {
            Dim::Fixed(_) => true,
            Dim::Dynamic(Some(name)) => symbols.contains(&name.as_str()),
            Dim::Dynamic(None) => false,
        });
        Ok(Some(Binding {
            binding: IoBinding::new(session).map_err(|e| model.fail(e))?,
            inputs: model.inputs.iter().map(|_| None).collect(),
            outputs: None,
            bind_outputs,
        }))
    }

    /// Lets ONNX Runtime allocate every output on the next run (and forgets the outputs of
    /// the last one, which the binding would otherwise write into).
    fn outputs_to_cpu(&mut self, model: &OrtModel) -> Result<()> {
        self.outputs = None;
        self.binding.clear_outputs();
        for &name in &model.output_names.ptrs {
            self.binding.bind_output_to_cpu(name, &model.memory).map_err(|e| model.fail(e))?;
        }
        Ok(())
    }

    /// Runs `session` (the one this binding was made on) on `inputs`.
    pub(crate) fn run(
        &mut self,
        model: &OrtModel,
        session: &Session,
        options: &RunOptions,
        inputs: &[Tensor],
    ) -> Result<Vec<Tensor>> {
        if inputs.len() != self.inputs.len() {
            return Err(model.fail(format!(
                "{} inputs given, the model takes {}",
                inputs.len(),
                self.inputs.len()
            )));
        }
        // Views bound for this call; the caller's `inputs` outlive the run below.
        let mut views = Vec::new();
        let mut reshaped = false;
        for (k, tensor) in inputs.iter().enumerate() {
            let data = convert::bytes(tensor).ok_or_else(|| {
                model.fail(format!("input {k} holds byte strings, which the model does not take"))
            })?;
            let same = self.inputs[k]
                .as_ref()
                .is_some_and(|s| s.dtype == tensor.dtype() && s.shape == tensor.shape());
            let copy = data.len() <= COPY_LIMIT;
            let name = model.input_names.ptrs[k];
            match &self.inputs[k] {
                Some(Slot { buffer: Some((_, buffer)), .. }) if same && copy => {
                    fill(*buffer, data);
                }
                _ if copy => {
                    let element = convert::element(tensor.dtype())
                        .ok_or_else(|| model.fail("byte strings cannot be bound"))?;
                    let shape = thrum_core::kit::dims_i64(tensor.shape())?;
                    let (value, buffer) =
                        ffi::allocate_tensor(&shape, element).map_err(|e| model.fail(e))?;
                    fill(buffer, data);
                    self.binding.bind_input(name, value.ptr()).map_err(|e| model.fail(e))?;
                    self.inputs[k] = Some(Slot {
                        dtype: tensor.dtype(),
                        shape: tensor.shape().to_vec(),
                        buffer: Some((value, buffer)),
                    });
                }
                _ => {
                    let view = convert::to_ort(tensor, &model.memory, &model.name)?;
                    self.binding.bind_input(name, view.ptr()).map_err(|e| model.fail(e))?;
                    views.push(view);
                    if !same || self.inputs[k].as_ref().is_some_and(|s| s.buffer.is_some()) {
                        self.inputs[k] = Some(Slot {
                            dtype: tensor.dtype(),
                            shape: tensor.shape().to_vec(),
                            buffer: None,
                        });
                    }
                }
            }
            reshaped |= !same;
        }
        if reshaped || self.outputs.is_none() {
            self.outputs_to_cpu(model)?;
        }
        if let Err(first) = self.binding.run(session, options) {
            if self.outputs.is_none() {
                return Err(model.fail(first));
            }
            // The bound outputs may not fit this call (see the module docs): retry once with
            // outputs allocated by ONNX Runtime.
            self.outputs_to_cpu(model)?;
            self.binding.run(session, options).map_err(|e| model.fail(e))?;
            self.bind_outputs = false;
        }
        drop(views);
        if let Some(outputs) = &self.outputs {
            return outputs.iter().map(|o| convert::copy_out(&o.parts, &model.name)).collect();
        }
        let values = self.binding.outputs().map_err(|e| model.fail(e))?;
        let mut tensors = Vec::with_capacity(values.len());
        let mut bound = Vec::with_capacity(values.len());
        for value in values {
            let parts = ffi::tensor_parts(&value).map_err(|e| model.fail(e))?;
            tensors.push(convert::copy_out(&parts, &model.name)?);
            bound.push(BoundOutput { value, parts });
        }
        if self.bind_outputs {
            for (&name, output) in model.output_names.ptrs.iter().zip(&bound) {
                self.binding.bind_output(name, &output.value).map_err(|e| model.fail(e))?;
            }
            self.outputs = Some(bound);
        }
        Ok(tensors)
    }
}

/// Copies an input into the buffer ONNX Runtime allocated for its dtype and shape, which is
/// `data.len()` bytes (an empty tensor's may be null).
fn fill(buffer: *mut c_void, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    // SAFETY: `buffer` was allocated by ONNX Runtime for a tensor of this input's dtype and
    // shape, so it holds exactly `data.len()` (> 0) bytes, and is owned by the binding's slot,
    // so it cannot overlap the caller's tensor.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), buffer.cast::<u8>(), data.len()) };
}

impl OrtModel {
    /// An inference error on this model, of the kind its ONNX Runtime code (if any) means.
    pub(crate) fn fail(&self, reason: impl Into<thrum_core::NativeError>) -> Error {
        crate::engine::run_error(&self.name, reason)
    }
}
