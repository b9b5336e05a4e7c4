//! A small graph IR for the zoo's models, and the builder that makes them.
//!
//! The IR is deliberately framework-neutral (torchvision-style weight names, `[out, in]`
//! linear weights, `[out, in, k, k]` convolutions) so that each exporter — ONNX here,
//! TorchScript and MXNet in their engine crates — writes *the same weights* in its own format.

use std::collections::HashMap;

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use thrum_core::{DType, Dim, Tensor, TensorSpec};

/// One operator of the IR.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Op {
    /// 2-D convolution, square kernel; inputs `x, w[, b]`, `w` is `[out, in / groups, k, k]`.
    Conv {
        /// Kernel size.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Zero padding `[top, left, bottom, right]` (TensorFlow's `SAME` is asymmetric).
        pads: [usize; 4],
        /// Channel groups: 1 for a full convolution, the channel count for a depthwise one.
        groups: usize,
    },
    /// Inference-mode batch normalization; inputs `x, scale, bias, mean, var`.
    BatchNorm {
        /// Added to the variance.
        epsilon: f32,
    },
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, min), max)` (ReLU6 is `0, 6`).
    Clip {
        /// Lower bound.
        min: f32,
        /// Upper bound.
        max: f32,
    },
    /// 2-D max pooling, square window.
    MaxPool {
        /// Window size.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Padding (with -inf) on every side.
        pad: usize,
    },
    /// Mean over the spatial axes, keeping them as size 1.
    GlobalAveragePool,
    /// Flattens every axis after the first.
    Flatten,
    /// `x · wᵀ + b` over the last axis; inputs `x, w[, b]`, `w` is `[out, in]`.
    Linear,
    /// Element-wise sum with broadcasting.
    Add,
    /// Product of the last two axes (batched).
    MatMul,
    /// Embedding lookup: inputs `table, indices`, rows of `table` picked by `indices`.
    Gather,
    /// Reshape; `0` copies the input's size on that axis, `-1` is inferred.
    Reshape {
        /// Target shape.
        shape: Vec<i64>,
    },
    /// Axis permutation.
    Transpose {
        /// The permutation.
        perm: Vec<usize>,
    },
    /// Softmax over one axis.
    Softmax {
        /// The axis (negative counts from the end).
        axis: i64,
    },
    /// Layer normalization over the last axis; inputs `x, scale, bias`.
    LayerNorm {
        /// Added to the variance.
        epsilon: f32,
    },
    /// Exact GELU, `x · Φ(x)`.
    Gelu,
    /// Multiplication by a constant.
    Scale {
        /// The factor.
        factor: f32,
    },
    /// `x · scale + shift`, element-wise (an attention mask of 1s and 0s becomes a bias of 0s
    /// and a large negative number).
    Affine {
        /// The factor.
        scale: f32,
        /// The offset.
        shift: f32,
    },
    /// Conversion of every element to another type.
    Cast {
        /// The target type.
        to: DType,
    },
    /// The first rows of a table: inputs `table, like`; as many rows of `table` as `like` has
    /// along axis 1 (a sequence's positions, for a position embedding).
    RowsLike,
}

impl Op {
    /// Short name, for node names.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Conv { .. } => "conv",
            Op::BatchNorm { .. } => "batchnorm",
            Op::Relu => "relu",
            Op::Clip { .. } => "clip",
            Op::MaxPool { .. } => "maxpool",
            Op::GlobalAveragePool => "avgpool",
            Op::Flatten => "flatten",
            Op::Linear => "linear",
            Op::Add => "add",
            Op::MatMul => "matmul",
            Op::Gather => "gather",
            Op::Reshape { .. } => "reshape",
            Op::Transpose { .. } => "transpose",
            Op::Softmax { .. } => "softmax",
            Op::LayerNorm { .. } => "layernorm",
            Op::Gelu => "gelu",
            Op::Scale { .. } => "scale",
            Op::Affine { .. } => "affine",
            Op::Cast { .. } => "cast",
            Op::RowsLike => "rows",
        }
    }
}

/// One node: an operator applied to named values, producing one named value.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Unique node name.
    pub name: String,
    /// The operator.
    pub op: Op,
    /// Names of the input values (graph inputs, weights or other nodes' outputs).
    pub inputs: Vec<String>,
    /// Name of the output value.
    pub output: String,
    /// Output shape with every dynamic dimension at 1.
    pub shape: Vec<usize>,
}

/// A model: inputs, outputs, nodes in topological order, and named weights.
#[derive(Clone, Debug)]
pub struct Graph {
    /// The model's name.
    pub name: String,
    /// Graph inputs.
    pub inputs: Vec<TensorSpec>,
    /// Graph outputs (each the output of some node).
    pub outputs: Vec<TensorSpec>,
    /// Nodes in execution order.
    pub nodes: Vec<Node>,
    /// Weights by name, in creation order.
    pub weights: Vec<(String, Tensor)>,
    /// Floating-point operations for one sample: 2 × the multiply-accumulates of
    /// convolutions, linear layers and matmuls (element-wise operations are not counted).
    pub flops_per_sample: u64,
}

impl Graph {
    /// Number of weight elements.
    pub fn parameter_count(&self) -> usize {
        self.weights.iter().map(|(_, t)| t.len()).sum()
    }

    /// A weight by name.
    pub fn weight(&self, name: &str) -> Option<&Tensor> {
        self.weights.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

/// Deterministic weight initialisations.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Init {
    /// Uniform in `[-bound, bound]`.
    Uniform(f32),
    /// Uniform in `[center - spread, center + spread]`.
    Around(f32, f32),
}

/// Builds a [`Graph`] while tracking shapes (dynamic dimensions at 1) and counting FLOPs.
pub(crate) struct Builder {
    graph: Graph,
    seed: u64,
    /// Real weights by name: [`Builder::weight`] takes them from here instead of drawing them.
    pretrained: Option<HashMap<String, Tensor>>,
    /// The first weight a graph asked for that `pretrained` lacks or has in another shape.
    missing: Option<String>,
    shapes: HashMap<String, Vec<usize>>,
    counts: HashMap<&'static str, usize>,
}

fn fnv1a(text: &str) -> u64 {
    text.bytes()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

impl Builder {
    pub(crate) fn new(name: &str, seed: u64) -> Builder {
        Builder {
            graph: Graph {
                name: name.into(),
                inputs: Vec::new(),
                outputs: Vec::new(),
                nodes: Vec::new(),
                weights: Vec::new(),
                flops_per_sample: 0,
            },
            seed,
            pretrained: None,
            missing: None,
            shapes: HashMap::new(),
            counts: HashMap::new(),
        }
    }

    /// A builder whose weights are `weights` (a checkpoint's tensors by name), not drawn.
    pub(crate) fn pretrained(name: &str, weights: HashMap<String, Tensor>) -> Builder {
        let mut b = Builder::new(name, 0);
        b.pretrained = Some(weights);
        b
    }

    pub(crate) fn input(&mut self, name: &str, dtype: DType, shape: Vec<Dim>) -> String {
        let spec = TensorSpec::new(name, dtype, shape);
        self.shapes.insert(name.into(), spec.concrete_shape(1));
        self.graph.inputs.push(spec);
        name.into()
    }

    pub(crate) fn shape(&self, value: &str) -> &[usize] {
        self.shapes.get(value).map_or(&[], Vec::as_slice)
    }

    /// A weight whose values depend only on the seed and its name, so that adding a layer
    /// elsewhere never changes the existing weights.
    pub(crate) fn weight(&mut self, name: &str, shape: &[usize], init: Init) -> String {
        if let Some(weights) = &mut self.pretrained {
            let problem = match weights.remove(name) {
                Some(t) if t.shape() == shape => return self.constant(name, t),
                Some(t) => {
                    format!("`{name}` has shape {:?}; the architecture needs {shape:?}", t.shape())
                }
                None => format!("`{name}` {shape:?} is missing"),
            };
            // A placeholder, so that building goes on to report the problem: it has the
            // shape the layers after it expect.
            self.missing.get_or_insert(problem);
            let name = self.constant(name, Tensor::scalar(0.0f32));
            self.shapes.insert(name.clone(), shape.to_vec());
            return name;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ fnv1a(name));
        let len: usize = shape.iter().product();
        let (center, spread) = match init {
            Init::Uniform(bound) => (0.0, bound),
            Init::Around(center, spread) => (center, spread),
        };
        let data: Vec<f32> = (0..len)
            .map(|_| {
                // 24 random bits → [0, 1) exactly representable in f32.
                let unit = (rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32;
                center + spread * (2.0 * unit - 1.0)
            })
            .collect();
        // `data` has exactly `shape.iter().product()` elements, so from_vec cannot fail.
        let tensor =
            Tensor::from_vec(shape.to_vec(), data).unwrap_or_else(|_| Tensor::scalar(0.0f32));
        self.constant(name, tensor)
    }

    pub(crate) fn constant(&mut self, name: &str, tensor: Tensor) -> String {
        self.shapes.insert(name.into(), tensor.shape().to_vec());
        self.graph.weights.push((name.into(), tensor));
        name.into()
    }

    pub(crate) fn node(&mut self, op: Op, inputs: &[&str], shape: Vec<usize>) -> String {
        let count = self.counts.entry(op.name()).or_insert(0);
        let name = format!("{}_{}", op.name(), *count);
        *count += 1;
        self.shapes.insert(name.clone(), shape.clone());
        self.graph.nodes.push(Node {
            name: name.clone(),
            op,
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            output: name.clone(),
            shape,
        });
        name
    }

    fn flops(&mut self, macs: usize) {
        self.graph.flops_per_sample += 2 * macs as u64;
    }

    /// Convolution with a Kaiming-uniform weight named `{prefix}.weight`.
    pub(crate) fn conv(
        &mut self,
        x: &str,
        prefix: &str,
        out: usize,
        kernel: usize,
        stride: usize,
        pad: usize,
    ) -> String {
        self.grouped_conv(x, prefix, out, kernel, stride, [pad; 4], 1)
    }

    /// Convolution in `groups` channel groups, padded `[top, left, bottom, right]`, weight
    /// `{prefix}.weight` `[out, in / groups, k, k]`, no bias.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn grouped_conv(
        &mut self,
        x: &str,
        prefix: &str,
        out: usize,
        kernel: usize,
        stride: usize,
        pads: [usize; 4],
        groups: usize,
    ) -> String {
        let [n, cin, h, w] = self.shape4(x);
        let fan_in = cin / groups.max(1) * kernel * kernel;
        let weight = self.weight(
            &format!("{prefix}.weight"),
            &[out, cin / groups.max(1), kernel, kernel],
            Init::Uniform((6.0 / fan_in as f32).sqrt()),
        );
        let [top, left, bottom, right] = pads;
        let ho = (h + top + bottom).saturating_sub(kernel) / stride + 1;
        let wo = (w + left + right).saturating_sub(kernel) / stride + 1;
        self.flops(out * ho * wo * fan_in);
        self.node(Op::Conv { kernel, stride, pads, groups }, &[x, &weight], vec![n, out, ho, wo])
    }

    /// Batch normalization with weights `{prefix}.weight/bias/running_mean/running_var`.
    /// `gamma` centres the scale: residual branches use a small one to keep activations tame.
    pub(crate) fn batch_norm(&mut self, x: &str, prefix: &str, gamma: f32) -> String {
        self.batch_norm_eps(x, prefix, gamma, 1e-5)
    }

    /// [`Builder::batch_norm`] with its epsilon.
    pub(crate) fn batch_norm_eps(
        &mut self,
        x: &str,
        prefix: &str,
        gamma: f32,
        epsilon: f32,
    ) -> String {
        let c = self.shape(x)[1];
        let scale =
            self.weight(&format!("{prefix}.weight"), &[c], Init::Around(gamma, 0.1 * gamma));
        let bias = self.weight(&format!("{prefix}.bias"), &[c], Init::Uniform(0.1));
        let mean = self.weight(&format!("{prefix}.running_mean"), &[c], Init::Uniform(0.1));
        let var = self.weight(&format!("{prefix}.running_var"), &[c], Init::Around(1.0, 0.2));
        let shape = self.shape(x).to_vec();
        self.node(Op::BatchNorm { epsilon }, &[x, &scale, &bias, &mean, &var], shape)
    }

    pub(crate) fn clip(&mut self, x: &str, min: f32, max: f32) -> String {
        let shape = self.shape(x).to_vec();
        self.node(Op::Clip { min, max }, &[x], shape)
    }

    pub(crate) fn relu(&mut self, x: &str) -> String {
        let shape = self.shape(x).to_vec();
        self.node(Op::Relu, &[x], shape)
    }

    pub(crate) fn max_pool(&mut self, x: &str, kernel: usize, stride: usize, pad: usize) -> String {
        let [n, c, h, w] = self.shape4(x);
        let shape =
            vec![n, c, (h + 2 * pad - kernel) / stride + 1, (w + 2 * pad - kernel) / stride + 1];
        self.node(Op::MaxPool { kernel, stride, pad }, &[x], shape)
    }

    pub(crate) fn global_average_pool(&mut self, x: &str) -> String {
        let [n, c, _, _] = self.shape4(x);
        self.node(Op::GlobalAveragePool, &[x], vec![n, c, 1, 1])
    }

    pub(crate) fn flatten(&mut self, x: &str) -> String {
        let shape = self.shape(x);
        let rest: usize = shape[1..].iter().product();
        let n = shape[0];
        self.node(Op::Flatten, &[x], vec![n, rest])
    }

    /// Linear layer `{prefix}.weight` `[out, in]` and `{prefix}.bias` `[out]`.
    pub(crate) fn linear(&mut self, x: &str, prefix: &str, out: usize) -> String {
        let mut shape = self.shape(x).to_vec();
        let cin = shape.last().copied().unwrap_or(1);
        let bound = (1.0 / cin as f32).sqrt();
        let weight = self.weight(&format!("{prefix}.weight"), &[out, cin], Init::Uniform(bound));
        let bias = self.weight(&format!("{prefix}.bias"), &[out], Init::Uniform(bound));
        let rows: usize = shape[1..shape.len() - 1].iter().product();
        self.flops(rows * cin * out);
        if let Some(last) = shape.last_mut() {
            *last = out;
        }
        self.node(Op::Linear, &[x, &weight, &bias], shape)
    }

    pub(crate) fn add(&mut self, a: &str, b: &str) -> String {
        let (sa, sb) = (self.shape(a).to_vec(), self.shape(b).to_vec());
        let shape = if sa.len() >= sb.len() { sa } else { sb };
        self.node(Op::Add, &[a, b], shape)
    }

    pub(crate) fn matmul(&mut self, a: &str, b: &str) -> String {
        let (sa, sb) = (self.shape(a).to_vec(), self.shape(b).to_vec());
        let (m, k, n) = (sa[sa.len() - 2], sa[sa.len() - 1], sb[sb.len() - 1]);
        let batch: usize = sa[1..sa.len() - 2].iter().product();
        self.flops(batch * m * k * n);
        let mut shape = sa;
        let last = shape.len() - 1;
        shape[last] = n;
        self.node(Op::MatMul, &[a, b], shape)
    }

    pub(crate) fn gather(&mut self, table: &str, indices: &str) -> String {
        let mut shape = self.shape(indices).to_vec();
        shape.extend_from_slice(&self.shape(table)[1..]);
        self.node(Op::Gather, &[table, indices], shape)
    }

    pub(crate) fn reshape(&mut self, x: &str, target: &[i64]) -> String {
        let input = self.shape(x).to_vec();
        let total: usize = input.iter().product();
        let mut shape: Vec<usize> = target
            .iter()
            .enumerate()
            .map(|(i, &d)| match d {
                0 => input[i],
                -1 => 0,
                d => d as usize,
            })
            .collect();
        let known: usize = shape.iter().filter(|&&d| d != 0).product();
        for d in shape.iter_mut().filter(|d| **d == 0) {
            *d = total / known.max(1);
        }
        self.node(Op::Reshape { shape: target.to_vec() }, &[x], shape)
    }

    pub(crate) fn transpose(&mut self, x: &str, perm: &[usize]) -> String {
        let input = self.shape(x).to_vec();
        let shape = perm.iter().map(|&p| input[p]).collect();
        self.node(Op::Transpose { perm: perm.to_vec() }, &[x], shape)
    }

    pub(crate) fn softmax(&mut self, x: &str) -> String {
        let shape = self.shape(x).to_vec();
        self.node(Op::Softmax { axis: -1 }, &[x], shape)
    }

    pub(crate) fn layer_norm(&mut self, x: &str, prefix: &str) -> String {
        self.layer_norm_eps(x, prefix, 1e-5)
    }

    pub(crate) fn layer_norm_eps(&mut self, x: &str, prefix: &str, epsilon: f32) -> String {
        let shape = self.shape(x).to_vec();
        let c = shape.last().copied().unwrap_or(1);
        let scale = self.weight(&format!("{prefix}.weight"), &[c], Init::Around(1.0, 0.1));
        let bias = self.weight(&format!("{prefix}.bias"), &[c], Init::Uniform(0.1));
        self.node(Op::LayerNorm { epsilon }, &[x, &scale, &bias], shape)
    }

    /// Multi-head self-attention over `x` (`[N, S, H]`): linears `{prefix}.query`, `.key` and
    /// `.value`, scaled dot products per head, `bias` added to the scores when given (an
    /// attention mask), softmax, and the heads' contexts joined back to `[N, S, H]`. `seq` is
    /// the sequence length in the reshapes: a fixed length, or -1 for a dynamic one.
    pub(crate) fn self_attention(
        &mut self,
        x: &str,
        prefix: &str,
        heads: usize,
        seq: i64,
        bias: Option<&str>,
    ) -> String {
        let hidden = self.shape(x).last().copied().unwrap_or(1);
        let head_dim = hidden / heads.max(1);
        let split = [0, seq, heads as i64, head_dim as i64];
        let q = self.linear(x, &format!("{prefix}.query"), hidden);
        let k = self.linear(x, &format!("{prefix}.key"), hidden);
        let v = self.linear(x, &format!("{prefix}.value"), hidden);
        let q = self.reshape(&q, &split);
        let q = self.transpose(&q, &[0, 2, 1, 3]);
        let k = self.reshape(&k, &split);
        let k = self.transpose(&k, &[0, 2, 3, 1]);
        let v = self.reshape(&v, &split);
        let v = self.transpose(&v, &[0, 2, 1, 3]);
        let scores = self.matmul(&q, &k);
        let mut scores = self.scale(&scores, 1.0 / (head_dim as f32).sqrt());
        if let Some(bias) = bias {
            scores = self.add(&scores, bias);
        }
        let probs = self.softmax(&scores);
        let context = self.matmul(&probs, &v);
        let context = self.transpose(&context, &[0, 2, 1, 3]);
        self.reshape(&context, &[0, seq, hidden as i64])
    }

    pub(crate) fn affine(&mut self, x: &str, scale: f32, shift: f32) -> String {
        let shape = self.shape(x).to_vec();
        self.node(Op::Affine { scale, shift }, &[x], shape)
    }

    pub(crate) fn cast(&mut self, x: &str, to: DType) -> String {
        let shape = self.shape(x).to_vec();
        self.node(Op::Cast { to }, &[x], shape)
    }

    /// The first `like.shape[1]` rows of `table`.
    pub(crate) fn rows_like(&mut self, table: &str, like: &str) -> String {
        let mut shape = self.shape(table).to_vec();
        shape[0] = self.shape(like).get(1).copied().unwrap_or(1);
        self.node(Op::RowsLike, &[table, like], shape)
    }

    pub(crate) fn gelu(&mut self, x: &str) -> String {
        let shape = self.shape(x).to_vec();
        self.node(Op::Gelu, &[x], shape)
    }

    pub(crate) fn scale(&mut self, x: &str, factor: f32) -> String {
        let shape = self.shape(x).to_vec();
        self.node(Op::Scale { factor }, &[x], shape)
    }

    fn shape4(&self, x: &str) -> [usize; 4] {
        match self.shape(x) {
            &[n, c, h, w] => [n, c, h, w],
            _ => [1, 1, 1, 1],
        }
    }

    /// Names `value` as the graph output `name`, with the batch axis dynamic.
    pub(crate) fn output(&mut self, value: &str, name: &str, dtype: DType) {
        let dims = self
            .shape(value)
            .iter()
            .enumerate()
            .map(|(i, &d)| if i == 0 { Dim::named("N") } else { Dim::Fixed(d) })
            .collect();
        self.output_dims(value, name, dtype, dims);
    }

    /// Names `value` as the graph output `name`, with the dimensions `dims`.
    pub(crate) fn output_dims(&mut self, value: &str, name: &str, dtype: DType, dims: Vec<Dim>) {
        for node in &mut self.graph.nodes {
            if node.output == value {
                node.output = name.into();
            }
            for input in &mut node.inputs {
                if input == value {
                    *input = name.into();
                }
            }
        }
        self.graph.outputs.push(TensorSpec::new(name, dtype, dims));
    }

    pub(crate) fn finish(self) -> Graph {
        self.graph
    }

    /// The graph, or the first weight the checkpoint lacked (or had in another shape), and
    /// the checkpoint's tensors no layer used.
    pub(crate) fn finish_pretrained(self) -> Result<(Graph, Vec<String>), String> {
        if let Some(missing) = self.missing {
            return Err(missing);
        }
        let mut unused: Vec<String> = self.pretrained.unwrap_or_default().into_keys().collect();
        unused.sort();
        Ok((self.graph, unused))
    }
}
