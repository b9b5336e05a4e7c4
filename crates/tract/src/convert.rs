//! Conversions between thrum's tensors and dtypes and tract's: one table of dtypes, and one
//! generic copy each way through `dispatch_dtype!` over the dtypes tract has.

use thrum_core::kit::{dtype_from, dtype_to};
use thrum_core::{DType, Error, Result, Tensor, dispatch_dtype};
use tract_onnx::prelude::{DatumType, Tensor as TractTensor, tract_ndarray};

use crate::ENGINE;

/// thrum's dtypes and tract's datum types (tract has no bf16).
const DTYPES: &[(DType, DatumType)] = &[
    (DType::Bool, DatumType::Bool),
    (DType::U8, DatumType::U8),
    (DType::U16, DatumType::U16),
    (DType::U32, DatumType::U32),
    (DType::U64, DatumType::U64),
    (DType::I8, DatumType::I8),
    (DType::I16, DatumType::I16),
    (DType::I32, DatumType::I32),
    (DType::I64, DatumType::I64),
    (DType::F16, DatumType::F16),
    (DType::F32, DatumType::F32),
    (DType::F64, DatumType::F64),
    (DType::Bytes, DatumType::String),
];

/// thrum dtype of a tract datum type, if thrum has one.
pub(crate) fn dtype(dt: DatumType) -> Option<DType> {
    dtype_from(DTYPES, &dt)
}

/// tract's datum type of a thrum dtype; thrum's dtypes without one (bf16) map to f32, which
/// [`to_tract`] refuses to feed them as.
pub(crate) fn datum_type(dtype: DType) -> DatumType {
    dtype_to(DTYPES, dtype).unwrap_or(DatumType::F32)
}

/// A thrum tensor as a tract tensor (one copy into tract's aligned storage).
pub(crate) fn to_tract(tensor: &Tensor, model: &str) -> Result<TractTensor> {
    let shape = tensor.shape();
    let converted = dispatch_dtype!(
        tensor.dtype(),
        [Bool, U8, U16, U32, U64, I8, I16, I32, I64, F16, F32, F64] T =>
            TractTensor::from_shape(shape, tensor.as_slice::<T>()?),
        DType::Bytes => {
            let strings = tensor
                .as_slice::<Vec<u8>>()?
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
        },
        other => {
            debug_assert!(dtype_to(DTYPES, other).is_none());
            return Err(Error::Unsupported {
                engine: ENGINE,
                feature: format!("{other} tensors"),
                reason: format!(
                    "tract has no {other} type (model `{model}`); convert the input to f32 or f16"
                ),
            });
        }
    );
    converted.map_err(|e| Error::inference(ENGINE, model, format!("{e:#}")))
}

/// A tract tensor as a thrum tensor (one copy out of tract's storage).
pub(crate) fn from_tract(tensor: &TractTensor, model: &str) -> Result<Tensor> {
    let fail = |reason: String| Error::inference(ENGINE, model, reason);
    let plain = tensor.try_as_plain_ram().map_err(|e| fail(format!("{e:#}")))?;
    let shape = tensor.shape().to_vec();
    let dtype = dtype(tensor.datum_type()).ok_or_else(|| {
        fail(format!("output of tract type {:?} has no thrum dtype", tensor.datum_type()))
    })?;
    dispatch_dtype!(
        dtype,
        [Bool, U8, U16, U32, U64, I8, I16, I32, I64, F16, F32, F64] T =>
            Tensor::from_vec(shape, plain.as_slice::<T>().map_err(|e| fail(format!("{e:#}")))?.to_vec()),
        _ => {
            let strings = plain.as_slice::<String>().map_err(|e| fail(format!("{e:#}")))?;
            Tensor::from_vec(shape, strings.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>())
        }
    )
}
