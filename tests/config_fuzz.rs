//! Fuzzing the config reader and the expression parser, bounded in time so CI runs it on
//! every submission. Configs are the shipped examples mutated at random (bytes cut,
//! tokens that have broken readers before inserted, lines repeated); formulas are random
//! token strings. In process, thousands of cases: no panic, and every refusal is a
//! `ConfigError` naming the file, with a line and column inside the text when it has one.
//! Through the binary, a sample under a 4 GB address-space limit: exit 0 or 2 (never a
//! panic's 101, an abort or an out-of-memory kill), and every exit 2 says where.

mod common;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRng, TestRunner};
use runner::config::ConfigError;
use runner::plan::parse_experiment;
use std::path::Path;

/// Tokens that have broken config readers: huge, negative and special numbers, words that
/// follow the run, tables, quotes and brackets left open, sweep keys that multiply.
const TOKENS: &[&str] = &[
    "=",
    "[",
    "]",
    "{",
    "}",
    "\"",
    "'",
    ",",
    ".",
    "\n",
    "#",
    "0",
    "-1",
    "1e999",
    "-1e999",
    "nan",
    "inf",
    "1e10",
    "9223372036854775807",
    "-9223372036854775808",
    "2.5",
    "\"run\"",
    "\"5 epochs\"",
    "\"\"",
    "true",
    "[]",
    "{}",
    "[[sweep.schedule]]",
    "[sweep]",
    "[train]",
    "[model]",
    "[dataset]",
    "[schedule]",
    "seeds = [1, 1]",
    "samples = 100000000",
    "epochs = 9223372036854775807",
    "steps = 5",
    "hidden = [100000, 100000]",
    "kind = \"cnn\"",
    "kind = \"expression\"",
    "formula = \"((((((1))))))\"",
    "decay_steps",
    "learning_rate",
    "name = \"..\"",
    "\"train.batch_size\" = [16, 16]",
    "validation_split = 0.99",
    "\u{0}",
    "\u{feff}",
    "é",
];

/// The shipped example configs.
fn examples() -> Vec<(String, String)> {
    let mut files: Vec<_> = std::fs::read_dir("configs").unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.iter().map(|p| (p.display().to_string(), std::fs::read_to_string(p).unwrap())).collect()
}

/// One random edit of `text`.
fn mutate(text: &str, rng: &mut TestRng) -> String {
    let mut s: Vec<char> = text.chars().collect();
    let at = |rng: &mut TestRng, len: usize| if len == 0 { 0 } else { rng.random_range(0..=len) };
    for _ in 0..rng.random_range(1..4) {
        match rng.random_range(0..4) {
            0 if !s.is_empty() => {
                let a = at(rng, s.len() - 1);
                let b = (a + rng.random_range(1..20)).min(s.len());
                s.drain(a..b);
            }
            1 => {
                let a = at(rng, s.len());
                let t = TOKENS[rng.random_range(0..TOKENS.len())];
                s.splice(a..a, t.chars());
            }
            2 => {
                let lines: Vec<String> = s.iter().collect::<String>().lines().map(String::from).collect();
                if !lines.is_empty() {
                    let i = rng.random_range(0..lines.len());
                    let mut l = lines.clone();
                    l.insert(i, lines[i].clone());
                    s = l.join("\n").chars().collect();
                }
            }
            _ => {
                let a = at(rng, s.len());
                let c = char::from_u32(rng.random_range(0..0x250)).unwrap_or('?');
                s.insert(a, c);
            }
        }
    }
    s.into_iter().collect()
}

/// Checks one refusal: it names the file, and its line and column are inside the text.
fn check_error(file: &str, text: &str, e: &anyhow::Error) {
    let shown = format!("{e:#}");
    let Some(c) = e.downcast_ref::<ConfigError>() else {
        panic!("not a ConfigError for {file}: {shown}\n{text}");
    };
    assert!(shown.starts_with(file), "error does not name {file}: {shown}");
    if let (Some((line, col)), false) = (c.position, c.overridden) {
        let lines = text.split('\n').count() as u32;
        assert!(line >= 1 && line <= lines && col >= 1, "position {line}:{col} outside {lines} lines: {shown}");
    }
}

#[test]
fn mutated_configs_never_panic_and_every_refusal_says_where() {
    let examples = examples();
    // A fixed seed: the same cases on every run (CI stays reproducible); 20,000 cases.
    let mut runner = TestRunner::new_with_rng(
        Config { cases: 20_000, failure_persistence: None, ..Config::default() },
        TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &[7; 32]),
    );
    let started = std::time::Instant::now();
    let (accepted, refused) = (std::cell::Cell::new(0u32), std::cell::Cell::new(0u32));
    let strategy = (0..examples.len(), any::<u64>());
    runner
        .run(&strategy, |(i, seed)| {
            let (file, text) = &examples[i];
            let mut rng = TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &seed_bytes(seed));
            let text = mutate(text, &mut rng);
            let path = Path::new(file);
            // Data sets are not loaded here: a fixed training-set size stands in.
            let result = std::panic::catch_unwind(|| parse_experiment(path, &text, &mut |_| Ok(1437)));
            match result {
                Err(_) => panic!("the reader panicked on:\n{text}"),
                Ok(Ok(exp)) => {
                    assert!(!exp.runs.is_empty() && exp.runs.len() as u64 <= 100_000);
                    accepted.set(accepted.get() + 1);
                }
                Ok(Err(e)) => {
                    check_error(file, &text, &e);
                    refused.set(refused.get() + 1);
                }
            }
            Ok(())
        })
        .unwrap();
    eprintln!(
        "config fuzz: {} accepted, {} refused in {:.1}s",
        accepted.get(),
        refused.get(),
        started.elapsed().as_secs_f64()
    );
    // The mutations reach both sides of the reader.
    assert!(accepted.get() > 100 && refused.get() > 500, "{} accepted, {} refused", accepted.get(), refused.get());
}

fn seed_bytes(seed: u64) -> [u8; 32] {
    let mut b = [0u8; 32];
    for (i, chunk) in b.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&(seed.rotate_left(i as u32 * 13) ^ i as u64).to_le_bytes());
    }
    b
}

/// Formula tokens: every variable, function and operator, numbers, parentheses.
const FORMULA_TOKENS: &[&str] = &[
    "step",
    "epoch",
    "total_steps",
    "lr0",
    "exp(",
    "log(",
    "cos(",
    "sin(",
    "sqrt(",
    "pow(",
    "min(",
    "max(",
    "floor(",
    "ceil(",
    "abs(",
    "(",
    ")",
    ",",
    "+",
    "-",
    "*",
    "/",
    "^",
    "%",
    "!",
    "0",
    "1",
    "0.5",
    "1e308",
    "-1",
    "x",
    "=",
    ";",
    "\"s\"",
    "true",
    " ",
];

#[test]
fn random_formulas_never_panic_and_are_refused_with_the_key() {
    let mut runner = TestRunner::new_with_rng(
        Config { cases: 20_000, failure_persistence: None, ..Config::default() },
        TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &[11; 32]),
    );
    let strategy = proptest::collection::vec(0..FORMULA_TOKENS.len(), 0..40);
    runner
        .run(&strategy, |tokens| {
            let formula: String = tokens.iter().map(|&t| FORMULA_TOKENS[t]).collect();
            let text = format!(
                "[schedule]\nkind = \"expression\"\nlearning_rate = 0.1\nformula = \"{}\"\n",
                formula.replace('"', "\\\"")
            );
            let path = Path::new("formula.toml");
            let result = std::panic::catch_unwind(|| parse_experiment(path, &text, &mut |_| Ok(1437)));
            match result {
                Err(_) => panic!("the formula reader panicked on {formula:?}"),
                Ok(Ok(exp)) => {
                    // An accepted formula gives a finite rate at step 0.
                    let cfg = &exp.runs[0].config;
                    let ctx = cfg.train.schedule_context(1437);
                    let lr = cfg.schedule.build(&ctx).lr(0);
                    assert!(lr.is_finite() && lr >= 0.0, "{formula:?} gives {lr}");
                }
                Ok(Err(e)) => {
                    let shown = format!("{e:#}");
                    assert!(shown.starts_with("formula.toml:"), "{shown}");
                }
            }
            Ok(())
        })
        .unwrap();
    // Deep nesting and long operator runs are refused by limits, not by the stack.
    for formula in ["(".repeat(100_000) + "1" + &")".repeat(100_000), "-".repeat(100_000) + "1"] {
        let text = format!("[schedule]\nkind = \"expression\"\nformula = \"{formula}\"\n");
        let e = parse_experiment(Path::new("deep.toml"), &text, &mut |_| Ok(1437)).unwrap_err();
        assert!(format!("{e:#}").contains("a formula may have at most 1000"), "{e:#}");
    }
}

#[test]
fn the_binary_exits_0_or_2_within_bounded_memory_on_mutated_configs() {
    let dir = tempfile::TempDir::new().unwrap();
    let examples = examples();
    let mut rng = TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &[3; 32]);
    let bin = assert_cmd::cargo::cargo_bin("runner");
    for case in 0..300 {
        let (file, text) = &examples[case % examples.len()];
        let text = mutate(text, &mut rng);
        let path = dir.path().join(format!("case{case}.toml"));
        std::fs::write(&path, &text).unwrap();
        // 4 GB of address space: an allocation of 240 GB (a step count, a label, a
        // model) would be killed, and fail this test.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg("ulimit -v 4000000; exec \"$0\" schedule \"$1\" --steps 20")
            .arg(&bin)
            .arg(&path)
            .current_dir(std::env::current_dir().unwrap())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) => {}
            Some(2) => assert!(stderr.starts_with("error: "), "case {case} (from {file}): {stderr}\n{text}"),
            other => panic!("case {case} (from {file}) exited {other:?}: {stderr}\n{text}"),
        }
        assert!(!stderr.contains("panicked"), "case {case}: {stderr}");
    }
}
