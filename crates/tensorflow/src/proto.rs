//! The few TensorFlow protocol-buffer messages thrum reads and writes, declared here with
//! prost (field numbers from TensorFlow's `.proto` files: `core/protobuf/saved_model.proto`,
//! `meta_graph.proto`, `config.proto`, `core/framework/graph.proto`, `node_def.proto`,
//! `attr_value.proto`, `tensor.proto`, `tensor_shape.proto`, `versions.proto`).
//!
//! Only the fields thrum uses are declared; prost skips the others when decoding, so a
//! SavedModel written by any TensorFlow version decodes.

use std::collections::HashMap;

/// `SavedModel`: the content of `saved_model.pb`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SavedModel {
    /// `saved_model_schema_version`.
    #[prost(int64, tag = "1")]
    pub saved_model_schema_version: i64,
    /// One meta graph per tag set.
    #[prost(message, repeated, tag = "2")]
    pub meta_graphs: Vec<MetaGraphDef>,
}

/// `MetaGraphDef`: a graph with its tags and signatures.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetaGraphDef {
    /// `meta_info_def` (its tags).
    #[prost(message, optional, tag = "1")]
    pub meta_info_def: Option<MetaInfoDef>,
    /// `signature_def`: signatures by key (`serving_default`).
    #[prost(map = "string, message", tag = "5")]
    pub signature_def: HashMap<String, SignatureDef>,
}

/// `MetaGraphDef.MetaInfoDef`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetaInfoDef {
    /// The tags of this meta graph (`serve`).
    #[prost(string, repeated, tag = "4")]
    pub tags: Vec<String>,
    /// The TensorFlow version that wrote it.
    #[prost(string, tag = "5")]
    pub tensorflow_version: String,
}

/// `SignatureDef`: named inputs and outputs of one function of the model.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SignatureDef {
    /// Inputs by key.
    #[prost(map = "string, message", tag = "1")]
    pub inputs: HashMap<String, TensorInfo>,
    /// Outputs by key.
    #[prost(map = "string, message", tag = "2")]
    pub outputs: HashMap<String, TensorInfo>,
    /// `tensorflow/serving/predict`…
    #[prost(string, tag = "3")]
    pub method_name: String,
}

/// `TensorInfo`: a graph tensor behind a signature key.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorInfo {
    /// `op_name:output_index` of a dense tensor (empty for sparse and composite tensors).
    #[prost(string, tag = "1")]
    pub name: String,
    /// `DataType`.
    #[prost(int32, tag = "2")]
    pub dtype: i32,
    /// Its static shape.
    #[prost(message, optional, tag = "3")]
    pub tensor_shape: Option<TensorShapeProto>,
    /// Set for a sparse tensor (`coo_sparse`): thrum does not take those.
    #[prost(bytes = "vec", tag = "4")]
    pub coo_sparse: Vec<u8>,
    /// Set for a composite tensor (ragged…): thrum does not take those.
    #[prost(bytes = "vec", tag = "5")]
    pub composite_tensor: Vec<u8>,
}

/// `TensorShapeProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    /// Dimensions, outermost first.
    #[prost(message, repeated, tag = "2")]
    pub dim: Vec<Dim>,
    /// The rank is unknown.
    #[prost(bool, tag = "3")]
    pub unknown_rank: bool,
}

/// `TensorShapeProto.Dim`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Dim {
    /// Size; -1 is unknown.
    #[prost(int64, tag = "1")]
    pub size: i64,
}

/// `ConfigProto`: the session settings thrum sets.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConfigProto {
    /// Threads of one operator (the intra-op pool).
    #[prost(int32, tag = "2")]
    pub intra_op_parallelism_threads: i32,
    /// Operators run at once (the inter-op pool).
    #[prost(int32, tag = "5")]
    pub inter_op_parallelism_threads: i32,
    /// Each session gets its own inter-op pool sized by its own settings, instead of the
    /// process-wide pool the first session sized.
    #[prost(bool, tag = "9")]
    pub use_per_session_threads: bool,
    /// Graph options: the grappler rewrites.
    #[prost(message, optional, tag = "10")]
    pub graph_options: Option<GraphOptions>,
}

/// `GraphOptions`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphOptions {
    /// Grappler's rewriters.
    #[prost(message, optional, tag = "10")]
    pub rewrite_options: Option<RewriterConfig>,
}

/// `RewriterConfig` (field numbers read from the descriptor compiled into TensorFlow 2.21).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RewriterConfig {
    /// oneDNN's bf16 auto mixed precision (a `Toggle`: 0 default, 1 on, 2 off): float ops that
    /// oneDNN runs in bf16 are rewritten to bf16, with casts around them.
    #[prost(int32, tag = "31")]
    pub auto_mixed_precision_onednn_bfloat16: i32,
}

/// `RewriterConfig.Toggle.ON`.
pub const TOGGLE_ON: i32 = 1;

/// `GraphDef`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphDef {
    /// Nodes.
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeDef>,
    /// The producer's graph version.
    #[prost(message, optional, tag = "4")]
    pub versions: Option<VersionDef>,
}

/// `VersionDef`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VersionDef {
    /// The GraphDef version of the producer.
    #[prost(int32, tag = "1")]
    pub producer: i32,
    /// The oldest consumer version that reads it.
    #[prost(int32, tag = "2")]
    pub min_consumer: i32,
}

/// `NodeDef`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeDef {
    /// Unique name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Operator (`Conv2D`).
    #[prost(string, tag = "2")]
    pub op: String,
    /// Inputs: `node`, `node:k`, or `^node` for a control input.
    #[prost(string, repeated, tag = "3")]
    pub input: Vec<String>,
    /// Attributes.
    #[prost(map = "string, message", tag = "5")]
    pub attr: HashMap<String, AttrValue>,
}

/// `AttrValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttrValue {
    /// The value.
    #[prost(oneof = "attr_value::Value", tags = "1, 2, 3, 4, 5, 6, 7, 8")]
    pub value: Option<attr_value::Value>,
}

/// `AttrValue`'s oneof and list.
pub mod attr_value {
    /// `AttrValue.value`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        /// A list.
        #[prost(message, tag = "1")]
        List(ListValue),
        /// Bytes.
        #[prost(bytes, tag = "2")]
        S(Vec<u8>),
        /// An integer.
        #[prost(int64, tag = "3")]
        I(i64),
        /// A float.
        #[prost(float, tag = "4")]
        F(f32),
        /// A bool.
        #[prost(bool, tag = "5")]
        B(bool),
        /// A `DataType`.
        #[prost(int32, tag = "6")]
        Type(i32),
        /// A shape.
        #[prost(message, tag = "7")]
        Shape(super::TensorShapeProto),
        /// A tensor.
        #[prost(message, tag = "8")]
        Tensor(super::TensorProto),
    }

    /// `AttrValue.ListValue` (the integer list thrum writes).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListValue {
        /// Integers.
        #[prost(int64, repeated, tag = "3")]
        pub i: Vec<i64>,
    }
}

/// `TensorProto`, with the data in `tensor_content` (raw little-endian bytes).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// `DataType`.
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    /// Shape.
    #[prost(message, optional, tag = "2")]
    pub tensor_shape: Option<TensorShapeProto>,
    /// Raw data.
    #[prost(bytes = "vec", tag = "4")]
    pub tensor_content: Vec<u8>,
}

impl TensorShapeProto {
    /// A known shape.
    pub fn of(dims: &[i64]) -> TensorShapeProto {
        TensorShapeProto {
            dim: dims.iter().map(|&size| Dim { size }).collect(),
            unknown_rank: false,
        }
    }
}
