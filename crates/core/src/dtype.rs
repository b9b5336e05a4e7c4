//! Element types of tensors.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use half::{bf16, f16};

use crate::error::Error;
use crate::tensor::TensorData;

/// The element type of a [`Tensor`](crate::Tensor).
///
/// Covers every numeric type the supported engines exchange, plus [`DType::Bytes`] for
/// string/byte-string tensors (ONNX `string`, numpy `S`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// Boolean, one byte per element.
    Bool,
    /// Unsigned 8-bit integer.
    U8,
    /// Unsigned 16-bit integer.
    U16,
    /// Unsigned 32-bit integer.
    U32,
    /// Unsigned 64-bit integer.
    U64,
    /// Signed 8-bit integer.
    I8,
    /// Signed 16-bit integer.
    I16,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer.
    I64,
    /// IEEE 754 half precision.
    F16,
    /// bfloat16.
    BF16,
    /// IEEE 754 single precision.
    F32,
    /// IEEE 754 double precision.
    F64,
    /// Variable-length byte strings.
    Bytes,
}

impl DType {
    /// Every dtype, in declaration order.
    pub const ALL: [DType; 14] = [
        DType::Bool,
        DType::U8,
        DType::U16,
        DType::U32,
        DType::U64,
        DType::I8,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::F16,
        DType::BF16,
        DType::F32,
        DType::F64,
        DType::Bytes,
    ];

    /// The canonical short name (`f32`, `i64`, `bytes`…), as printed and parsed.
    pub fn name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::U8 => "u8",
            DType::U16 => "u16",
            DType::U32 => "u32",
            DType::U64 => "u64",
            DType::I8 => "i8",
            DType::I16 => "i16",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::Bytes => "bytes",
        }
    }

    /// Size of one element in bytes; `None` for variable-length [`DType::Bytes`].
    pub fn size_of(self) -> Option<usize> {
        Some(match self {
            DType::Bool | DType::U8 | DType::I8 => 1,
            DType::U16 | DType::I16 | DType::F16 | DType::BF16 => 2,
            DType::U32 | DType::I32 | DType::F32 => 4,
            DType::U64 | DType::I64 | DType::F64 => 8,
            DType::Bytes => return None,
        })
    }

    /// True for the floating-point types.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DType {
    type Err = Error;

    /// Accepts the short names (`f32`), numpy/ONNX long names (`float32`, `int64`, `float`,
    /// `double`, `string`), case-insensitively.
    fn from_str(s: &str) -> Result<Self, Error> {
        let lower = s.trim().to_ascii_lowercase();
        let dtype = match lower.as_str() {
            "bool" | "boolean" => DType::Bool,
            "u8" | "uint8" => DType::U8,
            "u16" | "uint16" => DType::U16,
            "u32" | "uint32" => DType::U32,
            "u64" | "uint64" => DType::U64,
            "i8" | "int8" => DType::I8,
            "i16" | "int16" => DType::I16,
            "i32" | "int32" | "int" => DType::I32,
            "i64" | "int64" | "long" => DType::I64,
            "f16" | "float16" | "half" => DType::F16,
            "bf16" | "bfloat16" => DType::BF16,
            "f32" | "float32" | "float" => DType::F32,
            "f64" | "float64" | "double" => DType::F64,
            "bytes" | "string" | "str" => DType::Bytes,
            _ => {
                return Err(Error::InvalidValue {
                    what: "dtype".into(),
                    value: s.into(),
                    expected: DType::ALL.iter().map(|d| d.name()).collect::<Vec<_>>().join(", "),
                });
            }
        };
        Ok(dtype)
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A Rust type that can be the element of a [`Tensor`](crate::Tensor).
///
/// Sealed: implemented for `bool`, the integer types, [`half::f16`], [`half::bf16`], `f32`, `f64` and
/// `Vec<u8>` (for [`DType::Bytes`]).
pub trait Element: sealed::Sealed + Clone + Send + Sync + fmt::Debug + 'static {
    /// The dtype of this element type.
    const DTYPE: DType;
    /// The value used to fill a tensor of zeros.
    fn zero() -> Self;
    #[doc(hidden)]
    fn wrap(data: Arc<Vec<Self>>) -> TensorData;
    #[doc(hidden)]
    fn unwrap(data: &TensorData) -> Option<&Arc<Vec<Self>>>;
}

macro_rules! element {
    ($($t:ty => $variant:ident, $zero:expr;)*) => {$(
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const DTYPE: DType = DType::$variant;
            fn zero() -> Self { $zero }
            fn wrap(data: Arc<Vec<Self>>) -> TensorData { TensorData::$variant(data) }
            fn unwrap(data: &TensorData) -> Option<&Arc<Vec<Self>>> {
                match data { TensorData::$variant(v) => Some(v), _ => None }
            }
        }
    )*};
}

element! {
    bool => Bool, false;
    u8 => U8, 0;
    u16 => U16, 0;
    u32 => U32, 0;
    u64 => U64, 0;
    i8 => I8, 0;
    i16 => I16, 0;
    i32 => I32, 0;
    i64 => I64, 0;
    f16 => F16, f16::ZERO;
    bf16 => BF16, bf16::ZERO;
    f32 => F32, 0.0;
    f64 => F64, 0.0;
    Vec<u8> => Bytes, Vec::new();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_from_str() {
        for dtype in DType::ALL {
            assert_eq!(dtype.name().parse::<DType>().ok(), Some(dtype));
        }
    }

    #[test]
    fn unknown_dtype_lists_valid_names() {
        let err = "float33".parse::<DType>().unwrap_err().to_string();
        assert!(err.contains("float33") && err.contains("f32") && err.contains("bytes"), "{err}");
    }
}
