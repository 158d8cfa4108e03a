//! Character-level transformer training throughput through `runner run`, against PyTorch
//! in the same run.
//!
//! For 1 and 2 threads, runs the built `runner` binary on configs/shakespeare_char.toml
//! (4 layers, 4 heads, 128 wide, windows of 64 characters) with batches of BATCH windows
//! for SHORT and LONG steps; the difference of the two wall times over the difference of
//! steps is a step's time (loading, the first steps and the final evaluation cancel). The
//! peer is `bench/pytorch_transformer_peer.py` (the GPT of the fidelity check, the same
//! size, AdamW and clipping), run where `python3` (or `$PYTHON`) imports torch. Prints
//! tokens/s, peak memory and the ratio.
//!
//! Run with `cargo bench --bench transformer_throughput` (about 3 minutes on 2 cores).

mod support;

const SHORT: usize = 10;
const LONG: usize = 110;
const BATCH: usize = 12;
const CONTEXT: usize = 64;

fn main() {
    println!("machine: {}", support::machine());
    let dir = tempfile::tempdir().unwrap();
    let runner = env!("CARGO_BIN_EXE_runner");
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/shakespeare_char.toml");
    let text = concat!(env!("CARGO_MANIFEST_DIR"), "/data/shakespeare.txt.gz");
    let python = support::torch_python();
    println!("batches of {BATCH} windows of {CONTEXT} characters ({} tokens a step)", BATCH * CONTEXT);
    println!(
        "{:>7} {:>16} {:>8} {:>17} {:>8} {:>15}",
        "threads", "runner tokens/s", "peak MB", "PyTorch tokens/s", "peak MB", "runner/PyTorch"
    );
    for threads in [1usize, 2] {
        let (batch, threads_arg) = (format!("train.batch_size={BATCH}"), format!("train.threads={threads}"));
        let args = [
            "--set",
            &batch,
            "--set",
            &threads_arg,
            "--set",
            "train.eval_every=100000",
            "--set",
            "train.eval_batches=1",
        ];
        let out = dir.path().join(format!("out-{threads}"));
        let (step, peak) = support::seconds_per_step(runner, config, &args, &out, SHORT, LONG);
        let rate = (BATCH * CONTEXT) as f64 / step;
        let peer = match &python {
            Some(python) => {
                let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/pytorch_transformer_peer.py");
                let args = [script, text, &threads.to_string(), "10", "100", &BATCH.to_string()];
                match support::run_measured(python, &args) {
                    Ok((line, their_peak)) => {
                        let theirs: f64 =
                            line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
                        format!("{theirs:>17.0} {their_peak:>8.0} {:>15.2}", rate / theirs)
                    }
                    Err(e) => format!("  PyTorch failed: {e}"),
                }
            }
            None => String::new(),
        };
        println!("{threads:>7} {rate:>16.0} {peak:>8.0} {peer}");
    }
}
