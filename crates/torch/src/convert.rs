//! Conversions between thrum tensors and tch tensors (one copy each way: a TorchScript model
//! may modify its inputs in place, and thrum's buffers are shared).

use tch::{Kind, Tensor as TchTensor};
use thrum_core::{DType, Error, Result, Tensor, TensorData};

use crate::ENGINE;

fn fail(model: &str, reason: impl std::fmt::Display) -> Error {
    Error::inference(ENGINE, model, reason)
}

/// libtorch's kind for a dtype; `None` for the dtypes libtorch lacks.
pub fn kind(dtype: DType) -> Option<Kind> {
    Some(match dtype {
        DType::Bool => Kind::Bool,
        DType::U8 => Kind::Uint8,
        DType::I8 => Kind::Int8,
        DType::I16 => Kind::Int16,
        DType::I32 => Kind::Int,
        DType::I64 => Kind::Int64,
        DType::F16 => Kind::Half,
        DType::BF16 => Kind::BFloat16,
        DType::F32 => Kind::Float,
        DType::F64 => Kind::Double,
        DType::U16 | DType::U32 | DType::U64 | DType::Bytes => return None,
    })
}

/// A thrum tensor as a libtorch tensor (a copy).
pub fn to_tch(tensor: &Tensor, model: &str) -> Result<TchTensor> {
    let shape = thrum_core::kit::dims_i64(tensor.shape())?;
    let flat = match tensor.data() {
        TensorData::Bool(v) => TchTensor::f_from_slice(v),
        TensorData::U8(v) => TchTensor::f_from_slice(v),
        TensorData::I8(v) => TchTensor::f_from_slice(v),
        TensorData::I16(v) => TchTensor::f_from_slice(v),
        TensorData::I32(v) => TchTensor::f_from_slice(v),
        TensorData::I64(v) => TchTensor::f_from_slice(v),
        TensorData::F16(v) => TchTensor::f_from_slice(v),
        TensorData::BF16(v) => TchTensor::f_from_slice(v),
        TensorData::F32(v) => TchTensor::f_from_slice(v),
        TensorData::F64(v) => TchTensor::f_from_slice(v),
        other => {
            return Err(Error::Unsupported {
                engine: ENGINE,
                feature: format!("{} tensors", other.dtype()),
                reason: format!("libtorch has no {} type (model `{model}`)", other.dtype()),
            });
        }
    };
    flat.and_then(|t| t.f_reshape(shape.as_slice())).map_err(|e| fail(model, e))
}

/// A libtorch tensor (dense, CPU) as a thrum tensor.
pub fn from_tch(tensor: &TchTensor, model: &str) -> Result<Tensor> {
    let tensor = tensor.f_contiguous().map_err(|e| fail(model, e))?;
    let kind = tensor.kind();
    let sizing = match kind {
        Kind::Bool | Kind::Uint8 | Kind::Int8 => DType::U8,
        Kind::Int16 | Kind::Half | Kind::BFloat16 => DType::I16,
        Kind::Int | Kind::Float => DType::I32,
        _ => DType::I64,
    };
    // A negative dimension or an overflowing count is an error, before anything is allocated.
    let (shape, n) = thrum_core::kit::shape_from_i64(sizing, &tensor.size())?;
    macro_rules! copy {
        ($t:ty, $zero:expr) => {{
            let mut data: Vec<$t> = vec![$zero; n];
            tensor.f_copy_data(&mut data, n).map_err(|e| fail(model, e))?;
            Tensor::from_vec(shape, data)
        }};
    }
    match kind {
        // libtorch's bool buffer may hold any byte; a Rust `bool` must be 0 or 1: copy the
        // bytes (a u8 view of the same storage) and decode them as `b != 0`.
        Kind::Bool => {
            let bytes = tensor.f_view_dtype(Kind::Uint8).map_err(|e| fail(model, e))?;
            let mut raw = vec![0u8; n];
            bytes.f_copy_data(&mut raw, n).map_err(|e| fail(model, e))?;
            Tensor::from_le_bytes(DType::Bool, &shape, &raw)
        }
        Kind::Uint8 => copy!(u8, 0),
        Kind::Int8 => copy!(i8, 0),
        Kind::Int16 => copy!(i16, 0),
        Kind::Int => copy!(i32, 0),
        Kind::Int64 => copy!(i64, 0),
        Kind::Half => copy!(thrum_core::half::f16, thrum_core::half::f16::ZERO),
        Kind::BFloat16 => copy!(thrum_core::half::bf16, thrum_core::half::bf16::ZERO),
        Kind::Float => copy!(f32, 0.0),
        Kind::Double => copy!(f64, 0.0),
        other => Err(fail(model, format!("output of kind {other:?} has no thrum dtype"))),
    }
}
