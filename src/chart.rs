//! Line charts as PNG or SVG files (plotters) and in the terminal (textplots).
//!
//! Text is drawn with the DejaVu Sans font embedded in the binary, so charts render the
//! same on a machine with no fonts installed.

use anyhow::{Context as _, Result, bail};
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// One named curve of (x, y) points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Axis labels and title of a chart.
pub struct Labels<'a> {
    pub title: &'a str,
    pub x: &'a str,
    pub y: &'a str,
}

/// Ten colours that stay distinguishable side by side (Tableau 10).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The embedded font is a valid TTF; failure here would be a build defect.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Writes a line chart to `path`; the format follows the extension (`.png` or `.svg`).
pub fn write_line_chart(path: &Path, series: &[Series], labels: &Labels<'_>) -> Result<()> {
    let size = (1000, 600);
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("png") => draw(BitMapBackend::new(path, size).into_drawing_area(), series, labels),
        Some("svg") => draw(SVGBackend::new(path, size).into_drawing_area(), series, labels),
        _ => bail!("cannot write a chart to {}: the file name must end in .png or .svg", path.display()),
    }
    .with_context(|| format!("cannot write the chart {}", path.display()))
}

fn draw<DB: DrawingBackend>(
    area: DrawingArea<DB, plotters::coord::Shift>,
    series: &[Series],
    labels: &Labels<'_>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    register_font();
    area.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let points = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in points.filter(|(x, y)| x.is_finite() && y.is_finite()) {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if !x0.is_finite() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let pad = if y1 > y0 { (y1 - y0) * 0.05 } else { y0.abs().max(1e-12) * 0.05 };
    let mut chart = ChartBuilder::on(&area)
        .caption(labels.title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc(labels.x)
        .y_desc(labels.y)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 18))
        .y_label_formatter(&|y| format!("{y:.3e}"))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (i, s) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let style = ShapeStyle { color: color.to_rgba(), filled: false, stroke_width: 2 };
        let finite = s.points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite());
        chart
            .draw_series(LineSeries::new(finite, style))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    if series.len() > 1 || series.iter().any(|s| !s.name.is_empty()) {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 15))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    area.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// A chart of one curve drawn with Braille characters, for the terminal.
pub fn terminal_chart(points: &[(f64, f64)], width: u32, height: u32) -> String {
    use textplots::{Chart, Plot, Shape};
    let pts: Vec<(f32, f32)> = points.iter().map(|&(x, y)| (x as f32, y as f32)).collect();
    let xmax = pts.last().map_or(1.0, |p| p.0.max(1.0));
    let mut chart = Chart::new(width, height, 0.0, xmax);
    let shape = Shape::Lines(&pts);
    let chart = chart.lineplot(&shape);
    chart.axis();
    chart.figures();
    chart.to_string()
}
