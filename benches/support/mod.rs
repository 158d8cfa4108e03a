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

/// Runs `program args` and returns its standard output and peak resident memory in MB
/// (from wait4's resource usage of that child alone).
pub fn run_measured(program: &str, args: &[&str]) -> Result<(String, f64), String> {
    use std::io::Read;
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err);
        err
    });
    let mut out = String::new();
    let _ = child.stdout.take().unwrap().read_to_string(&mut out);
    let err = reader.join().unwrap();
    let (pid, mut status) = (child.id() as libc::pid_t, 0);
    // SAFETY: a zeroed rusage is a valid value; wait4 fills it for our own child, which
    // std has not reaped (its Child is dropped without waiting).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::wait4(pid, &mut status, 0, &mut usage) } != pid {
        return Err(format!("wait4 failed: {}", std::io::Error::last_os_error()));
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(err.lines().last().unwrap_or("failed").to_string());
    }
    Ok((out, usage.ru_maxrss as f64 / 1024.0))
}
