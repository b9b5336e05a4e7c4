//! A load run's report: the console block (perf_analyzer's wording), the CSV perf_analyzer
//! writes with `-f` (same columns, so existing spreadsheets and plotting scripts read it), JSON,
//! and a plot of throughput against P99 latency over the steps.

use std::io::Write;
use std::path::Path;

use plotters::prelude::*;

use crate::error::LoadError;
use crate::measure::{Step, StepReport};
use crate::plan::LoadPlan;

/// The report of a whole run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LoadReport {
    /// Schema name and version.
    pub schema: &'static str,
    /// What was run.
    pub plan: LoadPlan,
    /// The model's max batch size as the server states it.
    pub max_batch_size: usize,
    /// Whether the server reports statistics.
    pub server_statistics: bool,
    /// One entry per step, in the order run.
    pub steps: Vec<StepReport>,
}

/// Writes one step the way perf_analyzer's console report reads.
pub fn write_step(step: &StepReport, batch: usize, out: &mut dyn Write) -> std::io::Result<()> {
    match step.step {
        Step::Concurrency(n) => writeln!(out, "Request concurrency: {n}")?,
        Step::RequestRate(r) => writeln!(out, "Request Rate: {r} inference requests per second")?,
    }
    writeln!(out, "  Client: ")?;
    writeln!(out, "    Request count: {}", step.requests)?;
    writeln!(
        out,
        "    Throughput: {:.2} infer/sec{}",
        step.throughput,
        if batch > 1 { format!(" (batch {batch})") } else { String::new() }
    )?;
    if let Step::RequestRate(target) = step.step {
        writeln!(out, "    Request rate achieved: {:.2}/s of {target}/s", step.request_rate)?;
    }
    let l = &step.latency;
    writeln!(out, "    Avg latency: {:.0} usec", l.avg_us)?;
    for (p, v) in [(50, l.p50_us), (90, l.p90_us), (95, l.p95_us), (99, l.p99_us)] {
        writeln!(out, "    p{p} latency: {v} usec")?;
    }
    if !step.errors.is_empty() {
        let list: Vec<String> = step.errors.iter().map(|(k, v)| format!("{v} × {k}")).collect();
        writeln!(out, "    Errors: {}", list.join(", "))?;
    }
    if step.retried > 0 {
        writeln!(out, "    Retried after Retry-After: {}", step.retried)?;
    }
    if let Some(s) = &step.server {
        writeln!(out, "  Server: ")?;
        writeln!(out, "    Inference count: {}", s.inferences)?;
        writeln!(out, "    Execution count: {}", s.executions)?;
        writeln!(out, "    Successful request count: {}", s.requests)?;
        writeln!(
            out,
            "    Avg request latency: {:.0} usec (queue {:.0} usec + compute input {:.0} usec + compute infer {:.0} usec + compute output {:.0} usec)",
            s.queue_us + s.compute_input_us + s.compute_infer_us + s.compute_output_us,
            s.queue_us,
            s.compute_input_us,
            s.compute_infer_us,
            s.compute_output_us
        )?;
    }
    if !step.stable {
        writeln!(
            out,
            "  WARNING: not stable: the last windows differ by more than the stability percentage after {} windows; increase --measurement-interval",
            step.windows
        )?;
    }
    if let Some(late) = step.delayed_fraction.filter(|&f| f > 0.01) {
        writeln!(
            out,
            "  WARNING: {:.1}% of the requests started late: the client could not keep this rate (raise --max-threads, or it is the client's limit)",
            late * 100.0
        )?;
    }
    writeln!(out)
}

/// The CSV perf_analyzer writes with `-f`: its columns (server columns only when the server
/// reports statistics), rows sorted by throughput, latencies in whole microseconds. This client
/// does not split its own send and receive time from the wait: Client Send and Client Recv are
/// 0, and the rest of the client's latency is in Network+Server Send/Recv.
pub fn csv(report: &LoadReport) -> String {
    let first = match report.steps.first().map(|s| s.step) {
        Some(Step::RequestRate(_)) => "Request Rate",
        _ => "Concurrency",
    };
    let server = report.server_statistics && report.steps.iter().all(|s| s.server.is_some());
    let mut out = format!("{first},Inferences/Second,Client Send,");
    if server {
        out.push_str("Network+Server Send/Recv,Server Queue,Server Compute Input,Server Compute Infer,Server Compute Output,");
    }
    out.push_str("Client Recv,p50 latency,p90 latency,p95 latency,p99 latency\n");
    let mut rows: Vec<&StepReport> = report.steps.iter().collect();
    rows.sort_by(|a, b| a.throughput.total_cmp(&b.throughput));
    for s in rows {
        let level = match s.step {
            Step::Concurrency(n) => n.to_string(),
            Step::RequestRate(r) => r.to_string(),
        };
        out.push_str(&format!("{level},{},0,", s.throughput));
        if let (true, Some(v)) = (server, &s.server) {
            let accounted =
                v.queue_us + v.compute_input_us + v.compute_infer_us + v.compute_output_us;
            let network = (s.latency.avg_us - accounted).max(0.0);
            for x in
                [network, v.queue_us, v.compute_input_us, v.compute_infer_us, v.compute_output_us]
            {
                out.push_str(&format!("{},", x as u64));
            }
        }
        let l = &s.latency;
        out.push_str(&format!("0,{},{},{},{}\n", l.p50_us, l.p90_us, l.p95_us, l.p99_us));
    }
    out
}

fn write_file(path: &Path, text: &str) -> Result<(), LoadError> {
    std::fs::write(path, text)
        .map_err(|e| LoadError::Output { path: path.into(), reason: e.to_string() })
}

/// Writes the CSV.
pub fn write_csv(report: &LoadReport, path: &Path) -> Result<(), LoadError> {
    write_file(path, &csv(report))
}

/// Writes the JSON report.
pub fn write_json(report: &LoadReport, path: &Path) -> Result<(), LoadError> {
    let text = serde_json::to_string_pretty(report)
        .map_err(|e| LoadError::Output { path: path.into(), reason: e.to_string() })?;
    if path == Path::new("-") {
        println!("{text}");
        return Ok(());
    }
    write_file(path, &text)
}

/// Plots throughput against P99 latency, one point per step, labelled (SVG or PNG by the
/// file's extension).
pub fn plot(report: &LoadReport, path: &Path) -> Result<(), LoadError> {
    let fail = |e: String| LoadError::Output { path: path.into(), reason: e };
    let points: Vec<(f64, f64, String)> = report
        .steps
        .iter()
        .map(|s| {
            let label = match s.step {
                Step::Concurrency(n) => format!("c{n}"),
                Step::RequestRate(r) => format!("{r}/s"),
            };
            (s.latency.p99_us as f64 / 1000.0, s.throughput, label)
        })
        .collect();
    let max_x = points.iter().map(|p| p.0).fold(0.0, f64::max).max(1e-3) * 1.15;
    let max_y = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-3) * 1.15;
    let title =
        format!("{} over {}: throughput vs P99 latency", report.plan.model, report.plan.protocol);
    macro_rules! draw {
        ($backend:expr) => {{
            let root = $backend.into_drawing_area();
            root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
            let mut chart = ChartBuilder::on(&root)
                .caption(&title, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(0.0..max_x, 0.0..max_y)
                .map_err(|e| fail(e.to_string()))?;
            chart
                .configure_mesh()
                .x_desc("P99 latency (ms)")
                .y_desc("inferences / s")
                .draw()
                .map_err(|e| fail(e.to_string()))?;
            chart
                .draw_series(LineSeries::new(points.iter().map(|p| (p.0, p.1)), &BLUE))
                .map_err(|e| fail(e.to_string()))?;
            chart
                .draw_series(points.iter().map(|p| {
                    EmptyElement::at((p.0, p.1))
                        + Circle::new((0, 0), 4, BLUE.filled())
                        + Text::new(
                            p.2.clone(),
                            (6, -12),
                            ("sans-serif", 12).into_font().color(&BLACK),
                        )
                }))
                .map_err(|e| fail(e.to_string()))?;
            root.present().map_err(|e| fail(e.to_string()))?;
        }};
    }
    let png = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if png {
        draw!(BitMapBackend::new(path, (900, 600)));
    } else {
        draw!(SVGBackend::new(path, (900, 600)));
    }
    Ok(())
}
