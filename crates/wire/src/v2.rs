//! The KServe v2 / Open Inference Protocol's data: datatypes, the REST JSON bodies with the
//! binary tensor data extension, and the conversions between wire tensors and thrum's.
//!
//! The parsing here is the protocol's, written for bad input: every count, size and shape a
//! client sends is checked (checked arithmetic, the core's tensor size limit) before anything
//! is allocated from it, and every error names the field.

use std::time::Duration;

use half::{bf16, f16};
use serde_json::{Map, Value};
use thrum_core::{DType, Dim, Tensor, TensorData, TensorSpec};

use crate::WireError;

/// The protocol's datatype string for a dtype.
pub fn datatype(dtype: DType) -> &'static str {
    match dtype {
        DType::Bool => "BOOL",
        DType::U8 => "UINT8",
        DType::U16 => "UINT16",
        DType::U32 => "UINT32",
        DType::U64 => "UINT64",
        DType::I8 => "INT8",
        DType::I16 => "INT16",
        DType::I32 => "INT32",
        DType::I64 => "INT64",
        DType::F16 => "FP16",
        DType::BF16 => "BF16",
        DType::F32 => "FP32",
        DType::F64 => "FP64",
        DType::Bytes => "BYTES",
    }
}

/// The dtype of a datatype string, or an error listing the valid ones.
pub fn dtype_of(datatype_str: &str, what: &str) -> Result<DType, WireError> {
    DType::ALL.into_iter().find(|d| datatype(*d) == datatype_str).ok_or_else(|| {
        WireError::bad(format!(
            "{what} has datatype `{datatype_str}`; the protocol's datatypes are {}",
            DType::ALL.iter().map(|d| datatype(*d)).collect::<Vec<_>>().join(", ")
        ))
    })
}

/// Triton's model-configuration name of a dtype (`TYPE_FP32`; BYTES is `TYPE_STRING`).
pub fn config_type(dtype: DType) -> &'static str {
    match dtype {
        DType::Bytes => "TYPE_STRING",
        DType::Bool => "TYPE_BOOL",
        DType::U8 => "TYPE_UINT8",
        DType::U16 => "TYPE_UINT16",
        DType::U32 => "TYPE_UINT32",
        DType::U64 => "TYPE_UINT64",
        DType::I8 => "TYPE_INT8",
        DType::I16 => "TYPE_INT16",
        DType::I32 => "TYPE_INT32",
        DType::I64 => "TYPE_INT64",
        DType::F16 => "TYPE_FP16",
        DType::BF16 => "TYPE_BF16",
        DType::F32 => "TYPE_FP32",
        DType::F64 => "TYPE_FP64",
    }
}

/// A spec's shape as the protocol states it: dynamic dimensions are -1.
pub fn wire_shape(spec: &TensorSpec) -> Vec<i64> {
    spec.shape.iter().map(|d| d.fixed().map_or(-1, |n| n as i64)).collect()
}

/// A request's shape: non-negative dimensions whose element count is within the core's limit.
pub fn shape_of(dims: &[i64], dtype: DType, what: &str) -> Result<Vec<usize>, WireError> {
    let shape = dims
        .iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| {
                WireError::bad(format!("{what} has a negative dimension {d} in shape {dims:?}"))
            })
        })
        .collect::<Result<Vec<usize>, _>>()?;
    thrum_core::tensor::checked_len(dtype, &shape)
        .map_err(|e| WireError::bad(format!("{what}: {e}")))?;
    Ok(shape)
}

/// One output the request asks for, and whether in binary.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestedOutput {
    /// Output name.
    pub name: String,
    /// `parameters.binary_data`, if given.
    pub binary: Option<bool>,
    /// `parameters.classification`: Triton's classification extension, the top classes of each
    /// sample as `"score:index[:label]"` BYTES instead of the scores.
    pub classification: Option<usize>,
}

/// A decoded inference request, whichever the wire (JSON, binary extension, gRPC).
#[derive(Debug)]
pub struct InferRequest {
    /// The request id, echoed in the response.
    pub id: Option<String>,
    /// Inputs by name, in the order sent.
    pub inputs: Vec<(String, Tensor)>,
    /// Outputs asked for; `None`: every output.
    pub outputs: Option<Vec<RequestedOutput>>,
    /// `parameters.binary_data_output`: outputs are binary unless they say otherwise.
    pub binary_output: bool,
    /// `parameters.timeout`, in microseconds on the wire.
    pub timeout: Option<Duration>,
}

fn object<'a>(value: &'a Value, what: &str) -> Result<&'a Map<String, Value>, WireError> {
    value.as_object().ok_or_else(|| WireError::bad(format!("{what} must be a JSON object")))
}

fn parameters<'a>(
    obj: &'a Map<String, Value>,
    what: &str,
) -> Result<Option<&'a Map<String, Value>>, WireError> {
    match obj.get("parameters") {
        None | Some(Value::Null) => Ok(None),
        Some(p) => object(p, &format!("`parameters` of {what}")).map(Some),
    }
}

fn string_field(obj: &Map<String, Value>, field: &str, what: &str) -> Result<String, WireError> {
    match obj.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => {
            Err(WireError::bad(format!("`{field}` of {what} must be a string, not {other}")))
        }
        None => Err(WireError::bad(format!("{what} has no `{field}`"))),
    }
}

/// Parses a REST inference request: `json` is the JSON header, `binary` the bytes after it
/// (the binary tensor data extension), in the order of the inputs that have a
/// `binary_data_size` parameter.
pub fn parse_rest_request(json: &[u8], binary: &[u8]) -> Result<InferRequest, WireError> {
    let text = std::str::from_utf8(json).map_err(|e| {
        WireError::bad(format!(
            "the JSON header is not UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        WireError::bad(format!(
            "the JSON header is not valid JSON: {e} (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let body = object(&value, "the request")?;
    let id = match body.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => return Err(WireError::bad(format!("`id` must be a string, not {other}"))),
    };
    let params = parameters(body, "the request")?;
    let binary_output = match params.and_then(|p| p.get("binary_data_output")) {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(WireError::bad(format!(
                "`parameters.binary_data_output` must be a boolean, not {other}"
            )));
        }
    };
    if let Some(p) = params {
        for (key, value) in p {
            let set = match value {
                Value::Null | Value::Bool(false) => false,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if set {
                refuse_parameter(key)?;
            }
        }
    }
    let timeout = match params.and_then(|p| p.get("timeout")) {
        None => None,
        Some(v) => Some(Duration::from_micros(v.as_u64().ok_or_else(|| {
            WireError::bad(format!(
                "`parameters.timeout` must be a number of microseconds, not {v}"
            ))
        })?)),
    };
    let inputs_value =
        body.get("inputs").ok_or_else(|| WireError::bad("the request has no `inputs`"))?;
    let inputs_list =
        inputs_value.as_array().ok_or_else(|| WireError::bad("`inputs` must be an array"))?;
    let mut rest = binary;
    let mut inputs = Vec::with_capacity(inputs_list.len());
    for (i, input) in inputs_list.iter().enumerate() {
        let what = format!("input {i}");
        let obj = object(input, &what)?;
        let name = string_field(obj, "name", &what)?;
        let what = format!("input `{name}`");
        let dtype = dtype_of(&string_field(obj, "datatype", &what)?, &what)?;
        let dims: Vec<i64> = match obj.get("shape") {
            Some(Value::Array(dims)) => dims
                .iter()
                .map(|d| {
                    d.as_i64().ok_or_else(|| {
                        WireError::bad(format!("{what}: shape holds {d}, which is not an integer"))
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(WireError::bad(format!(
                    "{what}: `shape` must be an array, not {other}"
                )));
            }
            None => return Err(WireError::bad(format!("{what} has no `shape`"))),
        };
        let shape = shape_of(&dims, dtype, &what)?;
        let input_params = parameters(obj, &what)?;
        if let Some(p) = input_params
            && p.keys().any(|k| k.starts_with("shared_memory"))
        {
            return Err(WireError::bad(format!(
                "{what} asks for shared memory, which thrum serve does not offer; send the data in the body"
            )));
        }
        let tensor = match input_params.and_then(|p| p.get("binary_data_size")) {
            Some(size) => {
                let size =
                    size.as_u64().and_then(|s| usize::try_from(s).ok()).ok_or_else(|| {
                        WireError::bad(format!(
                            "{what}: `binary_data_size` must be a byte count, not {size}"
                        ))
                    })?;
                if size > rest.len() {
                    return Err(WireError::bad(format!(
                        "{what}: binary_data_size {size} runs past the end of the body ({} bytes of binary data left)",
                        rest.len()
                    )));
                }
                let (chunk, tail) = rest.split_at(size);
                rest = tail;
                if obj.contains_key("data") {
                    return Err(WireError::bad(format!(
                        "{what} has both `data` and `binary_data_size`; send one"
                    )));
                }
                tensor_from_binary(dtype, &shape, chunk, &what)?
            }
            None => {
                let data = obj.get("data").ok_or_else(|| {
                    WireError::bad(format!(
                        "{what} has neither `data` nor a `binary_data_size` parameter"
                    ))
                })?;
                tensor_from_json(dtype, &shape, data, &what)?
            }
        };
        inputs.push((name, tensor));
    }
    if !rest.is_empty() {
        return Err(WireError::bad(format!(
            "{} bytes of binary data follow the JSON header beyond what the inputs' binary_data_size take",
            rest.len()
        )));
    }
    let outputs = match body.get("outputs") {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) => Some(
            list.iter()
                .enumerate()
                .map(|(i, o)| {
                    let what = format!("requested output {i}");
                    let obj = object(o, &what)?;
                    let name = string_field(obj, "name", &what)?;
                    let params = parameters(obj, &format!("output `{name}`"))?;
                    let classification = match params.and_then(|p| p.get("classification")) {
                        None => None,
                        Some(count) => Some(class_count(count.as_u64(), &name, count)?),
                    };
                    let binary = match params.and_then(|p| p.get("binary_data")) {
                        None => None,
                        Some(Value::Bool(b)) => Some(*b),
                        Some(other) => {
                            return Err(WireError::bad(format!(
                                "output `{name}`: `binary_data` must be a boolean, not {other}"
                            )));
                        }
                    };
                    Ok(RequestedOutput { name, binary, classification })
                })
                .collect::<Result<Vec<_>, WireError>>()?,
        ),
        Some(other) => {
            return Err(WireError::bad(format!("`outputs` must be an array, not {other}")));
        }
    };
    Ok(InferRequest { id, inputs, outputs, binary_output, timeout })
}

/// Most encoded images one v2 request to an image model may hold (the server's limit, which
/// `thrum load --image-dir` keeps to).
pub const MAX_IMAGES: usize = 64;

/// Checks the `classification` count of output `name`: a positive integer.
pub fn class_count(
    count: Option<u64>,
    name: &str,
    given: &dyn std::fmt::Display,
) -> Result<usize, WireError> {
    match count {
        Some(k) if k >= 1 => usize::try_from(k).map_err(|_| {
            WireError::bad(format!("output `{name}`: `classification` {k} is too large"))
        }),
        _ => Err(WireError::bad(format!(
            "output `{name}`: `classification` must be a count of classes (an integer of at \
             least 1), not {given}"
        ))),
    }
}

/// Refuses a request parameter that asks for what the server does not offer (the extensions
/// it does not announce): sequence batching and priority levels. Served silently, they would
/// change nothing and the client would not know.
pub fn refuse_parameter(key: &str) -> Result<(), WireError> {
    let what = match key {
        "sequence_id" | "sequence_start" | "sequence_end" => {
            "sequence batching (the sequence extension)"
        }
        "priority" => "priority levels (the schedule_policy extension)",
        _ => return Ok(()),
    };
    Err(WireError::bad(format!(
        "parameter `{key}` asks for {what}, which this server does not offer"
    )))
}

/// A request whose `Inference-Header-Content-Length` is 0: the body is the raw data of the
/// model's one input. Its one dynamic dimension, if any, is deduced from the byte count; the
/// request is a batch of one where the model batches, and every output comes back binary.
pub fn parse_raw_request(body: &[u8], specs: &[TensorSpec]) -> Result<InferRequest, WireError> {
    let [spec] = specs else {
        return Err(WireError::bad(format!(
            "a raw binary request (Inference-Header-Content-Length: 0) needs a model with one input; this one has {}",
            specs.len()
        )));
    };
    let what = format!("raw input `{}`", spec.name);
    let shape: Vec<usize> = match spec.dtype.size_of() {
        None => {
            if spec.shape.len() != 1 {
                return Err(WireError::bad(format!(
                    "{what}: a raw BYTES request needs an input of shape [1]"
                )));
            }
            vec![1]
        }
        Some(size) => {
            let fixed: usize = spec.shape.iter().filter_map(Dim::fixed).product::<usize>().max(1);
            let dynamic: Vec<usize> = spec
                .shape
                .iter()
                .enumerate()
                .filter(|(_, d)| d.is_dynamic())
                .map(|(k, _)| k)
                .collect();
            let elements = body.len() / size;
            match dynamic.as_slice() {
                [] => spec.concrete_shape(0),
                [k] => {
                    if !body.len().is_multiple_of(size * fixed) {
                        return Err(WireError::bad(format!(
                            "{what}: {} bytes are not a whole number of {} samples of {} bytes",
                            body.len(),
                            spec.shape_string(),
                            size * fixed
                        )));
                    }
                    let mut shape = spec.concrete_shape(1);
                    shape[*k] = elements / fixed;
                    shape
                }
                _ => {
                    return Err(WireError::bad(format!(
                        "{what} has {} dynamic dimensions {}; a raw request can only deduce one",
                        dynamic.len(),
                        spec.shape_string()
                    )));
                }
            }
        }
    };
    let tensor = tensor_from_binary(spec.dtype, &shape, body, &what)?;
    Ok(InferRequest {
        id: None,
        inputs: vec![(spec.name.clone(), tensor)],
        outputs: None,
        binary_output: true,
        timeout: None,
    })
}

/// A tensor from the binary extension's bytes: little-endian elements, or for BYTES a 4-byte
/// little-endian length before each element.
pub fn tensor_from_binary(
    dtype: DType,
    shape: &[usize],
    bytes: &[u8],
    what: &str,
) -> Result<Tensor, WireError> {
    let count = thrum_core::tensor::checked_len(dtype, shape)
        .map_err(|e| WireError::bad(format!("{what}: {e}")))?;
    if dtype != DType::Bytes {
        let size = dtype.size_of().unwrap_or(1);
        if bytes.len() != count * size {
            return Err(WireError::bad(format!(
                "{what}: shape {shape:?} of {} holds {} bytes, but {} were sent",
                datatype(dtype),
                count * size,
                bytes.len()
            )));
        }
        return Tensor::from_le_bytes(dtype, shape, bytes)
            .map_err(|e| WireError::bad(format!("{what}: {e}")));
    }
    let mut items = Vec::with_capacity(count.min(bytes.len() / 4));
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return Err(WireError::bad(format!(
                "{what}: BYTES element {} has a truncated length prefix ({} bytes left)",
                items.len(),
                rest.len()
            )));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if len > tail.len() {
            return Err(WireError::bad(format!(
                "{what}: BYTES element {} claims {len} bytes, but {} are left",
                items.len(),
                tail.len()
            )));
        }
        items.push(tail[..len].to_vec());
        rest = &tail[len..];
    }
    if items.len() != count {
        return Err(WireError::bad(format!(
            "{what}: shape {shape:?} holds {count} BYTES elements, but {} were sent",
            items.len()
        )));
    }
    Tensor::from_vec(shape.to_vec(), items).map_err(|e| WireError::bad(format!("{what}: {e}")))
}

/// A tensor from JSON `data`: a flat row-major list, or nested lists whose nesting is the shape.
pub fn tensor_from_json(
    dtype: DType,
    shape: &[usize],
    data: &Value,
    what: &str,
) -> Result<Tensor, WireError> {
    let count = thrum_core::tensor::checked_len(dtype, shape)
        .map_err(|e| WireError::bad(format!("{what}: {e}")))?;
    let mut flat: Vec<&Value> = Vec::with_capacity(count.min(1 << 20));
    flatten(data, &mut flat, what, 0)?;
    if flat.len() != count {
        return Err(WireError::bad(format!(
            "{what}: shape {shape:?} holds {count} elements, but `data` has {}",
            flat.len()
        )));
    }
    let bad = |i: usize, v: &Value, expected: &str| {
        WireError::bad(format!("{what}: element {i} is {v}, which is not {expected}"))
    };
    macro_rules! ints {
        ($t:ty) => {{
            let v = flat
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_i64()
                        .and_then(|n| <$t>::try_from(n).ok())
                        .or_else(|| v.as_u64().and_then(|n| <$t>::try_from(n).ok()))
                        .ok_or_else(|| bad(i, v, concat!("a ", stringify!($t))))
                })
                .collect::<Result<Vec<$t>, _>>()?;
            Tensor::from_vec(shape.to_vec(), v)
        }};
    }
    macro_rules! floats {
        ($conv:expr) => {{
            let v = flat
                .iter()
                .enumerate()
                .map(|(i, v)| v.as_f64().map($conv).ok_or_else(|| bad(i, v, "a number")))
                .collect::<Result<Vec<_>, _>>()?;
            Tensor::from_vec(shape.to_vec(), v)
        }};
    }
    let tensor = match dtype {
        DType::Bool => {
            let v = flat
                .iter()
                .enumerate()
                .map(|(i, v)| v.as_bool().ok_or_else(|| bad(i, v, "true or false")))
                .collect::<Result<Vec<bool>, _>>()?;
            Tensor::from_vec(shape.to_vec(), v)
        }
        DType::U8 => ints!(u8),
        DType::U16 => ints!(u16),
        DType::U32 => ints!(u32),
        DType::U64 => ints!(u64),
        DType::I8 => ints!(i8),
        DType::I16 => ints!(i16),
        DType::I32 => ints!(i32),
        DType::I64 => ints!(i64),
        DType::F16 => floats!(f16::from_f64),
        DType::BF16 => floats!(bf16::from_f64),
        DType::F32 => floats!(|x: f64| x as f32),
        DType::F64 => floats!(|x: f64| x),
        DType::Bytes => {
            let v = flat
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str().map(|s| s.as_bytes().to_vec()).ok_or_else(|| bad(i, v, "a string"))
                })
                .collect::<Result<Vec<Vec<u8>>, _>>()?;
            Tensor::from_vec(shape.to_vec(), v)
        }
    };
    tensor.map_err(|e| WireError::bad(format!("{what}: {e}")))
}

/// Flattens nested JSON arrays, checking they are not ragged.
fn flatten<'a>(
    value: &'a Value,
    out: &mut Vec<&'a Value>,
    what: &str,
    depth: usize,
) -> Result<Option<Vec<usize>>, WireError> {
    match value {
        Value::Array(items) => {
            if depth > 64 {
                return Err(WireError::bad(format!("{what}: `data` is nested more than 64 deep")));
            }
            let mut inner: Option<Option<Vec<usize>>> = None;
            for (i, item) in items.iter().enumerate() {
                let shape = flatten(item, out, what, depth + 1)?;
                match &inner {
                    None => inner = Some(shape),
                    Some(first) if *first != shape => {
                        return Err(WireError::bad(format!(
                            "{what}: `data` is ragged: item {i} at depth {depth} has shape {:?}, item 0 has {:?}",
                            shape.unwrap_or_default(),
                            first.clone().unwrap_or_default()
                        )));
                    }
                    Some(_) => {}
                }
            }
            let mut shape = vec![items.len()];
            shape.extend(inner.flatten().unwrap_or_default());
            Ok(Some(shape))
        }
        scalar => {
            out.push(scalar);
            Ok(None)
        }
    }
}

/// A tensor's data as the binary extension carries it.
pub fn binary_of(tensor: &Tensor) -> Vec<u8> {
    match tensor.data() {
        TensorData::Bytes(items) => {
            let mut out = Vec::with_capacity(items.iter().map(|i| i.len() + 4).sum());
            for item in items.iter() {
                out.extend((item.len() as u32).to_le_bytes());
                out.extend(item);
            }
            out
        }
        _ => tensor.raw_bytes().map(<[u8]>::to_vec).unwrap_or_default(),
    }
}

/// A tensor's data as a flat JSON list; NaN and infinities, which JSON cannot carry, are an
/// error that says to ask for binary output.
pub fn json_of(tensor: &Tensor, name: &str) -> Result<Value, WireError> {
    let non_finite = || {
        WireError::bad(format!(
            "output `{name}` holds NaN or infinity, which JSON cannot carry; ask for it in binary \
             (parameters.binary_data = true)"
        ))
    };
    let number = |x: f64| serde_json::Number::from_f64(x).map(Value::Number).ok_or_else(non_finite);
    let values: Vec<Value> = match tensor.data() {
        TensorData::Bool(v) => v.iter().map(|&b| Value::Bool(b)).collect(),
        // JSON strings are Unicode: bytes that are not UTF-8 would come back altered, so they
        // are refused instead, with the way to get them as they are.
        TensorData::Bytes(v) => v
            .iter()
            .enumerate()
            .map(|(i, b)| {
                std::str::from_utf8(b).map(|s| Value::String(s.to_owned())).map_err(|e| {
                    WireError::bad(format!(
                        "output `{name}` element {i} holds bytes that are not UTF-8 (invalid byte \
                         at offset {}), which a JSON string cannot carry unaltered; ask for it in \
                         binary (parameters.binary_data = true)",
                        e.valid_up_to()
                    ))
                })
            })
            .collect::<Result<_, _>>()?,
        TensorData::U64(v) => v.iter().map(|&x| Value::from(x)).collect(),
        TensorData::I64(v) => v.iter().map(|&x| Value::from(x)).collect(),
        TensorData::F32(v) => v.iter().map(|&x| number(f64::from(x))).collect::<Result<_, _>>()?,
        TensorData::F64(v) => v.iter().map(|&x| number(x)).collect::<Result<_, _>>()?,
        TensorData::F16(v) => v.iter().map(|x| number(x.to_f64())).collect::<Result<_, _>>()?,
        TensorData::BF16(v) => v.iter().map(|x| number(x.to_f64())).collect::<Result<_, _>>()?,
        _ => tensor
            .to_f64_vec()
            .unwrap_or_default()
            .into_iter()
            .map(|x| Value::from(x as i64))
            .collect(),
    };
    Ok(Value::Array(values))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail by panicking

    use super::*;

    fn err(json: &str, binary: &[u8]) -> String {
        parse_rest_request(json.as_bytes(), binary).unwrap_err().to_string()
    }

    #[test]
    fn json_inputs_flat_or_nested() {
        let flat = r#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[1,2,3,4]}]}"#;
        let nested =
            r#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4]]}]}"#;
        for body in [flat, nested] {
            let r = parse_rest_request(body.as_bytes(), &[]).unwrap();
            assert_eq!(r.inputs[0].1.as_slice::<f32>().unwrap(), &[1.0, 2.0, 3.0, 4.0]);
        }
    }

    #[test]
    fn binary_inputs_follow_the_json_in_order() {
        let body = r#"{"id":"7","inputs":[{"name":"a","shape":[2],"datatype":"INT32","parameters":{"binary_data_size":8}},
                      {"name":"s","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":11}}],
                      "parameters":{"binary_data_output":true,"timeout":1500}}"#;
        let mut bin = vec![];
        bin.extend(5i32.to_le_bytes());
        bin.extend((-1i32).to_le_bytes());
        bin.extend(1u32.to_le_bytes());
        bin.extend(b"x");
        bin.extend(2u32.to_le_bytes());
        bin.extend(b"yz");
        let r = parse_rest_request(body.as_bytes(), &bin).unwrap();
        assert_eq!(r.id.as_deref(), Some("7"));
        assert_eq!(r.inputs[0].1.as_slice::<i32>().unwrap(), &[5, -1]);
        assert_eq!(r.inputs[1].1.as_slice::<Vec<u8>>().unwrap(), &[b"x".to_vec(), b"yz".to_vec()]);
        assert!(r.binary_output);
        assert_eq!(r.timeout, Some(Duration::from_micros(1500)));
        assert_eq!(binary_of(&r.inputs[1].1), bin[8..]);
    }

    #[test]
    fn bad_requests_name_the_field() {
        let input = |shape: &str, dt: &str, rest: &str| {
            format!(r#"{{"inputs":[{{"name":"x","shape":{shape},"datatype":"{dt}"{rest}}}]}}"#)
        };
        assert!(err("{", &[]).contains("not valid JSON"));
        assert!(
            parse_rest_request(&[0xff, 0xfe], &[]).unwrap_err().to_string().contains("not UTF-8")
        );
        assert!(err(&input("[2]", "FP33", r#","data":[1,2]"#), &[]).contains("datatype `FP33`"));
        assert!(
            err(&input("[3]", "FP32", r#","data":[1,2]"#), &[])
                .contains("holds 3 elements, but `data` has 2")
        );
        assert!(
            err(&input("[-2]", "FP32", r#","data":[1,2]"#), &[]).contains("negative dimension -2")
        );
        assert!(err(&input("[2,2]", "FP32", r#","data":[[1,2],[3]]"#), &[]).contains("ragged"));
        assert!(
            err(&input("[4294967296,4294967296]", "FP32", r#","data":[]"#), &[])
                .contains("would hold")
        );
        let past = input("[2]", "FP32", r#","parameters":{"binary_data_size":8}"#);
        assert!(err(&past, &[0; 4]).contains("runs past the end of the body"));
        assert!(err(&input("[1]", "INT8", r#","data":[300]"#), &[]).contains("not a i8"));
        assert!(
            err(&input("[1]", "FP32", r#","data":[1]"#), &[1]).contains("beyond what the inputs")
        );
    }

    #[test]
    fn raw_requests_deduce_the_dynamic_dimension() {
        let spec: TensorSpec = "x:f32[N,2]".parse().unwrap();
        let bytes: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        let r = parse_raw_request(&bytes, std::slice::from_ref(&spec)).unwrap();
        assert_eq!(r.inputs[0].1.shape(), &[2, 2]);
        assert!(parse_raw_request(&bytes[..6], &[spec]).is_err());
    }

    #[test]
    fn json_outputs_refuse_bytes_that_are_not_utf8() {
        let t = Tensor::from_vec(vec![2], vec![b"ok".to_vec(), vec![0xff, 0x00]]).unwrap();
        let e = json_of(&t, "y").unwrap_err().to_string();
        assert!(e.contains("element 1") && e.contains("not UTF-8") && e.contains("binary"), "{e}");
        let t = Tensor::from_vec(vec![1], vec!["é".as_bytes().to_vec()]).unwrap();
        assert_eq!(json_of(&t, "y").unwrap(), serde_json::json!(["é"]));
    }

    #[test]
    fn json_outputs_refuse_nan() {
        let t = Tensor::from_vec(vec![2], vec![1.0f32, f32::NAN]).unwrap();
        assert!(json_of(&t, "y").unwrap_err().to_string().contains("binary_data = true"));
        let t = Tensor::from_vec(vec![2], vec![1u8, 2]).unwrap();
        assert_eq!(json_of(&t, "y").unwrap(), serde_json::json!([1, 2]));
    }
}
