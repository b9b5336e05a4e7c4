//! Files over the server's APIs for a content-type model (Magika, `zoo:magika`), on the same
//! pool as v2:
//!
//! - **KServe v2 / Triton**: a BYTES input of files → the model's raw scores for each (their
//!   first and last KiB as its int32 tokens, as [`thrum_magika::Magika::tokens`] makes them),
//!   and Triton's `classification` parameter names the content types.
//! - **TorchServe**: `POST` (or `PUT`) `/predictions/{model}` with the file as the body →
//!   Magika's answer as the Python package gives it: the content type after its rules
//!   (thresholds, overwrite map, empty and short files decided without the model), what the
//!   model said, and its score.
//!
//! A file is cut to its two ends as soon as its request is read: nothing costly runs on the
//! async threads.

use thrum_core::Tensor;
use thrum_magika::{ContentType, Features, Magika};

use crate::error::ServeError;
use crate::server::ServedModel;

/// Most files one v2 request may hold.
pub const MAX_FILES: usize = thrum_wire::v2::MAX_IMAGES;

/// The tokens of the files of a v2 BYTES input to `served`: one batch `[N, 2048]` of int32.
/// What would make the pool refuse the request is checked first.
pub(crate) fn tokens_batch(
    served: &ServedModel,
    magika: &Magika,
    input: &(String, Tensor),
) -> Result<Tensor, ServeError> {
    let (name, tensor) = input;
    let items = tensor.as_slice::<Vec<u8>>()?;
    if items.is_empty() || items.len() > MAX_FILES {
        return Err(ServeError::bad(format!(
            "input `{name}` holds {} elements; a content-type model takes a BYTES input of 1 \
             to {MAX_FILES} files",
            items.len()
        )));
    }
    served.pool.precheck(items.len())?;
    let len = magika.input_len();
    let mut tokens = Vec::with_capacity(items.len() * len);
    for bytes in items {
        tokens.extend(magika.tokens(&magika.sample(bytes)));
    }
    Ok(Tensor::from_vec(vec![items.len(), len], tokens)?)
}

/// TorchServe's inference API on a content-type model: the body is one file; the answer is
/// Magika's.
pub(crate) async fn identify(
    served: &ServedModel,
    magika: &Magika,
    bytes: bytes::Bytes,
) -> Result<ContentType, ServeError> {
    let tokens = match magika.features(&magika.sample(&bytes)) {
        Features::Decided(answer) => return Ok(*answer),
        Features::Tokens(tokens) => tokens,
    };
    served.pool.precheck(1)?;
    let batch = Tensor::from_vec(vec![1, magika.input_len()], tokens)?;
    let outputs = served.pool.submit_with_timeout(vec![batch], None).await?;
    let scores = outputs.first().ok_or_else(|| ServeError::bad("the model returned no output"))?;
    Ok(magika.decide(scores.as_slice::<f32>()?)?)
}
