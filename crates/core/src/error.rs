//! The one error type of thrum's inference API.

use std::path::PathBuf;

use crate::dtype::DType;

/// Result alias used throughout thrum.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong loading a model or running it.
///
/// Each message names the model, engine or input concerned and says what was expected, so that
/// the text alone tells a user what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No engine of that name exists.
    #[error("unknown engine `{name}`; known engines: {known}")]
    UnknownEngine {
        /// The name asked for.
        name: String,
        /// The names that exist.
        known: String,
    },
    /// The engine exists but its cargo feature was off at build time.
    #[error("engine `{engine}` is not compiled in: rebuild with --features {feature}")]
    EngineNotCompiled {
        /// Engine name.
        engine: &'static str,
        /// The cargo feature that enables it.
        feature: &'static str,
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
    /// The model format cannot be told from the path, or the engine does not read it.
    #[error("cannot load `{model}` with engine `{engine}`: {reason}")]
    UnsupportedFormat {
        /// Engine name.
        engine: &'static str,
        /// Model name or path.
        model: String,
        /// Which formats the engine reads.
        reason: String,
    },
    /// Reading a file failed.
    #[error("cannot read `{}`: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The engine rejected the model file (corrupt, truncated, not a model…).
    #[error("engine `{engine}` cannot load model `{model}`: {reason}")]
    InvalidModel {
        /// Engine name.
        engine: &'static str,
        /// Model name.
        model: String,
        /// The engine's explanation.
        reason: String,
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
    /// A batch (or any dynamic dimension) of size zero.
    #[error(
        "model `{model}`: input `{input}` has size 0 along axis {axis} ({dim}); a batch of zero \
         has nothing to infer"
    )]
    EmptyBatch {
        /// Model name.
        model: String,
        /// Input name.
        input: String,
        /// The axis.
        axis: usize,
        /// The dimension's declared name.
        dim: String,
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
    #[error("unknown option `{key}`{origin}; valid options: {valid}")]
    UnknownOption {
        /// The key given.
        key: String,
        /// Where it came from (` in file …`, ` in THRUM_…`), possibly empty.
        origin: String,
        /// Every valid key.
        valid: String,
    },
    /// A value that does not parse or is out of range.
    #[error("invalid value `{value}` for {what}; expected {expected}")]
    InvalidValue {
        /// What was being set (an option with its origin, a dtype…).
        what: String,
        /// The value given.
        value: String,
        /// What is accepted.
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
    #[error("engine `{engine}` failed to run model `{model}`: {reason}")]
    Inference {
        /// Engine name.
        engine: &'static str,
        /// Model name.
        model: String,
        /// The engine's explanation.
        reason: String,
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
