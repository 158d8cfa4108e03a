//! The cost of one `lr(step)` call per schedule kind. The schedule is called once per
//! training step, so it must stay far below a step's cost (well under a microsecond).
//!
//! Run: `cargo bench --bench schedule_lr`

use criterion::{Criterion, criterion_group, criterion_main};
use runner::schedule::Context;
use std::hint::black_box;
use std::path::Path;

const KINDS: &[(&str, &str)] = &[
    (
        "piecewise_constant",
        "kind = \"piecewise_constant\"\nboundaries = [100, 200, 300]\nvalues = [0.1, 0.05, 0.01, 0.001]",
    ),
    ("exponential_decay", "kind = \"exponential_decay\"\nlearning_rate = 0.1\ndecay_steps = 100\ndecay_rate = 0.96"),
    ("natural_exp_decay", "kind = \"natural_exp_decay\"\nlearning_rate = 0.1\ndecay_steps = 100\ndecay_rate = 0.05"),
    (
        "polynomial_decay",
        "kind = \"polynomial_decay\"\nlearning_rate = 0.1\ndecay_steps = 1000\npower = 2.0\ncycle = true",
    ),
    ("inverse_time_decay", "kind = \"inverse_time_decay\"\nlearning_rate = 0.1\ndecay_steps = 100\ndecay_rate = 0.5"),
    ("cosine_decay", "kind = \"cosine_decay\"\nlearning_rate = 0.1\ndecay_steps = 1000"),
    (
        "cosine_decay_restarts",
        "kind = \"cosine_decay_restarts\"\nlearning_rate = 0.1\nfirst_decay_steps = 100\nt_mul = 2.0",
    ),
    ("linear_cosine_decay", "kind = \"linear_cosine_decay\"\nlearning_rate = 0.1\ndecay_steps = 1000"),
    ("noisy_linear_cosine_decay", "kind = \"noisy_linear_cosine_decay\"\nlearning_rate = 0.1\ndecay_steps = 1000"),
    ("reduce_on_plateau", "kind = \"reduce_on_plateau\"\nlearning_rate = 0.1"),
    ("constant", "kind = \"constant\"\nlearning_rate = 0.1"),
    ("step", "kind = \"step\"\nlearning_rate = 0.1\nstep_size = 100"),
    ("multistep", "kind = \"multistep\"\nlearning_rate = 0.1\nmilestones = [100, 200, 300]"),
    ("linear", "kind = \"linear\"\nlearning_rate = 0.1\ntotal_steps = 500"),
    ("one_cycle", "kind = \"one_cycle\"\nmax_lr = 0.1"),
    ("cyclic", "kind = \"cyclic\"\nbase_lr = 0.01\nmax_lr = 0.1\nstep_size_up = 200"),
    (
        "warmup_stable_decay",
        "kind = \"warmup_stable_decay\"\nlearning_rate = 0.1\ndecay_steps = 200\nwarmup_steps = 100",
    ),
    (
        "sequence",
        "kind = \"sequence\"\n[[schedule.phases]]\nkind = \"linear\"\nlearning_rate = 0.1\nstart_factor = 0.1\ntotal_steps = 100\nsteps = 100\n[[schedule.phases]]\nkind = \"cosine_decay\"\nlearning_rate = 0.1\ndecay_steps = 900",
    ),
    ("piecewise_linear", "kind = \"piecewise_linear\"\npoints = [[0, 0.0], [100, 0.1], [1000, 0.001]]"),
    (
        "expression",
        "kind = \"expression\"\nlearning_rate = 0.1\nformula = \"lr0 * 0.5 ^ floor(epoch / 10) * exp(-step / total_steps)\"",
    ),
];

fn per_kind(c: &mut Criterion) {
    let ctx = Context { total_steps: 1000, steps_per_epoch: 10, seed: 1 };
    let mut group = c.benchmark_group("lr(step)");
    for (kind, table) in KINDS {
        let cfg = runner::plan::parse(Path::new("bench.toml"), &format!("[schedule]\n{table}\n"))
            .expect("valid bench config");
        assert_eq!(cfg.schedule.kind.kind(), *kind);
        let schedule = cfg.schedule.build(&ctx);
        let mut step = 0u64;
        group.bench_function(*kind, |b| {
            b.iter(|| {
                step = (step + 1) % 1000;
                black_box(schedule.lr(black_box(step)))
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Text report only: criterion's charts need system fonts this machine kind lacks.
    config = Criterion::default().without_plots();
    targets = per_kind
}
criterion_main!(benches);
