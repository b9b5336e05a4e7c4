//! Input and output specifications of a model, and validation of inputs against them.

use std::fmt;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// One dimension of a declared shape.
///
/// In JSON a fixed dimension is a number and a dynamic one its name (`"?"` when unnamed):
/// `["N", 3, 224, 224]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A size fixed by the model.
    Fixed(usize),
    /// A size chosen per call (a batch or sequence axis), with its symbolic name when the
    /// model gives one (`N`, `batch_size`…).
    Dynamic(Option<String>),
}

impl Dim {
    /// A dynamic dimension with a name. An empty name, or `?` (what exporters such as
    /// Paddle2ONNX write for "unknown"), names nothing: such dimensions are independent of each
    /// other, as ONNX's own rule for a missing `dim_param` says. Only equal real names tie two
    /// dimensions together.
    pub fn named(name: impl Into<String>) -> Dim {
        let name = name.into();
        match name.trim() {
            "" | "?" => Dim::Dynamic(None),
            _ => Dim::Dynamic(Some(name)),
        }
    }

    /// The fixed size, if any.
    pub fn fixed(&self) -> Option<usize> {
        match self {
            Dim::Fixed(n) => Some(*n),
            Dim::Dynamic(_) => None,
        }
    }

    /// True for a dynamic dimension.
    pub fn is_dynamic(&self) -> bool {
        matches!(self, Dim::Dynamic(_))
    }
}

impl serde::Serialize for Dim {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Dim::Fixed(n) => serializer.serialize_u64(*n as u64),
            Dim::Dynamic(Some(name)) => serializer.serialize_str(name),
            Dim::Dynamic(None) => serializer.serialize_str("?"),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Dim {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Dim, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Fixed(usize),
            Named(String),
        }
        Ok(match Repr::deserialize(deserializer)? {
            Repr::Fixed(n) => Dim::Fixed(n),
            Repr::Named(name) if name == "?" => Dim::Dynamic(None),
            Repr::Named(name) => Dim::Dynamic(Some(name)),
        })
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Dynamic(Some(name)) => f.write_str(name),
            Dim::Dynamic(None) => f.write_str("?"),
        }
    }
}

/// Name, element type and shape of one model input or output, and which axis (if any)
/// counts samples.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TensorSpec {
    /// The name the model gives it.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Declared shape; dynamic dimensions are marked.
    pub shape: Vec<Dim>,
    /// The axis along which samples are stacked: requests can be merged along it (dynamic
    /// batching) and a batch size sets it. [`TensorSpec::new`] takes axis 0 when it is
    /// dynamic, the convention of ONNX exporters, TorchScript, MXNet and Triton; an engine that
    /// knows better says so with [`TensorSpec::with_batch_axis`].
    pub batch_axis: Option<usize>,
}

impl TensorSpec {
    /// A spec from its parts; the batch axis is axis 0 when it is dynamic.
    pub fn new(name: impl Into<String>, dtype: DType, shape: Vec<Dim>) -> TensorSpec {
        let batch_axis = shape.first().is_some_and(Dim::is_dynamic).then_some(0);
        TensorSpec { name: name.into(), dtype, shape, batch_axis }
    }

    /// The same spec with another batch axis (`None`: samples cannot be stacked).
    pub fn with_batch_axis(mut self, axis: Option<usize>) -> TensorSpec {
        self.batch_axis = axis.filter(|&a| self.shape.get(a).is_some_and(Dim::is_dynamic));
        self
    }

    /// The shape with the batch axis at `batch` and every other dynamic dimension at `other`.
    pub fn shape_at(&self, batch: usize, other: usize) -> Vec<usize> {
        self.shape
            .iter()
            .enumerate()
            .map(|(axis, d)| match d {
                Dim::Fixed(n) => *n,
                Dim::Dynamic(_) if Some(axis) == self.batch_axis => batch,
                Dim::Dynamic(_) => other,
            })
            .collect()
    }

    /// The shape as text, e.g. `[N,3,224,224]`.
    pub fn shape_string(&self) -> String {
        let dims: Vec<String> = self.shape.iter().map(Dim::to_string).collect();
        format!("[{}]", dims.join(","))
    }

    /// A concrete shape with every dynamic dimension set to `dynamic`.
    pub fn concrete_shape(&self, dynamic: usize) -> Vec<usize> {
        self.shape.iter().map(|d| d.fixed().unwrap_or(dynamic)).collect()
    }

    /// True when any dimension is dynamic.
    pub fn is_dynamic(&self) -> bool {
        self.shape.iter().any(Dim::is_dynamic)
    }
}

impl<'de> serde::Deserialize<'de> for TensorSpec {
    /// Accepts specs written before `batch_axis` existed: a missing field means the default
    /// of [`TensorSpec::new`].
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<TensorSpec, D::Error> {
        #[derive(serde::Deserialize)]
        struct Raw {
            name: String,
            dtype: DType,
            shape: Vec<Dim>,
            #[serde(default)]
            batch_axis: Option<Option<usize>>,
        }
        let raw = Raw::deserialize(deserializer)?;
        let spec = TensorSpec::new(raw.name, raw.dtype, raw.shape);
        Ok(match raw.batch_axis {
            Some(axis) => spec.with_batch_axis(axis),
            None => spec,
        })
    }
}

/// The batch axis every spec shares, if they all have the same one.
pub fn common_batch_axis(specs: &[TensorSpec]) -> Option<usize> {
    let first = specs.first()?.batch_axis?;
    specs.iter().all(|s| s.batch_axis == Some(first)).then_some(first)
}

impl std::str::FromStr for TensorSpec {
    type Err = Error;

    /// Parses `name:dtype[d0,d1,…]`, each dimension a number, a name (dynamic) or `?`:
    /// `data:f32[N,3,224,224]`.
    fn from_str(text: &str) -> Result<TensorSpec, Error> {
        let bad = |why: &str| Error::InvalidValue {
            what: "tensor spec".into(),
            value: text.into(),
            expected: format!("name:dtype[dims], e.g. data:f32[N,3,224,224] ({why})"),
        };
        let (name, rest) = text.trim().split_once(':').ok_or_else(|| bad("no `:`"))?;
        let (dtype, dims) = rest.split_once('[').ok_or_else(|| bad("no `[`"))?;
        let dims = dims.strip_suffix(']').ok_or_else(|| bad("no closing `]`"))?;
        if name.trim().is_empty() {
            return Err(bad("empty name"));
        }
        let dtype: DType = dtype.trim().parse()?;
        let shape = dims
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(|d| match d.parse::<usize>() {
                Ok(n) => Dim::Fixed(n),
                Err(_) if d == "?" => Dim::Dynamic(None),
                Err(_) => Dim::named(d),
            })
            .collect();
        Ok(TensorSpec::new(name.trim(), dtype, shape))
    }
}

impl fmt::Display for TensorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} {}", self.name, self.dtype, self.shape_string())
    }
}

/// Checks positional `inputs` against `specs`: count, dtype, rank, fixed dimensions, and named
/// dynamic dimensions consistent across inputs. A dynamic dimension of size 0 is valid (an
/// empty tensor: ONNX Runtime, for one, runs such models and returns empty outputs).
pub fn check_inputs(model: &str, specs: &[TensorSpec], inputs: &[Tensor]) -> Result<()> {
    if specs.len() != inputs.len() {
        return Err(Error::InputCount {
            model: model.into(),
            expected: specs.len(),
            names: names(specs),
            found: inputs.len(),
        });
    }
    let mut bound: Vec<(&str, usize)> = Vec::new();
    for (spec, tensor) in specs.iter().zip(inputs) {
        check_one(model, spec, tensor, &mut bound)?;
    }
    Ok(())
}

fn check_one<'a>(
    model: &str,
    spec: &'a TensorSpec,
    tensor: &Tensor,
    bound: &mut Vec<(&'a str, usize)>,
) -> Result<()> {
    if tensor.dtype() != spec.dtype {
        return Err(Error::WrongDType {
            model: model.into(),
            input: spec.name.clone(),
            expected: spec.dtype,
            found: tensor.dtype(),
        });
    }
    let shape = tensor.shape();
    if shape.len() != spec.shape.len() {
        return Err(Error::WrongRank {
            model: model.into(),
            input: spec.name.clone(),
            expected_rank: spec.shape.len(),
            expected: spec.shape_string(),
            found_rank: shape.len(),
            found: shape.to_vec(),
        });
    }
    for (axis, (dim, &size)) in spec.shape.iter().zip(shape).enumerate() {
        match dim {
            Dim::Fixed(n) if *n != size => {
                return Err(Error::WrongDimension {
                    model: model.into(),
                    input: spec.name.clone(),
                    axis,
                    expected_dim: *n,
                    found_dim: size,
                    expected: spec.shape_string(),
                    found: shape.to_vec(),
                });
            }
            Dim::Fixed(_) => {}
            Dim::Dynamic(name) => {
                if let Some(name) = name {
                    match bound.iter().find(|(n, _)| n == name) {
                        Some(&(_, expected)) if expected != size => {
                            return Err(Error::InconsistentDimension {
                                model: model.into(),
                                input: spec.name.clone(),
                                symbol: name.clone(),
                                axis,
                                expected,
                                found: size,
                            });
                        }
                        Some(_) => {}
                        None => bound.push((name, size)),
                    }
                }
            }
        }
    }
    Ok(())
}

/// Orders `(name, tensor)` pairs by the model's input order; errors on unknown or missing names.
pub fn order_named_inputs(
    model: &str,
    specs: &[TensorSpec],
    named: Vec<(String, Tensor)>,
) -> Result<Vec<Tensor>> {
    let mut slots: Vec<Option<Tensor>> = vec![None; specs.len()];
    for (name, tensor) in named {
        let index = specs.iter().position(|s| s.name == name).ok_or_else(|| {
            Error::UnknownInput { model: model.into(), name: name.clone(), valid: names(specs) }
        })?;
        slots[index] = Some(tensor);
    }
    slots
        .into_iter()
        .zip(specs)
        .map(|(slot, spec)| {
            slot.ok_or_else(|| Error::MissingInput {
                model: model.into(),
                name: spec.name.clone(),
                valid: names(specs),
            })
        })
        .collect()
}

fn names(specs: &[TensorSpec]) -> String {
    specs.iter().map(|s| format!("`{}`", s.name)).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_spec() -> Vec<TensorSpec> {
        vec![TensorSpec::new(
            "data",
            DType::F32,
            vec![Dim::named("N"), Dim::Fixed(3), Dim::Fixed(4), Dim::Fixed(4)],
        )]
    }

    fn err(inputs: &[Tensor]) -> String {
        check_inputs("m", &image_spec(), inputs).unwrap_err().to_string()
    }

    #[test]
    fn accepts_any_batch_size() {
        for n in [1, 7] {
            check_inputs("m", &image_spec(), &[Tensor::zeros(DType::F32, &[n, 3, 4, 4]).unwrap()])
                .unwrap();
        }
    }

    #[test]
    fn wrong_dtype_names_input_and_both_dtypes() {
        let e = err(&[Tensor::zeros(DType::I64, &[1, 3, 4, 4]).unwrap()]);
        assert!(e.contains("`data`") && e.contains("f32") && e.contains("i64"), "{e}");
    }

    #[test]
    fn wrong_rank_shows_expected_shape() {
        let e = err(&[Tensor::zeros(DType::F32, &[3, 4, 4]).unwrap()]);
        assert!(e.contains("rank 4") && e.contains("[N,3,4,4]") && e.contains("rank 3"), "{e}");
    }

    #[test]
    fn wrong_dimension_names_the_axis() {
        let e = err(&[Tensor::zeros(DType::F32, &[1, 4, 4, 4]).unwrap()]);
        assert!(e.contains("axis 1") && e.contains("expects 3"), "{e}");
    }

    #[test]
    fn zero_sized_dynamic_dimension_is_a_valid_tensor() {
        check_inputs("m", &image_spec(), &[Tensor::zeros(DType::F32, &[0, 3, 4, 4]).unwrap()])
            .unwrap();
    }

    #[test]
    fn batch_axis_is_axis_zero_when_dynamic() {
        assert_eq!(image_spec()[0].batch_axis, Some(0));
        let fixed = TensorSpec::new("x", DType::F32, vec![Dim::Fixed(1), Dim::named("S")]);
        assert_eq!(fixed.batch_axis, None);
        assert_eq!(fixed.clone().with_batch_axis(Some(1)).batch_axis, Some(1));
        assert_eq!(fixed.with_batch_axis(Some(0)).batch_axis, None, "a fixed axis is no batch");
        assert_eq!(image_spec()[0].shape_at(5, 1), vec![5, 3, 4, 4]);
        assert_eq!(common_batch_axis(&image_spec()), Some(0));
    }

    #[test]
    fn input_count_lists_names() {
        let e = err(&[]);
        assert!(e.contains("takes 1 input") && e.contains("`data`") && e.contains("got 0"), "{e}");
    }

    #[test]
    fn inputs_sharing_a_dimension_must_agree() {
        let specs = vec![
            TensorSpec::new("ids", DType::I64, vec![Dim::named("N"), Dim::Fixed(2)]),
            TensorSpec::new("mask", DType::I64, vec![Dim::named("N"), Dim::Fixed(2)]),
        ];
        let e = check_inputs(
            "m",
            &specs,
            &[
                Tensor::zeros(DType::I64, &[2, 2]).unwrap(),
                Tensor::zeros(DType::I64, &[3, 2]).unwrap(),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("N=3") && e.contains("N=2"), "{e}");
    }

    #[test]
    fn unnamed_dynamic_dimensions_are_independent() {
        // PaddleOCR's classifier: x [?,3,48,?], with `?` as its dim_param on both axes.
        let spec = TensorSpec::new(
            "x",
            DType::F32,
            vec![Dim::named("?"), Dim::Fixed(3), Dim::Fixed(48), Dim::named("")],
        );
        assert_eq!(spec.shape[0], Dim::Dynamic(None));
        let x = Tensor::zeros(DType::F32, &[1, 3, 48, 192]).unwrap();
        check_inputs("cls", std::slice::from_ref(&spec), &[x]).unwrap();
        // Equal real names still tie.
        let tied = TensorSpec::new("x", DType::F32, vec![Dim::named("w"), Dim::named("w")]);
        let x = Tensor::zeros(DType::F32, &[2, 3]).unwrap();
        assert!(check_inputs("m", &[tied], &[x]).is_err());
    }

    #[test]
    fn named_inputs_are_reordered_and_checked() {
        let specs = vec![
            TensorSpec::new("a", DType::F32, vec![Dim::Fixed(1)]),
            TensorSpec::new("b", DType::I64, vec![Dim::Fixed(1)]),
        ];
        let a = Tensor::zeros(DType::F32, &[1]).unwrap();
        let b = Tensor::zeros(DType::I64, &[1]).unwrap();
        let ordered =
            order_named_inputs("m", &specs, vec![("b".into(), b), ("a".into(), a)]).unwrap();
        assert_eq!(ordered[0].dtype(), DType::F32);

        let unknown = order_named_inputs("m", &specs, vec![("c".into(), Tensor::scalar(1i64))]);
        let e = unknown.unwrap_err().to_string();
        assert!(e.contains("no input named `c`") && e.contains("`a`, `b`"), "{e}");

        let missing = order_named_inputs("m", &specs, vec![("a".into(), Tensor::scalar(1.0f32))]);
        assert!(missing.unwrap_err().to_string().contains("input `b` is missing"));
    }
}

#[cfg(test)]
mod parse_tests {
    use super::*;

    #[test]
    fn specs_parse_from_text() {
        let spec: TensorSpec = "data:f32[N,3,224,224]".parse().unwrap();
        assert_eq!(spec.to_string(), "data: f32 [N,3,224,224]");
        let ids: TensorSpec = "ids : i64 [?, 128]".parse().unwrap();
        assert_eq!(ids.shape, vec![Dim::Dynamic(None), Dim::Fixed(128)]);
        for bad in ["data", "data:f32", "data:f32[1", ":f32[1]", "data:q8[1]"] {
            assert!(bad.parse::<TensorSpec>().is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod serde_tests {
    use super::*;

    #[test]
    fn specs_without_a_batch_axis_field_get_the_default() {
        let spec: TensorSpec =
            serde_json::from_str(r#"{"name":"x","dtype":"f32","shape":["N",3]}"#).unwrap();
        assert_eq!(spec.batch_axis, Some(0));
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<TensorSpec>(&json).unwrap(), spec);
    }

    #[test]
    fn dims_serialize_as_numbers_and_names() {
        let shape = vec![Dim::named("N"), Dim::Fixed(3), Dim::Dynamic(None)];
        let json = serde_json::to_string(&shape).unwrap();
        assert_eq!(json, r#"["N",3,"?"]"#);
        let back: Vec<Dim> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, shape);
    }
}
