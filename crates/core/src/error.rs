//! The one error type of thrum's inference API, and the [`ErrorKind`] every caller decides by.
//!
//! Callers never parse messages: the CLI derives its exit code from [`Error::kind`], the server
//! its HTTP and gRPC status. Messages are for people: each names the model, engine or input
//! concerned and says what was expected. Where an engine's runtime reported the failure, the
//! runtime's own code is kept in a [`NativeError`] (ONNX Runtime's `OrtErrorCode`, for one).

use std::fmt;
use std::path::PathBuf;

use crate::dtype::DType;

/// Result alias used throughout thrum.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an error is: the one thing programs decide by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The caller's input, option or argument is wrong (a shape, a dtype, a value).
    InvalidInput,
    /// The model file is not a model the engine can load (corrupt, wrong content).
    InvalidModel,
    /// A named thing does not exist: a file, an engine, a model, an input.
    NotFound,
    /// Not available here: an engine not compiled in, a library not installed, a server not
    /// ready. Retrying after a fix (an install, a wait) can succeed.
    Unavailable,
    /// The engine cannot do what was asked (an operator, a format, a setting).
    Unsupported,
    /// A bounded resource is full: a queue, memory.
    ResourceExhausted,
    /// A deadline passed before the work was done.
    Timeout,
    /// A failure inside an engine or thrum that the caller cannot fix by changing the request.
    Internal,
}

impl ErrorKind {
    /// True when the caller can fix the cause (bad arguments, files, models, options, a
    /// missing install): the CLI's exit status 2, HTTP's 4xx family.
    pub fn is_caller_error(self) -> bool {
        !matches!(self, ErrorKind::Internal | ErrorKind::ResourceExhausted | ErrorKind::Timeout)
    }

    /// The snake_case name (`invalid_input`), as serialized.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::InvalidModel => "invalid_model",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::ResourceExhausted => "resource_exhausted",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An engine runtime's own error code (`ORT_INVALID_ARGUMENT` = 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NativeCode {
    /// The code's name in the runtime's headers.
    pub name: &'static str,
    /// Its numeric value.
    pub value: i64,
}

/// What an engine's runtime reported: its message, and its error code where it has one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct NativeError {
    /// The runtime's code, if the runtime has codes.
    pub code: Option<NativeCode>,
    /// The runtime's message.
    pub message: String,
}

impl NativeError {
    /// A message without a code.
    pub fn message(message: impl Into<String>) -> NativeError {
        NativeError { code: None, message: message.into() }
    }

    /// A message with the runtime's code.
    pub fn with_code(code: NativeCode, message: impl Into<String>) -> NativeError {
        NativeError { code: Some(code), message: message.into() }
    }
}

impl From<String> for NativeError {
    fn from(message: String) -> NativeError {
        NativeError::message(message)
    }
}

impl From<&str> for NativeError {
    fn from(message: &str) -> NativeError {
        NativeError::message(message)
    }
}

impl fmt::Display for NativeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(code) => write!(f, "{} ({})", self.message.trim(), code.name),
            None => f.write_str(self.message.trim()),
        }
    }
}

/// Everything that can go wrong loading a model or running it.
///
/// Each message names the model, engine or input concerned and says what was expected, so that
/// the text alone tells a user what to fix; [`Error::kind`] tells a program.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Nothing of that name exists: an engine, a zoo model, an export format.
    #[error("unknown {what} `{name}`; known {what}s: {known}")]
    Unknown {
        /// What was looked up (`engine`, `zoo model`).
        what: &'static str,
        /// The name asked for.
        name: String,
        /// The names that exist.
        known: String,
    },
    /// The engine exists but its cargo feature was off at build time.
    #[error("engine `{engine}` is not compiled in: rebuild with --features {feature}{note}")]
    EngineNotCompiled {
        /// Engine name.
        engine: &'static str,
        /// The cargo feature of the `thrum` crate that enables it.
        feature: &'static str,
        /// What the build then needs (` (needs LIBTORCH at build time …)`), possibly empty.
        note: &'static str,
    },
    /// The engine is compiled in but cannot run here (native library missing, wrong version…).
    #[error("engine `{engine}` is not available: {reason}")]
    EngineUnavailable {
        /// Engine name.
        engine: &'static str,
        /// What is missing and how to install it.
        reason: String,
    },
    /// The engine cannot do what was asked (a shared predictor, oneDNN, an option…).
    #[error("engine `{engine}` does not support {feature}: {reason}")]
    Unsupported {
        /// Engine name.
        engine: &'static str,
        /// What was asked for.
        feature: String,
        /// Why not, and what to do instead.
        reason: String,
    },
    /// The model path does not exist.
    #[error("model file `{}` does not exist", path.display())]
    ModelNotFound {
        /// The path given.
        path: PathBuf,
    },
    /// The model path is a directory where a file was expected.
    #[error("model path `{}` is a directory; expected {expected}", path.display())]
    ModelIsDirectory {
        /// The path given.
        path: PathBuf,
        /// What the engine accepts.
        expected: String,
    },
    /// The model file has no content.
    #[error("model file `{}` is empty (0 bytes); expected {expected}", path.display())]
    EmptyModel {
        /// The path given.
        path: PathBuf,
        /// What the engine accepts.
        expected: String,
    },
    /// The engine does not read the model's format.
    #[error("cannot load `{model}` with engine `{engine}`: {reason}")]
    UnsupportedFormat {
        /// Engine name.
        engine: &'static str,
        /// Model name or path.
        model: String,
        /// Which formats the engine reads.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("cannot {action} `{}`: {source}", path.display())]
    Io {
        /// `read`, `write`, `create`…
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The engine rejected the model file (corrupt, truncated, not a model…).
    #[error("engine `{engine}` cannot load model `{model}`: {source}")]
    InvalidModel {
        /// Engine name.
        engine: &'static str,
        /// Model name.
        model: String,
        /// The engine's explanation (and its runtime's code, if any).
        #[source]
        source: NativeError,
    },
    /// The model uses an operator the engine does not implement.
    #[error("model `{model}` uses operator `{op}`, which engine `{engine}` does not support")]
    UnsupportedOperator {
        /// Engine name.
        engine: &'static str,
        /// Model name.
        model: String,
        /// The operator type, e.g. `Conv` or a custom op's name.
        op: String,
    },
    /// Wrong number of inputs.
    #[error("model `{model}` takes {expected} input(s) ({names}), got {found}")]
    InputCount {
        /// Model name.
        model: String,
        /// How many inputs the model takes.
        expected: usize,
        /// Their names.
        names: String,
        /// How many were given.
        found: usize,
    },
    /// An input was given under a name the model does not have.
    #[error("model `{model}` has no input named `{name}`; its inputs are: {valid}")]
    UnknownInput {
        /// Model name.
        model: String,
        /// The name given.
        name: String,
        /// The model's input names.
        valid: String,
    },
    /// A named input was not given.
    #[error("model `{model}`: input `{name}` is missing; its inputs are: {valid}")]
    MissingInput {
        /// Model name.
        model: String,
        /// The input left out.
        name: String,
        /// The model's input names.
        valid: String,
    },
    /// An input has the wrong element type.
    #[error("model `{model}`: input `{input}` expects dtype {expected}, got {found}")]
    WrongDType {
        /// Model name.
        model: String,
        /// Input name.
        input: String,
        /// The dtype the model declares.
        expected: DType,
        /// The dtype given.
        found: DType,
    },
    /// An input has the wrong number of dimensions.
    #[error(
        "model `{model}`: input `{input}` expects rank {expected_rank} (shape {expected}), \
         got rank {found_rank} (shape {found:?})"
    )]
    WrongRank {
        /// Model name.
        model: String,
        /// Input name.
        input: String,
        /// The rank the model declares.
        expected_rank: usize,
        /// The declared shape, dynamic dimensions by name.
        expected: String,
        /// The rank given.
        found_rank: usize,
        /// The shape given.
        found: Vec<usize>,
    },
    /// An input has a wrong size along a fixed dimension.
    #[error(
        "model `{model}`: input `{input}` expects {expected_dim} along axis {axis} \
         (shape {expected}), got {found_dim} (shape {found:?})"
    )]
    WrongDimension {
        /// Model name.
        model: String,
        /// Input name.
        input: String,
        /// The axis.
        axis: usize,
        /// The size the model declares on that axis.
        expected_dim: usize,
        /// The size given.
        found_dim: usize,
        /// The declared shape.
        expected: String,
        /// The shape given.
        found: Vec<usize>,
    },
    /// Two inputs give different sizes to the same named dynamic dimension.
    #[error(
        "model `{model}`: input `{input}` has {symbol}={found} on axis {axis}, but an earlier \
         input set {symbol}={expected}"
    )]
    InconsistentDimension {
        /// Model name.
        model: String,
        /// Input name.
        input: String,
        /// The dimension's name.
        symbol: String,
        /// The axis in this input.
        axis: usize,
        /// The size set by an earlier input.
        expected: usize,
        /// The size in this input.
        found: usize,
    },
    /// A batch of zero samples where samples are counted (a batch size, a batching path).
    #[error("{what}: a batch of zero samples has nothing to infer; expected at least 1")]
    EmptyBatch {
        /// Where the zero came from (`--batch-size 0`, `request 3 of model m`).
        what: String,
    },
    /// A shape and a buffer disagree on the element count.
    #[error("shape {shape:?} holds {expected} elements, but {found} were given")]
    ElementCount {
        /// The shape.
        shape: Vec<usize>,
        /// Elements the shape holds.
        expected: usize,
        /// Elements given.
        found: usize,
    },
    /// A shape whose element count overflows, or whose buffer would pass the size limit.
    #[error(
        "a {dtype} tensor of shape {shape:?} would hold {}; the limit is {} ({})",
        describe_size(*elements, *dtype), describe_bytes(*limit), "Tensor::MAX_BYTES"
    )]
    TensorTooLarge {
        /// The shape asked for.
        shape: Vec<usize>,
        /// Its element type.
        dtype: DType,
        /// Its element count (`None` when the count overflows 64 bits).
        elements: Option<u64>,
        /// The limit in bytes.
        limit: u64,
    },
    /// Data that does not decode as what it should be (a tensor file, a request body).
    #[error("invalid {what}: {reason}")]
    InvalidData {
        /// What was being read (`ONNX TensorProto`, `.npy file x.npy`).
        what: String,
        /// What is wrong, and what was expected.
        reason: String,
    },
    /// A tensor was read as another element type than its own.
    #[error("tensor has dtype {found}, but was accessed as {expected}")]
    DTypeMismatch {
        /// The dtype asked for.
        expected: DType,
        /// The tensor's dtype.
        found: DType,
    },
    /// Batching or un-batching items failed.
    #[error("cannot batch: {reason}")]
    Batch {
        /// Why.
        reason: String,
    },
    /// A configuration key that does not exist.
    #[error("unknown option `{key}`{origin}; {hint}")]
    UnknownOption {
        /// The key given.
        key: String,
        /// Where it came from (` in file …`, ` in model options`), possibly empty.
        origin: String,
        /// The closest valid key and where the list of keys is.
        hint: String,
    },
    /// A value that does not parse or is out of range.
    #[error("invalid value `{value}` for {what}; expected {expected}")]
    InvalidValue {
        /// What was being set (an option with its origin, a dtype…).
        what: String,
        /// The value given.
        value: String,
        /// What is accepted, and why the value is not.
        expected: String,
    },
    /// A configuration file that is not valid TOML of the expected shape.
    #[error("configuration file `{}`: {reason}", path.display())]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The engine failed while running a model.
    #[error("engine `{engine}` failed to run model `{model}`: {source}")]
    Inference {
        /// Engine name.
        engine: &'static str,
        /// Model name.
        model: String,
        /// What kind of failure, from the runtime's code where it has one.
        kind: ErrorKind,
        /// The runtime's (or the engine crate's) explanation.
        #[source]
        source: NativeError,
    },
    /// A translator's pre- or post-processing failed.
    #[error("translator `{translator}`: {reason}")]
    Translator {
        /// The translator's name.
        translator: String,
        /// What went wrong.
        reason: String,
    },
}

fn describe_bytes(bytes: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    format!("{:.1} GiB", bytes as f64 / GIB)
}

fn describe_size(elements: Option<u64>, dtype: DType) -> String {
    match (elements, dtype.size_of()) {
        (Some(n), Some(size)) => {
            format!("{n} elements ({})", describe_bytes(n.saturating_mul(size as u64)))
        }
        (Some(n), None) => format!("{n} elements"),
        (None, _) => "more elements than a 64-bit count can hold".into(),
    }
}

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        use ErrorKind as K;
        match self {
            Error::Unknown { .. } | Error::ModelNotFound { .. } => K::NotFound,
            Error::EngineNotCompiled { .. } | Error::EngineUnavailable { .. } => K::Unavailable,
            Error::Unsupported { .. }
            | Error::UnsupportedFormat { .. }
            | Error::UnsupportedOperator { .. } => K::Unsupported,
            Error::ModelIsDirectory { .. }
            | Error::EmptyModel { .. }
            | Error::InvalidModel { .. } => K::InvalidModel,
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                K::NotFound
            }
            Error::Io { .. } => K::InvalidInput,
            Error::Inference { kind, .. } => *kind,
            Error::InputCount { .. }
            | Error::UnknownInput { .. }
            | Error::MissingInput { .. }
            | Error::WrongDType { .. }
            | Error::WrongRank { .. }
            | Error::WrongDimension { .. }
            | Error::InconsistentDimension { .. }
            | Error::EmptyBatch { .. }
            | Error::ElementCount { .. }
            | Error::TensorTooLarge { .. }
            | Error::InvalidData { .. }
            | Error::DTypeMismatch { .. }
            | Error::Batch { .. }
            | Error::UnknownOption { .. }
            | Error::InvalidValue { .. }
            | Error::ConfigFile { .. }
            | Error::Translator { .. } => K::InvalidInput,
        }
    }

    /// An engine's failure while running `model`, of kind [`ErrorKind::Internal`]: what engine
    /// crates return when their runtime fails and has no code that says more.
    pub fn inference(
        engine: &'static str,
        model: impl Into<String>,
        cause: impl fmt::Display,
    ) -> Error {
        Error::Inference {
            engine,
            model: model.into(),
            kind: ErrorKind::Internal,
            source: NativeError::message(cause.to_string()),
        }
    }

    /// An engine's failure while running `model`, with the kind its runtime's code implies.
    pub fn inference_native(
        engine: &'static str,
        model: impl Into<String>,
        kind: ErrorKind,
        source: NativeError,
    ) -> Error {
        Error::Inference { engine, model: model.into(), kind, source }
    }

    /// The engine rejected the model file: `cause` says why.
    pub fn invalid_model(
        engine: &'static str,
        model: impl Into<String>,
        cause: impl fmt::Display,
    ) -> Error {
        Error::InvalidModel {
            engine,
            model: model.into(),
            source: NativeError::message(cause.to_string()),
        }
    }

    /// Reading `path` failed.
    pub fn read(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { action: "read", path: path.into(), source }
    }

    /// Writing `path` failed.
    pub fn write(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { action: "write", path: path.into(), source }
    }

    /// The native error code the engine's runtime gave, if it gave one.
    pub fn native_code(&self) -> Option<NativeCode> {
        match self {
            Error::Inference { source, .. } | Error::InvalidModel { source, .. } => source.code,
            _ => None,
        }
    }
}

/// The text of a caught panic's payload (`catch_unwind`, `JoinHandle::join`): what a worker
/// thread that panicked reports instead of taking its process down.
pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_the_cause() {
        let missing = Error::read("m.onnx", std::io::Error::from(std::io::ErrorKind::NotFound));
        assert_eq!(missing.kind(), ErrorKind::NotFound);
        let denied =
            Error::read("m.onnx", std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        assert_eq!(denied.kind(), ErrorKind::InvalidInput);
        assert_eq!(Error::inference("ort", "m", "boom").kind(), ErrorKind::Internal);
        let code = NativeCode { name: "ORT_INVALID_ARGUMENT", value: 2 };
        let bad = Error::inference_native(
            "ort",
            "m",
            ErrorKind::InvalidInput,
            NativeError::with_code(code, "index out of range"),
        );
        assert_eq!(bad.kind(), ErrorKind::InvalidInput);
        assert_eq!(bad.native_code(), Some(code));
        assert!(bad.to_string().ends_with("index out of range (ORT_INVALID_ARGUMENT)"), "{bad}");
    }

    #[test]
    fn only_internal_failures_are_not_the_callers() {
        assert!(ErrorKind::InvalidInput.is_caller_error());
        assert!(ErrorKind::Unavailable.is_caller_error());
        assert!(!ErrorKind::Internal.is_caller_error());
        assert!(!ErrorKind::ResourceExhausted.is_caller_error());
    }

    #[test]
    fn too_large_says_how_large() {
        let e = Error::TensorTooLarge {
            shape: vec![1 << 32, 1 << 32],
            dtype: DType::F32,
            elements: None,
            limit: 1 << 36,
        };
        assert!(e.to_string().contains("more elements than a 64-bit count"), "{e}");
        assert!(e.to_string().contains("64.0 GiB"), "{e}");
    }
}
