//! TensorBoard event files through the real binary: every run writes one beside its CSVs,
//! holding the same numbers (lr and train_loss at every logged step, the validation
//! metrics at every evaluation), read back with runner's reader (which checks every
//! record's CRCs) and, where `python3` (or `$PYTHON`) imports tensorboard, with
//! TensorBoard's own `EventMultiplexer`, which must list every run of every experiment
//! under `experiment/run`.

mod common;

use common::{column, config, csv_rows, runner};
use runner::store::tensorboard::{find, read, scalar_series};
use std::fs;
use std::process::Command;
use tempfile::TempDir;

#[test]
fn every_run_writes_its_scalars_as_tensorboard_events() {
    let dir = TempDir::new().unwrap();
    let body = "name = \"tb\"\n[sweep]\nschedules = [\"cosine_decay\", \"exponential_decay\"]\nlearning_rate = 0.1\n\
                [train]\nepochs = 3\nlog_every = 5\n";
    let cfg = config(dir.path(), "tb", body);
    let out = dir.path().join("out");
    runner().arg("run").arg(&cfg).arg("--quiet").arg("--out").arg(&out).assert().success();
    for run in ["cosine_decay", "exponential_decay"] {
        let run_dir = out.join("tb").join(run);
        let events = read(&find(&run_dir).expect("an event file")).unwrap();
        let steps = csv_rows(&run_dir.join("steps.csv"));
        let lr = scalar_series(&events, "lr");
        let loss = scalar_series(&events, "train_loss");
        assert_eq!(lr.len(), steps.len() - 1);
        for ((s, l), row) in lr.iter().zip(&steps[1..]) {
            assert_eq!(s.to_string(), row[0]);
            assert_eq!(*l, row[1].parse::<f64>().unwrap() as f32);
        }
        assert_eq!(
            loss.iter().map(|p| p.1).collect::<Vec<_>>(),
            column(&steps, "loss").iter().map(|v| v.parse::<f64>().unwrap() as f32).collect::<Vec<_>>()
        );
        let metrics = csv_rows(&run_dir.join("metrics.csv"));
        let val: Vec<(i64, f32)> = column(&metrics, "step")
            .iter()
            .zip(column(&metrics, "val_accuracy"))
            .map(|(s, v)| (s.parse().unwrap(), v.parse::<f64>().unwrap() as f32))
            .collect();
        assert_eq!(scalar_series(&events, "val_accuracy"), val);
        assert_eq!(scalar_series(&events, "val_loss").len(), 3);
        assert!(scalar_series(&events, "val_rmse").is_empty(), "a classifier has no RMSE");
    }

    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let has_tensorboard = Command::new(&python)
        .args(["-c", "import tensorboard.backend.event_processing.event_multiplexer"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_tensorboard {
        eprintln!(
            "skipped TensorBoard's own reader: `{python}` does not import tensorboard (set PYTHON to one that does)"
        );
        return;
    }
    let script = r#"
import sys
from tensorboard.backend.event_processing import event_multiplexer
m = event_multiplexer.EventMultiplexer()
m.AddRunsFromDirectory(sys.argv[1])
m.Reload()
for run in sorted(m.Runs()):
    tags = m.Runs()[run]["scalars"]
    for tag in sorted(tags):
        values = [e.value for e in m.Scalars(run, tag)]
        print(run, tag, len(values), repr(values[-1]))
"#;
    let o = Command::new(&python).args(["-c", script]).arg(&out).output().unwrap();
    let said = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{said}{}", String::from_utf8_lossy(&o.stderr));
    let run_dir = out.join("tb/cosine_decay");
    let steps = csv_rows(&run_dir.join("steps.csv"));
    let metrics = csv_rows(&run_dir.join("metrics.csv"));
    let last_lr = steps.last().unwrap()[1].parse::<f64>().unwrap() as f32;
    let last_acc = column(&metrics, "val_accuracy").last().unwrap().parse::<f64>().unwrap() as f32;
    for line in [
        format!("tb/cosine_decay lr {} {:?}", steps.len() - 1, last_lr as f64),
        format!("tb/cosine_decay val_accuracy 3 {:?}", last_acc as f64),
        "tb/exponential_decay val_loss 3".to_string(),
    ] {
        assert!(said.lines().any(|l| l.starts_with(&line)), "TensorBoard reads {line:?}? It says:\n{said}");
    }
    fs::remove_dir_all(&out).unwrap();
}
