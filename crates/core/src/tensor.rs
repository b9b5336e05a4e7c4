//! [`Tensor`]: a dtype, a shape and a shared, contiguous buffer.

use std::fmt;
use std::sync::Arc;

use half::{bf16, f16};
use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};

use crate::dtype::{DType, Element};
use crate::error::{Error, Result};

/// Runs `$body` with `$t` bound to the Rust element type of `$dtype`.
///
/// Engine crates use it to write one generic conversion instead of fourteen match arms:
///
/// ```
/// use thrum_core::{dispatch_dtype, DType, Tensor};
/// fn element_count(t: &Tensor) -> usize {
///     dispatch_dtype!(t.dtype(), T => t.as_slice::<T>().map(|s| s.len()).unwrap_or(0))
/// }
/// assert_eq!(element_count(&Tensor::zeros(DType::I64, &[2, 3])?), 6);
/// # Ok::<(), thrum_core::Error>(())
/// ```
///
/// With a list of dtypes, only those get the generic body and every other dtype the fallback:
/// what an engine writes when its runtime lacks some types.
///
/// ```
/// use thrum_core::{dispatch_dtype, DType};
/// fn size(dtype: DType) -> Option<usize> {
///     dispatch_dtype!(dtype, [F32, I64] T => Some(std::mem::size_of::<T>()), _ => None)
/// }
/// assert_eq!((size(DType::I64), size(DType::Bool)), (Some(8), None));
/// ```
#[macro_export]
macro_rules! dispatch_dtype {
    ($dtype:expr, $t:ident => $body:expr) => {
        match $dtype {
            $crate::DType::Bool => {
                type $t = bool;
                $body
            }
            $crate::DType::U8 => {
                type $t = u8;
                $body
            }
            $crate::DType::U16 => {
                type $t = u16;
                $body
            }
            $crate::DType::U32 => {
                type $t = u32;
                $body
            }
            $crate::DType::U64 => {
                type $t = u64;
                $body
            }
            $crate::DType::I8 => {
                type $t = i8;
                $body
            }
            $crate::DType::I16 => {
                type $t = i16;
                $body
            }
            $crate::DType::I32 => {
                type $t = i32;
                $body
            }
            $crate::DType::I64 => {
                type $t = i64;
                $body
            }
            $crate::DType::F16 => {
                type $t = $crate::half::f16;
                $body
            }
            $crate::DType::BF16 => {
                type $t = $crate::half::bf16;
                $body
            }
            $crate::DType::F32 => {
                type $t = f32;
                $body
            }
            $crate::DType::F64 => {
                type $t = f64;
                $body
            }
            $crate::DType::Bytes => {
                type $t = Vec<u8>;
                $body
            }
        }
    };
    ($dtype:expr, [$($variant:ident),+ $(,)?] $t:ident => $body:expr, $($other:pat => $fallback:expr),+ $(,)?) => {
        match $dtype {
            $($crate::DType::$variant => {
                type $t = $crate::__element_type!($variant);
                $body
            })+
            $($other => $fallback,)+
        }
    };
}

/// The Rust element type of a [`DType`] variant name (`F32` → `f32`), for `dispatch_dtype!`.
#[doc(hidden)]
#[macro_export]
macro_rules! __element_type {
    (Bool) => { bool };
    (U8) => { u8 };
    (U16) => { u16 };
    (U32) => { u32 };
    (U64) => { u64 };
    (I8) => { i8 };
    (I16) => { i16 };
    (I32) => { i32 };
    (I64) => { i64 };
    (F16) => { $crate::half::f16 };
    (BF16) => { $crate::half::bf16 };
    (F32) => { f32 };
    (F64) => { f64 };
    (Bytes) => { Vec<u8> };
}

/// The typed storage behind a [`Tensor`]: one shared vector per dtype.
///
/// Cloning is a reference-count increment. Engines match on it to reach the typed data.
#[derive(Clone)]
#[allow(missing_docs)]
pub enum TensorData {
    Bool(Arc<Vec<bool>>),
    U8(Arc<Vec<u8>>),
    U16(Arc<Vec<u16>>),
    U32(Arc<Vec<u32>>),
    U64(Arc<Vec<u64>>),
    I8(Arc<Vec<i8>>),
    I16(Arc<Vec<i16>>),
    I32(Arc<Vec<i32>>),
    I64(Arc<Vec<i64>>),
    F16(Arc<Vec<f16>>),
    BF16(Arc<Vec<bf16>>),
    F32(Arc<Vec<f32>>),
    F64(Arc<Vec<f64>>),
    Bytes(Arc<Vec<Vec<u8>>>),
}

impl TensorData {
    /// The dtype of the stored elements.
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::Bool(_) => DType::Bool,
            TensorData::U8(_) => DType::U8,
            TensorData::U16(_) => DType::U16,
            TensorData::U32(_) => DType::U32,
            TensorData::U64(_) => DType::U64,
            TensorData::I8(_) => DType::I8,
            TensorData::I16(_) => DType::I16,
            TensorData::I32(_) => DType::I32,
            TensorData::I64(_) => DType::I64,
            TensorData::F16(_) => DType::F16,
            TensorData::BF16(_) => DType::BF16,
            TensorData::F32(_) => DType::F32,
            TensorData::F64(_) => DType::F64,
            TensorData::Bytes(_) => DType::Bytes,
        }
    }
}

/// An n-dimensional array: dtype, shape, and a contiguous row-major buffer.
///
/// The buffer is shared: `clone()` is cheap and never copies elements, so tensors can be handed
/// to several predictors or kept as references without cost. Conversions to `ndarray` views are
/// zero-copy, and so is building a tensor from an owned `Vec` or standard-layout `ArrayD`.
///
/// ```
/// use thrum_core::Tensor;
/// let t = Tensor::from_vec(vec![2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0])?;
/// let view = t.view::<f32>()?;          // no copy
/// assert_eq!(view[[1, 2]], 6.0);
/// assert!(Tensor::from_vec(vec![2, 3], vec![1.0f32; 5]).is_err()); // 5 elements for 6 slots
/// # Ok::<(), thrum_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Tensor {
    shape: Vec<usize>,
    data: TensorData,
}

/// Number of elements a shape holds, or `None` when a dimension does not fit the `i64` every C
/// API takes, or when the product of the non-zero dimensions overflows. Checking the non-zero
/// product (not the product itself) keeps every partial product of a valid shape in range,
/// whatever the order of its dimensions, a zero among them included: `[0, 2^40, 2^40]` is not
/// a tensor, `[0, 3]` is.
pub(crate) fn element_count(shape: &[usize]) -> Option<usize> {
    if shape.iter().any(|&d| i64::try_from(d).is_err()) {
        return None;
    }
    let nonzero =
        shape.iter().filter(|&&d| d != 0).try_fold(1usize, |acc, &d| acc.checked_mul(d))?;
    Some(if shape.contains(&0) { 0 } else { nonzero })
}

/// The element count of a `dtype` tensor of `shape`, checked: an overflowing product, a
/// dimension past `i64::MAX`, or a buffer past [`Tensor::MAX_BYTES`], is
/// [`Error::TensorTooLarge`] instead of an abort (or a negative dimension handed to a C API).
pub fn checked_len(dtype: DType, shape: &[usize]) -> Result<usize> {
    let too_large = |elements: Option<u64>| Error::TensorTooLarge {
        shape: shape.to_vec(),
        dtype,
        elements,
        limit: Tensor::MAX_BYTES,
    };
    let count = element_count(shape).ok_or_else(|| too_large(None))? as u64;
    // Byte strings are counted as one byte each at least: their length is the caller's.
    let bytes = u128::from(count) * dtype.size_of().unwrap_or(1) as u128;
    if bytes > u128::from(Tensor::MAX_BYTES) {
        return Err(too_large(Some(count)));
    }
    usize::try_from(count).map_err(|_| too_large(Some(count)))
}

impl Tensor {
    /// The largest tensor thrum builds, in bytes (64 GiB): a shape past it (or one whose
    /// element count overflows) is an error naming the shape, never an allocation that aborts
    /// the process.
    pub const MAX_BYTES: u64 = 64 << 30;

    /// A tensor of `shape` over `data` (row-major). Errors when the element count differs.
    pub fn from_vec<T: Element>(shape: impl Into<Vec<usize>>, data: Vec<T>) -> Result<Tensor> {
        Tensor::from_shared(shape, Arc::new(data))
    }

    /// Like [`Tensor::from_vec`] over an already shared buffer.
    pub fn from_shared<T: Element>(
        shape: impl Into<Vec<usize>>,
        data: Arc<Vec<T>>,
    ) -> Result<Tensor> {
        let shape = shape.into();
        let expected = element_count(&shape).ok_or_else(|| Error::ElementCount {
            shape: shape.clone(),
            expected: usize::MAX,
            found: data.len(),
        })?;
        if expected != data.len() {
            return Err(Error::ElementCount { shape, expected, found: data.len() });
        }
        Ok(Tensor { shape, data: T::wrap(data) })
    }

    /// A zero-dimensional tensor holding one value.
    pub fn scalar<T: Element>(value: T) -> Tensor {
        Tensor { shape: Vec::new(), data: T::wrap(Arc::new(vec![value])) }
    }

    /// A tensor of `shape` filled with zeros (`false`, empty byte strings) of `dtype`; errors
    /// when the shape is too large ([`checked_len`]).
    pub fn zeros(dtype: DType, shape: &[usize]) -> Result<Tensor> {
        let len = checked_len(dtype, shape)?;
        let data = dispatch_dtype!(dtype, T => T::wrap(Arc::new(vec![T::zero(); len])));
        Ok(Tensor { shape: shape.to_vec(), data })
    }

    /// A numeric tensor from little-endian bytes (numpy's, ONNX `raw_data`'s, the KServe v2
    /// binary extension's layout); errors when the byte count is not the shape's, or for
    /// [`DType::Bytes`], whose elements have no fixed size.
    pub fn from_le_bytes(dtype: DType, shape: &[usize], bytes: &[u8]) -> Result<Tensor> {
        let len = checked_len(dtype, shape)?;
        let size =
            dtype.size_of().ok_or(Error::DTypeMismatch { expected: DType::U8, found: dtype })?;
        if bytes.len() != len * size {
            return Err(Error::ElementCount {
                shape: shape.to_vec(),
                expected: len,
                found: bytes.len() / size,
            });
        }
        macro_rules! decode {
            ($t:ty) => {
                bytes
                    .chunks_exact(size)
                    .map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or_default()))
                    .collect::<Vec<$t>>()
            };
        }
        let data = match dtype {
            DType::Bool => TensorData::Bool(Arc::new(bytes.iter().map(|&b| b != 0).collect())),
            DType::U8 => TensorData::U8(Arc::new(bytes.to_vec())),
            DType::I8 => TensorData::I8(Arc::new(bytes.iter().map(|&b| b as i8).collect())),
            DType::U16 => TensorData::U16(Arc::new(decode!(u16))),
            DType::U32 => TensorData::U32(Arc::new(decode!(u32))),
            DType::U64 => TensorData::U64(Arc::new(decode!(u64))),
            DType::I16 => TensorData::I16(Arc::new(decode!(i16))),
            DType::I32 => TensorData::I32(Arc::new(decode!(i32))),
            DType::I64 => TensorData::I64(Arc::new(decode!(i64))),
            DType::F16 => TensorData::F16(Arc::new(decode!(f16))),
            DType::BF16 => TensorData::BF16(Arc::new(decode!(bf16))),
            DType::F32 => TensorData::F32(Arc::new(decode!(f32))),
            DType::F64 => TensorData::F64(Arc::new(decode!(f64))),
            DType::Bytes => unreachable!("Bytes has no size and returned above"),
        };
        Ok(Tensor { shape: shape.to_vec(), data })
    }

    /// Takes an owned array; zero-copy when it is in standard (row-major, offset 0) layout.
    pub fn from_array<T: Element>(array: ArrayD<T>) -> Tensor {
        let shape = array.shape().to_vec();
        let data = if array.is_standard_layout() {
            match array.into_raw_vec_and_offset() {
                (vec, Some(0) | None) => vec,
                (vec, Some(offset)) => vec[offset..].to_vec(),
            }
        } else {
            array.iter().cloned().collect()
        };
        Tensor { shape, data: T::wrap(Arc::new(data)) }
    }

    /// Copies a view into a new tensor.
    pub fn from_view<T: Element>(view: ArrayViewD<'_, T>) -> Tensor {
        Tensor::from_array(view.to_owned())
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// The shape; empty for a scalar.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        dispatch_dtype!(self.dtype(), T => T::unwrap(&self.data).map_or(0, |v| v.len()))
    }

    /// True when the tensor holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The typed storage.
    pub fn data(&self) -> &TensorData {
        &self.data
    }

    /// Size of the elements in bytes (sum of lengths for byte strings).
    pub fn byte_size(&self) -> usize {
        match &self.data {
            TensorData::Bytes(v) => v.iter().map(Vec::len).sum(),
            _ => self.len() * self.dtype().size_of().unwrap_or(0),
        }
    }

    /// The elements as a slice of `T`; errors when `T` is not this tensor's dtype.
    pub fn as_slice<T: Element>(&self) -> Result<&[T]> {
        T::unwrap(&self.data)
            .map(|v| v.as_slice())
            .ok_or(Error::DTypeMismatch { expected: T::DTYPE, found: self.dtype() })
    }

    /// A zero-copy `ndarray` view; errors when `T` is not this tensor's dtype.
    pub fn view<T: Element>(&self) -> Result<ArrayViewD<'_, T>> {
        let slice = self.as_slice::<T>()?;
        // Constructors guarantee the count matches; the error arm only guards that invariant.
        ArrayViewD::from_shape(IxDyn(&self.shape), slice).map_err(|_| Error::ElementCount {
            shape: self.shape.clone(),
            expected: element_count(&self.shape).unwrap_or(usize::MAX),
            found: slice.len(),
        })
    }

    /// The elements as an owned `Vec<T>`: no copy when this tensor is the buffer's only owner.
    pub fn into_vec<T: Element>(self) -> Result<Vec<T>> {
        let found = self.dtype();
        let arc = T::unwrap(&self.data)
            .cloned()
            .ok_or(Error::DTypeMismatch { expected: T::DTYPE, found })?;
        drop(self);
        Ok(Arc::try_unwrap(arc).unwrap_or_else(|shared| shared.as_ref().clone()))
    }

    /// An owned `ndarray` array (no copy when this tensor is the buffer's only owner).
    pub fn into_array<T: Element>(self) -> Result<ArrayD<T>> {
        let shape = self.shape.clone();
        let vec = self.into_vec::<T>()?;
        let found = vec.len();
        ArrayD::from_shape_vec(IxDyn(&shape), vec).map_err(|_| Error::ElementCount {
            expected: element_count(&shape).unwrap_or(usize::MAX),
            shape,
            found,
        })
    }

    /// The same elements under another shape with the same element count (no copy).
    pub fn reshape(&self, shape: impl Into<Vec<usize>>) -> Result<Tensor> {
        let shape = shape.into();
        let expected = element_count(&shape).unwrap_or(usize::MAX);
        if expected != self.len() {
            return Err(Error::ElementCount { shape, expected, found: self.len() });
        }
        Ok(Tensor { shape, data: self.data.clone() })
    }

    /// The elements' memory as bytes, without a copy (`None` for [`DType::Bytes`]): native
    /// byte order, which is little-endian on every platform thrum supports, so this is the
    /// layout of [`Tensor::to_le_bytes`], of numpy and of the KServe v2 binary extension.
    pub fn raw_bytes(&self) -> Option<&[u8]> {
        #[cfg(not(target_endian = "little"))]
        compile_error!("thrum assumes a little-endian target: raw_bytes is read as little-endian");
        Some(match &self.data {
            TensorData::Bool(v) => bytemuck::cast_slice(v.as_slice()),
            TensorData::U8(v) => v.as_slice(),
            TensorData::U16(v) => bytemuck::cast_slice(v.as_slice()),
            TensorData::U32(v) => bytemuck::cast_slice(v.as_slice()),
            TensorData::U64(v) => bytemuck::cast_slice(v.as_slice()),
            TensorData::I8(v) => bytemuck::cast_slice(v.as_slice()),
            TensorData::I16(v) => bytemuck::cast_slice(v.as_slice()),
            TensorData::I32(v) => bytemuck::cast_slice(v.as_slice()),
            TensorData::I64(v) => bytemuck::cast_slice(v.as_slice()),
            TensorData::F16(v) => bytemuck::cast_slice(v.as_slice()),
            TensorData::BF16(v) => bytemuck::cast_slice(v.as_slice()),
            TensorData::F32(v) => bytemuck::cast_slice(v.as_slice()),
            TensorData::F64(v) => bytemuck::cast_slice(v.as_slice()),
            TensorData::Bytes(_) => return None,
        })
    }

    /// The elements converted to `f64`, for summaries and tolerance comparisons.
    /// `None` for [`DType::Bytes`].
    pub fn to_f64_vec(&self) -> Option<Vec<f64>> {
        Some(match &self.data {
            TensorData::Bool(v) => v.iter().map(|&x| f64::from(u8::from(x))).collect(),
            TensorData::U8(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::U16(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::U32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::U64(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::I8(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::I16(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::F16(v) => v.iter().map(|x| x.to_f64()).collect(),
            TensorData::BF16(v) => v.iter().map(|x| x.to_f64()).collect(),
            TensorData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::F64(v) => v.as_ref().clone(),
            TensorData::Bytes(_) => return None,
        })
    }

    /// The elements as little-endian bytes (`None` for [`DType::Bytes`]): the layout ONNX
    /// `raw_data`, numpy and most C APIs expect.
    pub fn to_le_bytes(&self) -> Option<Vec<u8>> {
        macro_rules! bytes {
            ($v:expr) => {
                $v.iter().flat_map(|x| x.to_le_bytes()).collect()
            };
        }
        Some(match &self.data {
            TensorData::Bool(v) => v.iter().map(|&b| u8::from(b)).collect(),
            TensorData::U8(v) => v.as_ref().clone(),
            TensorData::U16(v) => bytes!(v),
            TensorData::U32(v) => bytes!(v),
            TensorData::U64(v) => bytes!(v),
            TensorData::I8(v) => bytes!(v),
            TensorData::I16(v) => bytes!(v),
            TensorData::I32(v) => bytes!(v),
            TensorData::I64(v) => bytes!(v),
            TensorData::F16(v) => bytes!(v),
            TensorData::BF16(v) => bytes!(v),
            TensorData::F32(v) => bytes!(v),
            TensorData::F64(v) => bytes!(v),
            TensorData::Bytes(_) => return None,
        })
    }

    /// True when dtype, shape and every bit of every element are equal (NaN payloads and the
    /// sign of zero included), the comparison concurrency tests need.
    pub fn bit_eq(&self, other: &Tensor) -> bool {
        if self.dtype() != other.dtype() || self.shape != other.shape {
            return false;
        }
        match (&self.data, &other.data) {
            (TensorData::Bytes(a), TensorData::Bytes(b)) => a == b,
            _ => self.to_le_bytes() == other.to_le_bytes(),
        }
    }

    /// Stacks same-shaped tensors along a new leading axis (`[s…]` ×N → `[N, s…]`).
    pub fn stack(tensors: &[Tensor]) -> Result<Tensor> {
        let first = tensors
            .first()
            .ok_or_else(|| Error::Batch { reason: "a batch of zero items".into() })?;
        for (i, t) in tensors.iter().enumerate() {
            if t.dtype() != first.dtype() || t.shape != first.shape {
                return Err(Error::Batch {
                    reason: format!(
                        "item {i} is {} {:?} but item 0 is {} {:?}; stacking needs equal shapes \
                         (use the pad batchifier for ragged items)",
                        t.dtype(),
                        t.shape,
                        first.dtype(),
                        first.shape
                    ),
                });
            }
        }
        dispatch_dtype!(first.dtype(), T => stack_typed::<T>(tensors))
    }

    /// Pads each tensor with zeros to the largest size along every axis, then stacks them.
    pub fn pad_stack(tensors: &[Tensor]) -> Result<Tensor> {
        let first = tensors
            .first()
            .ok_or_else(|| Error::Batch { reason: "a batch of zero items".into() })?;
        let mut target = first.shape.clone();
        for (i, t) in tensors.iter().enumerate() {
            if t.dtype() != first.dtype() || t.rank() != first.rank() {
                return Err(Error::Batch {
                    reason: format!(
                        "item {i} is {} of rank {} but item 0 is {} of rank {}; padding needs \
                         equal dtypes and ranks",
                        t.dtype(),
                        t.rank(),
                        first.dtype(),
                        first.rank()
                    ),
                });
            }
            for (m, &d) in target.iter_mut().zip(&t.shape) {
                *m = (*m).max(d);
            }
        }
        dispatch_dtype!(first.dtype(), T => pad_stack_typed::<T>(tensors, &target))
    }

    /// Joins tensors along an existing `axis` (`[2, 3]` and `[1, 3]` on axis 0 → `[3, 3]`): what
    /// merges several requests into one batch. Every other dimension, and the dtype, must agree.
    pub fn concat(tensors: &[Tensor], axis: usize) -> Result<Tensor> {
        let first = tensors
            .first()
            .ok_or_else(|| Error::Batch { reason: "nothing to concatenate".into() })?;
        if axis >= first.rank() {
            return Err(Error::Batch {
                reason: format!(
                    "axis {axis} is past the rank {} of {:?}",
                    first.rank(),
                    first.shape
                ),
            });
        }
        for (i, t) in tensors.iter().enumerate() {
            let same_other_dims = t.rank() == first.rank()
                && t.shape
                    .iter()
                    .zip(&first.shape)
                    .enumerate()
                    .all(|(k, (a, b))| k == axis || a == b);
            if t.dtype() != first.dtype() || !same_other_dims {
                return Err(Error::Batch {
                    reason: format!(
                        "item {i} is {} {:?} but item 0 is {} {:?}; only axis {axis} may differ",
                        t.dtype(),
                        t.shape,
                        first.dtype(),
                        first.shape
                    ),
                });
            }
        }
        if tensors.len() == 1 {
            return Ok(first.clone());
        }
        dispatch_dtype!(first.dtype(), T => {
            if axis == 0 {
                // Row-major: joining along the first axis appends the buffers.
                let mut shape = first.shape.clone();
                shape[0] = tensors.iter().map(|t| t.shape[0]).sum();
                let mut data = Vec::with_capacity(checked_len(first.dtype(), &shape)?);
                for t in tensors {
                    data.extend_from_slice(t.as_slice::<T>()?);
                }
                Tensor::from_vec(shape, data)
            } else {
                let views = tensors.iter().map(|t| t.view::<T>()).collect::<Result<Vec<_>>>()?;
                ndarray::concatenate(Axis(axis), &views)
                    .map(Tensor::from_array)
                    .map_err(|e| Error::Batch { reason: e.to_string() })
            }
        })
    }

    /// Pads each tensor with zeros along `pad_axis` to the longest, then joins them along
    /// `axis`: what merges requests of different lengths (a text model's tokens) into one
    /// batch. Every dimension but those two, and the dtype, must agree.
    pub fn pad_concat(tensors: &[Tensor], axis: usize, pad_axis: usize) -> Result<Tensor> {
        let longest = tensors.iter().filter_map(|t| t.shape.get(pad_axis)).max().copied();
        let Some(longest) = longest else {
            return Tensor::concat(tensors, axis);
        };
        let padded =
            tensors.iter().map(|t| t.pad_to(pad_axis, longest)).collect::<Result<Vec<_>>>()?;
        Tensor::concat(&padded, axis)
    }

    /// This tensor with zeros appended along `axis` up to `len` (itself when it is that long).
    pub fn pad_to(&self, axis: usize, len: usize) -> Result<Tensor> {
        let have = self.axis_len(axis)?;
        if have >= len {
            return Ok(self.clone());
        }
        let mut shape = self.shape.clone();
        shape[axis] = len;
        checked_len(self.dtype(), &shape)?;
        dispatch_dtype!(self.dtype(), T => {
            let mut out = ArrayD::from_elem(IxDyn(&shape), T::zero());
            out.slice_axis_mut(Axis(axis), ndarray::Slice::from(0..have)).assign(&self.view::<T>()?);
            Ok(Tensor::from_array(out))
        })
    }

    /// The size along `axis`, which must exist.
    fn axis_len(&self, axis: usize) -> Result<usize> {
        self.shape.get(axis).copied().ok_or_else(|| Error::Batch {
            reason: format!("axis {axis} is past the rank {} of {:?}", self.rank(), self.shape),
        })
    }

    /// The first `len` entries along `axis` (what undoes [`Tensor::pad_to`]).
    pub fn narrow(&self, axis: usize, len: usize) -> Result<Tensor> {
        let have = self.axis_len(axis)?;
        if len >= have {
            return Ok(self.clone());
        }
        Ok(self.split(axis, &[len, have - len])?.swap_remove(0))
    }

    /// Splits along `axis` into parts of the given sizes, which must add up to the axis's size:
    /// what hands each request of a batch its share of the outputs.
    pub fn split(&self, axis: usize, sizes: &[usize]) -> Result<Vec<Tensor>> {
        let total = self.shape.get(axis).copied().ok_or_else(|| Error::Batch {
            reason: format!("axis {axis} is past the rank {} of {:?}", self.rank(), self.shape),
        })?;
        if sizes.iter().sum::<usize>() != total {
            return Err(Error::Batch {
                reason: format!(
                    "parts {sizes:?} do not add up to {total} along axis {axis} of {:?}",
                    self.shape
                ),
            });
        }
        if sizes.len() == 1 {
            return Ok(vec![self.clone()]);
        }
        dispatch_dtype!(self.dtype(), T => {
            let mut parts = Vec::with_capacity(sizes.len());
            if axis == 0 {
                let row: usize = self.shape[1..].iter().product();
                let data = self.as_slice::<T>()?;
                let mut start = 0;
                for &n in sizes {
                    let mut shape = self.shape.clone();
                    shape[0] = n;
                    parts.push(Tensor::from_vec(shape, data[start * row..(start + n) * row].to_vec())?);
                    start += n;
                }
            } else {
                let view = self.view::<T>()?;
                let mut start = 0;
                for &n in sizes {
                    let part = view.slice_axis(Axis(axis), ndarray::Slice::from(start..start + n));
                    parts.push(Tensor::from_view(part));
                    start += n;
                }
            }
            Ok(parts)
        })
    }

    /// Splits along axis 0 into one tensor per row (`[N, s…]` → N × `[s…]`).
    pub fn unstack(&self) -> Result<Vec<Tensor>> {
        if self.rank() == 0 {
            return Err(Error::Batch {
                reason: "cannot split a scalar output into batch items".into(),
            });
        }
        dispatch_dtype!(self.dtype(), T => {
            let view = self.view::<T>()?;
            Ok(view.axis_iter(Axis(0)).map(|row| Tensor::from_view(row)).collect())
        })
    }
}

fn stack_typed<T: Element>(tensors: &[Tensor]) -> Result<Tensor> {
    let mut shape = vec![tensors.len()];
    shape.extend_from_slice(tensors[0].shape());
    let mut data = Vec::with_capacity(checked_len(T::DTYPE, &shape)?);
    for t in tensors {
        data.extend_from_slice(t.as_slice::<T>()?);
    }
    Tensor::from_vec(shape, data)
}

fn pad_stack_typed<T: Element>(tensors: &[Tensor], target: &[usize]) -> Result<Tensor> {
    let mut shape = vec![tensors.len()];
    shape.extend_from_slice(target);
    let mut out = ArrayD::from_elem(IxDyn(&shape), T::zero());
    for (i, t) in tensors.iter().enumerate() {
        let src = t.view::<T>()?;
        let mut row = out.index_axis_mut(Axis(0), i);
        row.slice_each_axis_mut(|ax| ndarray::Slice::from(0..t.shape()[ax.axis.index()]))
            .assign(&src);
    }
    Ok(Tensor::from_array(out))
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor({} {:?})", self.dtype(), self.shape)
    }
}

impl<T: Element> From<ArrayD<T>> for Tensor {
    fn from(array: ArrayD<T>) -> Tensor {
        Tensor::from_array(array)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_shares_the_buffer() {
        let t = Tensor::from_vec(vec![3], vec![1i64, 2, 3]).unwrap();
        let c = t.clone();
        assert!(std::ptr::eq(
            t.as_slice::<i64>().unwrap().as_ptr(),
            c.as_slice::<i64>().unwrap().as_ptr()
        ));
    }

    #[test]
    fn from_array_is_zero_copy_for_standard_layout() {
        let array = ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
        let ptr = array.as_ptr();
        let t = Tensor::from_array(array);
        assert_eq!(t.as_slice::<f32>().unwrap().as_ptr(), ptr);
        let back = t.into_array::<f32>().unwrap();
        assert_eq!(back.as_ptr(), ptr);
    }

    #[test]
    fn wrong_element_count_is_an_error_naming_shape_and_counts() {
        let err = Tensor::from_vec(vec![2, 3], vec![0u8; 5]).unwrap_err().to_string();
        assert!(err.contains("[2, 3]") && err.contains('6') && err.contains('5'), "{err}");
    }

    #[test]
    fn accessing_with_the_wrong_type_is_an_error() {
        let t = Tensor::zeros(DType::F32, &[2]).unwrap();
        let err = t.as_slice::<i64>().unwrap_err().to_string();
        assert!(err.contains("f32") && err.contains("i64"), "{err}");
    }

    #[test]
    fn stack_then_unstack_round_trips() {
        let a = Tensor::from_vec(vec![2], vec![1.0f32, 2.0]).unwrap();
        let b = Tensor::from_vec(vec![2], vec![3.0f32, 4.0]).unwrap();
        let s = Tensor::stack(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(s.shape(), &[2, 2]);
        let parts = s.unstack().unwrap();
        assert!(parts[0].bit_eq(&a) && parts[1].bit_eq(&b));
    }

    #[test]
    fn pad_stack_pads_ragged_items_with_zeros() {
        let a = Tensor::from_vec(vec![1], vec![7i64]).unwrap();
        let b = Tensor::from_vec(vec![3], vec![1i64, 2, 3]).unwrap();
        let s = Tensor::pad_stack(&[a, b]).unwrap();
        assert_eq!(s.shape(), &[2, 3]);
        assert_eq!(s.as_slice::<i64>().unwrap(), &[7, 0, 0, 1, 2, 3]);
    }

    #[test]
    fn stacking_nothing_is_an_error() {
        assert!(Tensor::stack(&[]).unwrap_err().to_string().contains("zero"));
    }

    #[test]
    fn huge_shapes_are_errors_not_aborts() {
        let overflow =
            Tensor::zeros(DType::F32, &[1 << 32, 1 << 32, 1 << 32, 1 << 32, 2]).unwrap_err();
        assert!(matches!(overflow, Error::TensorTooLarge { elements: None, .. }), "{overflow}");
        let huge = Tensor::zeros(DType::F32, &[99_999_999_999, 3, 224, 224]).unwrap_err();
        assert!(matches!(huge, Error::TensorTooLarge { elements: Some(_), .. }), "{huge}");
        assert_eq!(huge.kind(), crate::ErrorKind::InvalidInput);
        let empty = Tensor::zeros(DType::F32, &[0, 3]).unwrap();
        assert_eq!((empty.len(), empty.shape()), (0, &[0, 3][..]));
    }

    #[test]
    fn le_bytes_round_trip_every_numeric_dtype() {
        for dtype in DType::ALL.into_iter().filter(|d| *d != DType::Bytes) {
            let t = Tensor::zeros(dtype, &[2, 3]).unwrap();
            let bytes = t.to_le_bytes().unwrap();
            assert!(Tensor::from_le_bytes(dtype, &[2, 3], &bytes).unwrap().bit_eq(&t), "{dtype}");
            assert_eq!(t.raw_bytes(), Some(&bytes[..]), "{dtype}");
            assert!(Tensor::from_le_bytes(dtype, &[2, 2], &bytes).is_err(), "{dtype}");
        }
        let t = Tensor::from_vec(vec![2], vec![1.5f32, -2.0]).unwrap();
        let back = Tensor::from_le_bytes(DType::F32, &[2], &t.to_le_bytes().unwrap()).unwrap();
        assert_eq!(back.as_slice::<f32>().unwrap(), &[1.5, -2.0]);
    }

    #[test]
    fn concat_then_split_round_trips_on_any_axis() {
        let a = Tensor::from_vec(vec![2, 3], (0..6).map(|x| x as f32).collect::<Vec<_>>()).unwrap();
        let b = Tensor::from_vec(vec![1, 3], vec![6.0f32, 7.0, 8.0]).unwrap();
        let joined = Tensor::concat(&[a.clone(), b.clone()], 0).unwrap();
        assert_eq!(joined.shape(), &[3, 3]);
        assert_eq!(joined.as_slice::<f32>().unwrap()[6..], [6.0, 7.0, 8.0]);
        let parts = joined.split(0, &[2, 1]).unwrap();
        assert!(parts[0].bit_eq(&a) && parts[1].bit_eq(&b));
        let c = Tensor::from_vec(vec![2, 1], vec![9.0f32, 10.0]).unwrap();
        let wide = Tensor::concat(&[a.clone(), c.clone()], 1).unwrap();
        assert_eq!(wide.shape(), &[2, 4]);
        assert_eq!(wide.as_slice::<f32>().unwrap(), &[0.0, 1.0, 2.0, 9.0, 3.0, 4.0, 5.0, 10.0]);
        let back = wide.split(1, &[3, 1]).unwrap();
        assert!(back[0].bit_eq(&a) && back[1].bit_eq(&c));
        assert!(Tensor::concat(&[a.clone(), c], 0).is_err(), "other axes must agree");
        assert!(joined.split(0, &[1, 1]).is_err(), "sizes must add up");
    }

    #[test]
    fn pad_concat_pads_the_shorter_then_narrow_trims_back() {
        let a = Tensor::from_vec(vec![1, 3], vec![1i64, 2, 3]).unwrap();
        let b = Tensor::from_vec(vec![2, 1], vec![4i64, 5]).unwrap();
        let joined = Tensor::pad_concat(&[a.clone(), b.clone()], 0, 1).unwrap();
        assert_eq!(joined.shape(), &[3, 3]);
        assert_eq!(joined.as_slice::<i64>().unwrap(), &[1, 2, 3, 4, 0, 0, 5, 0, 0]);
        let parts = joined.split(0, &[1, 2]).unwrap();
        assert!(parts[0].narrow(1, 3).unwrap().bit_eq(&a));
        assert!(parts[1].narrow(1, 1).unwrap().bit_eq(&b));
        assert!(a.pad_to(2, 4).is_err(), "axis past the rank");
        let c = Tensor::from_vec(vec![1, 2], vec![1.0f32, 2.0]).unwrap();
        assert!(Tensor::pad_concat(&[a, c], 0, 1).is_err(), "dtypes must agree");
    }

    #[test]
    fn bit_eq_distinguishes_signed_zero() {
        let a = Tensor::from_vec(vec![1], vec![0.0f32]).unwrap();
        let b = Tensor::from_vec(vec![1], vec![-0.0f32]).unwrap();
        assert!(a.bit_eq(&a.clone()) && !a.bit_eq(&b));
    }
}
