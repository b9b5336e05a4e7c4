//! Conversions between thrum tensors and ONNX Runtime values. Numeric tensors cross as
//! views (inputs, no copy) and one copy out (outputs), through the C API directly; string
//! tensors go through the `ort` crate's wrappers.

use ort::AsPointer;
use ort::session::Session;
use ort::sys::{ONNXTensorElementDataType as E, OrtValue};
use ort::value::{DynValue, Tensor as OrtTensor, TensorElementType};
use thrum_core::kit::{dtype_from, dtype_to};
use thrum_core::{DType, Error, NativeError, Result, Tensor, TensorData, dispatch_dtype};

use crate::ffi::{self, CpuMemory, OwnedValue};

/// An input value: a view of a thrum tensor's buffer, or (strings) an owned copy.
pub(crate) enum Input {
    View(OwnedValue),
    Owned(DynValue),
}

impl Input {
    pub(crate) fn ptr(&self) -> *const OrtValue {
        match self {
            Input::View(v) => v.ptr(),
            Input::Owned(v) => v.ptr(),
        }
    }
}

pub(crate) fn dtype(ty: TensorElementType) -> Option<DType> {
    Some(match ty {
        TensorElementType::Bool => DType::Bool,
        TensorElementType::Uint8 => DType::U8,
        TensorElementType::Uint16 => DType::U16,
        TensorElementType::Uint32 => DType::U32,
        TensorElementType::Uint64 => DType::U64,
        TensorElementType::Int8 => DType::I8,
        TensorElementType::Int16 => DType::I16,
        TensorElementType::Int32 => DType::I32,
        TensorElementType::Int64 => DType::I64,
        TensorElementType::Float16 => DType::F16,
        TensorElementType::Bfloat16 => DType::BF16,
        TensorElementType::Float32 => DType::F32,
        TensorElementType::Float64 => DType::F64,
        TensorElementType::String => DType::Bytes,
        _ => return None,
    })
}

fn fail(model: &str, reason: impl Into<NativeError>) -> Error {
    crate::engine::run_error(model, reason)
}

/// thrum's numeric dtypes and ONNX Runtime's element types.
const ELEMENTS: &[(DType, E)] = &[
    (DType::Bool, E::ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL),
    (DType::U8, E::ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8),
    (DType::U16, E::ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16),
    (DType::U32, E::ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32),
    (DType::U64, E::ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64),
    (DType::I8, E::ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8),
    (DType::I16, E::ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16),
    (DType::I32, E::ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32),
    (DType::I64, E::ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64),
    (DType::F16, E::ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16),
    (DType::BF16, E::ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16),
    (DType::F32, E::ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT),
    (DType::F64, E::ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE),
];

/// thrum's dtype for ONNX Runtime's element type, if it has one.
pub(crate) fn dtype_of(element: E) -> Option<DType> {
    dtype_from(ELEMENTS, &element)
}

/// ONNX Runtime's element type for a numeric dtype; `None` for byte strings.
pub(crate) fn element(dtype: DType) -> Option<E> {
    dtype_to(ELEMENTS, dtype)
}

/// The elements of a numeric tensor as raw bytes (native layout, which is ONNX Runtime's);
/// `None` for byte strings.
pub(crate) fn bytes(tensor: &Tensor) -> Option<&[u8]> {
    tensor.raw_bytes()
}

/// A view of `tensor` that ONNX Runtime reads in place (no copy), or an owned string tensor.
/// Views borrow the tensor's buffer: drop them before the tensor.
pub(crate) fn to_ort(tensor: &Tensor, memory: &CpuMemory, model: &str) -> Result<Input> {
    let shape = thrum_core::kit::dims_i64(tensor.shape())?;
    let value = match (bytes(tensor), element(tensor.dtype())) {
        (Some(data), Some(element)) => {
            ffi::tensor_over(memory, data, &shape, element).map(Input::View)
        }
        _ => {
            let TensorData::Bytes(v) = tensor.data() else {
                return Err(fail(
                    model,
                    format!("no ONNX Runtime type for {}", tensor.dtype().name()),
                ));
            };
            let strings: Vec<String> = v
                .iter()
                .map(|b| String::from_utf8(b.clone()))
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| fail(model, "string inputs must be UTF-8 for ONNX Runtime"))?;
            return OrtTensor::from_string_array((shape, strings.as_slice()))
                .map(|t| Input::Owned(t.into_dyn()))
                .map_err(|e| fail(model, e.to_string()));
        }
    };
    value.map_err(|e| fail(model, e))
}

/// Copies an output value into a thrum tensor.
pub(crate) fn from_ort(value: OwnedValue, session: &Session, model: &str) -> Result<Tensor> {
    let parts = ffi::tensor_parts(&value).map_err(|e| fail(model, e))?;
    if parts.element == E::ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING {
        let value = value.into_dyn(session);
        let (shape, strings) =
            value.try_extract_strings().map_err(|e| fail(model, e.to_string()))?;
        let (shape, _) = thrum_core::kit::shape_from_i64(DType::Bytes, shape)?;
        return Tensor::from_vec(
            shape,
            strings.into_iter().map(String::into_bytes).collect::<Vec<_>>(),
        );
    }
    copy_out(&parts, model)
}

/// Copies the numeric tensor `parts` describes into a thrum tensor. The value they were read
/// from must be alive.
pub(crate) fn copy_out(parts: &ffi::TensorParts, model: &str) -> Result<Tensor> {
    let dtype = dtype_from(ELEMENTS, &parts.element).ok_or_else(|| {
        fail(model, format!("output element type {:?} has no thrum dtype", parts.element))
    })?;
    if dtype == DType::Bool {
        // A runtime's bool buffer may hold any byte; a Rust `bool` must be 0 or 1. Read bytes,
        // decoded as `b != 0`.
        let bytes = if parts.count == 0 {
            &[][..]
        } else {
            // SAFETY: ONNX Runtime reports `count` (> 0) one-byte bools at `data`, valid while
            // the value lives (callers keep it alive across this copy).
            unsafe { std::slice::from_raw_parts(parts.data.cast::<u8>(), parts.count) }
        };
        return Tensor::from_le_bytes(dtype, &parts.shape, bytes);
    }
    dispatch_dtype!(
        dtype,
        [U8, U16, U32, U64, I8, I16, I32, I64, F16, BF16, F32, F64] T => {
            // An empty tensor may have no buffer at all (a null pointer).
            let data = if parts.count == 0 {
                Vec::<T>::new()
            } else {
                // SAFETY: ONNX Runtime reports `count` (> 0) elements of this type at `data`,
                // valid while the value lives (callers keep it alive across this copy).
                unsafe { std::slice::from_raw_parts(parts.data.cast::<T>(), parts.count) }.to_vec()
            };
            Tensor::from_vec(parts.shape.clone(), data)
        },
        other => Err(fail(model, format!("output element type {other} is not numeric"))),
    )
}
