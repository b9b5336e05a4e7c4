//! Sweep plots: throughput against P99 latency, one point per configuration, the Pareto front
//! joined and highlighted. SVG or PNG by extension; the font is embedded (DejaVu Sans), so
//! plotting needs no system font library.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use crate::error::BenchError;
use crate::sweep::SweepPoint;

static FONT: Once = Once::new();

fn register_font() {
    FONT.call_once(|| {
        // The bytes are a valid TTF shipped by the `dejavu` crate; registration only fails on
        // an invalid font, in which case text is simply not drawn.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

/// Draws `points` to `path` (`.svg` or `.png`).
pub fn plot_sweep(points: &[SweepPoint], title: &str, path: &Path) -> Result<(), BenchError> {
    let ext =
        path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    let fail = |e: &dyn std::fmt::Display| BenchError::Output {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    register_font();
    match ext.as_str() {
        "svg" => {
            let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
            draw(&root, points, title).map_err(|e| fail(&e))?;
            root.present().map_err(|e| fail(&e))
        }
        "png" => {
            let root = BitMapBackend::new(path, (900, 600)).into_drawing_area();
            draw(&root, points, title).map_err(|e| fail(&e))?;
            root.present().map_err(|e| fail(&e))
        }
        _ => Err(BenchError::Config {
            what: format!("plot file `{}`", path.display()),
            expected: "a .svg or .png file name".into(),
        }),
    }
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    points: &[SweepPoint],
    title: &str,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let max_x = points.iter().map(|p| p.p99_ms).fold(0.0, f64::max).max(1e-3) * 1.15;
    let max_y = points.iter().map(|p| p.samples_per_s).fold(0.0, f64::max).max(1e-3) * 1.15;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..max_x, 0.0..max_y)?;
    chart
        .configure_mesh()
        .x_desc("P99 latency (ms) — lower is better")
        .y_desc("throughput (samples/s) — higher is better")
        .label_style(("sans-serif", 14))
        .draw()?;
    let mut front: Vec<&SweepPoint> = points.iter().filter(|p| p.pareto).collect();
    front.sort_by(|a, b| a.p99_ms.total_cmp(&b.p99_ms));
    chart
        .draw_series(LineSeries::new(
            front.iter().map(|p| (p.p99_ms, p.samples_per_s)),
            RED.stroke_width(2),
        ))?
        .label("Pareto front")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    chart.draw_series(points.iter().map(|p| {
        let color = if p.pareto { RED } else { BLUE };
        EmptyElement::at((p.p99_ms, p.samples_per_s))
            + Circle::new((0, 0), 5, color.filled())
            + Text::new(p.label(), (7, -12), ("sans-serif", 12).into_font().color(&BLACK))
    }))?;
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.8)).draw()?;
    Ok(())
}
