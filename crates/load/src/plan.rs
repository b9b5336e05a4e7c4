//! What a load run does, parsed and checked without I/O: the target, the protocol, the load
//! (closed loop at concurrencies, or open loop at request rates), the inputs, and how it
//! measures.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::LoadError;

/// How requests travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// REST with the binary tensor data extension (tritonclient's and perf_analyzer's default).
    Http,
    /// REST with JSON tensors both ways.
    HttpJson,
    /// gRPC (`inference.GRPCInferenceService`), raw contents both ways.
    Grpc,
}

impl std::str::FromStr for Protocol {
    type Err = LoadError;
    fn from_str(s: &str) -> Result<Protocol, LoadError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "http" | "http-binary" => Ok(Protocol::Http),
            "http-json" | "json" => Ok(Protocol::HttpJson),
            "grpc" => Ok(Protocol::Grpc),
            other => {
                Err(LoadError::usage(format!("protocol `{other}`"), "http, http-json or grpc"))
            }
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Http => "http",
            Protocol::HttpJson => "http-json",
            Protocol::Grpc => "grpc",
        })
    }
}

/// How request times are spread in open loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// Evenly spaced.
    Constant,
    /// Exponential gaps (a Poisson process), from a seed.
    Poisson,
}

/// The load to apply, step by step.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Load {
    /// Closed loop: this many requests in flight at every moment, one step per value.
    Concurrency(Vec<usize>),
    /// Open loop: requests started at this rate (per second) whether or not answers came.
    RequestRate {
        /// One step per rate.
        rates: Vec<f64>,
        /// How start times are spread.
        distribution: Distribution,
        /// Most requests in flight (connections); a request due when all are busy is delayed.
        max_in_flight: usize,
    },
}

/// Where inputs come from.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputData {
    /// Zeros of each input's datatype.
    Zero,
    /// Values from a seed (floats in [-1, 1), integers in [0, 100), booleans, short strings).
    Random {
        /// The seed.
        seed: u64,
    },
    /// `.npy` files: one file for a single-input model, else a directory with `NAME.npy`.
    Files(PathBuf),
    /// Texts for a text-embedding model, sent to TEI's `POST /embed` instead of v2's infer:
    /// one text per line of the file, `batch` lines per request, taken in turn (HTTP only).
    Texts(PathBuf),
    /// Encoded images (JPEG, PNG, GIF, WebP) for an image model: every file of the directory,
    /// `batch` per request as one v2 BYTES input in the binary extension, taken in turn (HTTP
    /// only), for the server to decode and resize.
    Images(PathBuf),
}

/// How each step is measured (perf_analyzer's rule).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Measurement {
    /// Length of a time window; `None` with `window_requests`.
    pub window: Option<Duration>,
    /// Requests per window, instead of a time.
    pub window_requests: Option<u64>,
    /// Windows within this fraction of each other (0.10 = ±10 %) are stable.
    pub stability: f64,
    /// Consecutive windows that must agree.
    pub stable_windows: usize,
    /// Most windows per step before reporting it unstable.
    pub max_windows: usize,
    /// Time run and thrown away before a step's first window.
    pub warmup: Duration,
}

impl Default for Measurement {
    fn default() -> Measurement {
        Measurement {
            window: Some(Duration::from_millis(5000)),
            window_requests: None,
            stability: 0.10,
            stable_windows: 3,
            max_windows: 10,
            warmup: Duration::from_secs(1),
        }
    }
}

/// A validated load run.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LoadPlan {
    /// `host:port` (no scheme, as tritonclient takes it).
    pub url: String,
    /// The model.
    pub model: String,
    /// Its version (empty: the server's choice).
    pub version: String,
    /// How requests travel.
    pub protocol: Protocol,
    /// gRPC only: each caller sends its requests on one `ModelStreamInfer` stream
    /// (perf_analyzer's `--streaming`) instead of unary calls.
    pub streaming: bool,
    /// The load steps.
    pub load: Load,
    /// Samples per request along the model's batch axis.
    pub batch: usize,
    /// Where inputs come from.
    pub inputs: InputData,
    /// Sizes for dynamic dimensions other than the batch axis (`NAME:d1,d2` per input).
    pub shapes: Vec<(String, Vec<usize>)>,
    /// How each step is measured.
    pub measurement: Measurement,
    /// Honour `Retry-After` on 503 and 429: wait and send again.
    pub retry: bool,
    /// Longest wait for one answer; a request still unanswered then counts as failed
    /// (`timeout`) and its connection is dropped.
    pub request_timeout: Duration,
    /// A progress bar on stderr (when it is a terminal).
    pub progress: bool,
}

/// Most requests in flight at once (callers, each with its connection): one open file each.
pub const MAX_CONCURRENCY: f64 = 4096.0;
/// The lowest request rate a step may ask for, per second (one request every 1000 s).
pub const MIN_RATE: f64 = 0.001;
/// The highest request rate a step may ask for, per second: beyond what one client process
/// sends, and a gap under the timer's resolution.
pub const MAX_RATE: f64 = 1_000_000.0;

/// Parses perf_analyzer's `START[:END[:STEP]]`: integers for concurrency (1 to
/// [`MAX_CONCURRENCY`]), numbers for rates ([`MIN_RATE`] to [`MAX_RATE`] per second).
pub fn parse_range(text: &str, what: &str, integer: bool) -> Result<Vec<f64>, LoadError> {
    let (low, high) = if integer { (1.0, MAX_CONCURRENCY) } else { (MIN_RATE, MAX_RATE) };
    let usage = |why: &str| {
        LoadError::usage(
            format!("{what} `{text}`"),
            format!("START[:END[:STEP]] with {low} ≤ START ≤ END ≤ {high} and STEP > 0 ({why})"),
        )
    };
    let parts: Vec<&str> = text.split(':').map(str::trim).collect();
    if parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(usage("one to three numbers separated by `:`"));
    }
    let number = |p: &str| -> Result<f64, LoadError> {
        let v: f64 = p.parse().map_err(|_| usage(&format!("`{p}` is not a number")))?;
        if !v.is_finite() || v <= 0.0 {
            return Err(usage(&format!("`{p}` is not above 0")));
        }
        if integer && v.fract() != 0.0 {
            return Err(usage(&format!("`{p}` is not a whole number")));
        }
        Ok(v)
    };
    let bounded = |v: f64, p: &str| -> Result<f64, LoadError> {
        if (low..=high).contains(&v) {
            Ok(v)
        } else {
            Err(usage(&format!("`{p}` is outside {low}..={high}")))
        }
    };
    let start = bounded(number(parts[0])?, parts[0])?;
    let end = match parts.get(1) {
        Some(p) => bounded(number(p)?, p)?,
        None => start,
    };
    let step = parts.get(2).map(|p| number(p)).transpose()?.unwrap_or(1.0);
    if end < start {
        return Err(usage(&format!("END {end} is below START {start}")));
    }
    let count = ((end - start) / step).floor() + 1.0;
    if count > 1000.0 {
        return Err(usage(&format!("{count} steps; at most 1000")));
    }
    let count = count as usize;
    Ok((0..count).map(|k| start + step * k as f64).collect())
}

/// Parses `NAME:d1,d2` shape overrides.
pub fn parse_shape(text: &str) -> Result<(String, Vec<usize>), LoadError> {
    let usage =
        || LoadError::usage(format!("--shape `{text}`"), "NAME:d1,d2,… with positive integers");
    let (name, dims) = text.split_once(':').ok_or_else(usage)?;
    let dims = dims
        .split(',')
        .map(|d| d.trim().parse::<usize>().ok().filter(|&d| d > 0).ok_or_else(usage))
        .collect::<Result<Vec<_>, _>>()?;
    if name.trim().is_empty() || dims.is_empty() {
        return Err(usage());
    }
    Ok((name.trim().to_string(), dims))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail by panicking

    use super::*;

    #[test]
    fn ranges_follow_perf_analyzer() {
        assert_eq!(parse_range("1:4", "c", true).unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(parse_range("2:8:3", "c", true).unwrap(), vec![2.0, 5.0, 8.0]);
        assert_eq!(parse_range("4", "c", true).unwrap(), vec![4.0]);
        assert_eq!(parse_range("50:100:25", "r", false).unwrap(), vec![50.0, 75.0, 100.0]);
        assert_eq!(parse_range("0.5", "r", false).unwrap(), vec![0.5]);
        assert_eq!(parse_range("1:4096:4095", "c", true).unwrap(), vec![1.0, 4096.0]);
        for bad in
            ["", "0", "1:", "a:2", "4:2", "1:2:0", "1:2:3:4", "1.5", "-1:2", "1:5000", "1:1e300"]
        {
            let e = parse_range(bad, "--concurrency-range", true).unwrap_err();
            assert!(e.to_string().contains("START[:END[:STEP]]"), "{bad}: {e}");
            assert!(e.kind().is_caller_error());
        }
        // Rates whose gap overflows a Duration, or falls under the timer, are refused.
        for bad in ["1e-300", "2e6", "1:1e9:1e-9", "inf", "nan"] {
            let e = parse_range(bad, "--request-rate-range", false).unwrap_err();
            assert!(e.to_string().contains("START[:END[:STEP]]"), "{bad}: {e}");
        }
    }

    #[test]
    fn shapes_parse() {
        assert_eq!(parse_shape("ids:1,128").unwrap(), ("ids".into(), vec![1, 128]));
        assert!(parse_shape("ids").is_err() && parse_shape("ids:0").is_err());
    }
}
