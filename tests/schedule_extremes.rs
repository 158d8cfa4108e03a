//! Every schedule kind with extreme parameter values (issue: a period search that never
//! ended on `t_mul < 1`): configs whose `[schedule]` sets each of the kind's parameters
//! (read from the catalog, so a new kind or parameter is covered without editing this file)
//! to values from 0, the smallest normal and subnormal numbers, through 1, to 1e300 and
//! f64::MAX, and runs of 1 to 10^10 steps. Every config the reader accepts must answer
//! `lr(step)` at steps 0, 1, 10^k and its last step within a time bound, with a finite
//! number computed as the run computes it (flushing denormals), or have been refused at
//! load; the reader itself must not hang. Seeded: the same cases on every run.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRng, TestRunner};
use runner::plan::parse_experiment;
use runner::schedule::catalog::{KindDoc, kinds};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

const NUMBERS: &[&str] = &[
    "0",
    "5e-324",
    "1e-320",
    "2.3e-308",
    "1e-300",
    "1e-10",
    "0.001",
    "0.5",
    "0.9",
    "0.999999",
    "1",
    "1.0000001",
    "2",
    "10",
    "1e10",
    "1e300",
    "1.7976931348623157e308",
    "-1",
    "-1e300",
];
const STEPS: &[&str] =
    &["1", "2", "7", "1000", "1e9", "1e15", "\"run\"", "\"1 epoch\"", "\"1e-300 epochs\"", "\"1e300 epochs\""];
const WHOLE: &[&str] = &["0", "1", "2", "3", "1000", "1000000000", "9223372036854775807"];
const RUNS: &[u64] = &[1, 2, 45, 10_000, 10_000_000_000];

/// A value for a parameter documented as accepting `accepts`.
fn value(accepts: &str, rng: &mut TestRng) -> String {
    let pick = |list: &[&str], rng: &mut TestRng| list[rng.random_range(0..list.len())].to_string();
    if accepts.contains("true or false") {
        return if rng.random_bool(0.5) { "true".into() } else { "false".into() };
    }
    if let Some(options) = accepts.strip_prefix("one of ") {
        let options: Vec<&str> = options.split(", ").collect();
        return options[rng.random_range(0..options.len())].to_string();
    }
    if accepts.starts_with("a list") {
        let n = rng.random_range(0..4);
        let items: Vec<String> = (0..n)
            .map(|_| {
                if accepts.contains("[number, number]") {
                    format!("[{}, {}]", pick(WHOLE, rng), pick(NUMBERS, rng))
                } else {
                    pick(NUMBERS, rng)
                }
            })
            .collect();
        return format!("[{}]", items.join(", "));
    }
    if accepts.contains("\"run\"") {
        return pick(STEPS, rng);
    }
    if accepts.contains("whole number") {
        return pick(WHOLE, rng);
    }
    if accepts == "a string" {
        return pick(&["\"lr0 * 0.5 ^ (step / 1e-300)\"", "\"lr0 / (1 + step)\"", "\"0.1\""], rng);
    }
    pick(NUMBERS, rng)
}

/// `key = value` lines for `kind`'s parameters (optional ones left out now and then); a
/// sequence's phases are tables of other kinds, each but the last with its `steps`.
fn params(kind: &KindDoc, all: &[KindDoc], rng: &mut TestRng) -> Vec<String> {
    let mut lines = Vec::new();
    for p in &kind.params {
        if p.default != "required" && rng.random_bool(0.3) {
            continue;
        }
        let v = if p.accepts.contains("schedule tables") {
            let others: Vec<&KindDoc> = all.iter().filter(|k| k.kind != kind.kind).collect();
            let n = rng.random_range(1..4);
            let phases: Vec<String> = (0..n)
                .map(|i| {
                    let other = others[rng.random_range(0..others.len())];
                    let mut fields = vec![format!("kind = \"{}\"", other.kind)];
                    fields.extend(params(other, all, rng));
                    if i + 1 < n {
                        fields.push(format!("steps = {}", value("a whole number >= 1", rng)));
                    }
                    format!("{{ {} }}", fields.join(", "))
                })
                .collect();
            format!("[{}]", phases.join(", "))
        } else {
            value(&p.accepts, rng)
        };
        lines.push(format!("{} = {v}", p.key));
    }
    lines
}

fn config(kind: &KindDoc, all: &[KindDoc], total: u64, rng: &mut TestRng) -> String {
    let mut text = format!("name = \"x\"\n[train]\nsteps = {total}\n[schedule]\nkind = \"{}\"\n", kind.kind);
    for line in params(kind, all, rng) {
        text.push_str(&line);
        text.push('\n');
    }
    text
}

/// Steps probed in a run of `total` steps: 0, 1, 10^k below it, its last (those in the run).
fn probes(total: u64) -> Vec<u64> {
    let mut v = vec![0, 1];
    let mut k = 10u64;
    while k < total {
        v.push(k);
        k = k.saturating_mul(10);
    }
    v.push(total.saturating_sub(1));
    v.retain(|&s| s < total.max(1));
    v
}

#[test]
fn every_accepted_schedule_answers_every_step_with_a_finite_rate_in_bounded_time() {
    let kinds = kinds();
    let mut runner = TestRunner::new_with_rng(
        // No shrinking: a case that hangs would be rerun for minutes; the first one found
        // is printed whole.
        Config { cases: 20_000, failure_persistence: None, max_shrink_iters: 0, ..Config::default() },
        TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &[23; 32]),
    );
    let (accepted, refused) = (std::cell::Cell::new(0u32), std::cell::Cell::new(0u32));
    let per_kind = std::cell::RefCell::new(vec![0u32; kinds.len()]);
    runner
        .run(&(0..kinds.len(), 0..RUNS.len(), any::<[u8; 32]>()), |(k, r, seed)| {
            let mut rng = TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &seed);
            let text = config(&kinds[k], &kinds, RUNS[r], &mut rng);
            // Read and evaluated on a thread of its own, so that a hang fails the test.
            let (tx, rx) = mpsc::channel();
            let case = text.clone();
            std::thread::spawn(move || {
                let result = parse_experiment(Path::new("x.toml"), &case, &mut |_| Ok(1437)).map(|exp| {
                    let c = &exp.runs[0].config;
                    let ctx = c.train.schedule_context(1437);
                    let _mode = runner::kernels::denormals::scoped(c.train.flush_denormals);
                    let schedule = c.schedule.build(&ctx);
                    probes(ctx.total_steps).into_iter().map(|s| (s, schedule.lr(s))).collect::<Vec<_>>()
                });
                let _ = tx.send(result.map_err(|e| format!("{e:#}")));
            });
            match rx.recv_timeout(Duration::from_secs(10)) {
                Err(_) => panic!("no answer in 10 s (a hang) for:\n{text}"),
                Ok(Err(_)) => refused.set(refused.get() + 1),
                Ok(Ok(rates)) => {
                    for (step, lr) in rates {
                        assert!(lr.is_finite(), "lr({step}) = {lr} for an accepted schedule:\n{text}");
                    }
                    accepted.set(accepted.get() + 1);
                    per_kind.borrow_mut()[k] += 1;
                }
            }
            Ok(())
        })
        .unwrap();
    eprintln!("schedule extremes: {} accepted, {} refused", accepted.get(), refused.get());
    // Every kind is reached with values it accepts.
    for (kind, n) in kinds.iter().zip(per_kind.borrow().iter()) {
        assert!(*n > 0, "no accepted case for {}", kind.kind);
    }
}
