//! What to serve, from a `thrum.toml` or a model repository: for each model its name, where it
//! is, the engine, options, workers, predictor kind, batching and queue bound. Parsing only; the
//! caller (the CLI) loads the models.
//!
//! One model per file (what `thrum tune` writes, and what a model repository's folders hold):
//!
//! ```toml
//! model = "resnet50.onnx"      # relative to the file; in a repository, the folder's model file
//! engine = "ort"
//! workers = 2
//! predictor = "per-thread"
//! queue_capacity = 128
//!
//! [options]                    # any option key (docs/configuration.md)
//! intra_op_threads = 1
//! "ort.execution_mode" = "sequential"
//!
//! [batching]
//! max_batch_size = 8
//! max_queue_delay_us = 500
//! preferred_batch_sizes = [4, 8]
//! ```
//!
//! Several models: the same tables as `[[models]]` entries, each with a `name`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use thrum_core::{ModelFormat, Options, PredictorKind};

use crate::error::ServeError;
use crate::pool::{Batching, PoolConfig};

/// One model to serve, before it is loaded.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelEntry {
    /// Its name in URLs.
    pub name: String,
    /// Where it is: a path, or `zoo:NAME`.
    pub model: String,
    /// The engine that runs it.
    pub engine: String,
    /// Options for loading it.
    pub options: Options,
    /// How it is served; `workers` 0 and `queue_capacity` 0 mean "decide from the cores" (the
    /// caller does: see [`PoolConfig::DEFAULT_QUEUE_PER_WORKER`]).
    pub pool: PoolConfig,
}

impl ModelEntry {
    /// An entry with the defaults: `workers` and `queue_capacity` 0 (decided by the caller), no
    /// batching.
    pub fn new(
        name: impl Into<String>,
        model: impl Into<String>,
        engine: impl Into<String>,
    ) -> ModelEntry {
        ModelEntry {
            name: name.into(),
            model: model.into(),
            engine: engine.into(),
            options: Options::default(),
            pool: PoolConfig { workers: 0, queue_capacity: 0, ..PoolConfig::new(1) },
        }
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> ServeError {
    ServeError::Config { what: format!("`{}`", path.display()), reason: reason.into() }
}

/// Reads a `thrum.toml`: one model (top-level keys) or several (`[[models]]`). `default_name`
/// names a single model without a `name`; `model_file` is the model of a repository folder.
pub fn read_file(
    path: &Path,
    default_name: Option<&str>,
    model_file: Option<&Path>,
) -> Result<Vec<ModelEntry>, ServeError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| bad(path, format!("cannot read it: {e}")))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| bad(path, e.to_string()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    match table.get("models") {
        Some(toml::Value::Array(models)) => {
            if table.len() > 1 {
                return Err(bad(path, "with [[models]], every setting belongs in a model's table"));
            }
            models
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let t = m
                        .as_table()
                        .ok_or_else(|| bad(path, format!("models[{i}] is not a table")))?;
                    entry(t, path, dir, None, None)
                })
                .collect()
        }
        Some(_) => Err(bad(path, "`models` must be an array of tables ([[models]])")),
        None => Ok(vec![entry(&table, path, dir, default_name, model_file)?]),
    }
}

fn entry(
    t: &toml::Table,
    path: &Path,
    dir: &Path,
    default_name: Option<&str>,
    model_file: Option<&Path>,
) -> Result<ModelEntry, ServeError> {
    const KEYS: &[&str] = thrum_core::config::DEPLOYMENT_KEYS;
    if let Some(k) = t.keys().find(|k| !KEYS.contains(&k.as_str())) {
        let near = thrum_core::config::closest(k, KEYS.iter().copied())
            .map(|n| format!("did you mean `{n}`? "))
            .unwrap_or_default();
        return Err(bad(path, format!("unknown key `{k}`; {near}keys: {}", KEYS.join(", "))));
    }
    let string = |key: &str| -> Result<Option<String>, ServeError> {
        match t.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(bad(path, format!("`{key}` must be a string, not {other}"))),
        }
    };
    let count = |table: &toml::Table, key: &str, min: i64| -> Result<Option<usize>, ServeError> {
        match table.get(key) {
            None => Ok(None),
            Some(toml::Value::Integer(n)) if *n >= min => Ok(Some(*n as usize)),
            Some(other) => {
                Err(bad(path, format!("`{key}` must be an integer of at least {min}, not {other}")))
            }
        }
    };
    let name = match (string("name")?, default_name) {
        (Some(n), _) => n,
        (None, Some(n)) => n.to_string(),
        (None, None) => return Err(bad(path, "a model needs a `name`")),
    };
    let model = match (string("model")?, model_file) {
        (Some(m), _) if m.starts_with("zoo:") || Path::new(&m).is_absolute() => m,
        (Some(m), _) => dir.join(m).display().to_string(),
        (None, Some(file)) => file.display().to_string(),
        (None, None) => {
            return Err(bad(path, format!("model `{name}` needs `model` (a path or zoo:NAME)")));
        }
    };
    let mut entry =
        ModelEntry::new(name, model, string("engine")?.unwrap_or_else(|| "tract".into()));
    if let Some(w) = count(t, "workers", 1)? {
        entry.pool.workers = w;
    }
    if let Some(p) = string("predictor")? {
        entry.pool.predictor = p.parse::<PredictorKind>().map_err(|e| bad(path, e.to_string()))?;
    }
    if let Some(q) = count(t, "queue_capacity", 1)? {
        entry.pool.queue_capacity = q;
    }
    match t.get("options") {
        None => {}
        Some(toml::Value::Table(options)) => {
            entry.options.apply_toml_table(options, path)?;
            if entry.options.predictor.is_some() && t.get("predictor").is_none() {
                entry.pool.predictor = entry.options.predictor.unwrap_or_default();
            }
        }
        Some(other) => return Err(bad(path, format!("`options` must be a table, not {other}"))),
    }
    match t.get("batching") {
        None => {}
        Some(toml::Value::Table(b)) => {
            const BATCH_KEYS: &[&str] =
                &["max_batch_size", "max_queue_delay_us", "preferred_batch_sizes"];
            if let Some(k) = b.keys().find(|k| !BATCH_KEYS.contains(&k.as_str())) {
                return Err(bad(
                    path,
                    format!("unknown key `batching.{k}`; keys: {}", BATCH_KEYS.join(", ")),
                ));
            }
            let max = count(b, "max_batch_size", 0)?.unwrap_or(0);
            let delay = count(b, "max_queue_delay_us", 0)?.unwrap_or(0);
            let preferred = match b.get("preferred_batch_sizes") {
                None => Vec::new(),
                Some(toml::Value::Array(items)) => items
                    .iter()
                    .map(|i| match i {
                        toml::Value::Integer(n) if *n >= 1 => Ok(*n as usize),
                        other => Err(bad(
                            path,
                            format!("preferred batch size {other} is not a positive integer"),
                        )),
                    })
                    .collect::<Result<_, _>>()?,
                Some(other) => {
                    return Err(bad(
                        path,
                        format!("`preferred_batch_sizes` must be an array, not {other}"),
                    ));
                }
            };
            entry.pool.batching = (max > 0).then(|| {
                Batching::new(max, Duration::from_micros(delay as u64)).with_preferred(preferred)
            });
        }
        Some(other) => return Err(bad(path, format!("`batching` must be a table, not {other}"))),
    }
    Ok(entry)
}

/// The models of a repository: one folder per model, named as the folder, holding the model
/// (the one file or folder of a format some engine reads) and optionally a `thrum.toml`.
pub fn read_repository(dir: &Path, engine: &str) -> Result<Vec<ModelEntry>, ServeError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| bad(dir, format!("cannot read the model repository: {e}")))?;
    let mut folders: Vec<PathBuf> =
        entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
    folders.sort();
    if folders.is_empty() {
        return Err(bad(dir, "the model repository has no model folder (one folder per model)"));
    }
    folders
        .iter()
        .map(|folder| read_model_dir(folder, None, engine))
        .collect::<Result<Vec<Vec<_>>, _>>()
        .map(|v| v.into_iter().flatten().collect())
}

/// One model's folder (a repository's, or KServe's `--model-dir /mnt/models`): its model file
/// and optional `thrum.toml`. `name` defaults to the folder's name.
pub fn read_model_dir(
    folder: &Path,
    name: Option<&str>,
    engine: &str,
) -> Result<Vec<ModelEntry>, ServeError> {
    let default_name = match name {
        Some(n) => n.to_string(),
        None => folder
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into()),
    };
    let model = model_in(folder)?;
    let config = folder.join("thrum.toml");
    if config.is_file() {
        return read_file(&config, Some(&default_name), Some(&model));
    }
    Ok(vec![ModelEntry::new(default_name, model.display().to_string(), engine)])
}

/// The one model in `folder`: the folder itself when it is a model stored as a directory (a
/// SavedModel), else a file (or folder) in it whose name a registered format claims.
fn model_in(folder: &Path) -> Result<PathBuf, ServeError> {
    if ModelFormat::detect(folder).is_some_and(|f| f.directory_marker.is_some()) {
        return Ok(folder.to_path_buf());
    }
    let entries =
        std::fs::read_dir(folder).map_err(|e| bad(folder, format!("cannot read it: {e}")))?;
    let mut models: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| ModelFormat::detect(p).is_some())
        .collect();
    models.sort();
    match models.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(bad(
            folder,
            format!(
                "no model file in it; expected one of {}",
                thrum_core::engine::all_formats()
                    .iter()
                    .map(ModelFormat::hint)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
        many => Err(bad(
            folder,
            format!(
                "{} model files in it ({}); a model folder holds one",
                many.len(),
                many.iter()
                    .filter_map(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail by panicking

    use super::*;

    #[test]
    fn a_single_model_file_reads_every_setting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("thrum.toml");
        std::fs::write(
            &path,
            "model = \"zoo:mlp\"\nengine = \"ort\"\nworkers = 3\npredictor = \"shared\"\nqueue_capacity = 9\n\
             [options]\nintra_op_threads = 2\n[batching]\nmax_batch_size = 8\nmax_queue_delay_us = 250\npreferred_batch_sizes = [4]\n",
        )
        .unwrap();
        let models = read_file(&path, Some("mlp"), None).unwrap();
        let m = &models[0];
        assert_eq!(
            (m.name.as_str(), m.model.as_str(), m.engine.as_str()),
            ("mlp", "zoo:mlp", "ort")
        );
        assert_eq!(
            (m.pool.workers, m.pool.predictor, m.pool.queue_capacity),
            (3, PredictorKind::Shared, 9)
        );
        assert_eq!(m.options.intra_op_threads, Some(2));
        let b = m.pool.batching.as_ref().unwrap();
        assert_eq!(
            (b.max_batch_size, b.max_queue_delay, b.preferred_batch_sizes.clone()),
            (8, Duration::from_micros(250), vec![4])
        );
    }

    #[test]
    fn mistakes_name_the_file_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("thrum.toml");
        std::fs::write(&path, "model = \"zoo:mlp\"\nworker = 2\n").unwrap();
        let e = read_file(&path, Some("m"), None).unwrap_err().to_string();
        assert!(
            e.contains("thrum.toml") && e.contains("`worker`") && e.contains("`workers`"),
            "{e}"
        );
        std::fs::write(&path, "model = \"zoo:mlp\"\n[options]\nintra_threads = 2\n").unwrap();
        let e = read_file(&path, Some("m"), None).unwrap_err().to_string();
        assert!(e.contains("intra_threads"), "{e}");
    }
}
