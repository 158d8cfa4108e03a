//! TensorBoard event files through the real binary: every run writes one beside its CSVs,
//! holding the same numbers (lr and train_loss at every logged step, the validation
//! metrics at every evaluation), read back with runner's reader (which checks every
//! record's CRCs) and, where `python3` (or `$PYTHON`) imports tensorboard, with
//! TensorBoard's own `EventMultiplexer`, which must list every run of every experiment
//! under `experiment/run`. Each run's hyperparameters (its schedule and swept keys) are in
//! TensorBoard's HParams tab, its seeds one group.

mod common;

use common::{column, config, csv_rows, runner};
use runner::store::tensorboard::{
    HParamKind, HParamsData, SESSION_END_TAG, SESSION_START_TAG, find, hparams, read, scalar_series,
};
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

    let Some(python) = python_with_tensorboard() else { return };
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

/// The python that imports tensorboard, or `None` after saying (visibly) that the check
/// against TensorBoard's own code is skipped.
fn python_with_tensorboard() -> Option<String> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let has = Command::new(&python)
        .args(["-c", "import tensorboard.plugins.hparams.backend_context"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        eprintln!(
            "skipped TensorBoard's own reader: `{python}` does not import tensorboard (set PYTHON to one that does)"
        );
    }
    has.then_some(python)
}

#[test]
fn swept_keys_are_hyperparameters_in_tensorboards_hparams_tab() {
    let dir = TempDir::new().unwrap();
    let body = "name = \"hp\"\n[schedule]\nkind = \"cosine_decay\"\nlearning_rate = 0.1\ndecay_steps = \"run\"\n\
                [sweep]\nseeds = [1, 2]\n\"schedule.learning_rate\" = [0.1, 0.03]\n\"model.activation\" = [\"relu\", \"tanh\"]\n\
                [train]\nepochs = 1\n";
    let cfg = config(dir.path(), "hp", body);
    let out = dir.path().join("out");
    runner().arg("run").arg(&cfg).arg("--quiet").arg("--out").arg(&out).assert().success();
    let run_dir = out.join("hp/cosine_decay-lr0.03-activationtanh-seed2");
    let events = read(&find(&run_dir).unwrap()).unwrap();
    let Some(HParamsData::SessionStartInfo(start)) = hparams(&events, SESSION_START_TAG) else {
        panic!("no session start info in {}", run_dir.display())
    };
    assert_eq!(start.group_name, "hp/cosine_decay-lr0.03-activationtanh", "the seeds of a variant are one group");
    let kinds: Vec<(&str, Option<&HParamKind>)> =
        start.hparams.iter().map(|(k, v)| (k.as_str(), v.kind.as_ref())).collect();
    assert_eq!(
        kinds,
        [
            ("model.activation", Some(&HParamKind::Text("tanh".into()))),
            ("schedule", Some(&HParamKind::Text("cosine_decay".into()))),
            ("schedule.learning_rate", Some(&HParamKind::Number(0.03))),
        ]
    );
    let Some(HParamsData::SessionEndInfo(end)) = hparams(&events, SESSION_END_TAG) else {
        panic!("no session end info in {}", run_dir.display())
    };
    assert_eq!(end.status, 1, "STATUS_SUCCESS");
    assert!(end.end_time_secs >= start.start_time_secs);

    // TensorBoard's HParams plugin, as its dashboard asks it: the swept keys with their
    // domains, the metrics (the runs' scalars), four groups of two seeds each, every
    // session a success, and each group's val_accuracy that of its runs' last evaluations.
    let Some(python) = python_with_tensorboard() else { return };
    let script = r#"
import sys
from tensorboard import context
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups
m = plugin_event_multiplexer.EventMultiplexer()
m.AddRunsFromDirectory(sys.argv[1])
m.Reload()
tb = base_plugin.TBContext(data_provider=data_provider.MultiplexerDataProvider(m, sys.argv[1]), multiplexer=m, logdir=sys.argv[1])
c = backend_context.Context(tb)
ctx = context.RequestContext()
exp = c.experiment_from_metadata(ctx, "", True, c.hparams_metadata(ctx, ""), c.hparams_from_data_provider(ctx, "", None))
for h in sorted(exp.hparam_infos, key=lambda h: h.name):
    print("hparam", h.name, api_pb2.DataType.Name(h.type))
print("metrics", " ".join(sorted(i.name.tag for i in exp.metric_infos)))
request = api_pb2.ListSessionGroupsRequest(start_index=0, slice_size=100, allowed_statuses=[api_pb2.STATUS_SUCCESS])
groups = list_session_groups.Handler(ctx, c, "", request).run()
for g in sorted(groups.session_groups, key=lambda g: g.name):
    acc = [m.value for m in g.metric_values if m.name.tag == "val_accuracy"]
    print("group", g.name, len(g.sessions), " ".join(api_pb2.Status.Name(s.status) for s in g.sessions), repr(acc[0]))
"#;
    let o = Command::new(&python).args(["-c", script]).arg(&out).output().unwrap();
    let said = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{said}{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(
        lines[..4],
        [
            "hparam model.activation DATA_TYPE_STRING",
            "hparam schedule DATA_TYPE_STRING",
            "hparam schedule.learning_rate DATA_TYPE_FLOAT64",
            "metrics lr train_loss val_accuracy val_loss",
        ]
    );
    let groups: Vec<&str> = lines[4..].to_vec();
    assert_eq!(groups.len(), 4, "{said}");
    for g in groups {
        let parts: Vec<&str> = g.split(' ').collect();
        let variant = parts[1].trim_start_matches("hp/");
        assert_eq!(parts[2..5], ["2", "STATUS_SUCCESS", "STATUS_SUCCESS"], "{g}");
        // The group's value: the mean of its sessions' last val_accuracy (as float32).
        let last = |seed: u32| -> f64 {
            let rows = csv_rows(&out.join("hp").join(format!("{variant}-seed{seed}")).join("metrics.csv"));
            column(&rows, "val_accuracy").last().unwrap().parse::<f64>().unwrap() as f32 as f64
        };
        let mean = (last(1) + last(2)) / 2.0;
        let shown: f64 = parts[5].parse().unwrap();
        assert!((shown - mean).abs() < 1e-6, "{g}: {shown} against {mean}");
    }
}
