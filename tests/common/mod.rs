//! Helpers shared by the behaviour tests that drive the real binary.
#![allow(dead_code)]

pub mod fidelity;

use assert_cmd::Command;
use std::fs;
use std::path::{Path, PathBuf};

pub fn runner() -> Command {
    Command::cargo_bin("runner").unwrap()
}

/// A pipe whose reader has already gone, for a child's stdout or stderr: writing to it
/// fails with EPIPE (`runner ... | head -1` once head has read its line).
pub fn closed_pipe() -> std::process::Stdio {
    use std::os::fd::FromRawFd;
    let mut fds = [0i32; 2];
    // SAFETY: pipe() fills the two descriptors; the read end is closed at once, the write
    // end is owned by the Stdio handed to the child.
    unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        libc::close(fds[0]);
        std::process::Stdio::from_raw_fd(fds[1])
    }
}

/// Writes `body` as `dir/NAME.toml` and returns its path.
pub fn config(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    fs::write(&path, body).unwrap();
    path
}

pub fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    let mut rows = vec![header];
    rows.extend(r.records().map(|rec| rec.unwrap().iter().map(String::from).collect()));
    rows
}

pub fn column(rows: &[Vec<String>], name: &str) -> Vec<String> {
    let i = rows[0].iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name}"));
    rows[1..].iter().map(|r| r[i].clone()).collect()
}

/// metrics.csv and steps.csv of every run, without the wall-clock column.
pub fn results_without_clock(exp: &Path) -> Vec<(String, String)> {
    let mut runs: Vec<PathBuf> =
        fs::read_dir(exp).unwrap().map(|e| e.unwrap().path()).filter(|p| p.join("metrics.csv").exists()).collect();
    runs.sort();
    runs.iter()
        .map(|r| {
            let metrics: Vec<String> = fs::read_to_string(r.join("metrics.csv"))
                .unwrap()
                .lines()
                .map(|l| l.rsplit_once(',').unwrap().0.to_string())
                .collect();
            (
                r.file_name().unwrap().to_string_lossy().into_owned(),
                metrics.join("\n") + &fs::read_to_string(r.join("steps.csv")).unwrap(),
            )
        })
        .collect()
}

// ---- CIFAR files in the binary layout ----

pub const PIXELS: usize = 3 * 32 * 32;

/// `n` records: label `i % classes` (for CIFAR-100, coarse `i % 20` then fine `i % 100`),
/// each image a colour that depends on its class plus noise, so a model can learn them.
pub fn records(n: usize, first: usize, hundred: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for i in first..first + n {
        let class = i % if hundred { 100 } else { 10 };
        if hundred {
            out.extend([(i % 20) as u8, class as u8]);
        } else {
            out.push(class as u8);
        }
        for p in 0..PIXELS {
            let channel = p / 1024;
            out.push(((class * 23 + channel * 71 + (i * 7 + p * 13) % 40) % 256) as u8);
        }
    }
    out
}

/// CIFAR-10's six files in `dir`: 5 x `n` training records and `n` test records.
pub fn cifar10(dir: &Path, n: usize) {
    fs::create_dir_all(dir).unwrap();
    for k in 0..5 {
        fs::write(dir.join(format!("data_batch_{}.bin", k + 1)), records(n, k * n, false)).unwrap();
    }
    fs::write(dir.join("test_batch.bin"), records(n, 5 * n, false)).unwrap();
}

// ---- the checked-in run of an earlier runner ----

/// tests/fixtures/checkpoint_format1: a run interrupted by runner f7f5950 (checkpoint
/// format 1) and that runner's uninterrupted results (see its README).
pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checkpoint_format1")
}

/// Copies the directory `from` to `to`, recursively.
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `n` windows of `t` tokens of a stream with structure (so that training lowers the loss),
/// drawn from `seed`, and the token after each position: (inputs, next), row after row.
pub fn token_windows(n: usize, t: usize, vocab: u32, seed: u64) -> (Vec<u32>, Vec<u32>) {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    let stream: Vec<u32> = (0..n * (t + 1))
        .scan(0u32, |prev, _| {
            *prev = if next() % 4 == 0 { next() % vocab } else { (*prev * 3 + 1) % vocab };
            Some(*prev)
        })
        .collect();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for w in stream.chunks(t + 1) {
        x.extend_from_slice(&w[..t]);
        y.extend_from_slice(&w[1..]);
    }
    (x, y)
}
