//! What the benches share: the machine they ran on, the median of timings, and a recorder
//! that keeps nothing.
#![allow(dead_code)] // each bench uses some of it

use runner::train::{EvalRow, Recorder, StepRow};

/// A recorder that drops everything: training alone.
pub struct Nothing;

impl Recorder for Nothing {
    fn on_step(&mut self, _: &StepRow, _: u64, _: bool) -> anyhow::Result<()> {
        Ok(())
    }
    fn on_eval(&mut self, _: &EvalRow) -> anyhow::Result<()> {
        Ok(())
    }
}

/// The middle value of `v`.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The CPU model and core count, for the figures reported.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{cpu}, {cores} cores")
}
