//! Triton model repositories as they are: `MODEL/config.pbtxt` (Triton's model configuration,
//! protobuf text format) and `MODEL/<version>/model.onnx` (or `model.pt`, `model.savedmodel/`,
//! `model.graphdef`), served without renaming anything.
//!
//! What thrum takes from the configuration: `platform` or `backend` (the engine),
//! `default_model_filename`, `version_policy` (the version folder served), `max_batch_size`
//! with `dynamic_batching` (`max_queue_delay_microseconds`, `preferred_batch_size`),
//! `instance_group` counts (the workers), and `input`/`output` names, datatypes and dims, which
//! the loaded model must match (TorchScript, which records none, takes them from here). Every
//! other field that is set is named in a warning at start-up: served as if it were absent.
//!
//! The configuration is parsed with the descriptors of `thrum-wire`'s `model_config.proto`
//! (Triton's schema, every field), by `prost-reflect`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, Value};
use thrum_core::{DType, Dim, Model, TensorSpec};

use crate::error::ServeError;
use crate::pb;
use crate::pool::Batching;

/// The `ModelConfig` message's descriptor, from the compiled `.proto` files.
fn descriptor() -> Result<MessageDescriptor, ServeError> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    let pool = POOL
        .get_or_init(|| DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| ServeError::Config {
            what: "Triton's model configuration schema".into(),
            reason: e.clone(),
        })?;
    pool.get_message_by_name("inference.ModelConfig").ok_or_else(|| ServeError::Config {
        what: "Triton's model configuration schema".into(),
        reason: "it has no inference.ModelConfig".into(),
    })
}

/// Line and column (from 1) of byte `offset` in `text`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.len(), |n| before.len() - n - 1) + 1;
    (line, column)
}

/// Text format lets a message field's list go without the colon (`input [ { … } ]`, what
/// Triton's own configs write); prost-reflect's parser wants it (`input: [ … ]`). This puts it
/// back: a `[` right after a field name gets a `:` before it. Strings and `#` comments are left
/// alone, and no line changes, so errors keep their line numbers.
fn colon_before_lists(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut chars = text.chars().peekable();
    // The last significant character outside strings and comments.
    let mut last: Option<char> = None;
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                out.push(c);
                while let Some(d) = chars.next() {
                    out.push(d);
                    if d == '\\' {
                        if let Some(e) = chars.next() {
                            out.push(e);
                        }
                    } else if d == c || d == '\n' {
                        break;
                    }
                }
                last = Some(c);
            }
            '#' => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            '[' if last.is_some_and(|l| l.is_ascii_alphanumeric() || l == '_') => {
                out.push_str(": [");
                last = Some('[');
            }
            c => {
                out.push(c);
                if !c.is_whitespace() {
                    last = Some(c);
                }
            }
        }
    }
    out
}

/// Parses a `config.pbtxt`; errors name the file, the line and column, and what was wrong.
pub fn parse_pbtxt(text: &str, path: &Path) -> Result<(pb::ModelConfig, Vec<String>), ServeError> {
    let bad = |reason: String| ServeError::Config { what: format!("`{}`", path.display()), reason };
    let text = &colon_before_lists(text);
    let message = DynamicMessage::parse_text_format(descriptor()?, text).map_err(|e| {
        use miette::Diagnostic;
        let at = e
            .labels()
            .and_then(|mut labels| labels.next())
            .map(|label| {
                let (line, column) = position(text, label.offset());
                format!(" at line {line}, column {column}")
            })
            .unwrap_or_default();
        bad(format!("not a Triton model configuration{at}: {e}"))
    })?;
    let config = message
        .transcode_to::<pb::ModelConfig>()
        .map_err(|e| bad(format!("not a Triton model configuration: {e}")))?;
    Ok((config, ignored_fields(&message)))
}

/// Parses Triton's model configuration as JSON (a load request's `config` parameter).
pub fn config_from_json(json: &str) -> Result<pb::ModelConfig, ServeError> {
    let bad = |reason: String| {
        ServeError::bad(format!(
            "load parameter `config` is not a Triton model configuration: {reason}"
        ))
    };
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let message = DynamicMessage::deserialize(descriptor()?, &mut deserializer)
        .map_err(|e| bad(e.to_string()))?;
    deserializer.end().map_err(|e| bad(e.to_string()))?;
    message.transcode_to::<pb::ModelConfig>().map_err(|e| bad(e.to_string()))
}

/// Fields thrum serves by (paths in the message, `*` any list element): all others that are
/// set are reported as ignored.
const SERVED: &[&str] = &[
    "name",
    "platform",
    "backend",
    "default_model_filename",
    "version_policy",
    "version_policy.latest",
    "version_policy.latest.num_versions",
    "version_policy.all",
    "version_policy.specific",
    "version_policy.specific.versions",
    "max_batch_size",
    "input",
    "input.*.name",
    "input.*.data_type",
    "input.*.dims",
    "output",
    "output.*.name",
    "output.*.data_type",
    "output.*.dims",
    "instance_group",
    "instance_group.*.name",
    "instance_group.*.count",
    "instance_group.*.kind",
    "dynamic_batching",
    "dynamic_batching.max_queue_delay_microseconds",
    "dynamic_batching.preferred_batch_size",
    "model_transaction_policy",
    "model_transaction_policy.decoupled",
];

/// The paths of the fields set in `message` that thrum does not serve by.
fn ignored_fields(message: &DynamicMessage) -> Vec<String> {
    fn walk(message: &DynamicMessage, prefix: &str, pattern: &str, out: &mut Vec<String>) {
        for (field, value) in message.fields() {
            let path = format!("{prefix}{}", field.name());
            let key = format!("{pattern}{}", field.name());
            if !SERVED.contains(&key.as_str()) {
                out.push(path);
                continue;
            }
            match value {
                Value::Message(inner) => walk(inner, &format!("{path}."), &format!("{key}."), out),
                Value::List(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if let Value::Message(inner) = item {
                            walk(inner, &format!("{path}[{i}]."), &format!("{key}.*."), out);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(message, "", "", &mut out);
    out
}

/// The names of `config`'s fields that are set and ignored (for a load's config override).
pub fn ignored_in(config: &pb::ModelConfig) -> Vec<String> {
    match descriptor() {
        Ok(desc) => {
            let mut message = DynamicMessage::new(desc);
            match message.transcode_from(config) {
                Ok(()) => ignored_fields(&message),
                Err(_) => Vec::new(),
            }
        }
        Err(_) => Vec::new(),
    }
}

/// True when `folder` is laid out as a Triton model: a `config.pbtxt`, or a numeric version
/// folder.
pub fn is_triton_model(folder: &Path) -> bool {
    folder.join("config.pbtxt").is_file() || !versions(folder).is_empty()
}

/// The numeric version folders of a model folder, ascending (Triton skips names with a
/// leading 0).
fn versions(folder: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(folder) else { return Vec::new() };
    let mut versions: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            let plain = name.chars().all(|c| c.is_ascii_digit())
                && !(name.len() > 1 && name.starts_with('0'));
            plain.then(|| name.parse::<u64>().ok().map(|v| (v, p)))?
        })
        .collect();
    versions.sort();
    versions
}

/// A Triton model folder, read.
#[derive(Clone, Debug, PartialEq)]
pub struct TritonModel {
    /// The configuration (empty when the folder has no `config.pbtxt`).
    pub config: pb::ModelConfig,
    /// The model file or folder, in the version folder served.
    pub model: PathBuf,
    /// The version served.
    pub version: u64,
    /// The engine that runs it.
    pub engine: String,
    /// Fields of the configuration that are set and that thrum does not serve by.
    pub ignored: Vec<String>,
}

/// Triton's platform and backend names, the engine that serves each, and the default file.
const PLATFORMS: &[(&str, &str, &str, &str)] = &[
    ("onnxruntime_onnx", "onnxruntime", "ort", "model.onnx"),
    ("pytorch_libtorch", "pytorch", "torch", "model.pt"),
    ("libtorch", "pytorch", "torch", "model.pt"),
    ("tensorflow_savedmodel", "tensorflow", "tensorflow", "model.savedmodel"),
    ("tensorflow_graphdef", "tensorflow", "tensorflow", "model.graphdef"),
];

/// Reads the Triton model in `folder` named `name`; `override_config` replaces its
/// `config.pbtxt` (a load request's `config` parameter).
pub fn read_model(
    folder: &Path,
    name: &str,
    override_config: Option<&pb::ModelConfig>,
) -> Result<TritonModel, ServeError> {
    let bad = |reason: String| ServeError::Config {
        what: format!("model `{name}` in `{}`", folder.display()),
        reason,
    };
    let file = folder.join("config.pbtxt");
    let (config, ignored) = match override_config {
        Some(config) => (config.clone(), ignored_in(config)),
        None if file.is_file() => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| bad(format!("cannot read config.pbtxt: {e}")))?;
            parse_pbtxt(&text, &file)?
        }
        None => (pb::ModelConfig::default(), Vec::new()),
    };
    if !config.name.is_empty() && config.name != name {
        return Err(bad(format!(
            "config.pbtxt names the model `{}`; a model's name is its folder's (rename one of them)",
            config.name
        )));
    }
    let all = versions(folder);
    let version = choose_version(&config, &all).ok_or_else(|| {
        bad(format!(
            "no version folder to serve under its version policy (found: {})",
            if all.is_empty() {
                "none; a Triton model keeps its file in a folder such as 1/".to_string()
            } else {
                all.iter().map(|(v, _)| v.to_string()).collect::<Vec<_>>().join(", ")
            }
        ))
    })?;
    let dir = &all.iter().find(|(v, _)| *v == version).map(|(_, p)| p.clone()).unwrap_or_default();
    let by_platform = PLATFORMS.iter().find(|(platform, backend, _, _)| {
        (!config.platform.is_empty() && config.platform == *platform)
            || (config.platform.is_empty()
                && !config.backend.is_empty()
                && config.backend == *backend)
    });
    if by_platform.is_none() && (!config.platform.is_empty() || !config.backend.is_empty()) {
        return Err(bad(format!(
            "platform `{}` / backend `{}` is not one thrum serves; it serves onnxruntime_onnx (onnxruntime), pytorch_libtorch (pytorch), tensorflow_savedmodel and tensorflow_graphdef (tensorflow)",
            config.platform, config.backend
        )));
    }
    // The file is named inside the version folder: a path out of it (absolute, `..`, a
    // subfolder) would let a load request's config point at any file on the machine.
    let file_name = &config.default_model_filename;
    if !file_name.is_empty() {
        let mut parts = Path::new(file_name).components();
        if !matches!((parts.next(), parts.next()), (Some(std::path::Component::Normal(_)), None)) {
            return Err(bad(format!(
                "default_model_filename `{file_name}` is not a plain file name; it names a file or folder inside the version folder (such as model.onnx)"
            )));
        }
    }
    let model = match (&config.default_model_filename, by_platform) {
        (file, _) if !file.is_empty() => dir.join(file),
        (_, Some((_, _, _, file))) => dir.join(file),
        // No platform: whichever of Triton's default files the version folder holds.
        (_, None) => PLATFORMS
            .iter()
            .map(|(_, _, _, file)| dir.join(file))
            .find(|p| p.exists())
            .ok_or_else(|| bad(format!(
                "no model file in `{}`: expected model.onnx, model.pt, model.savedmodel/ or model.graphdef (or a default_model_filename)",
                dir.display()
            )))?,
    };
    if !model.exists() {
        return Err(bad(format!("its model file `{}` is missing", model.display())));
    }
    let engine = match by_platform {
        Some((_, _, engine, _)) => (*engine).to_string(),
        None => PLATFORMS
            .iter()
            .find(|(_, _, _, file)| model.file_name().is_some_and(|n| n == *file))
            .map_or("ort", |(_, _, engine, _)| engine)
            .to_string(),
    };
    Ok(TritonModel { config, model, version, engine, ignored })
}

/// The version a policy serves: the newest (Triton's default, `latest { num_versions: 1 }`),
/// the newest of `all`, or the newest listed one that exists.
fn choose_version(config: &pb::ModelConfig, versions: &[(u64, PathBuf)]) -> Option<u64> {
    use pb::model_version_policy::PolicyChoice;
    let newest = versions.last().map(|(v, _)| *v);
    match config.version_policy.as_ref().and_then(|p| p.policy_choice.as_ref()) {
        Some(PolicyChoice::Specific(s)) => versions
            .iter()
            .rev()
            .map(|(v, _)| *v)
            .find(|v| s.versions.iter().any(|w| u64::try_from(*w).ok() == Some(*v))),
        _ => newest,
    }
}

/// The refusal of a load request's parameter other than `config` (REST and gRPC alike):
/// files (`file:…`) are not taken, and nothing else is known.
pub fn load_parameter_refused(key: &str) -> ServeError {
    if key.starts_with("file:") {
        ServeError::bad(format!(
            "load parameter `{key}`: thrum serve loads models from its repository's files, not \
             from the request; put the file in the repository"
        ))
    } else {
        ServeError::bad(format!("unknown load parameter `{key}`; a load takes `config`"))
    }
}

/// The settings a configuration gives the pool: workers (instance groups' counts) and
/// batching (`max_batch_size` with `dynamic_batching`).
pub fn pool_settings(config: &pb::ModelConfig) -> (Option<usize>, Option<Batching>) {
    // Summed wide: counts come from files and load requests. The pool refuses more workers
    // than it allows, naming the limit.
    let workers: i64 = config.instance_group.iter().map(|g| i64::from(g.count.max(0))).sum();
    let workers = (workers > 0).then(|| usize::try_from(workers).unwrap_or(usize::MAX));
    let batching = match (&config.scheduling_choice, config.max_batch_size) {
        (Some(pb::model_config::SchedulingChoice::DynamicBatching(d)), max) if max > 0 => Some(
            Batching::new(max as usize, Duration::from_micros(d.max_queue_delay_microseconds))
                .with_preferred(
                    d.preferred_batch_size
                        .iter()
                        .filter_map(|&s| usize::try_from(s).ok())
                        .collect(),
                ),
        ),
        _ => None,
    };
    (workers, batching)
}

/// The dtype of Triton's `TYPE_*` data type.
fn dtype_of(data_type: i32) -> Option<DType> {
    use pb::DataType as T;
    Some(match T::try_from(data_type).ok()? {
        T::TypeBool => DType::Bool,
        T::TypeUint8 => DType::U8,
        T::TypeUint16 => DType::U16,
        T::TypeUint32 => DType::U32,
        T::TypeUint64 => DType::U64,
        T::TypeInt8 => DType::I8,
        T::TypeInt16 => DType::I16,
        T::TypeInt32 => DType::I32,
        T::TypeInt64 => DType::I64,
        T::TypeFp16 => DType::F16,
        T::TypeBf16 => DType::BF16,
        T::TypeFp32 => DType::F32,
        T::TypeFp64 => DType::F64,
        T::TypeString => DType::Bytes,
        T::TypeInvalid => return None,
    })
}

/// The specs a configuration states for `tensors` (with the batch axis in front when the
/// model batches): what a TorchScript model, which records none, is given.
pub fn specs(config: &pb::ModelConfig, inputs: bool) -> Result<Vec<TensorSpec>, String> {
    let batch = config.max_batch_size > 0;
    let list: Vec<(&str, i32, &[i64])> = if inputs {
        config.input.iter().map(|i| (i.name.as_str(), i.data_type, i.dims.as_slice())).collect()
    } else {
        config.output.iter().map(|o| (o.name.as_str(), o.data_type, o.dims.as_slice())).collect()
    };
    list.into_iter()
        .map(|(name, data_type, dims)| {
            let dtype = dtype_of(data_type).ok_or_else(|| format!("`{name}` has no data_type"))?;
            let mut shape: Vec<Dim> = Vec::with_capacity(dims.len() + 1);
            if batch {
                shape.push(Dim::named("N"));
            }
            for &d in dims {
                shape.push(if d < 0 {
                    Dim::Dynamic(None)
                } else {
                    Dim::Fixed(
                        usize::try_from(d).map_err(|_| format!("`{name}` has dimension {d}"))?,
                    )
                });
            }
            Ok(TensorSpec::new(name, dtype, shape))
        })
        .collect()
}

/// Checks a loaded model against the inputs and outputs its configuration states: the same
/// names, datatypes, and dims that agree (a configuration's -1 takes any size; the batch axis
/// comes in front when `max_batch_size` > 0). Triton refuses a mismatch at load too.
pub fn check_model(name: &str, config: &pb::ModelConfig, model: &Model) -> Result<(), ServeError> {
    let bad = |reason: String| ServeError::Config {
        what: format!("model `{name}`: its config.pbtxt"),
        reason,
    };
    for (stated, actual, what) in [
        (specs(config, true).map_err(bad)?, model.inputs(), "input"),
        (specs(config, false).map_err(bad)?, model.outputs(), "output"),
    ] {
        if stated.is_empty() {
            continue;
        }
        let names = |specs: &[TensorSpec]| {
            specs.iter().map(|s| format!("`{}`", s.name)).collect::<Vec<_>>().join(", ")
        };
        for spec in &stated {
            let Some(found) = actual.iter().find(|a| a.name == spec.name) else {
                return Err(bad(format!(
                    "it states {what} `{}`, but the model's {what}s are {}",
                    spec.name,
                    names(actual)
                )));
            };
            if found.dtype != spec.dtype {
                return Err(bad(format!(
                    "{what} `{}` is {} in the model, not the {} it states",
                    spec.name, found.dtype, spec.dtype
                )));
            }
            let agree = found.shape.len() == spec.shape.len()
                && found.shape.iter().zip(&spec.shape).all(|(f, s)| match (f, s) {
                    (Dim::Fixed(a), Dim::Fixed(b)) => a == b,
                    // The model's dynamic axis, fixed in the config: the config narrows it.
                    (Dim::Dynamic(_), _) => true,
                    (Dim::Fixed(_), Dim::Dynamic(_)) => true,
                });
            if !agree {
                return Err(bad(format!(
                    "{what} `{}` has shape {} in the model; the dims it states{} give {}",
                    spec.name,
                    found.shape_string(),
                    if config.max_batch_size > 0 {
                        " (after the batch axis, max_batch_size > 0)"
                    } else {
                        ""
                    },
                    spec.shape_string()
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail by panicking

    use super::*;

    const DENSENET: &str = r#"
name: "densenet_onnx"
platform: "onnxruntime_onnx"
max_batch_size : 0
input [
  {
    name: "data_0"
    data_type: TYPE_FP32
    format: FORMAT_NCHW
    dims: [ 3, 224, 224 ]
    reshape { shape: [ 1, 3, 224, 224 ] }
  }
]
output [
  {
    name: "fc6_1"
    data_type: TYPE_FP32
    dims: [ 1000 ]
    reshape { shape: [ 1, 1000, 1, 1 ] }
    label_filename: "densenet_labels.txt"
  }
]
instance_group [ { count: 2, kind: KIND_CPU } ]
"#;

    #[test]
    fn tritons_own_example_parses_and_names_what_is_ignored() {
        let (config, ignored) = parse_pbtxt(DENSENET, Path::new("config.pbtxt")).unwrap();
        assert_eq!(config.name, "densenet_onnx");
        assert_eq!(config.input[0].dims, vec![3, 224, 224]);
        assert_eq!(pool_settings(&config).0, Some(2));
        assert_eq!(
            ignored,
            vec![
                "input[0].format",
                "input[0].reshape",
                "output[0].label_filename",
                "output[0].reshape"
            ]
        );
    }

    #[test]
    fn a_model_file_outside_the_version_folder_is_refused() {
        let repo = tempfile::tempdir().unwrap();
        let folder = repo.path().join("m");
        std::fs::create_dir_all(folder.join("1")).unwrap();
        std::fs::write(repo.path().join("secret.onnx"), b"x").unwrap();
        for file in ["../../secret.onnx", "/etc/passwd", "sub/model.onnx", ".."] {
            let config = pb::ModelConfig {
                platform: "onnxruntime_onnx".into(),
                default_model_filename: file.into(),
                ..Default::default()
            };
            let Err(e) = read_model(&folder, "m", Some(&config)) else {
                panic!("{file} was taken")
            };
            assert!(e.to_string().contains("not a plain file name"), "{file}: {e}");
        }
    }

    #[test]
    fn instance_counts_are_summed_without_overflow() {
        let group = |count| pb::ModelInstanceGroup { count, ..Default::default() };
        let config = pb::ModelConfig {
            instance_group: vec![group(i32::MAX), group(i32::MAX), group(-5)],
            ..Default::default()
        };
        assert_eq!(pool_settings(&config).0, Some(2 * i32::MAX as usize));
    }

    #[test]
    fn lists_without_a_colon_parse_and_strings_are_left_alone() {
        let text =
            "input [ { name: \"a[0]\" dims: [ 2 ] } ] # a comment [x]\noutput: [ { name: \"y\" } ]";
        assert_eq!(
            colon_before_lists(text),
            "input : [ { name: \"a[0]\" dims: [ 2 ] } ] # a comment [x]\noutput: [ { name: \"y\" } ]"
        );
    }

    #[test]
    fn batching_comes_from_max_batch_size_and_dynamic_batching() {
        let text = "max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 300 preferred_batch_size: [4, 8] }";
        let (config, ignored) = parse_pbtxt(text, Path::new("c")).unwrap();
        let batching = pool_settings(&config).1.unwrap();
        assert_eq!(
            (batching.max_batch_size, batching.max_queue_delay),
            (8, Duration::from_micros(300))
        );
        assert_eq!(batching.preferred_batch_sizes, vec![4, 8]);
        assert!(ignored.is_empty(), "{ignored:?}");
    }

    #[test]
    fn mistakes_name_the_line_and_column() {
        let e = parse_pbtxt(
            "name: \"m\"\ninstance_group [ { gpu: [0] } ]",
            Path::new("m/config.pbtxt"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("m/config.pbtxt") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn a_load_override_is_json() {
        let config = config_from_json(r#"{"max_batch_size": 4, "dynamic_batching": {}}"#).unwrap();
        assert_eq!(config.max_batch_size, 4);
        assert!(
            config_from_json("{\"max_batch\": 4}").unwrap_err().to_string().contains("max_batch")
        );
    }
}
