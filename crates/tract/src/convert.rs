//! Conversions between thrum's tensors and dtypes and tract's.

use thrum_core::{DType, Error, Result, Tensor, TensorData};
use tract_onnx::prelude::{DatumType, Tensor as TractTensor, tract_ndarray};

use crate::ENGINE;

/// thrum dtype of a tract datum type, if thrum has one.
pub(crate) fn dtype(dt: DatumType) -> Option<DType> {
    Some(match dt {
        DatumType::Bool => DType::Bool,
        DatumType::U8 => DType::U8,
        DatumType::U16 => DType::U16,
        DatumType::U32 => DType::U32,
        DatumType::U64 => DType::U64,
        DatumType::I8 => DType::I8,
        DatumType::I16 => DType::I16,
        DatumType::I32 => DType::I32,
        DatumType::I64 => DType::I64,
        DatumType::F16 => DType::F16,
        DatumType::F32 => DType::F32,
        DatumType::F64 => DType::F64,
        DatumType::String => DType::Bytes,
        _ => return None,
    })
}

/// A thrum tensor as a tract tensor (one copy into tract's aligned storage).
pub(crate) fn to_tract(tensor: &Tensor, model: &str) -> Result<TractTensor> {
    let shape = tensor.shape();
    let converted = match tensor.data() {
        TensorData::Bool(v) => TractTensor::from_shape(shape, v),
        TensorData::U8(v) => TractTensor::from_shape(shape, v),
        TensorData::U16(v) => TractTensor::from_shape(shape, v),
        TensorData::U32(v) => TractTensor::from_shape(shape, v),
        TensorData::U64(v) => TractTensor::from_shape(shape, v),
        TensorData::I8(v) => TractTensor::from_shape(shape, v),
        TensorData::I16(v) => TractTensor::from_shape(shape, v),
        TensorData::I32(v) => TractTensor::from_shape(shape, v),
        TensorData::I64(v) => TractTensor::from_shape(shape, v),
        TensorData::F16(v) => TractTensor::from_shape(shape, v),
        TensorData::F32(v) => TractTensor::from_shape(shape, v),
        TensorData::F64(v) => TractTensor::from_shape(shape, v),
        TensorData::BF16(_) => {
            return Err(Error::Unsupported {
                engine: ENGINE,
                feature: "bf16 tensors".into(),
                reason: format!(
                    "tract has no bf16 type (model `{model}`); convert the input to f32 or f16"
                ),
            });
        }
        TensorData::Bytes(v) => {
            let strings = v
                .iter()
                .map(|b| String::from_utf8(b.clone()))
                .collect::<std::result::Result<Vec<String>, _>>()
                .map_err(|_| Error::Unsupported {
                    engine: ENGINE,
                    feature: "non-UTF-8 byte strings".into(),
                    reason: format!("tract string tensors hold UTF-8 text (model `{model}`)"),
                })?;
            tract_ndarray::ArrayD::from_shape_vec(shape, strings)
                .map(TractTensor::from)
                .map_err(|e| e.into())
        }
    };
    converted.map_err(|e| Error::Inference {
        engine: ENGINE,
        model: model.into(),
        reason: format!("{e:#}"),
    })
}

/// A tract tensor as a thrum tensor (one copy out of tract's storage).
pub(crate) fn from_tract(tensor: &TractTensor, model: &str) -> Result<Tensor> {
    let fail = |reason: String| Error::Inference { engine: ENGINE, model: model.into(), reason };
    let plain = tensor.try_as_plain_ram().map_err(|e| fail(format!("{e:#}")))?;
    let shape = tensor.shape().to_vec();
    macro_rules! copy {
        ($t:ty) => {
            Tensor::from_vec(
                shape,
                plain.as_slice::<$t>().map_err(|e| fail(format!("{e:#}")))?.to_vec(),
            )
        };
    }
    match tensor.datum_type() {
        DatumType::Bool => copy!(bool),
        DatumType::U8 => copy!(u8),
        DatumType::U16 => copy!(u16),
        DatumType::U32 => copy!(u32),
        DatumType::U64 => copy!(u64),
        DatumType::I8 => copy!(i8),
        DatumType::I16 => copy!(i16),
        DatumType::I32 => copy!(i32),
        DatumType::I64 => copy!(i64),
        DatumType::F16 => copy!(thrum_core::half::f16),
        DatumType::F32 => copy!(f32),
        DatumType::F64 => copy!(f64),
        DatumType::String => {
            let strings = plain.as_slice::<String>().map_err(|e| fail(format!("{e:#}")))?;
            Tensor::from_vec(
                shape,
                strings.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>(),
            )
        }
        other => Err(fail(format!("output of tract type {other:?} has no thrum dtype"))),
    }
}
