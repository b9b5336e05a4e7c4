//! Conversions between thrum tensors and ONNX Runtime values. Numeric tensors cross as
//! views (inputs, no copy) and one copy out (outputs), through the C API directly; string
//! tensors go through the `ort` crate's wrappers.

use ort::AsPointer;
use ort::session::Session;
use ort::sys::{ONNXTensorElementDataType as E, OrtValue};
use ort::value::{DynValue, Tensor as OrtTensor, TensorElementType};
use thrum_core::{DType, Error, Result, Tensor, TensorData};

use crate::ENGINE;
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

fn fail(model: &str, reason: impl std::fmt::Display) -> Error {
    Error::Inference { engine: ENGINE, model: model.into(), reason: reason.to_string() }
}

/// ONNX Runtime's element type for a numeric dtype; `None` for byte strings.
pub(crate) fn element(dtype: DType) -> Option<E> {
    Some(match dtype {
        DType::Bool => E::ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL,
        DType::U8 => E::ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8,
        DType::U16 => E::ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16,
        DType::U32 => E::ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32,
        DType::U64 => E::ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64,
        DType::I8 => E::ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8,
        DType::I16 => E::ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16,
        DType::I32 => E::ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32,
        DType::I64 => E::ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64,
        DType::F16 => E::ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16,
        DType::BF16 => E::ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16,
        DType::F32 => E::ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT,
        DType::F64 => E::ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE,
        DType::Bytes => return None,
    })
}

/// The elements of a numeric tensor as raw bytes (native layout, which is ONNX Runtime's);
/// `None` for byte strings.
pub(crate) fn bytes(tensor: &Tensor) -> Option<&[u8]> {
    fn raw<T: Copy>(v: &[T]) -> &[u8] {
        // SAFETY: `v` is an initialised slice of a plain numeric (or bool, whose byte is 0 or 1)
        // type without padding; viewing its memory as bytes for its byte length is sound.
        unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
    }
    Some(match tensor.data() {
        TensorData::Bool(v) => raw(v),
        TensorData::U8(v) => raw(v),
        TensorData::U16(v) => raw(v),
        TensorData::U32(v) => raw(v),
        TensorData::U64(v) => raw(v),
        TensorData::I8(v) => raw(v),
        TensorData::I16(v) => raw(v),
        TensorData::I32(v) => raw(v),
        TensorData::I64(v) => raw(v),
        TensorData::F16(v) => raw(v),
        TensorData::BF16(v) => raw(v),
        TensorData::F32(v) => raw(v),
        TensorData::F64(v) => raw(v),
        TensorData::Bytes(_) => return None,
    })
}

/// A view of `tensor` that ONNX Runtime reads in place (no copy), or an owned string tensor.
/// Views borrow the tensor's buffer: drop them before the tensor.
pub(crate) fn to_ort(tensor: &Tensor, memory: &CpuMemory, model: &str) -> Result<Input> {
    let shape: Vec<i64> = tensor.shape().iter().map(|&d| d as i64).collect();
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
                .map_err(|e| fail(model, e));
        }
    };
    value.map_err(|e| fail(model, e))
}

/// Copies an output value into a thrum tensor.
pub(crate) fn from_ort(value: OwnedValue, session: &Session, model: &str) -> Result<Tensor> {
    let parts = ffi::tensor_parts(&value).map_err(|e| fail(model, e))?;
    if parts.element == E::ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING {
        let value = value.into_dyn(session);
        let (shape, strings) = value.try_extract_strings().map_err(|e| fail(model, e))?;
        let shape: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
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
    macro_rules! copy {
        ($t:ty) => {{
            // An empty tensor may have no buffer at all (a null pointer).
            let data = if parts.count == 0 {
                Vec::<$t>::new()
            } else {
                // SAFETY: ONNX Runtime reports `count` (> 0) elements of this type at `data`,
                // valid while the value lives (callers keep it alive across this copy).
                unsafe { std::slice::from_raw_parts(parts.data.cast::<$t>(), parts.count) }.to_vec()
            };
            Tensor::from_vec(parts.shape.clone(), data)
        }};
    }
    match parts.element {
        E::ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL => copy!(bool),
        E::ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 => copy!(u8),
        E::ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16 => copy!(u16),
        E::ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32 => copy!(u32),
        E::ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64 => copy!(u64),
        E::ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8 => copy!(i8),
        E::ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16 => copy!(i16),
        E::ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 => copy!(i32),
        E::ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 => copy!(i64),
        E::ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16 => copy!(thrum_core::half::f16),
        E::ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16 => copy!(thrum_core::half::bf16),
        E::ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT => copy!(f32),
        E::ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE => copy!(f64),
        other => Err(fail(model, format!("output element type {other:?} has no thrum dtype"))),
    }
}
