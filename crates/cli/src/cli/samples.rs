//! Samples that `thrum quantize` calibrates on and `thrum compare --precision` judges on: a
//! directory of images (pre-processed as the model's own), a file of texts (tokenized as the
//! model's own), a directory of `.npy` files, or seeded sample inputs.

use std::path::{Path, PathBuf};

use thrum::text::TextEmbedding;
use thrum::{DType, Model, ModelRef, Tensor, Translator};

/// Where samples come from.
#[derive(Clone, Debug)]
pub enum SampleSource {
    /// Images, through the model's pre-processing (a zoo image model's recipe, else the
    /// `--image-*` flags' `recipe`, else TorchServe's defaults).
    Images {
        /// The directory of images.
        dir: PathBuf,
        /// The `--image-*` flags' recipe (over a thrum.toml's `[image]`), for an image model
        /// file.
        recipe: Option<thrum::ImageRecipe>,
    },
    /// Texts, one per line, through a text model's tokenizer (`zoo:all-minilm-l6-v2`). Its
    /// outputs are compared as the embeddings users get: pooled and normalised
    /// ([`SampleSource::embeddings`]).
    Texts(PathBuf),
    /// `.npy` samples: one file per sample for a model with one input, or one folder per
    /// sample holding `<input name>.npy` for each input.
    Npy(PathBuf),
    /// Seeded inputs: floats uniform in [-1, 1), integers ones; `seed` makes two sets differ.
    Seeded {
        /// Added to every sample's seed.
        seed: usize,
    },
}

impl SampleSource {
    /// The source a command's flags give: images, texts or `.npy` files (clap lets at most one
    /// through), else seeded inputs with `seed`.
    pub fn from_flags(
        images: Option<PathBuf>,
        texts: Option<PathBuf>,
        npy: Option<PathBuf>,
        recipe: Option<thrum::ImageRecipe>,
        seed: usize,
    ) -> SampleSource {
        match (images, texts, npy) {
            (Some(dir), _, _) => SampleSource::Images { dir, recipe },
            (_, Some(file), _) => SampleSource::Texts(file),
            (_, _, Some(dir)) => SampleSource::Npy(dir),
            _ => SampleSource::Seeded { seed },
        }
    }

    /// What the samples are, for reports.
    pub fn describe(&self, count: usize) -> String {
        match self {
            SampleSource::Images { dir, .. } => format!("{count} images of {}", dir.display()),
            SampleSource::Texts(file) => format!("{count} texts of {}", file.display()),
            SampleSource::Npy(dir) => format!("{count} .npy samples of {}", dir.display()),
            SampleSource::Seeded { .. } => format!("{count} seeded sample inputs"),
        }
    }

    /// Up to `limit` samples for `model` (loaded from `model_ref`), one call's inputs each.
    pub fn samples(
        &self,
        model_ref: &ModelRef,
        model: &Model,
        limit: usize,
        flag: &str,
    ) -> anyhow::Result<Vec<Vec<Tensor>>> {
        match self {
            SampleSource::Images { dir, recipe } => {
                let transform = model_ref.image_transform(model, recipe.as_ref())?;
                let mut out = Vec::new();
                for path in files(dir, limit, &["jpg", "jpeg", "png", "gif", "webp"])? {
                    let bytes = std::fs::read(&path).map_err(|e| thrum::Error::read(&path, e))?;
                    let t = transform
                        .tensor(&bytes)
                        .map_err(|e| anyhow::anyhow!("{flag} image `{}`: {e}", path.display()))?;
                    let mut shape = vec![1];
                    shape.extend_from_slice(t.shape());
                    out.push(vec![Tensor::from_vec(shape, t.as_slice::<f32>()?.to_vec())?]);
                }
                Ok(out)
            }
            SampleSource::Texts(file) => {
                let embedding = text_embedding(model_ref, flag)?;
                let text =
                    std::fs::read_to_string(file).map_err(|e| thrum::Error::read(file, e))?;
                // Numbered as the file's lines, blank ones (skipped) included.
                let texts: Vec<(usize, &str)> = text
                    .lines()
                    .enumerate()
                    .filter(|(_, l)| !l.trim().is_empty())
                    .take(limit)
                    .collect();
                texts
                    .iter()
                    .map(|&(line, t)| {
                        let tensors = embedding.preprocess(model, t.to_string()).map_err(|e| {
                            anyhow::anyhow!("{flag} line {} of `{}`: {e}", line + 1, file.display())
                        })?;
                        // One text per call: a batch of one.
                        tensors
                            .into_iter()
                            .map(|t| {
                                let mut shape = vec![1];
                                shape.extend_from_slice(t.shape());
                                Ok(Tensor::from_vec(shape, t.as_slice::<i64>()?.to_vec())?)
                            })
                            .collect()
                    })
                    .collect()
            }
            SampleSource::Npy(dir) => npy_samples(dir, model, limit, flag),
            SampleSource::Seeded { seed } => (0..limit)
                .map(|k| {
                    model
                        .inputs()
                        .iter()
                        .enumerate()
                        .map(|(i, spec)| seeded(&spec.shape_at(1, 1), spec.dtype, seed + k, i))
                        .collect::<anyhow::Result<Vec<_>>>()
                })
                .collect(),
        }
    }
}

/// A warning when a statically quantized int8 model is judged on real images, texts or
/// `.npy` files but calibrated on seeded inputs (uniform noise, or every token id 1): its ranges are then not those of real data, and its accuracy a floor
/// of what `thrum quantize` reaches with real calibration data.
pub fn calibration_warning(
    calibration: &SampleSource,
    evaluation: &SampleSource,
) -> Option<String> {
    let real = match evaluation {
        SampleSource::Images { .. } => "--calibration-images",
        SampleSource::Npy(_) => "--calibration-npy",
        SampleSource::Texts(_) => "--calibration-texts",
        SampleSource::Seeded { .. } => return None,
    };
    matches!(calibration, SampleSource::Seeded { .. }).then(|| {
        format!(
            "warning: int8 is calibrated on seeded inputs (uniform noise; token id 1 for a text \
             model), not on data like the \
             evaluation's, so its accuracy here is a floor; give {real} (other samples than the \
             evaluation's) for real ranges"
        )
    })
}

/// The translator of a text model, for `--texts`; other models are refused.
fn text_embedding(model_ref: &ModelRef, flag: &str) -> anyhow::Result<TextEmbedding> {
    match model_ref.text_dir() {
        Some(dir) => Ok(TextEmbedding::from_dir(&dir)?),
        None => anyhow::bail!(
            "{flag}: texts need a text-embedding model whose tokenizer thrum knows \
             (zoo:all-minilm-l6-v2); give this model images or .npy files instead"
        ),
    }
}

impl SampleSource {
    /// The outputs to compare for these samples: for texts, each sample's first output (the
    /// encoder's hidden state, `[1, tokens, width]`) mean- or CLS-pooled as the model's
    /// pooling file says and L2-normalised, `[1, width]`: the embedding a user gets. Other
    /// samples' outputs as they are.
    pub fn embeddings(&self, model_ref: &ModelRef) -> anyhow::Result<Option<Embedder>> {
        match self {
            SampleSource::Texts(_) => Ok(Some(Embedder(text_embedding(model_ref, "--texts")?))),
            _ => Ok(None),
        }
    }
}

/// Pools a text model's hidden states into embeddings ([`SampleSource::embeddings`]).
pub struct Embedder(TextEmbedding);

impl Embedder {
    /// `hidden` (`[1, tokens, width]`) for a text of `tokens` tokens, as `[1, width]`.
    pub fn embed(&self, hidden: Tensor) -> thrum::Result<Tensor> {
        let &[1, tokens, width] = hidden.shape() else {
            return Err(thrum::Error::InvalidValue {
                what: "a text model's output".into(),
                value: format!("shape {:?}", hidden.shape()),
                expected: "[1, tokens, width]: the encoder's hidden state for one text".into(),
            });
        };
        let mut v = self.0.pooling().pool(hidden.as_slice::<f32>()?, width, tokens)?;
        thrum::text::normalize(&mut v);
        Tensor::from_vec(vec![1, v.len()], v)
    }
}

/// The first `limit` files of `dir` in name order whose extension is one of `extensions`
/// (any case), hidden ones left out: other files (a README, labels) are not samples.
fn files(dir: &Path, limit: usize, extensions: &[&str]) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths = visible_entries(dir, |p| {
        p.is_file()
            && p.extension().is_some_and(|e| {
                extensions.iter().any(|x| e.to_string_lossy().eq_ignore_ascii_case(x))
            })
    })?;
    paths.truncate(limit);
    Ok(paths)
}

/// The entries of `dir` that `keep` accepts, hidden ones left out, in name order.
fn visible_entries(dir: &Path, keep: impl Fn(&Path) -> bool) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| thrum::Error::read(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) && keep(p))
        .collect();
    paths.sort();
    Ok(paths)
}

/// `.npy` samples of `dir`, up to `limit`: for a model with one input, each `.npy` file is a
/// sample; for any model, each subdirectory holding `.npy` files is one, with a file per input
/// named as `thrum predict -o DIR` names outputs ([`crate::io::npy_file_name`]). Samples are
/// taken in name order; a directory with both layouts is refused (which one was meant?).
fn npy_samples(
    dir: &Path,
    model: &Model,
    limit: usize,
    flag: &str,
) -> anyhow::Result<Vec<Vec<Tensor>>> {
    let names: Vec<&str> = model.inputs().iter().map(|s| s.name.as_str()).collect();
    let expected =
        || names.iter().map(|n| crate::io::npy_file_name(n)).collect::<Vec<_>>().join(", ");
    let mut folders =
        visible_entries(dir, |p| p.is_dir() && files(p, 1, &["npy"]).is_ok_and(|f| !f.is_empty()))?;
    let flat = files(dir, limit, &["npy"])?;
    if !folders.is_empty() && !flat.is_empty() {
        anyhow::bail!(
            "{flag} `{}` holds both .npy files and sample folders of .npy files: give one layout \
             (a file per sample for a model with one input, or a folder per sample holding {})",
            dir.display(),
            expected()
        );
    }
    if folders.is_empty() {
        if names.len() != 1 && !flat.is_empty() {
            anyhow::bail!(
                "{flag} `{}` has .npy files but no sample folders, and model `{}` has {} inputs \
                 ({}): expected one folder per sample holding {}",
                dir.display(),
                model.name(),
                names.len(),
                names.join(", "),
                expected()
            );
        }
        return flat.iter().map(|p| Ok(vec![crate::io::read_npy(p)?])).collect();
    }
    folders.truncate(limit);
    folders
        .iter()
        .map(|sample| {
            names
                .iter()
                .map(|name| {
                    let file = crate::io::npy_file_name(name);
                    let path = sample.join(&file);
                    if !path.is_file() {
                        anyhow::bail!(
                            "{flag} sample `{}` has no `{file}`: each sample folder holds one .npy \
                             file per input of model `{}` ({})",
                            sample.display(),
                            model.name(),
                            expected()
                        );
                    }
                    Ok(crate::io::read_npy(&path)?)
                })
                .collect()
        })
        .collect()
}

/// A seeded sample input: floats uniform in [-1, 1), integers all ones (valid indices).
fn seeded(shape: &[usize], dtype: DType, sample: usize, input: usize) -> anyhow::Result<Tensor> {
    let len: usize = shape.iter().product();
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ ((sample as u64) << 16) ^ input as u64;
    let mut next = move || {
        state =
            state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    Ok(match dtype {
        DType::F32 => {
            Tensor::from_vec(shape.to_vec(), (0..len).map(|_| next()).collect::<Vec<f32>>())?
        }
        DType::I64 => Tensor::from_vec(shape.to_vec(), vec![1i64; len])?,
        DType::I32 => Tensor::from_vec(shape.to_vec(), vec![1i32; len])?,
        other => anyhow::bail!(
            "seeded calibration inputs of dtype {other}; expected f32, i64 or i32 inputs, or \
             real calibration data (--calibration-images, --calibration-texts, --calibration-npy)"
        ),
    })
}
