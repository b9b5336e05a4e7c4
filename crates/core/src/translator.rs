//! [`Translator`]: typed inputs in, typed outputs out, with a [`Batchifier`] between.

use std::time::Duration;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::spec::Dim;
use crate::tensor::Tensor;

/// How a translator's per-item tensors become one batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Batchifier {
    /// No batching: pre-processing produces the model's inputs as they are, and
    /// `batch_predict` runs one forward pass per item.
    #[default]
    None,
    /// Stacks equally shaped items along a new leading batch axis (`[s…]` → `[N, s…]`).
    Stack,
    /// Pads items with zeros to the largest size along every axis, then stacks them.
    /// `batch_predict` runs items of very different lengths in several passes
    /// ([`Batchifier::groups`]).
    Pad,
}

impl Batchifier {
    /// Combines per-item input lists into one list of batched inputs.
    pub fn batchify(self, items: Vec<Vec<Tensor>>) -> Result<Vec<Tensor>> {
        let arity = items
            .first()
            .map(Vec::len)
            .ok_or_else(|| Error::Batch { reason: "a batch of zero items".into() })?;
        if let Some((i, item)) = items.iter().enumerate().find(|(_, it)| it.len() != arity) {
            return Err(Error::Batch {
                reason: format!("item {i} has {} tensors but item 0 has {arity}", item.len()),
            });
        }
        if items.len() == 1 && self != Batchifier::None {
            // One item: add the batch axis without copying.
            let item = items.into_iter().next().unwrap_or_default();
            return item.iter().map(|t| t.reshape([&[1], t.shape()].concat())).collect();
        }
        (0..arity)
            .map(|k| {
                let column: Vec<Tensor> = items.iter().map(|item| item[k].clone()).collect();
                match self {
                    Batchifier::Stack => Tensor::stack(&column),
                    Batchifier::Pad => Tensor::pad_stack(&column),
                    Batchifier::None => Err(Error::Batch {
                        reason: "the `none` batchifier does not combine items".into(),
                    }),
                }
            })
            .collect()
    }

    /// The forward passes a batch of `items` runs as: lists of item indices, each list one
    /// pass. `Stack` and `None` batches run as one. A `Pad` batch runs as
    /// [`length_passes`] cuts it, an item's length being its first tensor's size (made for
    /// 1-D items, a text's tokens; for items padded along several axes it is an estimate).
    pub fn groups(self, items: &[Vec<Tensor>]) -> Vec<Vec<usize>> {
        if self != Batchifier::Pad {
            return vec![(0..items.len()).collect()];
        }
        let lengths: Vec<(usize, usize)> =
            items.iter().map(|item| (1, item.first().map_or(0, Tensor::len))).collect();
        length_passes(&lengths)
    }

    /// Splits batched outputs back into `n` per-item output lists.
    pub fn unbatchify(
        self,
        model: &Model,
        outputs: Vec<Tensor>,
        n: usize,
    ) -> Result<Vec<Vec<Tensor>>> {
        for (k, t) in outputs.iter().enumerate() {
            if t.shape().first() != Some(&n) {
                let name = model.outputs().get(k).map_or("?", |s| s.name.as_str());
                return Err(Error::Batch {
                    reason: format!(
                        "output `{name}` of model `{}` has shape {:?}; expected a leading batch \
                         axis of {n}",
                        model.name(),
                        t.shape()
                    ),
                });
            }
        }
        if n == 1 {
            let item = outputs.iter().map(|t| t.reshape(&t.shape()[1..])).collect::<Result<_>>()?;
            return Ok(vec![item]);
        }
        let mut per_item: Vec<Vec<Tensor>> = vec![Vec::with_capacity(outputs.len()); n];
        for t in &outputs {
            for (slot, part) in per_item.iter_mut().zip(t.unstack()?) {
                slot.push(part);
            }
        }
        Ok(per_item)
    }
}

/// How a padded batch is best run: its requests, given as `(samples, length)` (a text's
/// tokens), grouped into forward passes, each a list of indices into `requests`. Each pass
/// pads only to its own longest request, as servers that group requests by length do
/// (TEI, Triton's ragged batching). The requests are sorted by length and cut where padding
/// would cost more than another pass: the cut points minimise the padded positions of all
/// passes (samples × the pass's longest) plus, per pass, the positions of one sample of the
/// batch's longest request. Measured on all-MiniLM-L6-v2, that cost of a pass cut 32
/// sentences of 8 to 18 tokens into 3 passes and 576 padded positions into 452
/// (docs/performance.md). Requests of one length make one pass of up to 1,024 requests (the
/// bound that keeps the search linear), and no requests none; ties go to fewer passes.
pub fn length_passes(requests: &[(usize, usize)]) -> Vec<Vec<usize>> {
    let n = requests.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (requests[i].1, i));
    let pass_cost = requests.iter().map(|r| r.1).max().unwrap_or(0).max(1);
    // best[j]: the least cost of the first j sorted requests; cut[j]: where its last pass
    // starts. A pass holds at most MAX_PASS requests, which bounds the work at n × MAX_PASS.
    const MAX_PASS: usize = 1024;
    let mut best = vec![usize::MAX; n + 1];
    let mut cut = vec![0usize; n + 1];
    best[0] = 0;
    for j in 1..=n {
        let longest = requests[order[j - 1]].1;
        let mut samples = 0usize;
        for i in (j.saturating_sub(MAX_PASS)..j).rev() {
            samples = samples.saturating_add(requests[order[i]].0);
            let cost =
                best[i].saturating_add(samples.saturating_mul(longest)).saturating_add(pass_cost);
            // `<=`: on a tie the pass that starts earlier wins, so fewer passes.
            if cost <= best[j] {
                best[j] = cost;
                cut[j] = i;
            }
        }
    }
    let mut passes = Vec::new();
    let mut j = n;
    while j > 0 {
        passes.push(order[cut[j]..j].to_vec());
        j = cut[j];
    }
    passes.reverse();
    passes
}

/// Turns a typed input into model inputs, and model outputs into a typed output.
///
/// With a [`Batchifier`] other than `None`, `preprocess` returns one item's tensors *without*
/// the batch axis and `postprocess` receives one item's outputs without it; the predictor
/// batches and un-batches in between, so `batch_predict` costs one forward pass (a `Pad`
/// batch of different lengths: one per group of similar lengths, [`Batchifier::groups`]).
pub trait Translator: Send + Sync {
    /// What callers pass in.
    type Input;
    /// What callers get back.
    type Output;

    /// Name used in error messages.
    fn name(&self) -> &str {
        std::any::type_name::<Self>()
    }

    /// How items are batched; `None` by default.
    fn batchifier(&self) -> Batchifier {
        Batchifier::None
    }

    /// Input → tensors.
    fn preprocess(&self, model: &Model, input: Self::Input) -> Result<Vec<Tensor>>;

    /// The names of the two parts of pre-processing this translator times itself (an image's
    /// `decode` and `resize`), which benchmarks report as stages of their own; `None` by
    /// default.
    fn preprocess_parts(&self) -> Option<[&'static str; 2]> {
        None
    }

    /// [`Translator::preprocess`] with the time each of [`Translator::preprocess_parts`]
    /// took (zeros for translators without parts); the predictors call this one.
    fn preprocess_timed(
        &self,
        model: &Model,
        input: Self::Input,
    ) -> Result<(Vec<Tensor>, [Duration; 2])> {
        Ok((self.preprocess(model, input)?, [Duration::ZERO; 2]))
    }

    /// Tensors → output.
    fn postprocess(&self, model: &Model, outputs: Vec<Tensor>) -> Result<Self::Output>;

    /// Tensors → output, seeing the tensors `preprocess` made for this item (one item's, before
    /// batching): for post-processing that needs them, such as pooling a text's token vectors
    /// over its own attention mask when the batch padded it. Calls `postprocess` unless a
    /// translator overrides it; the predictors call this one.
    fn postprocess_with(
        &self,
        model: &Model,
        inputs: &[Tensor],
        outputs: Vec<Tensor>,
    ) -> Result<Self::Output> {
        let _ = inputs;
        self.postprocess(model, outputs)
    }
}

/// The no-op translator: plain tensors in, plain tensors out.
///
/// With the default `None` batchifier, inputs are the model's inputs as they are. With
/// [`Identity::with_batchifier`], each input is one item without its batch axis.
#[derive(Clone, Copy, Debug, Default)]
pub struct Identity {
    batchifier: Batchifier,
}

impl Identity {
    /// An identity translator that batches items with `batchifier`.
    pub fn with_batchifier(batchifier: Batchifier) -> Identity {
        Identity { batchifier }
    }
}

impl Translator for Identity {
    type Input = Vec<Tensor>;
    type Output = Vec<Tensor>;

    fn name(&self) -> &str {
        "identity"
    }

    fn batchifier(&self) -> Batchifier {
        self.batchifier
    }

    fn preprocess(&self, _model: &Model, input: Vec<Tensor>) -> Result<Vec<Tensor>> {
        Ok(input)
    }

    fn postprocess(&self, _model: &Model, outputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        Ok(outputs)
    }
}

/// One class of a classification result.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Classification {
    /// Class index in the model's output.
    pub index: usize,
    /// Class label, when labels were given.
    pub label: Option<String>,
    /// Probability (softmax of the logits) or the raw score.
    pub probability: f32,
}

/// A typed translator for classifiers: one sample's `Vec<f32>` features in, the top-k
/// classes out. Uses the [`Batchifier::Stack`] batchifier.
///
/// The model must take one `f32` input `[N, …]` and return `[N, classes]` logits first.
#[derive(Clone, Debug)]
pub struct Classifier {
    top_k: usize,
    softmax: bool,
    labels: Option<Vec<String>>,
}

impl Classifier {
    /// Top `top_k` classes with softmax probabilities.
    pub fn new(top_k: usize) -> Classifier {
        Classifier { top_k: top_k.max(1), softmax: true, labels: None }
    }

    /// Report raw logits instead of softmax probabilities.
    pub fn with_raw_scores(mut self) -> Classifier {
        self.softmax = false;
        self
    }

    /// Names for the classes, by index.
    pub fn with_labels(mut self, labels: Vec<String>) -> Classifier {
        self.labels = Some(labels);
        self
    }

    fn error(&self, reason: String) -> Error {
        Error::Translator { translator: "classifier".into(), reason }
    }
}

impl Translator for Classifier {
    type Input = Vec<f32>;
    type Output = Vec<Classification>;

    fn name(&self) -> &str {
        "classifier"
    }

    fn batchifier(&self) -> Batchifier {
        Batchifier::Stack
    }

    fn preprocess(&self, model: &Model, input: Vec<f32>) -> Result<Vec<Tensor>> {
        let [spec] = model.inputs() else {
            return Err(self.error(format!(
                "model `{}` has {} inputs; a classifier needs exactly one",
                model.name(),
                model.inputs().len()
            )));
        };
        if spec.dtype != DType::F32 {
            return Err(self.error(format!(
                "input `{}` of model `{}` is {}; the classifier feeds f32",
                spec.name,
                model.name(),
                spec.dtype
            )));
        }
        let sample: Option<Vec<usize>> = spec.shape.iter().skip(1).map(Dim::fixed).collect();
        let sample = sample.ok_or_else(|| {
            self.error(format!(
                "input `{}` {} has dynamic dimensions besides the batch axis; the classifier \
                 needs a fixed sample shape",
                spec.name,
                spec.shape_string()
            ))
        })?;
        let expected: usize = sample.iter().product();
        if input.len() != expected {
            return Err(self.error(format!(
                "one sample of input `{}` {} holds {expected} values, got {}",
                spec.name,
                spec.shape_string(),
                input.len()
            )));
        }
        Ok(vec![Tensor::from_vec(sample, input)?])
    }

    fn postprocess(&self, model: &Model, outputs: Vec<Tensor>) -> Result<Vec<Classification>> {
        let logits = outputs
            .first()
            .ok_or_else(|| self.error(format!("model `{}` returned no output", model.name())))?;
        let scores = match (logits.rank(), logits.to_f64_vec()) {
            (1, Some(v)) => v,
            _ => {
                return Err(self.error(format!(
                    "first output of model `{}` is {} {:?} per sample; expected a vector of \
                     class scores",
                    model.name(),
                    logits.dtype(),
                    logits.shape()
                )));
            }
        };
        let scores = if self.softmax { softmax(&scores) } else { scores };
        let mut ranked: Vec<(usize, f64)> = scores.into_iter().enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(ranked
            .into_iter()
            .take(self.top_k)
            .map(|(index, p)| Classification {
                index,
                label: self.labels.as_ref().and_then(|l| l.get(index).cloned()),
                probability: p as f32,
            })
            .collect())
    }
}

fn softmax(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = logits.iter().map(|&x| (x - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let p = softmax(&[1.0, 3.0, 2.0]);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(p[1] > p[2] && p[2] > p[0]);
    }

    #[test]
    fn single_item_batchify_adds_an_axis_without_copying() {
        let t = Tensor::from_vec(vec![2], vec![1.0f32, 2.0]).unwrap();
        let batched = Batchifier::Stack.batchify(vec![vec![t.clone()]]).unwrap();
        assert_eq!(batched[0].shape(), &[1, 2]);
        assert_eq!(
            batched[0].as_slice::<f32>().unwrap().as_ptr(),
            t.as_slice::<f32>().unwrap().as_ptr()
        );
    }

    fn tokens(lengths: &[usize]) -> Vec<Vec<Tensor>> {
        lengths.iter().map(|&n| vec![Tensor::zeros(DType::I64, &[n]).unwrap()]).collect()
    }

    #[test]
    fn a_padded_batch_runs_in_passes_of_similar_lengths() {
        // The token counts of the first 32 sentences of scripts/data/sentences.txt.
        let lengths = [
            8, 9, 8, 13, 14, 13, 12, 17, 13, 16, 13, 11, 14, 14, 14, 18, 11, 12, 13, 15, 15, 15,
            14, 14, 14, 11, 14, 14, 13, 11, 15, 11,
        ];
        let items = tokens(&lengths);
        let groups = Batchifier::Pad.groups(&items);
        let mut seen: Vec<usize> = groups.concat();
        seen.sort_unstable();
        assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>(), "every item once: {groups:?}");
        let padded: usize =
            groups.iter().map(|g| g.len() * g.iter().map(|&i| lengths[i]).max().unwrap()).sum();
        assert_eq!(groups.len(), 3, "{groups:?}");
        assert_eq!(padded, 452, "against 32 × 18 = 576 in one pass: {groups:?}");
    }

    #[test]
    fn equal_lengths_and_stacked_batches_run_in_one_pass() {
        assert_eq!(Batchifier::Pad.groups(&tokens(&[7, 7, 7, 7])), vec![vec![0, 1, 2, 3]]);
        assert_eq!(Batchifier::Stack.groups(&tokens(&[3, 3, 3])), vec![vec![0, 1, 2]]);
        assert_eq!(Batchifier::Pad.groups(&tokens(&[5])), vec![vec![0]]);
        // Two short items beside one long one: a second pass costs less than padding both.
        assert_eq!(Batchifier::Pad.groups(&tokens(&[2, 100, 2, 2])), vec![vec![0, 2, 3], vec![1]]);
    }

    #[test]
    fn requests_of_several_samples_weigh_by_their_samples() {
        // A request of 4 samples of 3 tokens beside one of 30: one pass pads 5 × 30 = 150
        // positions; two pass 12 + 30 (and one more pass, 30).
        assert_eq!(length_passes(&[(1, 30), (4, 3)]), vec![vec![1], vec![0]]);
        // Five samples of 3 tokens beside one of 4: padding the five costs 5 positions, a
        // second pass 4, so two passes; of one length, one.
        assert_eq!(length_passes(&[(5, 3), (1, 4)]), vec![vec![0], vec![1]]);
        assert_eq!(length_passes(&[(5, 3), (1, 3)]), vec![vec![0, 1]]);
        assert!(length_passes(&[]).is_empty());
        // Empty requests (length 0) still make one pass, not one each.
        assert_eq!(length_passes(&[(1, 0), (1, 0), (1, 0)]), vec![vec![0, 1, 2]]);
    }

    #[test]
    fn items_with_different_arity_are_refused() {
        let t = Tensor::zeros(DType::F32, &[2]).unwrap();
        let err =
            Batchifier::Stack.batchify(vec![vec![t.clone()], vec![t.clone(), t]]).unwrap_err();
        assert!(err.to_string().contains("item 1 has 2 tensors"), "{err}");
    }
}
