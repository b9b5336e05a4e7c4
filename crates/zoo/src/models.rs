//! The zoo's architectures.

use thrum_core::{DType, Dim};

use crate::graph::{Builder, Graph};

/// Input features of the MLP.
pub const MLP_FEATURES: usize = 64;
/// Vocabulary size of the transformer's token embedding.
pub const TRANSFORMER_VOCAB: usize = 1000;
/// Sequence length of the transformer.
pub const TRANSFORMER_SEQ: usize = 128;
const TRANSFORMER_HIDDEN: usize = 128;
const TRANSFORMER_HEADS: usize = 4;
const TRANSFORMER_FFN: usize = 512;
const TRANSFORMER_LAYERS: usize = 2;

/// `input [N,64] → 128 → ReLU → 128 → ReLU → 10 logits`: tiny, so per-call overhead shows.
pub fn mlp(seed: u64) -> Graph {
    let mut b = Builder::new("mlp", seed);
    let x = b.input("input", DType::F32, vec![Dim::named("N"), Dim::Fixed(MLP_FEATURES)]);
    let h = b.linear(&x, "fc1", 128);
    let h = b.relu(&h);
    let h = b.linear(&h, "fc2", 128);
    let h = b.relu(&h);
    let y = b.linear(&h, "fc3", 10);
    b.output(&y, "logits", DType::F32);
    b.finish()
}

/// ResNet-18 (basic blocks 2-2-2-2), torchvision layout, `data [N,3,224,224] → logits [N,1000]`.
pub fn resnet18(seed: u64) -> Graph {
    resnet("resnet18", seed, Block::Basic, [2, 2, 2, 2])
}

/// ResNet-50 (bottleneck blocks 3-4-6-3), torchvision layout.
pub fn resnet50(seed: u64) -> Graph {
    resnet("resnet50", seed, Block::Bottleneck, [3, 4, 6, 3])
}

#[derive(Clone, Copy, PartialEq)]
enum Block {
    Basic,
    Bottleneck,
}

/// Scale of the last batch norm in each residual branch: keeps activations from growing
/// through the depth of an untrained network, so outputs stay comparable across engines.
const RESIDUAL_GAMMA: f32 = 0.2;

fn resnet(name: &str, seed: u64, block: Block, layers: [usize; 4]) -> Graph {
    let mut b = Builder::new(name, seed);
    let x = b.input(
        "data",
        DType::F32,
        vec![Dim::named("N"), Dim::Fixed(3), Dim::Fixed(224), Dim::Fixed(224)],
    );
    let x = b.conv(&x, "conv1", 64, 7, 2, 3);
    let x = b.batch_norm(&x, "bn1", 1.0);
    let x = b.relu(&x);
    let mut x = b.max_pool(&x, 3, 2, 1);
    let expansion = if block == Block::Basic { 1 } else { 4 };
    let mut channels = 64;
    for (stage, &blocks) in layers.iter().enumerate() {
        let width = 64 << stage;
        for i in 0..blocks {
            let stride = if stage > 0 && i == 0 { 2 } else { 1 };
            let prefix = format!("layer{}.{i}", stage + 1);
            let identity = if stride != 1 || channels != width * expansion {
                let d =
                    b.conv(&x, &format!("{prefix}.downsample.0"), width * expansion, 1, stride, 0);
                b.batch_norm(&d, &format!("{prefix}.downsample.1"), 1.0)
            } else {
                x.clone()
            };
            let y = match block {
                Block::Basic => {
                    let y = b.conv(&x, &format!("{prefix}.conv1"), width, 3, stride, 1);
                    let y = b.batch_norm(&y, &format!("{prefix}.bn1"), 1.0);
                    let y = b.relu(&y);
                    let y = b.conv(&y, &format!("{prefix}.conv2"), width, 3, 1, 1);
                    b.batch_norm(&y, &format!("{prefix}.bn2"), RESIDUAL_GAMMA)
                }
                Block::Bottleneck => {
                    let y = b.conv(&x, &format!("{prefix}.conv1"), width, 1, 1, 0);
                    let y = b.batch_norm(&y, &format!("{prefix}.bn1"), 1.0);
                    let y = b.relu(&y);
                    let y = b.conv(&y, &format!("{prefix}.conv2"), width, 3, stride, 1);
                    let y = b.batch_norm(&y, &format!("{prefix}.bn2"), 1.0);
                    let y = b.relu(&y);
                    let y = b.conv(&y, &format!("{prefix}.conv3"), width * 4, 1, 1, 0);
                    b.batch_norm(&y, &format!("{prefix}.bn3"), RESIDUAL_GAMMA)
                }
            };
            let sum = b.add(&y, &identity);
            x = b.relu(&sum);
            channels = width * expansion;
        }
    }
    let x = b.global_average_pool(&x);
    let x = b.flatten(&x);
    let y = b.linear(&x, "fc", 1000);
    b.output(&y, "logits", DType::F32);
    b.finish()
}

/// A BERT-style encoder: token + position embeddings, 2 post-norm layers of 4-head
/// self-attention (hidden 128) and a GELU feed-forward (512), sequence 128.
/// `input_ids [N,128] i64 → last_hidden_state [N,128,128]`.
pub fn transformer(seed: u64) -> Graph {
    let (seq, hidden, heads) = (TRANSFORMER_SEQ, TRANSFORMER_HIDDEN, TRANSFORMER_HEADS);
    let mut b = Builder::new("transformer", seed);
    let ids = b.input("input_ids", DType::I64, vec![Dim::named("N"), Dim::Fixed(seq)]);
    let tokens = b.weight(
        "embeddings.word_embeddings.weight",
        &[TRANSFORMER_VOCAB, hidden],
        crate::graph::Init::Uniform(1.0),
    );
    let positions = b.weight(
        "embeddings.position_embeddings.weight",
        &[seq, hidden],
        crate::graph::Init::Uniform(0.5),
    );
    let x = b.gather(&tokens, &ids);
    let mut x = b.add(&x, &positions);
    for layer in 0..TRANSFORMER_LAYERS {
        let p = format!("encoder.layer.{layer}");
        let context = b.self_attention(&x, &format!("{p}.attention"), heads, seq as i64, None);
        let attention = b.linear(&context, &format!("{p}.attention.output"), hidden);
        let sum = b.add(&x, &attention);
        let x1 = b.layer_norm(&sum, &format!("{p}.attention.norm"));
        let h = b.linear(&x1, &format!("{p}.intermediate"), TRANSFORMER_FFN);
        let h = b.gelu(&h);
        let h = b.linear(&h, &format!("{p}.output"), hidden);
        let sum = b.add(&x1, &h);
        x = b.layer_norm(&sum, &format!("{p}.output.norm"));
    }
    b.output(&x, "last_hidden_state", DType::F32);
    b.finish()
}
