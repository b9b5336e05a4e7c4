//! The TensorFlow engine itself (compiled with the `runtime` feature).

use std::ffi::{CString, c_char, c_int};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message;
use thrum_core::kit::{Forward, RunConcurrently};
use thrum_core::{
    Capabilities, CpuFeatures, Dim, Engine, EngineCheck, EngineInfo, Error, Model, ModelBackend,
    ModelSource, Options, PredictorBackend, Result, SharedPredictorBackend, Support, Tensor,
    TensorSpec, ThreadConfig,
};

use crate::ffi::{Api, TfGraph, TfOutput, TfSession};
use crate::proto::{
    ConfigProto, GraphDef, GraphOptions, RewriterConfig, SavedModel, SignatureDef, TOGGLE_ON,
    TensorInfo,
};
use crate::{ENGINE, FROZEN_GRAPH, SAVED_MODEL, TensorflowOptions, dtype_name, dtype_of, library};
use thrum_core::precision::{self, Precision};

const EXPECTED: &str =
    "a TensorFlow SavedModel directory (saved_model.pb and variables/) or a frozen graph (.pb)";

/// The TensorFlow engine.
#[derive(Clone, Copy, Debug, Default)]
pub struct TensorflowEngine;

impl TensorflowEngine {
    /// The engine.
    pub fn new() -> TensorflowEngine {
        TensorflowEngine
    }
}

impl Engine for TensorflowEngine {
    fn info(&self) -> &'static EngineInfo {
        &crate::INFO
    }

    fn check(&self) -> EngineCheck {
        library::check()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new(Support::Yes, Support::Yes, vec!["cpu".into()])
    }

    fn load(&self, source: &ModelSource, options: &Options) -> Result<Model> {
        options.validate()?;
        let model = TfModel::load(source, options)?;
        Ok(Model::new(model.name.clone(), ENGINE, Shared(Arc::new(model))))
    }
}

/// What a model source is, for TensorFlow.
enum Kind {
    SavedModel(PathBuf),
    Frozen(Vec<u8>),
}

fn kind_of(source: &ModelSource, name: &str) -> Result<Kind> {
    let unsupported = |reason: String| Error::UnsupportedFormat {
        engine: ENGINE,
        model: name.to_string(),
        reason,
    };
    match source {
        ModelSource::Memory { format, bytes, .. } if *format == FROZEN_GRAPH => {
            Ok(Kind::Frozen(bytes.to_vec()))
        }
        ModelSource::Memory { format, .. } => Err(unsupported(format!(
            "TensorFlow reads a frozen graph from memory, not a {format}; a SavedModel loads from its directory"
        ))),
        ModelSource::Path(path) => {
            let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            if path.is_dir() {
                if path.join("saved_model.pb").is_file() {
                    return Ok(Kind::SavedModel(path.clone()));
                }
                let reason = if path.join("saved_model.pbtxt").is_file() {
                    "it has saved_model.pbtxt, a text SavedModel; thrum reads the binary saved_model.pb \
                     (re-save it with tf.saved_model.save)"
                        .to_string()
                } else {
                    format!("`{}` has no saved_model.pb", path.display())
                };
                return Err(Error::invalid_model(
                    ENGINE,
                    name,
                    format!("not a SavedModel directory: {reason}; expected {EXPECTED}"),
                ));
            }
            if file_name.as_deref() == Some("saved_model.pb")
                && let Some(dir) = path.parent()
            {
                return Ok(Kind::SavedModel(dir.to_path_buf()));
            }
            source.check_format(
                ENGINE,
                &[SAVED_MODEL, FROZEN_GRAPH],
                "TensorFlow runs SavedModels and frozen graphs",
                EXPECTED,
            )?;
            Ok(Kind::Frozen(source.read(EXPECTED)?.into_owned()))
        }
    }
}

/// An input or output: its spec and where it is in the graph.
struct Port {
    spec: TensorSpec,
    output: TfOutput,
}

struct TfModel {
    name: String,
    api: &'static Api,
    graph: *mut TfGraph,
    session: *mut TfSession,
    inputs: Vec<Port>,
    outputs: Vec<Port>,
    input_specs: Vec<TensorSpec>,
    output_specs: Vec<TensorSpec>,
    intra: usize,
    inter: usize,
    /// `precision=bf16`: oneDNN's auto mixed precision rewriter on.
    bf16: bool,
}

// SAFETY: the graph is only read after loading, and TensorFlow's sessions allow concurrent
// TF_SessionRun calls from any thread (the C API's documented contract for a session).
unsafe impl Send for TfModel {}
// SAFETY: as above.
unsafe impl Sync for TfModel {}

fn usable_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl TfModel {
    fn err(&self, reason: impl std::fmt::Display) -> Error {
        Error::inference(ENGINE, &self.name, reason)
    }

    fn load(source: &ModelSource, options: &Options) -> Result<TfModel> {
        let name = source.name();
        let name = if name.is_empty() { "model".into() } else { name };
        let tf = TensorflowOptions::from_options(options)?;
        let bf16 = match options.precision.unwrap_or_default() {
            Precision::Fp32 => false,
            Precision::Bf16 if options.onednn == Some(false) => {
                return Err(precision::unsupported(
                    ENGINE,
                    Precision::Bf16,
                    "TensorFlow's bf16 on CPUs is oneDNN's auto mixed precision, and onednn=false \
                     turns oneDNN off; leave onednn unset or true",
                ));
            }
            Precision::Bf16 => {
                precision::require_cpu(ENGINE, Precision::Bf16, CpuFeatures::detect())?;
                true
            }
            p => {
                return Err(precision::unsupported(
                    ENGINE,
                    p,
                    "TensorFlow's reduced precision on CPUs is bf16 (oneDNN's auto mixed \
                     precision); int8 is a rewrite of the graph by TFLite or Intel Neural \
                     Compressor, which thrum does not make: for int8 quantize the ONNX model \
                     (`thrum quantize`) and run it on ort",
                ));
            }
        };
        let kind = kind_of(source, &name)?;
        let invalid = |reason: String| Error::invalid_model(ENGINE, &name, reason);
        // Checked before TensorFlow sees the files: its own messages for these are less precise.
        let signature = match &kind {
            Kind::SavedModel(dir) => Some(read_signature(dir, &tf, &name)?),
            Kind::Frozen(bytes) => {
                GraphDef::decode(bytes.as_slice()).map_err(|e| {
                    invalid(format!("not a TensorFlow GraphDef ({e}); expected {EXPECTED}"))
                })?;
                None
            }
        };
        let loaded = library::load(&library::find(tf.library_path.as_deref())?, options.onednn)?;
        let api = &loaded.data.api;
        let intra = options.intra_op_threads.unwrap_or_else(usable_cores);
        // TensorFlow runs the operators of every call on one process-wide inter-op pool: each
        // call in flight needs a thread of it, so a pool smaller than the usable cores makes
        // concurrent predictors queue behind each other (ResNet-50, 2 workers × 1 thread:
        // 6.7 samples/s with a pool of 1, 12.9 with 2). inter_op_threads can widen it, not
        // shrink it below the cores.
        let inter = options.inter_op_threads.unwrap_or(1).max(usable_cores());
        loaded.data.claim_pools(intra, inter)?;
        let threads = |n: usize, key: &str| {
            i32::try_from(n).map_err(|_| Error::InvalidValue {
                what: key.into(),
                value: n.to_string(),
                expected: "at most 2147483647 threads".into(),
            })
        };
        let config = ConfigProto {
            intra_op_parallelism_threads: threads(intra, "intra_op_threads")?,
            inter_op_parallelism_threads: threads(inter, "inter_op_threads")?,
            use_per_session_threads: false,
            graph_options: bf16.then_some(GraphOptions {
                rewrite_options: Some(RewriterConfig {
                    auto_mixed_precision_onednn_bfloat16: TOGGLE_ON,
                }),
            }),
        }
        .encode_to_vec();

        // SAFETY: TF_NewGraph returns a graph owned by the model (deleted in Drop) or null.
        let graph = unsafe { (api.new_graph)() };
        if graph.is_null() {
            return Err(invalid("TF_NewGraph failed".into()));
        }
        let mut model = TfModel {
            name: name.clone(),
            api,
            graph,
            session: std::ptr::null_mut(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            input_specs: Vec::new(),
            output_specs: Vec::new(),
            intra,
            inter,
            bf16,
        };
        let session_options = SessionOptions::new(api, &config).map_err(&invalid)?;
        match (&kind, signature) {
            (Kind::SavedModel(dir), Some((tags, signature))) => {
                let dir_c = Api::c_string(&dir.to_string_lossy(), "the SavedModel path")
                    .map_err(&invalid)?;
                let tags_c = tags
                    .iter()
                    .map(|t| Api::c_string(t, "tag"))
                    .collect::<std::result::Result<Vec<CString>, String>>()
                    .map_err(&invalid)?;
                let tag_ptrs: Vec<*const c_char> = tags_c.iter().map(|t| t.as_ptr()).collect();
                let session = api
                    .status(|status| {
                        // SAFETY: every pointer is live for the call: options, the path and tag
                        // strings, the graph; run options and the meta graph buffer may be null.
                        unsafe {
                            (api.load_session_from_saved_model)(
                                session_options.ptr,
                                std::ptr::null(),
                                dir_c.as_ptr(),
                                tag_ptrs.as_ptr(),
                                tag_ptrs.len() as c_int,
                                graph,
                                std::ptr::null_mut(),
                                status,
                            )
                        }
                    })
                    .map_err(|m| {
                        invalid(format!(
                            "TensorFlow cannot load the SavedModel `{}`: {m}",
                            dir.display()
                        ))
                    })?;
                model.session = session;
                model.inputs = model.signature_ports(&signature.inputs, "input")?;
                model.outputs = model.signature_ports(&signature.outputs, "output")?;
            }
            (Kind::Frozen(bytes), _) => {
                let buffer = Buffer::from_bytes(api, bytes).map_err(&invalid)?;
                let import = ImportOptions::new(api).map_err(&invalid)?;
                api.status(|status| {
                    // SAFETY: graph, buffer and options are live for the call.
                    unsafe { (api.graph_import_graph_def)(graph, buffer.ptr, import.ptr, status) }
                })
                .map_err(|m| invalid(format!("TensorFlow rejects the graph: {m}")))?;
                model.inputs = model.frozen_inputs(tf.inputs.as_deref())?;
                model.outputs = model.frozen_outputs(tf.outputs.as_deref())?;
                let session = api
                    .status(|status| {
                        // SAFETY: graph and options are live; the session is owned by the model.
                        unsafe { (api.new_session)(graph, session_options.ptr, status) }
                    })
                    .map_err(|m| invalid(format!("TensorFlow cannot create a session: {m}")))?;
                model.session = session;
            }
            (Kind::SavedModel(_), None) => unreachable!("a SavedModel's signature is read first"),
        }
        model.input_specs = model.inputs.iter().map(|p| p.spec.clone()).collect();
        model.output_specs = model.outputs.iter().map(|p| p.spec.clone()).collect();
        Ok(model)
    }

    /// The graph output named `op:k` (or `op`, output 0). The index is checked here, before any
    /// C API sees it: TensorFlow indexes an operation's outputs with it unchecked, so a negative
    /// or out-of-range `k` from a file or an option would read out of bounds. The error says
    /// which part of the name is wrong.
    fn output_named(&self, name: &str) -> std::result::Result<TfOutput, String> {
        let (op, index) = match name.rsplit_once(':') {
            Some((op, k)) if !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()) => {
                let index = k
                    .parse::<c_int>()
                    .map_err(|_| format!("`{name}`: output index {k} is too large"))?;
                (op, index)
            }
            Some((_, k)) if k.starts_with(['-', '+']) || k.parse::<i64>().is_ok() => {
                return Err(format!(
                    "`{name}`: `{k}` is not an output index (0, 1, …: a number of at least 0)"
                ));
            }
            _ => (name, 0),
        };
        let op_c = CString::new(op).map_err(|_| format!("`{name}` holds a NUL byte"))?;
        // SAFETY: the graph is live; the name is NUL-terminated.
        let oper = unsafe { (self.api.graph_operation_by_name)(self.graph, op_c.as_ptr()) };
        if oper.is_null() {
            return Err(format!("the graph has no operation `{op}`"));
        }
        // SAFETY: `oper` belongs to the live graph.
        let outputs = unsafe { (self.api.operation_num_outputs)(oper) };
        if !(0..outputs).contains(&index) {
            return Err(format!(
                "operation `{op}` has {outputs} outputs; there is no output {index}"
            ));
        }
        Ok(TfOutput { oper, index })
    }

    /// The dtype and shape the graph knows for `output`.
    fn port(&self, name: &str, output: TfOutput, what: &str) -> Result<Port> {
        let api = self.api;
        // SAFETY: `output` is an output of an operation of the live graph.
        let code = unsafe { (api.operation_output_type)(output) };
        let dtype = dtype_of(code).ok_or_else(|| Error::Unsupported {
            engine: ENGINE,
            feature: format!("{what} `{name}` of dtype {}", dtype_name(code)),
            reason: "thrum's tensors have no such type".into(),
        })?;
        let rank = api
            // SAFETY: graph and output are live.
            .status(|s| unsafe { (api.graph_get_tensor_num_dims)(self.graph, output, s) })
            .map_err(|m| self.err(m))?;
        let shape = if rank < 0 {
            // Unknown rank: one dynamic axis is all thrum can say; calls may pass any shape the
            // graph accepts, checked by TensorFlow.
            vec![Dim::Dynamic(None)]
        } else {
            let mut dims = vec![0i64; rank as usize];
            api.status(|s| {
                // SAFETY: `dims` holds `rank` values.
                unsafe {
                    (api.graph_get_tensor_shape)(self.graph, output, dims.as_mut_ptr(), rank, s)
                }
            })
            .map_err(|m| self.err(m))?;
            dims.iter()
                .map(|&d| if d < 0 { Dim::Dynamic(None) } else { Dim::Fixed(d as usize) })
                .collect()
        };
        Ok(Port { spec: TensorSpec::new(name, dtype, shape), output })
    }

    fn signature_ports(
        &self,
        infos: &std::collections::HashMap<String, TensorInfo>,
        what: &str,
    ) -> Result<Vec<Port>> {
        let mut keys: Vec<&String> = infos.keys().collect();
        keys.sort();
        keys.into_iter()
            .map(|key| {
                let info = &infos[key];
                let output = self.output_named(&info.name).map_err(|why| {
                    Error::invalid_model(
                        ENGINE,
                        &self.name,
                        format!("signature {what} `{key}` names `{}`: {why}", info.name),
                    )
                })?;
                let mut port = self.port(key, output, what)?;
                // The signature's shape, when it has one, is what the model promises.
                if let Some(shape) = &info.tensor_shape
                    && !shape.unknown_rank
                {
                    let dims = shape
                        .dim
                        .iter()
                        .map(|d| {
                            if d.size < 0 {
                                Dim::Dynamic(None)
                            } else {
                                Dim::Fixed(d.size as usize)
                            }
                        })
                        .collect();
                    port.spec = TensorSpec::new(key.as_str(), port.spec.dtype, dims);
                }
                Ok(port)
            })
            .collect()
    }

    /// Every operation of the graph: (name, op type, operation).
    fn operations(&self) -> Vec<(String, String, *mut crate::ffi::TfOperation)> {
        let mut pos = 0usize;
        let mut ops = Vec::new();
        loop {
            // SAFETY: the graph is live; `pos` is the iteration cursor the C API keeps.
            let oper = unsafe { (self.api.graph_next_operation)(self.graph, &mut pos) };
            if oper.is_null() {
                return ops;
            }
            // SAFETY: `oper` belongs to the live graph; its strings are copied at once.
            let (name, op) = unsafe {
                (
                    Api::name((self.api.operation_name)(oper)),
                    Api::name((self.api.operation_op_type)(oper)),
                )
            };
            ops.push((name, op, oper));
        }
    }

    fn frozen_inputs(&self, named: Option<&[String]>) -> Result<Vec<Port>> {
        let placeholders: Vec<String> = self
            .operations()
            .into_iter()
            .filter(|(_, op, _)| op == "Placeholder")
            .map(|(name, _, _)| name)
            .collect();
        let names: Vec<String> = named.map_or_else(|| placeholders.clone(), <[String]>::to_vec);
        if names.is_empty() {
            return Err(Error::invalid_model(
                ENGINE,
                &self.name,
                "the graph has no Placeholder, so no inputs; name them with tensorflow.inputs",
            ));
        }
        names
            .iter()
            .map(|name| {
                let output = self.output_named(name).map_err(|why| Error::InvalidValue {
                    what: "tensorflow.inputs".into(),
                    value: name.clone(),
                    expected: format!(
                        "an operation of the graph of `{}` ({why}); its placeholders are: {}",
                        self.name,
                        list(&placeholders)
                    ),
                })?;
                self.port(name, output, "input")
            })
            .collect()
    }

    fn frozen_outputs(&self, named: Option<&[String]>) -> Result<Vec<Port>> {
        const NOT_OUTPUTS: &[&str] = &["Placeholder", "Const", "NoOp", "Assert", "VarHandleOp"];
        let ops = self.operations();
        let sinks: Vec<String> = ops
            .iter()
            .filter(|(_, op, _)| !NOT_OUTPUTS.contains(&op.as_str()))
            .filter(|(_, _, oper)| {
                // SAFETY: `oper` belongs to the live graph.
                let n = unsafe { (self.api.operation_num_outputs)(*oper) };
                n > 0
                    && (0..n).all(|index| {
                        // SAFETY: as above; `index` < its output count.
                        unsafe {
                            (self.api.operation_output_num_consumers)(TfOutput {
                                oper: *oper,
                                index,
                            }) == 0
                        }
                    })
            })
            .map(|(name, _, _)| name.clone())
            .collect();
        let names: Vec<String> = named.map_or_else(|| sinks.clone(), <[String]>::to_vec);
        if names.is_empty() {
            return Err(Error::invalid_model(
                ENGINE,
                &self.name,
                "no operation of the graph is an output (each is consumed by another); name them with tensorflow.outputs",
            ));
        }
        names
            .iter()
            .map(|name| {
                let output = self.output_named(name).map_err(|why| Error::InvalidValue {
                    what: "tensorflow.outputs".into(),
                    value: name.clone(),
                    expected: format!(
                        "an operation (`node` or `node:k`) of the graph of `{}` ({why}); the nodes nothing consumes are: {}",
                        self.name,
                        list(&sinks)
                    ),
                })?;
                self.port(name, output, "output")
            })
            .collect()
    }

    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let api = self.api;
        // TF_SessionRun is told the ports' count: the tensors must be as many (the caller
        // checked them, but the soundness of the call below must not rest on another crate).
        if inputs.len() != self.inputs.len() {
            return Err(self.err(format!(
                "{} inputs given for {} ports",
                inputs.len(),
                self.inputs.len()
            )));
        }
        let fed = inputs
            .iter()
            .zip(&self.inputs)
            .map(|(t, port)| {
                let code = crate::dtype_code(t.dtype()).ok_or_else(|| {
                    self.err(format!(
                        "input `{}`: TensorFlow takes no {}",
                        port.spec.name,
                        t.dtype()
                    ))
                })?;
                api.tensor_from(t, code)
                    .map_err(|m| self.err(format!("input `{}`: {m}", port.spec.name)))
            })
            .collect::<Result<Vec<_>>>()?;
        let input_ports: Vec<TfOutput> = self.inputs.iter().map(|p| p.output).collect();
        let input_values: Vec<*mut crate::ffi::TfTensor> = fed.iter().map(|t| t.ptr).collect();
        let output_ports: Vec<TfOutput> = self.outputs.iter().map(|p| p.output).collect();
        let mut output_values = vec![std::ptr::null_mut(); output_ports.len()];
        let ran = api.status(|status| {
            // SAFETY: the session is live and allows concurrent runs; the input and output
            // arrays hold `len` elements each; input tensors stay owned by `fed` (the C API does
            // not take them); output tensors become the caller's and are owned just below.
            unsafe {
                (api.session_run)(
                    self.session,
                    std::ptr::null(),
                    input_ports.as_ptr(),
                    input_values.as_ptr(),
                    input_ports.len() as c_int,
                    output_ports.as_ptr(),
                    output_values.as_mut_ptr(),
                    output_ports.len() as c_int,
                    std::ptr::null(),
                    0,
                    std::ptr::null_mut(),
                    status,
                )
            }
        });
        let owned: Vec<_> =
            output_values.iter().filter(|p| !p.is_null()).map(|&p| api.own(p)).collect();
        ran.map_err(|m| self.err(m))?;
        if owned.len() != self.outputs.len() {
            return Err(self.err(format!(
                "TensorFlow returned {} outputs, not {}",
                owned.len(),
                self.outputs.len()
            )));
        }
        owned
            .iter()
            .zip(&self.outputs)
            .map(|(t, port)| {
                t.to_tensor().map_err(|m| self.err(format!("output `{}`: {m}", port.spec.name)))
            })
            .collect()
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() { "(none)".into() } else { names.join(", ") }
}

/// Reads `saved_model.pb`, picks the meta graph of `tf`'s tag set and its signature, and
/// checks the signature's tensors are dense ones of types thrum has.
fn read_signature(
    dir: &Path,
    tf: &TensorflowOptions,
    name: &str,
) -> Result<(Vec<String>, SignatureDef)> {
    let file = dir.join("saved_model.pb");
    let bytes = std::fs::read(&file).map_err(|e| Error::read(&file, e))?;
    let invalid = |reason: String| Error::invalid_model(ENGINE, name, reason);
    let saved = SavedModel::decode(bytes.as_slice()).map_err(|e| {
        invalid(format!("`{}` is not a SavedModel ({e}); expected {EXPECTED}", file.display()))
    })?;
    if saved.meta_graphs.is_empty() {
        return Err(invalid(format!("`{}` holds no meta graph", file.display())));
    }
    let tags = tf.tag_set();
    let mut wanted = tags.clone();
    wanted.sort();
    let tag_sets: Vec<Vec<String>> = saved
        .meta_graphs
        .iter()
        .map(|m| {
            let mut t = m.meta_info_def.as_ref().map(|i| i.tags.clone()).unwrap_or_default();
            t.sort();
            t
        })
        .collect();
    let Some(k) = tag_sets.iter().position(|t| *t == wanted) else {
        return Err(Error::InvalidValue {
            what: "tensorflow.tags".into(),
            value: tags.join(","),
            expected: format!(
                "a tag set of the SavedModel `{}`: {}",
                dir.display(),
                tag_sets
                    .iter()
                    .map(|t| format!("`{}`", t.join(",")))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    };
    let meta = &saved.meta_graphs[k];
    let key = tf.signature_key();
    let Some(signature) = meta.signature_def.get(key) else {
        let mut keys: Vec<&String> = meta.signature_def.keys().collect();
        keys.sort();
        return Err(Error::InvalidValue {
            what: "tensorflow.signature".into(),
            value: key.into(),
            expected: format!(
                "a signature of the SavedModel `{}` (tags {}): {}",
                dir.display(),
                tags.join(","),
                if keys.is_empty() {
                    "it has none".to_string()
                } else {
                    keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                }
            ),
        });
    };
    for (what, infos) in [("input", &signature.inputs), ("output", &signature.outputs)] {
        for (k, info) in infos {
            if info.name.is_empty()
                || !info.coo_sparse.is_empty()
                || !info.composite_tensor.is_empty()
            {
                return Err(Error::Unsupported {
                    engine: ENGINE,
                    feature: format!("signature {what} `{k}`, a sparse or composite tensor"),
                    reason: "thrum passes dense tensors".into(),
                });
            }
            if dtype_of(info.dtype).is_none() {
                return Err(Error::Unsupported {
                    engine: ENGINE,
                    feature: format!("signature {what} `{k}` of dtype {}", dtype_name(info.dtype)),
                    reason: "thrum's tensors have no such type".into(),
                });
            }
        }
    }
    Ok((tags, signature.clone()))
}

impl Drop for TfModel {
    fn drop(&mut self) {
        let api = self.api;
        if !self.session.is_null() {
            // SAFETY: the session is live and no predictor uses it any more (they hold the model).
            let _ = api.status(|s| unsafe { (api.close_session)(self.session, s) });
            // SAFETY: as above; deleted once.
            let _ = api.status(|s| unsafe { (api.delete_session)(self.session, s) });
        }
        // SAFETY: the graph came from TF_NewGraph and outlives its session (deleted above).
        unsafe { (api.delete_graph)(self.graph) };
    }
}

/// `TF_SessionOptions` with thrum's `ConfigProto`.
struct SessionOptions {
    api: &'static Api,
    ptr: *mut crate::ffi::TfSessionOptions,
}

impl SessionOptions {
    fn new(api: &'static Api, config: &[u8]) -> std::result::Result<SessionOptions, String> {
        // SAFETY: returns new options owned here (deleted in Drop).
        let ptr = unsafe { (api.new_session_options)() };
        let options = SessionOptions { api, ptr };
        api.status(|s| {
            // SAFETY: options are live; `config` is a serialized ConfigProto of its length.
            unsafe { (api.set_config)(ptr, config.as_ptr().cast(), config.len(), s) }
        })
        .map_err(|m| format!("TensorFlow refuses the session settings: {m}"))?;
        Ok(options)
    }
}

impl Drop for SessionOptions {
    fn drop(&mut self) {
        // SAFETY: created by TF_NewSessionOptions, deleted once.
        unsafe { (self.api.delete_session_options)(self.ptr) }
    }
}

/// A `TF_Buffer` holding a copy of some bytes.
struct Buffer {
    api: &'static Api,
    ptr: *mut crate::ffi::TfBuffer,
}

impl Buffer {
    fn from_bytes(api: &'static Api, bytes: &[u8]) -> std::result::Result<Buffer, String> {
        // SAFETY: TF_NewBufferFromString copies `bytes`; the buffer is deleted in Drop.
        let ptr = unsafe { (api.new_buffer_from_string)(bytes.as_ptr().cast(), bytes.len()) };
        if ptr.is_null() {
            Err("TF_NewBufferFromString failed".into())
        } else {
            Ok(Buffer { api, ptr })
        }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: created by TF_NewBufferFromString, deleted once.
        unsafe { (self.api.delete_buffer)(self.ptr) }
    }
}

/// `TF_ImportGraphDefOptions` (no prefix: names stay as in the file).
struct ImportOptions {
    api: &'static Api,
    ptr: *mut crate::ffi::TfImportOptions,
}

impl ImportOptions {
    fn new(api: &'static Api) -> std::result::Result<ImportOptions, String> {
        // SAFETY: returns new options owned here (deleted in Drop).
        let ptr = unsafe { (api.new_import_options)() };
        if ptr.is_null() {
            Err("TF_NewImportGraphDefOptions failed".into())
        } else {
            Ok(ImportOptions { api, ptr })
        }
    }
}

impl Drop for ImportOptions {
    fn drop(&mut self) {
        // SAFETY: created by TF_NewImportGraphDefOptions, deleted once.
        unsafe { (self.api.delete_import_options)(self.ptr) }
    }
}

impl RunConcurrently for TfModel {
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        TfModel::run(self, inputs)
    }
}

/// The backend thrum's `Model` holds.
struct Shared(Arc<TfModel>);

impl ModelBackend for Shared {
    fn inputs(&self) -> &[TensorSpec] {
        &self.0.input_specs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.0.output_specs
    }

    // Per-thread predictors and the shared predictor are the same thing here: TF_SessionRun
    // may run on many threads at once.
    fn predictor(&self) -> Result<Box<dyn PredictorBackend>> {
        Ok(Box::new(Forward(self.0.clone())))
    }

    fn shared_predictor(&self) -> Result<Box<dyn SharedPredictorBackend>> {
        Ok(Box::new(Forward(self.0.clone())))
    }

    fn threads(&self) -> ThreadConfig {
        ThreadConfig::new(Some(self.0.intra), Some(self.0.inter)).with_note(
            "TensorFlow's CPU thread pools are process-wide, sized by the first model; the inter-op \
             pool runs every call's operators, so it is at least the usable cores",
        )
    }

    fn precision_run(&self) -> Option<String> {
        self.0.bf16.then(|| {
            "TensorFlow: oneDNN's auto mixed precision (bf16) rewriter on; TensorFlow does not \
             report which operators it converted"
                .to_string()
        })
    }
}
