"""Builds a small SavedModel with TensorFlow itself, the way users' tools write them, and saves
its inputs and TensorFlow's outputs: the reference the TensorFlow engine is checked against
(crates/cli/tests/tensorflow.rs). Run with the venv-tf interpreter of scripts/install-test-data.sh.

    python tf_reference.py OUT_DIR

OUT_DIR/saved/            the SavedModel: signatures `serving_default` (inputs `features` f32
                          [N,4] and `ids` i32 [N]; outputs `scores` f32 [N,3], `best` i64 [N]
                          and `label`, a string [N]) and `scores_only`
OUT_DIR/inputs/NAME.npy   the inputs
OUT_DIR/expected/NAME.npy TensorFlow's outputs of `serving_default` on them
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


class Model(tf.Module):
    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(7)
        self.w1 = tf.Variable(rng.standard_normal((4, 8)).astype(np.float32), name="w1")
        self.b1 = tf.Variable(rng.standard_normal(8).astype(np.float32), name="b1")
        self.w2 = tf.Variable(rng.standard_normal((8, 3)).astype(np.float32), name="w2")
        self.embedding = tf.Variable(rng.standard_normal((10, 3)).astype(np.float32), name="embedding")
        self.labels = tf.constant(["cat", "dog", "bird"])

    def _scores(self, features, ids):
        hidden = tf.nn.relu(tf.matmul(features, self.w1) + self.b1)
        return tf.matmul(hidden, self.w2) + tf.gather(self.embedding, ids)

    @tf.function(input_signature=[
        tf.TensorSpec([None, 4], tf.float32, name="features"),
        tf.TensorSpec([None], tf.int32, name="ids"),
    ])
    def serve(self, features, ids):
        scores = self._scores(features, ids)
        best = tf.argmax(scores, axis=1)
        return {"scores": scores, "best": best, "label": tf.gather(self.labels, best)}

    @tf.function(input_signature=[
        tf.TensorSpec([None, 4], tf.float32, name="features"),
        tf.TensorSpec([None], tf.int32, name="ids"),
    ])
    def scores_only(self, features, ids):
        return {"scores": self._scores(features, ids)}


def main(out):
    model = Model()
    tf.saved_model.save(
        model,
        os.path.join(out, "saved"),
        signatures={"serving_default": model.serve, "scores_only": model.scores_only},
    )
    rng = np.random.default_rng(11)
    inputs = {
        "features": rng.standard_normal((5, 4)).astype(np.float32),
        "ids": rng.integers(0, 10, size=5).astype(np.int32),
    }
    # Through the loaded SavedModel's signature, as a serving system runs it.
    loaded = tf.saved_model.load(os.path.join(out, "saved"))
    outputs = loaded.signatures["serving_default"](**{k: tf.constant(v) for k, v in inputs.items()})
    for kind, tensors in (("inputs", inputs), ("expected", outputs)):
        os.makedirs(os.path.join(out, kind), exist_ok=True)
        for name, value in tensors.items():
            value = value.numpy() if hasattr(value, "numpy") else value
            if value.dtype == object:  # TensorFlow's strings: numpy byte strings, no pickle
                value = value.astype("S")
            np.save(os.path.join(out, kind, name + ".npy"), value)
    print("tensorflow", tf.__version__, "wrote", out)


if __name__ == "__main__":
    main(sys.argv[1])
