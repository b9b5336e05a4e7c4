//! Samples that `thrum quantize` calibrates on and `thrum compare --precision` judges on: a
//! directory of images (pre-processed as the model's own), a directory of `.npy` files, or
//! seeded sample inputs.

use std::path::{Path, PathBuf};

use thrum::{DType, Model, ModelRef, Tensor};

/// Where samples come from.
#[derive(Clone, Debug)]
pub enum SampleSource {
    /// Images, through the model's pre-processing (a zoo image model's recipe, else
    /// TorchServe's defaults).
    Images(PathBuf),
    /// One `.npy` file per sample, for a model with one input.
    Npy(PathBuf),
    /// Seeded inputs: floats uniform in [-1, 1), integers ones; `seed` makes two sets differ.
    Seeded {
        /// Added to every sample's seed.
        seed: usize,
    },
}

impl SampleSource {
    /// What the samples are, for reports.
    pub fn describe(&self, count: usize) -> String {
        match self {
            SampleSource::Images(dir) => format!("{count} images of {}", dir.display()),
            SampleSource::Npy(dir) => format!("{count} .npy files of {}", dir.display()),
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
            SampleSource::Images(dir) => {
                let transform = model_ref.image_transform(model)?;
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
            SampleSource::Npy(dir) => {
                if model.inputs().len() != 1 {
                    anyhow::bail!(
                        "{flag} gives one tensor per sample, and model `{}` has {} inputs ({}); \
                         expected a model with one input",
                        model.name(),
                        model.inputs().len(),
                        model
                            .inputs()
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                files(dir, limit, &["npy"])?
                    .iter()
                    .map(|p| Ok(vec![crate::io::read_npy(p)?]))
                    .collect()
            }
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

/// The first `limit` files of `dir` in name order whose extension is one of `extensions`
/// (any case), hidden ones left out: other files (a README, labels) are not samples.
fn files(dir: &Path, limit: usize, extensions: &[&str]) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| thrum::Error::read(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
                && p.extension().is_some_and(|e| {
                    extensions.iter().any(|x| e.to_string_lossy().eq_ignore_ascii_case(x))
                })
        })
        .collect();
    paths.sort();
    paths.truncate(limit);
    Ok(paths)
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
             real calibration data (--calibration-images, --calibration-npy)"
        ),
    })
}
