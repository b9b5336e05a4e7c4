//! Printing helpers shared by the commands: output summaries, tables, JSON.

use std::io::Write;

use thrum::Tensor;

/// Statistics of one output tensor.
#[derive(serde::Serialize)]
pub struct OutputSummary {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
    pub std: Option<f64>,
    /// Flat index of the largest element.
    pub argmax: Option<usize>,
    /// The first few elements.
    pub first: Vec<f64>,
}

impl OutputSummary {
    pub fn of(name: &str, tensor: &Tensor) -> OutputSummary {
        let values = tensor.to_f64_vec().unwrap_or_default();
        let n = values.len() as f64;
        let (mut min, mut max, mut argmax) = (None::<f64>, None::<f64>, None);
        for (i, &v) in values.iter().enumerate() {
            min = Some(min.map_or(v, |m| m.min(v)));
            if max.is_none_or(|m| v > m) {
                max = Some(v);
                argmax = Some(i);
            }
        }
        let mean = (!values.is_empty()).then(|| values.iter().sum::<f64>() / n);
        let std = mean.map(|m| (values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / n).sqrt());
        OutputSummary {
            name: name.into(),
            dtype: tensor.dtype().to_string(),
            shape: tensor.shape().to_vec(),
            min,
            max,
            mean,
            std,
            argmax,
            first: values.iter().take(5).copied().collect(),
        }
    }

    /// One human-readable line.
    pub fn line(&self) -> String {
        let mut line = format!("{}: {} {:?}", self.name, self.dtype, self.shape);
        if let (Some(min), Some(max), Some(mean), Some(std)) =
            (self.min, self.max, self.mean, self.std)
        {
            line.push_str(&format!("  min {min:.5} max {max:.5} mean {mean:.5} std {std:.5}"));
        }
        if let Some(i) = self.argmax {
            line.push_str(&format!("  argmax {i}"));
        }
        if !self.first.is_empty() {
            let first: Vec<String> = self.first.iter().map(|v| format!("{v:.5}")).collect();
            line.push_str(&format!("  first [{}]", first.join(", ")));
        }
        line
    }
}

/// Pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Prints rows as left-aligned columns under a header.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = std::io::stdout().lock();
    let line = |cells: Vec<&str>| -> String {
        let padded: Vec<String> =
            cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_string()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

/// Writes `text` to `path`, or to stdout for `-` (a reader that stops early is not an error).
pub fn write_output(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    if path == std::path::Path::new("-") {
        return match writeln!(std::io::stdout().lock(), "{text}") {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other.context("cannot write to stdout"),
        };
    }
    std::fs::write(path, text).with_context(|| format!("cannot write `{}`", path.display()))
}
