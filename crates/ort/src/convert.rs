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

/// A view of `tensor` that ONNX Runtime reads in place (no copy), or an owned string tensor.
/// Views borrow the tensor's buffer: drop them before the tensor.
pub(crate) fn to_ort(tensor: &Tensor, memory: &CpuMemory, model: &str) -> Result<Input> {
    let shape: Vec<i64> = tensor.shape().iter().map(|&d| d as i64).collect();
    macro_rules! view {
        ($v:expr, $e:ident) => {
            ffi::tensor_over(memory, $v.as_slice(), &shape, E::$e).map(Input::View)
        };
    }
    let value = match tensor.data() {
        TensorData::Bool(v) => view!(v, ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL),
        TensorData::U8(v) => view!(v, ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8),
        TensorData::U16(v) => view!(v, ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16),
        TensorData::U32(v) => view!(v, ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32),
        TensorData::U64(v) => view!(v, ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64),
        TensorData::I8(v) => view!(v, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8),
        TensorData::I16(v) => view!(v, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16),
        TensorData::I32(v) => view!(v, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32),
        TensorData::I64(v) => view!(v, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64),
        TensorData::F16(v) => view!(v, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16),
        TensorData::BF16(v) => view!(v, ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16),
        TensorData::F32(v) => view!(v, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT),
        TensorData::F64(v) => view!(v, ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE),
        TensorData::Bytes(v) => {
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
    macro_rules! copy {
        ($t:ty) => {{
            // SAFETY: ONNX Runtime reports `count` elements of this type at `data`, valid while
            // `value` lives; they are copied out before it is released.
            let data = unsafe { std::slice::from_raw_parts(parts.data.cast::<$t>(), parts.count) }
                .to_vec();
            Tensor::from_vec(parts.shape, data)
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
        E::ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING => {
            let value = value.into_dyn(session);
            let (shape, strings) = value.try_extract_strings().map_err(|e| fail(model, e))?;
            let shape: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
            Tensor::from_vec(shape, strings.into_iter().map(String::into_bytes).collect::<Vec<_>>())
        }
        other => Err(fail(model, format!("output element type {other:?} has no thrum dtype"))),
    }
}
