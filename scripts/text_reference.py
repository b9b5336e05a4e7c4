"""Sentence embeddings of a BERT sentence-transformers model (all-MiniLM-L6-v2), computed
independently of thrum: the reference thrum's text embeddings are checked against. No thrum code
is involved: token ids come from Hugging Face's Python `tokenizers` package, and the encoder is a
plain numpy (float64) transcription of Hugging Face's BertModel forward pass, followed by mean
pooling and L2 normalisation. Run with the venv-text interpreter of scripts/install-test-data.sh.

    python text_reference.py MODEL_DIR < request.json

MODEL_DIR holds config.json, model.safetensors and tokenizer.json. stdin is
{"texts": [...], "max_length": 256}; stdout is {"ids", "type_ids", "attention_mask": one list
per text, unpadded, truncated to max_length; "embeddings": one list of hidden_size floats per
text}. Each text runs on its own (batch 1, no padding), so padding cannot change the result.
"""
import json
import math
import os
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

erf = np.vectorize(math.erf)


def layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def embed(ids, type_ids, wt, cfg):
    """One unpadded sequence -> its L2-normalised mean-pooled sentence embedding."""
    def lin(x, name):
        return x @ wt[name + ".weight"].T + wt[name + ".bias"]

    eps, heads = cfg["layer_norm_eps"], cfg["num_attention_heads"]
    n = len(ids)
    x = (wt["embeddings.word_embeddings.weight"][ids]
         + wt["embeddings.position_embeddings.weight"][:n]
         + wt["embeddings.token_type_embeddings.weight"][type_ids])
    x = layer_norm(x, wt["embeddings.LayerNorm.weight"], wt["embeddings.LayerNorm.bias"], eps)
    d = x.shape[1] // heads
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        q, k, v = (lin(x, p + "attention.self." + m).reshape(n, heads, d).transpose(1, 0, 2)
                   for m in ("query", "key", "value"))
        s = q @ k.transpose(0, 2, 1) / math.sqrt(d)
        s = np.exp(s - s.max(-1, keepdims=True))
        ctx = (s / s.sum(-1, keepdims=True) @ v).transpose(1, 0, 2).reshape(n, heads * d)
        x = layer_norm(lin(ctx, p + "attention.output.dense") + x,
                       wt[p + "attention.output.LayerNorm.weight"],
                       wt[p + "attention.output.LayerNorm.bias"], eps)
        h = lin(x, p + "intermediate.dense")
        h = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))
        x = layer_norm(lin(h, p + "output.dense") + x,
                       wt[p + "output.LayerNorm.weight"], wt[p + "output.LayerNorm.bias"], eps)
    pooled = x.mean(0)
    return pooled / max(np.linalg.norm(pooled), 1e-12)


def main():
    model_dir = sys.argv[1]
    req = json.load(sys.stdin)
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    assert cfg.get("hidden_act", "gelu") == "gelu", cfg.get("hidden_act")
    wt = {k.removeprefix("bert."): v.astype(np.float64)
          for k, v in load_file(os.path.join(model_dir, "model.safetensors")).items()
          if v.dtype.kind == "f"}
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(req.get("max_length", 256))
    encs = tok.encode_batch(req["texts"])
    out = {
        "ids": [e.ids for e in encs],
        "type_ids": [e.type_ids for e in encs],
        "attention_mask": [e.attention_mask for e in encs],
        "embeddings": [embed(np.array(e.ids), np.array(e.type_ids), wt, cfg).tolist()
                       for e in encs],
    }
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
