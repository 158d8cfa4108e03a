//! Every schedule kind against reference numbers computed from the upstream code
//! (TensorFlow/Keras 3 in float64, the real Keras callback, PyTorch's closed forms), through
//! the real binary: `runner schedule FILE --steps N` and its CSV.
//!
//! The numbers are in tests/reference/schedules.json, made by tests/reference/generate.py;
//! that script's docstring says how each one was obtained.

use assert_cmd::Command;
use serde_json::Value;
use std::fs;

fn close(actual: f64, expected: f64) -> bool {
    if expected == 0.0 { actual.abs() < 1e-15 } else { ((actual - expected) / expected).abs() <= 1e-12 }
}

#[test]
fn every_kind_matches_upstream_to_1e_12() {
    let cases: Vec<Value> = serde_json::from_str(include_str!("reference/schedules.json")).unwrap();
    assert!(cases.len() >= 30);
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let name = case["name"].as_str().unwrap();
        let config = dir.path().join(format!("case{i}.toml"));
        fs::write(&config, format!("name = \"ref\"\n[schedule]\n{}\n", case["schedule"].as_str().unwrap())).unwrap();
        let expected: Vec<(u64, f64)> = case["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c[0].as_u64().unwrap(), c[1].as_f64().unwrap()))
            .collect();
        let mut cmd = Command::cargo_bin("runner").unwrap();
        cmd.arg("schedule").arg(&config);
        let steps = expected.iter().map(|c| c.0).max().unwrap() + 1;
        cmd.args(["--steps", &steps.to_string()]);
        if let Some(metrics) = case.get("metrics") {
            let text: String =
                metrics.as_array().unwrap().iter().map(|m| format!("{}\n", m.as_f64().unwrap())).collect();
            let file = dir.path().join(format!("case{i}.metrics"));
            fs::write(&file, text).unwrap();
            cmd.arg("--metrics").arg(&file);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).unwrap();
        let mut lines = stdout.lines();
        let header = lines.next().unwrap();
        let lr_column = if case.get("metrics").is_some() { 2 } else { 1 };
        assert_eq!(header, if lr_column == 2 { "epoch,metric,lr" } else { "step,lr" });
        let rows: Vec<Vec<f64>> = lines.map(|l| l.split(',').map(|x| x.parse().unwrap()).collect()).collect();
        for &(step, want) in &expected {
            let row = rows.iter().find(|r| r[0] as u64 == step).unwrap_or_else(|| panic!("{name}: no row {step}"));
            let got = row[lr_column];
            if !close(got, want) {
                failures.push(format!("{name} ({}) at {step}: expected {want:e}, got {got:e}", case["source"]));
            }
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}
