//! Tensor files: numpy `.npy`, ONNX `TensorProto` `.pb`, and JSON.
//!
//! JSON inputs are either an object `{"dtype": "f32", "shape": [1, 3], "data": [1, 2, 3]}`
//! (`data` flat in row-major order, `dtype` optional) or nested arrays `[[1, 2, 3]]` whose
//! nesting gives the shape. Without a `dtype`, the model input's dtype is used.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

use npyz::{TypeChar, WriterBuilder};
use serde_json::Value;
use thrum::{DType, Error, Tensor, TensorData};

/// The tensor file formats thrum reads, by extension.
pub const INPUT_FORMATS: &str = ".npy (numpy), .pb (ONNX TensorProto), .json";

fn input_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::InvalidData { what: format!("input file `{}`", path.display()), reason: reason.into() }
}

/// Reads a tensor file; `dtype` is the model input's dtype, used by JSON without a `dtype`.
pub fn read_tensor(path: &Path, dtype: Option<DType>) -> Result<Tensor, Error> {
    let ext =
        path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "npy" => read_npy(path),
        "pb" => {
            let bytes = std::fs::read(path).map_err(|e| Error::read(path, e))?;
            zoo_decode(path, &bytes)
        }
        "json" => read_json(path, dtype),
        _ => Err(input_error(path, format!("unknown extension; tensor files are {INPUT_FORMATS}"))),
    }
}

fn zoo_decode(path: &Path, bytes: &[u8]) -> Result<Tensor, Error> {
    thrum_zoo::onnx::decode_tensor(bytes)
        .map(|(_, t)| t)
        .map_err(|e| input_error(path, e.to_string()))
}

/// Reads a numpy `.npy` file (C or Fortran order).
pub fn read_npy(path: &Path) -> Result<Tensor, Error> {
    let file = File::open(path).map_err(|e| Error::read(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::read(path, e))?.len();
    let npy = npyz::NpyFile::new(BufReader::new(file))
        .map_err(|e| input_error(path, format!("not a valid .npy file: {e}")))?;
    let shape: Vec<usize> =
        npy.shape().iter().map(|&d| usize::try_from(d)).collect::<Result<_, _>>().map_err(
            |_| input_error(path, format!("shape {:?} does not fit in memory", npy.shape())),
        )?;
    let fortran = npy.order() == npyz::Order::Fortran;
    let npyz::DType::Plain(type_str) = npy.dtype() else {
        return Err(input_error(
            path,
            "structured (record) arrays are not tensors; expected a plain numeric array",
        ));
    };
    let dtype = match (type_str.type_char(), type_str.size_field()) {
        (TypeChar::Bool, 1) => DType::Bool,
        (TypeChar::Uint, 1) => DType::U8,
        (TypeChar::Uint, 2) => DType::U16,
        (TypeChar::Uint, 4) => DType::U32,
        (TypeChar::Uint, 8) => DType::U64,
        (TypeChar::Int, 1) => DType::I8,
        (TypeChar::Int, 2) => DType::I16,
        (TypeChar::Int, 4) => DType::I32,
        (TypeChar::Int, 8) => DType::I64,
        (TypeChar::Float, 2) => DType::F16,
        (TypeChar::Float, 4) => DType::F32,
        (TypeChar::Float, 8) => DType::F64,
        (TypeChar::ByteStr, _) => DType::Bytes,
        _ => {
            return Err(input_error(
                path,
                format!(
                    "numpy dtype `{type_str}` has no thrum dtype; expected bool, int, uint, float or bytes (S)"
                ),
            ));
        }
    };
    // The header is the file's word: check it before reading (and allocating) what it claims.
    let count =
        thrum::tensor::checked_len(dtype, &shape).map_err(|e| input_error(path, e.to_string()))?;
    let claimed = (count as u64).saturating_mul(dtype.size_of().unwrap_or(1) as u64);
    if claimed > file_len {
        return Err(input_error(
            path,
            format!(
                "the header's shape {shape:?} ({dtype}) needs {claimed} bytes of data, but the file \
                 holds {file_len} bytes in all"
            ),
        ));
    }
    macro_rules! read {
        ($t:ty) => {{
            let data = npy
                .into_vec::<$t>()
                .map_err(|e| input_error(path, format!("reading {dtype} data: {e}")))?;
            tensor_in_order(path, shape, data, fortran)
        }};
    }
    match dtype {
        DType::Bool => read!(bool),
        DType::U8 => read!(u8),
        DType::U16 => read!(u16),
        DType::U32 => read!(u32),
        DType::U64 => read!(u64),
        DType::I8 => read!(i8),
        DType::I16 => read!(i16),
        DType::I32 => read!(i32),
        DType::I64 => read!(i64),
        DType::F16 => read!(half::f16),
        DType::F32 => read!(f32),
        DType::F64 => read!(f64),
        DType::Bytes => read!(Vec<u8>),
        // numpy has no bf16; the match above never yields it.
        DType::BF16 => Err(input_error(path, "numpy has no bf16 dtype")),
    }
}

fn tensor_in_order<T: thrum_core::Element>(
    path: &Path,
    shape: Vec<usize>,
    data: Vec<T>,
    fortran: bool,
) -> Result<Tensor, Error> {
    use ndarray::ShapeBuilder;
    if !fortran {
        return Tensor::from_vec(shape, data).map_err(|e| input_error(path, e.to_string()));
    }
    let array = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&shape).f(), data)
        .map_err(|e| input_error(path, e.to_string()))?;
    Ok(Tensor::from_array(array))
}

/// Reads a JSON tensor (see the module docs for the two accepted layouts).
pub fn read_json(path: &Path, dtype: Option<DType>) -> Result<Tensor, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| input_error(path, e.to_string()))?;
    let value: Value =
        serde_json::from_str(&text).map_err(|e| input_error(path, format!("invalid JSON: {e}")))?;
    let (shape, flat, dtype) = match &value {
        Value::Object(map) => {
            let data = map.get("data").ok_or_else(|| {
                input_error(
                    path,
                    "a JSON object needs a `data` array (and optionally `shape` and `dtype`)",
                )
            })?;
            let dtype = match map.get("dtype") {
                Some(Value::String(s)) => {
                    Some(s.parse::<DType>().map_err(|e| input_error(path, e.to_string()))?)
                }
                Some(other) => {
                    return Err(input_error(
                        path,
                        format!("`dtype` must be a string like \"f32\", got {other}"),
                    ));
                }
                None => dtype,
            };
            let (nested_shape, flat) = flatten(path, data)?;
            let shape = match map.get("shape") {
                Some(Value::Array(dims)) => dims
                    .iter()
                    .map(|d| d.as_u64().map(|d| d as usize))
                    .collect::<Option<Vec<usize>>>()
                    .ok_or_else(|| {
                        input_error(path, "`shape` must be an array of non-negative integers")
                    })?,
                Some(_) => {
                    return Err(input_error(
                        path,
                        "`shape` must be an array of non-negative integers",
                    ));
                }
                None => nested_shape,
            };
            (shape, flat, dtype)
        }
        other => {
            let (shape, flat) = flatten(path, other)?;
            (shape, flat, dtype)
        }
    };
    json_tensor(path, shape, &flat, dtype.unwrap_or(DType::F32))
}

/// Flattens nested arrays, checking they are rectangular; returns (shape, leaves).
fn flatten<'a>(path: &Path, value: &'a Value) -> Result<(Vec<usize>, Vec<&'a Value>), Error> {
    fn walk<'a>(
        value: &'a Value,
        depth: usize,
        shape: &mut Vec<usize>,
        out: &mut Vec<&'a Value>,
    ) -> Result<(), String> {
        match value {
            Value::Array(items) => {
                if shape.len() == depth {
                    shape.push(items.len());
                } else if shape.get(depth) != Some(&items.len()) {
                    return Err(format!(
                        "ragged nested arrays: {} items at depth {depth}, expected {:?}",
                        items.len(),
                        shape.get(depth)
                    ));
                }
                items.iter().try_for_each(|item| walk(item, depth + 1, shape, out))
            }
            leaf if shape.len() == depth => {
                out.push(leaf);
                Ok(())
            }
            _ => Err(format!(
                "a value at depth {depth} where arrays of depth {} were expected",
                shape.len()
            )),
        }
    }
    let (mut shape, mut out) = (Vec::new(), Vec::new());
    walk(value, 0, &mut shape, &mut out).map_err(|e| input_error(path, e))?;
    Ok((shape, out))
}

fn json_tensor(
    path: &Path,
    shape: Vec<usize>,
    leaves: &[&Value],
    dtype: DType,
) -> Result<Tensor, Error> {
    let bad = |i: usize| {
        input_error(path, format!("element {i} (`{}`) is not a valid {dtype}", leaves[i]))
    };
    macro_rules! numbers {
        ($t:ty, $get:ident) => {{
            let mut data: Vec<$t> = Vec::with_capacity(leaves.len());
            for (i, v) in leaves.iter().enumerate() {
                data.push(v.$get().and_then(|x| <$t>::try_from(x).ok()).ok_or_else(|| bad(i))?);
            }
            Tensor::from_vec(shape, data)
        }};
    }
    let floats = || -> Result<Vec<f64>, Error> {
        leaves.iter().enumerate().map(|(i, v)| v.as_f64().ok_or_else(|| bad(i))).collect()
    };
    let tensor = match dtype {
        DType::Bool => Tensor::from_vec(
            shape,
            leaves
                .iter()
                .enumerate()
                .map(|(i, v)| v.as_bool().ok_or_else(|| bad(i)))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        DType::U8 => numbers!(u8, as_u64),
        DType::U16 => numbers!(u16, as_u64),
        DType::U32 => numbers!(u32, as_u64),
        DType::U64 => numbers!(u64, as_u64),
        DType::I8 => numbers!(i8, as_i64),
        DType::I16 => numbers!(i16, as_i64),
        DType::I32 => numbers!(i32, as_i64),
        DType::I64 => numbers!(i64, as_i64),
        DType::F16 => Tensor::from_vec(
            shape,
            floats()?.into_iter().map(half::f16::from_f64).collect::<Vec<_>>(),
        ),
        DType::BF16 => Tensor::from_vec(
            shape,
            floats()?.into_iter().map(half::bf16::from_f64).collect::<Vec<_>>(),
        ),
        DType::F32 => {
            Tensor::from_vec(shape, floats()?.into_iter().map(|x| x as f32).collect::<Vec<_>>())
        }
        DType::F64 => Tensor::from_vec(shape, floats()?),
        DType::Bytes => Tensor::from_vec(
            shape,
            leaves
                .iter()
                .enumerate()
                .map(|(i, v)| v.as_str().map(|s| s.as_bytes().to_vec()).ok_or_else(|| bad(i)))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    tensor.map_err(|e| input_error(path, e.to_string()))
}

/// The file a tensor named `name` goes in (and comes from, for samples): `NAME.npy`, with every
/// character but letters, digits, `-`, `_` and `.` made `_` (`input:0` → `input_0.npy`), so a
/// name never leaves its directory.
pub fn npy_file_name(name: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| if c.is_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' })
        .collect();
    format!("{name}.npy")
}

/// Writes a tensor as a numpy `.npy` file (C order). bf16, which numpy lacks, is widened to f32.
pub fn write_npy(path: &Path, tensor: &Tensor) -> Result<(), Error> {
    let out_err = |e: std::io::Error| Error::write(path, e);
    let file = File::create(path).map_err(out_err)?;
    let shape: Vec<u64> = tensor.shape().iter().map(|&d| d as u64).collect();
    let writer = BufWriter::new(file);
    macro_rules! write_plain {
        ($v:expr) => {{
            let mut w = npyz::WriteOptions::new()
                .default_dtype()
                .shape(&shape)
                .writer(writer)
                .begin_nd()
                .map_err(out_err)?;
            w.extend($v.iter().cloned()).map_err(out_err)?;
            w.finish().map_err(out_err)
        }};
    }
    match tensor.data() {
        TensorData::Bool(v) => write_plain!(v),
        TensorData::U8(v) => write_plain!(v),
        TensorData::U16(v) => write_plain!(v),
        TensorData::U32(v) => write_plain!(v),
        TensorData::U64(v) => write_plain!(v),
        TensorData::I8(v) => write_plain!(v),
        TensorData::I16(v) => write_plain!(v),
        TensorData::I32(v) => write_plain!(v),
        TensorData::I64(v) => write_plain!(v),
        TensorData::F16(v) => write_plain!(v),
        TensorData::F32(v) => write_plain!(v),
        TensorData::F64(v) => write_plain!(v),
        TensorData::BF16(v) => {
            let widened: Vec<f32> = v.iter().map(|x| x.to_f32()).collect();
            write_plain!(widened)
        }
        TensorData::Bytes(v) => {
            let width = v.iter().map(Vec::len).max().unwrap_or(0).max(1) as u64;
            let type_str: npyz::TypeStr =
                format!("|S{width}").parse().map_err(|e| Error::InvalidData {
                    what: format!("output `{}`", path.display()),
                    reason: format!("byte strings of width {width}: {e}"),
                })?;
            let dtype = npyz::DType::Plain(type_str);
            let mut w = npyz::WriteOptions::new()
                .dtype(dtype)
                .shape(&shape)
                .writer(writer)
                .begin_nd()
                .map_err(out_err)?;
            w.extend(v.iter().cloned()).map_err(out_err)?;
            w.finish().map_err(out_err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_round_trips_every_numpy_dtype() {
        let dir = tempfile::tempdir().unwrap();
        let tensors = [
            Tensor::from_vec(vec![2, 2], vec![1.5f32, -2.0, 0.0, 3.0]).unwrap(),
            Tensor::from_vec(vec![3], vec![1i64, -2, 3]).unwrap(),
            Tensor::from_vec(vec![2], vec![true, false]).unwrap(),
            Tensor::from_vec(vec![2], vec![half::f16::from_f32(0.5), half::f16::from_f32(-1.0)])
                .unwrap(),
            Tensor::from_vec(vec![2], vec![b"ab".to_vec(), b"c".to_vec()]).unwrap(),
        ];
        for (i, t) in tensors.iter().enumerate() {
            let path = dir.path().join(format!("{i}.npy"));
            write_npy(&path, t).unwrap();
            let back = read_npy(&path).unwrap();
            assert!(back.bit_eq(t), "{t:?} became {back:?}");
        }
    }

    #[test]
    fn json_nested_arrays_take_the_model_dtype() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        std::fs::write(&path, "[[1, 2, 3], [4, 5, 6]]").unwrap();
        let t = read_tensor(&path, Some(DType::I64)).unwrap();
        assert_eq!(
            (t.shape(), t.as_slice::<i64>().unwrap()),
            (&[2usize, 3][..], &[1i64, 2, 3, 4, 5, 6][..])
        );
    }

    #[test]
    fn json_object_with_shape_and_dtype() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        std::fs::write(&path, r#"{"dtype": "f64", "shape": [2, 2], "data": [1, 2, 3, 4.5]}"#)
            .unwrap();
        let t = read_tensor(&path, Some(DType::F32)).unwrap();
        assert_eq!((t.dtype(), t.shape()), (DType::F64, &[2usize, 2][..]));
    }

    #[test]
    fn json_errors_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        let err = |text: &str| {
            std::fs::write(&path, text).unwrap();
            read_tensor(&path, Some(DType::I64)).unwrap_err().to_string()
        };
        assert!(err("[[1, 2], [3]]").contains("ragged"));
        assert!(err("[1.5]").contains("not a valid i64"));
        assert!(err(r#"{"shape": [1]}"#).contains("`data`"));
        assert!(err(r#"{"shape": [3], "data": [1, 2]}"#).contains("holds 3 elements, but 2"));
        assert!(err("{").contains("invalid JSON"));
    }

    #[test]
    fn unknown_extension_lists_formats() {
        let err = read_tensor(Path::new("x.csv"), None).unwrap_err().to_string();
        assert!(err.contains(".npy") && err.contains(".pb") && err.contains(".json"), "{err}");
    }
}
