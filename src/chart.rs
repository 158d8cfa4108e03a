//! Line charts as PNG or SVG files (plotters) and in the terminal (textplots).
//!
//! Text is drawn with the DejaVu Sans font embedded in the binary, so charts render the
//! same on a machine with no fonts installed.

use anyhow::{Context as _, Result, bail};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;
use std::sync::Once;

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// One named curve of (x, y) points, with an optional band around it (x, low, high):
/// a variant's mean over its seeds and their spread.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub band: Vec<(f64, f64, f64)>,
}

impl Series {
    /// A curve without a band.
    pub fn line(name: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        Series { name: name.into(), points, band: Vec::new() }
    }
}

/// How a line chart is drawn.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub y_range: YRange,
    /// A logarithmic y axis (positive values only).
    pub log_y: bool,
    /// Curves named in the legend, in colour; the rest are drawn thin and grey, summarised
    /// as one legend entry.
    pub legend: usize,
    /// A second panel under the chart: this last fraction of the x axis, its y axis fitted
    /// to the curves there (the final values that rank runs, which the whole run's axis
    /// squashes into a few pixels).
    pub zoom_last: Option<f64>,
}

impl Default for Style {
    fn default() -> Self {
        Style { y_range: YRange::default(), log_y: false, legend: LEGEND, zoom_last: None }
    }
}

/// Curves named in a legend by default: past about 20 the colours repeat and the names
/// run off the image.
pub const LEGEND: usize = 20;

/// Axis labels and title of a chart.
pub struct Labels<'a> {
    pub title: &'a str,
    pub x: &'a str,
    pub y: &'a str,
}

/// Where the y axis ends; `None` fits the data.
#[derive(Debug, Clone, Copy, Default)]
pub struct YRange(pub Option<(f64, f64)>);

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

/// Pixel size of a line chart: wider when a legend sits beside the plot, taller with a
/// zoomed panel under it.
pub fn line_chart_size(series: usize, zoomed: bool) -> (u32, u32) {
    let (w, h) = if series > 1 { (1300, 650) } else { (1000, 600) };
    if zoomed { (w, h + 380) } else { (w, h) }
}

/// Writes a line chart to `path`; the format follows the extension (`.png` or `.svg`).
pub fn write_line_chart(path: &Path, series: &[Series], labels: &Labels<'_>) -> Result<()> {
    write_line_chart_in(path, series, labels, YRange::default())
}

/// [`write_line_chart`] with the y axis limited to `range` (curves are clipped to it).
pub fn write_line_chart_in(path: &Path, series: &[Series], labels: &Labels<'_>, range: YRange) -> Result<()> {
    write_line_chart_styled(path, series, labels, Style { y_range: range, ..Style::default() })
}

/// [`write_line_chart`] drawn as `style` says.
pub fn write_line_chart_styled(path: &Path, series: &[Series], labels: &Labels<'_>, style: Style) -> Result<()> {
    let size = line_chart_size(series.len(), style.zoom_last.is_some());
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("png") => draw(BitMapBackend::new(path, size).into_drawing_area(), series, labels, style),
        Some("svg") => draw(SVGBackend::new(path, size).into_drawing_area(), series, labels, style),
        _ => bail!("cannot write a chart to {}: the file name must end in .png or .svg", path.display()),
    }
    .with_context(|| format!("cannot write the chart {}", path.display()))
}

fn color(i: usize) -> RGBColor {
    let c = PALETTE[i % PALETTE.len()];
    // Past ten curves, the same hues again, lighter.
    if (i / PALETTE.len()) % 2 == 1 { RGBColor(c.0 / 2 + 128, c.1 / 2 + 128, c.2 / 2 + 128) } else { c }
}

/// An axis label: plain decimals with up to four significant digits in the usual range
/// (`0.05`, `200`), scientific notation outside it.
fn tick(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        return "0".into();
    }
    if !(1e-3..1e5).contains(&a) {
        return format!("{v:.2e}");
    }
    let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
}

fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// Grey for the curves past the legend.
const REST: RGBColor = RGBColor(190, 190, 190);

/// The legend as a column beside the plot: a coloured line and the name of each curve
/// (names cut to 32 characters), then a grey line for the `rest` curves not named.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    names: &[&str],
    rest: usize,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let font = ("sans-serif", 16).into_font();
    let row = 24;
    let top = 60;
    let mut entries: Vec<(String, RGBColor)> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let short: String = if name.chars().count() > 32 {
                name.chars().take(31).chain(['…']).collect()
            } else {
                name.to_string()
            };
            (short, color(i))
        })
        .collect();
    if rest > 0 {
        entries.push((format!("{rest} more (grey)"), REST));
    }
    for (i, (name, c)) in entries.into_iter().enumerate() {
        let y = top + row * i as i32;
        let style = ShapeStyle { color: c.to_rgba(), filled: false, stroke_width: 3 };
        area.draw(&PathElement::new(vec![(8, y), (38, y)], style)).map_err(plot_err)?;
        area.draw(&Text::new(name, (46, y - 9), font.clone())).map_err(plot_err)?;
    }
    Ok(())
}

/// What a log-scale chart says when it draws rates of 0 (or below) on its floor.
pub const ZERO_ON_FLOOR: &str = "  rates of 0 are drawn on the bottom edge (a log axis has no 0)";

fn draw<DB: DrawingBackend>(
    area: DrawingArea<DB, plotters::coord::Shift>,
    series: &[Series],
    labels: &Labels<'_>,
    style: Style,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    register_font();
    area.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let legend = series.len() > 1;
    let (plot_area, legend_area) = if legend {
        let (w, _) = area.dim_in_pixel();
        let (l, r) = area.split_horizontally(w - 300);
        (l, Some(r))
    } else {
        (area.clone(), None)
    };
    match style.zoom_last.filter(|f| *f > 0.0 && *f < 1.0) {
        None => draw_panel(&plot_area, series, labels, style, None)?,
        Some(fraction) => {
            let (_, h) = plot_area.dim_in_pixel();
            let (top, bottom) = plot_area.split_vertically(h - 380);
            draw_panel(&top, series, labels, style, None)?;
            let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).filter(|x| x.is_finite());
            let (x0, x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
            if x1 > x0 {
                let from = x1 - (x1 - x0) * fraction;
                let title =
                    format!("the last {:.0}% ({} {} to {}), zoomed", fraction * 100.0, labels.x, tick(from), tick(x1));
                let zoomed = Labels { title: &title, x: labels.x, y: labels.y };
                draw_panel(&bottom, series, &zoomed, Style { y_range: YRange::default(), ..style }, Some((from, x1)))?;
            }
        }
    }
    if let Some(legend_area) = legend_area {
        let names: Vec<&str> = series.iter().take(style.legend).map(|s| s.name.as_str()).collect();
        draw_legend(&legend_area, &names, series.len().saturating_sub(style.legend))?;
    }
    area.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// The part of a curve from `from` on along x: the point where it crosses `from`
/// (interpolated) and those after.
fn from_x(points: &[(f64, f64)], from: f64) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    for (i, &(x, y)) in points.iter().enumerate() {
        if x < from {
            continue;
        }
        if out.is_empty()
            && i > 0
            && x > from
            && let Some(&(px, py)) = points.get(i - 1)
            && px < from
        {
            out.push((from, py + (y - py) * (from - px) / (x - px)));
        }
        out.push((x, y));
    }
    out
}

/// One plot of a line chart in `plot_area`: the whole x range, or only `window` (its y
/// axis fitted to what the curves do there).
fn draw_panel<DB: DrawingBackend>(
    plot_area: &DrawingArea<DB, plotters::coord::Shift>,
    series: &[Series],
    labels: &Labels<'_>,
    style: Style,
    window: Option<(f64, f64)>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let windowed: Vec<Series>;
    let series = match window {
        None => series,
        Some((from, _)) => {
            windowed = series
                .iter()
                .map(|s| Series {
                    name: s.name.clone(),
                    points: from_x(&s.points, from),
                    band: s.band.iter().copied().filter(|b| b.0 >= from).collect(),
                })
                .collect();
            &windowed
        }
    };
    // A log axis draws log10(y) on a linear one, labelled with y: values of 0 and below
    // have no place on it, so they are drawn on the axis floor (a warmup from 0 stays
    // visible) and the chart says so.
    let log = style.log_y;
    let map = |y: f64| if log { if y > 0.0 { y.log10() } else { f64::NAN } } else { y };
    let floored = log && series.iter().any(|s| s.points.iter().any(|&(x, y)| x.is_finite() && y <= 0.0));
    let points = series.iter().flat_map(|s| {
        s.points.iter().map(|&(x, y)| (x, y)).chain(s.band.iter().flat_map(|&(x, lo, hi)| [(x, lo), (x, hi)]))
    });
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for (x, y) in points {
        let y = map(y);
        if x.is_finite() && y.is_finite() {
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        } else if x.is_finite() && floored {
            // A rate of 0 drawn on the floor still takes its place along x.
            (x0, x1) = (x0.min(x), x1.max(x));
        }
    }
    if floored && !y0.is_finite() {
        // Only zeros: a decade of axis for them to lie on.
        (y0, y1) = (-1.0, 0.0);
    }
    if !x0.is_finite() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 <= x0 {
        // One x (every run evaluated once): centred.
        (x0, x1) = (x0 - 0.5, x0 + 0.5);
    }
    if let Some((lo, hi)) = style.y_range.0 {
        let (lo, hi) = if log { (map(lo.max(f64::MIN_POSITIVE)).max(y0), map(hi)) } else { (lo, hi) };
        (y0, y1) = (lo, hi.max(lo + 1e-12));
    }
    let pad = if y1 > y0 { (y1 - y0) * 0.05 } else { y0.abs().max(1e-12) * 0.05 };
    if let Some((from, to)) = window {
        (x0, x1) = (from, to);
    }
    let mut chart = ChartBuilder::on(plot_area)
        .caption(labels.title, ("sans-serif", if window.is_some() { 18 } else { 24 }))
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
        .x_label_formatter(&|x| tick(*x))
        .y_label_formatter(&|y| if log { tick(10f64.powf(*y)) } else { tick(*y) })
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Curves past the legend first, thin and grey, beneath the named ones; each named
    // curve's band (translucent) beneath its line.
    let (lo_clip, hi_clip) = (y0 - pad, y1 + pad);
    let clip = |y: f64| y.clamp(lo_clip, hi_clip);
    let finite = |s: &Series| -> Vec<(f64, f64)> {
        let floor = |y: f64| if log && y <= 0.0 { lo_clip } else { map(y) };
        s.points.iter().map(|&(x, y)| (x, floor(y))).filter(|(x, y)| x.is_finite() && y.is_finite()).collect()
    };
    for s in series.iter().skip(style.legend) {
        let grey = ShapeStyle { color: REST.to_rgba(), filled: false, stroke_width: 1 };
        chart.draw_series(LineSeries::new(finite(s).into_iter().map(|(x, y)| (x, clip(y))), grey)).map_err(plot_err)?;
    }
    for (i, s) in series.iter().enumerate().take(style.legend) {
        let band: Vec<(f64, f64, f64)> = s
            .band
            .iter()
            .map(|&(x, lo, hi)| (x, map(lo), map(hi)))
            .filter(|(x, lo, hi)| x.is_finite() && lo.is_finite() && hi.is_finite())
            .collect();
        if band.len() > 1 {
            let outline: Vec<(f64, f64)> = band
                .iter()
                .map(|&(x, _, hi)| (x, clip(hi)))
                .chain(band.iter().rev().map(|&(x, lo, _)| (x, clip(lo))))
                .collect();
            chart.draw_series(std::iter::once(Polygon::new(outline, color(i).mix(0.18).filled()))).map_err(plot_err)?;
        }
        let line = ShapeStyle { color: color(i).to_rgba(), filled: false, stroke_width: 2 };
        let points = finite(s);
        // A curve of one point (a run evaluated once) is a dot, not an invisible line.
        if let [(x, y)] = points[..] {
            chart.draw_series(std::iter::once(Circle::new((x, clip(y)), 4, color(i).filled()))).map_err(plot_err)?;
        }
        // Segment by segment: a 2-pixel polyline is drawn with mitred joins, which on a
        // noisy curve's sharp turns stick out as spikes far past the points (and the frame).
        let clipped: Vec<(f64, f64)> = points.into_iter().map(|(x, y)| (x, clip(y))).collect();
        chart.draw_series(clipped.windows(2).map(|w| PathElement::new(vec![w[0], w[1]], line))).map_err(plot_err)?;
    }
    if floored {
        let note = Text::new(ZERO_ON_FLOOR, (x0, lo_clip + (hi_clip - lo_clip) * 0.03), ("sans-serif", 14).into_font());
        chart.draw_series(std::iter::once(note)).map_err(plot_err)?;
    }
    Ok(())
}

/// Writes the learning-rate range test's chart to the PNG or SVG file `path`: the loss
/// and its smoothed value against the rate on a log axis, the suggested rate marked by a
/// vertical line and named in the legend. The loss axis ends a little above the first
/// smoothed loss, so the divergence at the end does not flatten the curve.
pub fn write_lr_find_chart(path: &Path, points: &[(f64, f64, f64)], marks: &[Mark], title: &str) -> Result<()> {
    let size = (1100, 650);
    let result = match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("png") => draw_lr_find(BitMapBackend::new(path, size).into_drawing_area(), points, marks, title),
        Some("svg") => draw_lr_find(SVGBackend::new(path, size).into_drawing_area(), points, marks, title),
        _ => bail!("cannot write a chart to {}: the file name must end in .png or .svg", path.display()),
    };
    result.with_context(|| format!("cannot write the chart {}", path.display()))
}

/// A vertical line across a chart at `x`, named in the legend: the suggestion (`strong`)
/// and the features it came from.
#[derive(Debug, Clone)]
pub struct Mark {
    pub x: f64,
    pub label: String,
    pub strong: bool,
}

/// A number in three significant digits, for a legend (`0.0509`, `0.242`, `3.35e-4`).
pub fn short(v: f64) -> String {
    significant(v as f32)
}

fn draw_lr_find<DB: DrawingBackend>(
    area: DrawingArea<DB, plotters::coord::Shift>,
    points: &[(f64, f64, f64)],
    marks: &[Mark],
    title: &str,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    register_font();
    area.fill(&WHITE).map_err(plot_err)?;
    let (plot_area, legend_area) = {
        let (w, _) = area.dim_in_pixel();
        area.split_horizontally(w - 300)
    };
    let finite: Vec<(f64, f64, f64)> = points
        .iter()
        .copied()
        .filter(|(lr, l, s)| *lr > 0.0 && lr.is_finite() && l.is_finite() && s.is_finite())
        .collect();
    let (x0, x1) = match (finite.first(), finite.last()) {
        (Some(a), Some(b)) if b.0 > a.0 => (a.0, b.0),
        (Some(a), _) => (a.0, a.0 * 10.0),
        _ => (1e-7, 10.0),
    };
    let low = finite.iter().map(|p| p.1.min(p.2)).fold(f64::INFINITY, f64::min);
    let first = finite.first().map_or(1.0, |p| p.2.max(p.1));
    let (y0, y1) = if low.is_finite() && first > low { (low, first + (first - low) * 0.3) } else { (0.0, 1.0) };
    let pad = (y1 - y0) * 0.05;
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d((x0..x1).log_scale(), (y0 - pad)..(y1 + pad))
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("learning rate (log scale)")
        .y_desc("training loss")
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 18))
        .x_label_formatter(&|x| tick(*x))
        .y_label_formatter(&|y| tick(*y))
        .draw()
        .map_err(plot_err)?;
    let clip = |v: f64| v.clamp(y0 - pad, y1 + pad);
    let raw = ShapeStyle { color: color(7).mix(0.6), filled: false, stroke_width: 1 };
    chart.draw_series(LineSeries::new(finite.iter().map(|p| (p.0, clip(p.1))), raw)).map_err(plot_err)?;
    let smooth = ShapeStyle { color: color(0).to_rgba(), filled: false, stroke_width: 3 };
    chart.draw_series(LineSeries::new(finite.iter().map(|p| (p.0, clip(p.2))), smooth)).map_err(plot_err)?;
    let mut names = vec!["loss".to_string(), "smoothed loss".to_string()];
    let mut colors = vec![color(7), color(0)];
    // The features thin, the suggestion thick and red over them.
    let mut thin = [color(1), color(2), color(4)].into_iter();
    let order = marks.iter().filter(|m| !m.strong).chain(marks.iter().filter(|m| m.strong));
    for m in order.filter(|m| (x0..=x1).contains(&m.x)) {
        let (c, width) = if m.strong { (color(3), 3) } else { (thin.next().unwrap_or(color(5)), 1) };
        let line = ShapeStyle { color: c.to_rgba(), filled: false, stroke_width: width };
        chart.draw_series(LineSeries::new([(m.x, y0 - pad), (m.x, y1 + pad)], line)).map_err(plot_err)?;
        names.push(m.label.clone());
        colors.push(c);
    }
    let font = ("sans-serif", 16).into_font();
    for (i, (name, c)) in names.iter().zip(colors).enumerate() {
        let y = 60 + 24 * i as i32;
        let style = ShapeStyle { color: c.to_rgba(), filled: false, stroke_width: 3 };
        legend_area.draw(&PathElement::new(vec![(8, y), (38, y)], style)).map_err(plot_err)?;
        legend_area.draw(&Text::new(name.clone(), (46, y - 9), font.clone())).map_err(plot_err)?;
    }
    area.present().map_err(plot_err)?;
    Ok(())
}

/// A bar: its name, its value and an interval around it (drawn as a line across it).
pub type Bar = (String, f64, Option<(f64, f64)>);

/// Writes a horizontal bar chart of `bars` (name, value, optional interval), first bar at
/// the top, each labelled with its value (in a column right of the plot) and its interval
/// drawn as a line across it, to the PNG or SVG file `path`. The value axis spans the data
/// (values and intervals) within `limits`, the values the metric can take (accuracy 0 to
/// 1): 0.983 and 0.997 must look different. Where the axis does not start at the lower
/// limit the bars are cut, and drawn so: a break across each bar's foot and the axis label
/// saying where the axis starts.
pub fn write_bar_chart(path: &Path, bars: &[Bar], labels: &Labels<'_>, limits: (f64, f64)) -> Result<()> {
    let size = (1100, (120 + 40 * bars.len().max(1) as u32).max(260));
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("png") => draw_bars(BitMapBackend::new(path, size).into_drawing_area(), bars, labels, limits),
        Some("svg") => draw_bars(SVGBackend::new(path, size).into_drawing_area(), bars, labels, limits),
        _ => bail!("cannot write a chart to {}: the file name must end in .png or .svg", path.display()),
    }
    .with_context(|| format!("cannot write the chart {}", path.display()))
}

/// The value axis of a bar chart: the data's range with a margin each way, kept within
/// `limits`; from the lower limit itself where the margin would reach it (no cut then).
fn bar_range(bars: &[Bar], limits: (f64, f64)) -> (f64, f64) {
    let values = bars.iter().flat_map(|b| [Some(b.1), b.2.map(|i| i.0), b.2.map(|i| i.1)]).flatten();
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return (limits.0, if limits.1.is_finite() { limits.1 } else { limits.0 + 1.0 });
    }
    let span = if hi > lo { hi - lo } else { lo.abs().max(1e-3) * 0.1 };
    let (mut x0, mut x1) = (lo - span * 0.3, hi + span * 0.15);
    // A margin that would leave less than a fifth of the axis between the limit and the
    // axis's start goes down to the limit: a cut is worth its mark only when it zooms.
    if x0 - limits.0 < (x1 - x0) * 0.25 {
        x0 = limits.0;
    }
    x1 = x1.min(limits.1);
    if x1 <= x0 {
        x1 = x0 + span;
    }
    (x0, x1)
}

/// Pixels right of a bar chart's plot for the bars' values.
const VALUE_COLUMN: u32 = 80;

fn draw_bars<DB: DrawingBackend>(
    area: DrawingArea<DB, plotters::coord::Shift>,
    bars: &[Bar],
    labels: &Labels<'_>,
    limits: (f64, f64),
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    register_font();
    area.fill(&WHITE).map_err(plot_err)?;
    let n = bars.len().max(1) as u32;
    let (x0, x1) = bar_range(bars, limits);
    let cut = x0 > limits.0;
    let longest = bars.iter().map(|b| b.0.chars().count()).max().unwrap_or(4) as u32;
    let x_desc = if cut { format!("{} (axis cut: starts at {})", labels.x, tick(x0)) } else { labels.x.to_string() };
    // Rows 0..n-1, the first bar in the top row (a numeric range as segments has one
    // segment per value, both ends included).
    let mut chart = ChartBuilder::on(&area)
        .caption(labels.title, ("sans-serif", 20))
        .margin(16)
        .margin_right(16 + VALUE_COLUMN)
        .x_label_area_size(48)
        .y_label_area_size((longest * 9 + 20).min(420))
        .build_cartesian_2d(x0..x1, (0u32..n - 1).into_segmented())
        .map_err(plot_err)?;
    let names: Vec<&str> = bars.iter().map(|b| b.0.as_str()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc(x_desc)
        .y_desc(labels.y)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 18))
        .x_label_formatter(&|x| tick(*x))
        .y_labels(n as usize)
        .y_label_formatter(&|v| match v {
            // Row 0 is drawn at the bottom: count from the top so the first bar is first.
            SegmentValue::CenterOf(i) => {
                (n - 1).checked_sub(*i).and_then(|k| names.get(k as usize)).map_or(String::new(), |s| s.to_string())
            }
            _ => String::new(),
        })
        .draw()
        .map_err(plot_err)?;
    let right = chart.backend_coord(&(x1, SegmentValue::CenterOf(0))).0;
    for (i, (_, v, interval)) in bars.iter().enumerate() {
        if !v.is_finite() {
            continue;
        }
        let row = n - 1 - i as u32;
        let style = color(i).mix(0.85).filled();
        let (top, bottom) = (SegmentValue::Exact(row), SegmentValue::Exact(row + 1));
        chart
            .draw_series(std::iter::once({
                let mut bar = Rectangle::new([(x0, top.clone()), (v.clamp(x0, x1), bottom.clone())], style);
                bar.set_margin(6, 6, 0, 0);
                bar
            }))
            .map_err(plot_err)?;
        if cut && *v > x0 {
            // The break: two white strokes across the bar's foot.
            let (left, y) = chart.backend_coord(&(x0, SegmentValue::CenterOf(row)));
            let (_, y_top) = chart.backend_coord(&(x0, top.clone()));
            let (_, y_bottom) = chart.backend_coord(&(x0, bottom.clone()));
            let half = (y_top - y_bottom).abs() / 2 - 6;
            let white = ShapeStyle { color: WHITE.to_rgba(), filled: false, stroke_width: 3 };
            for dx in [10, 17] {
                area.draw(&PathElement::new(vec![(left + dx - 4, y + half), (left + dx + 4, y - half)], white))
                    .map_err(plot_err)?;
            }
        }
        if let Some((lo, hi)) = interval.filter(|(lo, hi)| lo.is_finite() && hi.is_finite()) {
            let whisker = ShapeStyle { color: BLACK.to_rgba(), filled: false, stroke_width: 2 };
            chart
                .draw_series(LineSeries::new(
                    [(lo.clamp(x0, x1), SegmentValue::CenterOf(row)), (hi.clamp(x0, x1), SegmentValue::CenterOf(row))],
                    whisker,
                ))
                .map_err(plot_err)?;
        }
        let (_, y) = chart.backend_coord(&(x0, SegmentValue::CenterOf(row)));
        let font = ("sans-serif", 15).into_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
        area.draw(&Text::new(format!("{v:.4}"), (right + 10, y), font)).map_err(plot_err)?;
    }
    area.present().map_err(plot_err)?;
    Ok(())
}

/// Writes a heat map to the PNG or SVG file `path`: a cell per (row, column) value pair,
/// coloured by its value (the darkest the best: the highest when `higher_is_better`),
/// labelled with it; empty cells stay white.
pub fn write_heat_map(
    path: &Path,
    rows: &[String],
    cols: &[String],
    cells: &[Vec<Option<f64>>],
    labels: &Labels<'_>,
    higher_is_better: bool,
) -> Result<()> {
    let size = (((cols.len() as u32) * 120 + 300).max(700), ((rows.len() as u32) * 60 + 200).max(400));
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("png") => {
            draw_heat(BitMapBackend::new(path, size).into_drawing_area(), rows, cols, cells, labels, higher_is_better)
        }
        Some("svg") => {
            draw_heat(SVGBackend::new(path, size).into_drawing_area(), rows, cols, cells, labels, higher_is_better)
        }
        _ => bail!("cannot write a chart to {}: the file name must end in .png or .svg", path.display()),
    }
    .with_context(|| format!("cannot write the chart {}", path.display()))
}

fn draw_heat<DB: DrawingBackend>(
    area: DrawingArea<DB, plotters::coord::Shift>,
    rows: &[String],
    cols: &[String],
    cells: &[Vec<Option<f64>>],
    labels: &Labels<'_>,
    higher_is_better: bool,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    register_font();
    area.fill(&WHITE).map_err(plot_err)?;
    let (nr, nc) = (rows.len().max(1) as u32, cols.len().max(1) as u32);
    let values = cells.iter().flatten().flatten().copied().filter(|v| v.is_finite());
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    let mut chart = ChartBuilder::on(&area)
        .caption(labels.title, ("sans-serif", 20))
        .margin(20)
        .x_label_area_size(48)
        .y_label_area_size(120)
        .build_cartesian_2d((0u32..nc - 1).into_segmented(), (0u32..nr - 1).into_segmented())
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc(labels.x)
        .y_desc(labels.y)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 18))
        .x_labels(nc as usize + 1)
        .y_labels(nr as usize + 1)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(j) => cols.get(*j as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => rows.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .draw()
        .map_err(plot_err)?;
    for (i, row) in cells.iter().enumerate() {
        for (j, cell) in row.iter().enumerate() {
            let Some(v) = cell.filter(|v| v.is_finite()) else { continue };
            // 0 for the worst value, 1 for the best: light to dark blue.
            let t = if hi > lo { (v - lo) / (hi - lo) } else { 1.0 };
            let t = if higher_is_better { t } else { 1.0 - t };
            let shade = |light: f64, dark: f64| (light + (dark - light) * t) as u8;
            let fill = RGBColor(shade(222.0, 8.0), shade(235.0, 48.0), shade(247.0, 107.0));
            let (x, y) = (j as u32, i as u32);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [
                        (SegmentValue::Exact(x), SegmentValue::Exact(y)),
                        (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1)),
                    ],
                    fill.filled(),
                )))
                .map_err(plot_err)?;
            let text_color = if t > 0.5 { WHITE } else { BLACK };
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{v:.4}"),
                    (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y)),
                    ("sans-serif", 16).into_font().color(&text_color).pos(Pos::new(HPos::Center, VPos::Center)),
                )))
                .map_err(plot_err)?;
        }
    }
    area.present().map_err(plot_err)?;
    Ok(())
}

/// A chart of one curve drawn with Braille characters, for the terminal.
///
/// The y labels keep three significant digits (a cosine ending at 0.0239 must not read as
/// 0.0), and x labels (steps, evaluations) print as whole numbers.
pub fn terminal_chart(points: &[(f64, f64)], width: u32, height: u32) -> String {
    use textplots::{Chart, LabelBuilder, LabelFormat, Plot, Shape, TickDisplay, TickDisplayBuilder};
    let pts: Vec<(f32, f32)> = points.iter().map(|&(x, y)| (x as f32, y as f32)).collect();
    let xmax = pts.last().map_or(1.0, |p| p.0.max(1.0));
    let shape = Shape::Lines(&pts);
    let mut chart = Chart::new(width, height, 0.0, xmax);
    let chart = chart
        .x_label_format(LabelFormat::Custom(Box::new(|x| format!("{}", x.round() as i64))))
        .y_label_format(LabelFormat::Custom(Box::new(significant)))
        .y_tick_display(TickDisplay::Sparse)
        .lineplot(&shape);
    chart.axis();
    chart.figures();
    chart.to_string()
}

/// `y` with three significant digits: 0.1, 0.0239, 2.5e-5.
fn significant(y: f32) -> String {
    let a = y.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e4).contains(&a) {
        format!("{y:.2e}")
    } else {
        let decimals = (2 - a.log10().floor() as i32).max(0) as usize;
        let s = format!("{y:.decimals$}");
        if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// The vertices of the SVG's polylines drawn in `colour` (plotters writes
    /// `<polyline fill="none" opacity="1" stroke="#RRGGBB" ... points="x,y x,y ..."/>`), a
    /// curve drawn segment by segment read back as one line (shared ends once).
    fn vertices(svg: &str, colour: &str) -> Vec<(f64, f64)> {
        let mut all: Vec<(f64, f64)> = svg
            .split("<polyline")
            .skip(1)
            .filter(|p| p.contains(&format!("stroke=\"{colour}\"")))
            .flat_map(|p| {
                let pts = p.split("points=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
                pts.split_whitespace()
                    .map(|xy| {
                        let (x, y) = xy.split_once(',').unwrap();
                        (x.parse().unwrap(), y.parse().unwrap())
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        all.dedup();
        all
    }

    /// The SVG's texts: (x, y, content).
    fn texts(svg: &str) -> Vec<(f64, f64, String)> {
        svg.split("<text")
            .skip(1)
            .map(|t| {
                let attr = |name: &str| -> f64 {
                    t.split(&format!(" {name}=\"")).nth(1).unwrap().split('"').next().unwrap().parse().unwrap()
                };
                let content = t.split_once('>').unwrap().1.split("</text>").next().unwrap().trim().to_string();
                (attr("x"), attr("y"), content)
            })
            .collect()
    }

    /// The SVG's rectangles filled with `colour`: (x, y, width, height).
    fn rects(svg: &str, colour: &str) -> Vec<(f64, f64, f64, f64)> {
        svg.split("<rect")
            .skip(1)
            .filter(|r| r.contains(&format!("fill=\"{colour}\"")))
            .map(|r| {
                let attr = |name: &str| -> f64 {
                    r.split(&format!(" {name}=\"")).nth(1).unwrap().split('"').next().unwrap().parse().unwrap()
                };
                (attr("x"), attr("y"), attr("width"), attr("height"))
            })
            .collect()
    }

    fn hex(c: RGBColor) -> String {
        format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
    }

    #[test]
    fn a_bar_axis_stays_within_the_metrics_values_and_starts_at_its_floor_unless_it_zooms() {
        let bar = |v: f64| (String::new(), v, None);
        // Accuracies from 0.1 to 0.99: from 0 (a margin would pass it) to 1, not past.
        assert_eq!(bar_range(&[bar(0.99), bar(0.1)], (0.0, 1.0)), (0.0, 1.0));
        // 0.96 to 0.99: zoomed (cut), and still not past 1.
        let (x0, x1) = bar_range(&[bar(0.99), bar(0.96), (String::new(), 0.97, Some((0.95, 0.999)))], (0.0, 1.0));
        assert!(x0 > 0.9 && x0 < 0.95 && x1 == 1.0, "{x0} {x1}");
        // Losses have no upper limit: a margin above the largest (and 0.3 of the span below).
        let (x0, x1) = bar_range(&[bar(2.0), bar(1.0)], (0.0, f64::INFINITY));
        assert!((x0 - 0.7).abs() < 1e-12 && (x1 - 2.15).abs() < 1e-12, "{x0} {x1}");
        assert_eq!(bar_range(&[bar(2.0), bar(0.5)], (0.0, f64::INFINITY)).0, 0.0);
    }

    /// final.png's layout: a row per bar and no empty one, values in a column right of the
    /// plot, the axis within 0 to 1 for accuracy, and a cut axis marked on every bar and
    /// named under the axis.
    #[test]
    fn bars_fill_their_rows_and_a_cut_axis_is_marked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("final.svg");
        let labels = Labels { title: "final", x: "val_accuracy", y: "run" };
        let bars: Vec<Bar> = [0.9898, 0.9889, 0.9612]
            .iter()
            .enumerate()
            .map(|(i, &v)| (format!("cosine_decay-lr0.{}", i + 1), v, Some((v - 0.01, (v + 0.01f64).min(1.0)))))
            .collect();
        write_bar_chart(&path, &bars, &labels, (0.0, 1.0)).unwrap();
        let svg = fs::read_to_string(&path).unwrap();
        let drawn: Vec<(f64, f64, f64, f64)> = (0..3).map(|i| rects(&svg, &hex(color(i)))[0]).collect();
        let pitch = drawn[1].1 - drawn[0].1;
        assert!(pitch > 30.0 && (drawn[2].1 - drawn[1].1 - pitch).abs() <= 1.0, "{drawn:?}");
        // The first bar's row starts under the title (16 px margin, about 30 of caption):
        // no empty row above it.
        assert!(drawn[0].1 < 16.0 + 34.0 + 10.0, "an empty row above the first bar: {drawn:?}");
        let written = texts(&svg);
        let right = drawn.iter().map(|r| r.0 + r.2).fold(0.0, f64::max);
        for (bar, r) in bars.iter().zip(&drawn) {
            let label = written.iter().find(|t| t.2 == format!("{:.4}", bar.1)).expect("the value is written");
            assert!(label.0 > right, "the value lies right of every bar: {label:?}");
            assert!((label.1 - (r.1 + r.3 / 2.0)).abs() < 3.0, "beside its bar: {label:?} {r:?}");
        }
        let ticks: Vec<f64> = written.iter().filter_map(|t| t.2.parse::<f64>().ok()).filter(|v| *v < 0.9).collect();
        assert!(ticks.is_empty(), "a zoomed axis: {ticks:?}");
        let over: Vec<&(f64, f64, String)> =
            written.iter().filter(|t| t.2.parse::<f64>().is_ok_and(|v| v > 1.0)).collect();
        assert!(over.is_empty(), "accuracy past 1: {over:?}");
        let cut = written.iter().find(|t| t.2.starts_with("val_accuracy (axis cut: starts at 0.9")).is_some();
        assert!(cut, "the axis label says where the cut axis starts");
        assert_eq!(vertices(&svg, "#FFFFFF").len(), 3 * 2 * 2, "two white strokes across each bar's foot");

        // From 0: no cut, no marks.
        let low: Vec<Bar> = vec![("a".into(), 0.98, None), ("b".into(), 0.1, None)];
        write_bar_chart(&path, &low, &labels, (0.0, 1.0)).unwrap();
        let svg = fs::read_to_string(&path).unwrap();
        assert!(vertices(&svg, "#FFFFFF").is_empty());
        let written = texts(&svg);
        assert!(written.iter().any(|t| t.2 == "val_accuracy") && written.iter().any(|t| t.2 == "0"));
        assert!(!written.iter().any(|t| t.2.parse::<f64>().is_ok_and(|v| v > 1.0)));
    }

    /// The zoomed panel under a validation curve: the last quarter of x, its y axis fitted
    /// to what the curves do there, the curve starting at the quarter's edge.
    #[test]
    fn the_last_quarter_is_drawn_again_zoomed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("val_loss.svg");
        let labels = Labels { title: "loss", x: "epoch", y: "validation loss" };
        let curve: Vec<(f64, f64)> = (1..=30).map(|e| (e as f64, 1.0 / e as f64)).collect();
        let style = Style { zoom_last: Some(0.25), ..Style::default() };
        write_line_chart_styled(&path, &[Series::line("a", curve)], &labels, style).unwrap();
        let svg = fs::read_to_string(&path).unwrap();
        assert!(svg.contains("the last 25% (epoch 22.75 to 30), zoomed"), "the panel's title");
        let drawn = vertices(&svg, &hex(color(0)));
        // The whole curve (30 points), then the zoomed part: 22.75 (interpolated) and 23..=30.
        assert_eq!(drawn.len(), 30 + 9, "{drawn:?}");
        let (whole, zoomed) = drawn.split_at(30);
        let extent = |pts: &[(f64, f64)]| {
            let ys = pts.iter().map(|p| p.1);
            ys.clone().fold(f64::MIN, f64::max) - ys.fold(f64::MAX, f64::min)
        };
        assert!(extent(&whole[22..]) < 40.0, "the last quarter is squashed in the whole run's axis");
        assert!(extent(zoomed) > 200.0, "and spans the zoomed panel: {zoomed:?}");
        assert!(zoomed[0].1 < zoomed[8].1, "falling: higher first (SVG y grows down)");
    }

    /// A warmup from 0 on a log-scale rate chart: the 0 is drawn on the floor, not left out,
    /// and the chart says so; a chart without a 0 says nothing of it.
    #[test]
    fn zeros_on_a_log_axis_are_drawn_on_the_floor_and_said() {
        let dir = tempfile::tempdir().unwrap();
        let labels = Labels { title: "lr", x: "step", y: "learning rate" };
        let style = Style { log_y: true, ..Style::default() };
        let warmup: Vec<(f64, f64)> = (0..=10).map(|i| (i as f64, 0.1 * i as f64 / 10.0)).collect();
        let path = dir.path().join("lr.svg");
        write_line_chart_styled(&path, &[Series::line("warmup", warmup.clone())], &labels, style).unwrap();
        let svg = fs::read_to_string(&path).unwrap();
        let c = color(0);
        let line = vertices(&svg, &format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2));
        assert_eq!(line.len(), warmup.len(), "every point drawn: {line:?}");
        // The 0 at step 0 lies lowest (largest SVG y), below the first positive rate.
        let lowest = line.iter().map(|p| p.1).fold(f64::MIN, f64::max);
        assert_eq!(line[0].1, lowest);
        assert!(line[0].1 > line[1].1);
        assert!(svg.contains(ZERO_ON_FLOOR.trim()), "the chart says where the 0 is");
        let positive: Vec<(f64, f64)> = warmup.iter().skip(1).copied().collect();
        write_line_chart_styled(&path, &[Series::line("warmup", positive)], &labels, style).unwrap();
        let svg = fs::read_to_string(&path).unwrap();
        assert!(!svg.contains(ZERO_ON_FLOOR.trim()));
        // Step 0 takes its place along x: step 1 lies right of where it starts a chart of
        // the positive rates alone (the left edge).
        let alone = vertices(&svg, &format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2));
        assert!(line[1].0 > alone[0].0 + 1.0, "{line:?} {alone:?}");
    }
}
