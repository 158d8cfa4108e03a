//! `runner report DIR`: the ranking of an experiment's runs, and its charts.

use crate::cli::{ReportArgs, ReportFormat};
use crate::error::input_error;
use crate::report::{self, table};
use crate::results::{self, ExperimentView};
use anyhow::Result;

pub fn run(args: &ReportArgs) -> Result<()> {
    if !args.more.is_empty() {
        return compare(args);
    }
    if !args.pair.is_empty() {
        return Err(input_error(format!(
            "--pair compares a variant of one experiment with one of another: give two directories, as in \
             `runner report {} OTHER --pair {}`",
            args.dir.display(),
            args.pair[0]
        )));
    }
    let mut view = results::read_experiment(&args.dir)?;
    if let Some(metric) = &args.metric {
        view = view.with_metric(metric)?;
    }
    let (header, rows) = report::ranking(&view);
    let text = match args.format {
        ReportFormat::Table => {
            let running = view.runs.iter().filter(|r| r.status == "running").count();
            let state = if running > 0 { format!(" ({running} still running)") } else { String::new() };
            format!(
                "{}: {} run{}{state}, ranked by final {}\n{}",
                view.name,
                view.runs.len(),
                if view.runs.len() == 1 { "" } else { "s" },
                view.metric_name(),
                table::render_text(&header, &rows)
            )
        }
        ReportFormat::Markdown => table::render_markdown(&header, &rows),
        ReportFormat::Csv => table::render_csv(&header, &rows)?,
        ReportFormat::Json => table::render_json(&header, &rows)?,
    };
    super::print(&text)?;
    let notes = report::notes(&view, (&header, &rows));
    if !notes.is_empty() {
        let lines: Vec<String> = notes.iter().map(|n| format!("note: {n}")).collect();
        // Machine formats keep stdout to the data.
        match args.format {
            ReportFormat::Table | ReportFormat::Markdown => super::print(&format!("\n{}\n", lines.join("\n")))?,
            ReportFormat::Csv | ReportFormat::Json => say!("{}", lines.join("\n")),
        }
    }
    if !args.no_plots {
        let written = report::write_charts(&view, &report::ChartOptions { lr_scale: args.lr_scale })?;
        let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        say!("wrote {}", names.join(", "));
    }
    Ok(())
}

/// `runner report A B ...`: the experiments side by side (no charts).
fn compare(args: &ReportArgs) -> Result<()> {
    let mut views = Vec::new();
    for dir in std::iter::once(&args.dir).chain(&args.more) {
        let mut view = results::read_experiment(dir)?;
        // Every experiment ranked by the first one's metric (or --metric).
        let metric = match (&args.metric, views.first()) {
            (Some(m), _) => Some(m.clone()),
            (None, Some(first)) => Some(results::ExperimentView::metric_name(first).to_string()),
            (None, None) => None,
        };
        if let Some(m) = metric {
            view = view.with_metric(&m)?;
        }
        views.push(view);
    }
    let pairs = pairs(args, &views)?;
    let (header, rows) = report::compare(&views, &pairs);
    let text = match args.format {
        ReportFormat::Table => format!(
            "{} side by side, by final {}\n{}",
            views.iter().map(|v| v.name.as_str()).collect::<Vec<_>>().join(", "),
            views[0].metric_name(),
            table::render_text(&header, &rows)
        ),
        ReportFormat::Markdown => table::render_markdown(&header, &rows),
        ReportFormat::Csv => table::render_csv(&header, &rows)?,
        ReportFormat::Json => table::render_json(&header, &rows)?,
    };
    super::print(&text)?;
    if views.len() == 2 && matches!(args.format, ReportFormat::Table | ReportFormat::Markdown) {
        super::print(
            "\nnote: difference_95: the second's mean less the first's, with its 95% interval (Welch over seeds, or two accuracies on the validation set); \"tied\" where it contains 0\n",
        )?;
    }
    Ok(())
}

/// `--pair A=B` as pairs of variants, each checked against the two experiments' variants.
fn pairs(args: &ReportArgs, views: &[ExperimentView]) -> Result<Vec<(String, String)>> {
    if args.pair.is_empty() {
        return Ok(Vec::new());
    }
    if views.len() != 2 {
        return Err(input_error(format!(
            "--pair compares a variant of the first experiment with one of the second: give two directories, not {}",
            views.len()
        )));
    }
    let known = [report::variants(&views[0]), report::variants(&views[1])];
    args.pair
        .iter()
        .map(|p| {
            let Some((a, b)) = p.split_once('=').filter(|(a, b)| !a.is_empty() && !b.is_empty()) else {
                return Err(input_error(format!(
                    "--pair {p}: expected A=B, a variant of {} and one of {}",
                    args.dir.display(),
                    args.more[0].display()
                )));
            };
            for (name, i, dir) in [(a, 0, &args.dir), (b, 1, &args.more[0])] {
                if !known[i].iter().any(|v| v == name) {
                    return Err(input_error(format!(
                        "--pair {p}: {} has no variant \"{name}\"; its variants: {}",
                        dir.display(),
                        known[i].join(", ")
                    )));
                }
            }
            Ok((a.to_string(), b.to_string()))
        })
        .collect()
}
