//! Seeded train/validation split (stratified for classes) and standardisation.

use super::{Table, Task};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// Holds out `fraction` of the rows: per class for classification, so both parts keep the
/// class proportions; at least one row stays on each side when there are two or more.
/// The training part keeps `t`'s memory (its rows moved up in place), so only the
/// validation rows are copied.
pub fn split(mut t: Table, fraction: f64, task: Task, seed: u64) -> (Table, Table) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_5B17);
    let groups: Vec<Vec<usize>> = match task {
        Task::Classification => {
            let classes = t.y.iter().fold(0usize, |m, &v| m.max(v as usize + 1));
            let mut g = vec![Vec::new(); classes];
            for (i, &c) in t.y.iter().enumerate() {
                g[c as usize].push(i);
            }
            g
        }
        Task::Regression => vec![(0..t.rows()).collect()],
    };
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for mut g in groups {
        g.shuffle(&mut rng);
        let mut n_val = (g.len() as f64 * fraction).round() as usize;
        if g.len() >= 2 {
            n_val = n_val.clamp(1, g.len() - 1);
        }
        val.extend_from_slice(&g[..n_val.min(g.len())]);
        train.extend_from_slice(&g[n_val.min(g.len())..]);
    }
    // Keep file order within each part so the split does not depend on class grouping.
    train.sort_unstable();
    val.sort_unstable();
    let cols = t.cols;
    let mut x = Vec::with_capacity(val.len() * cols);
    for &r in &val {
        x.extend_from_slice(&t.x[r * cols..(r + 1) * cols]);
    }
    let validation = Table { x, cols, y: val.iter().map(|&r| t.y[r]).collect() };
    // Ascending, so each training row moves to a place at or before its own.
    for (i, &r) in train.iter().enumerate() {
        t.x.copy_within(r * cols..(r + 1) * cols, i * cols);
        t.y[i] = t.y[r];
    }
    t.x.truncate(train.len() * cols);
    t.y.truncate(train.len());
    t.x.shrink_to_fit();
    t.y.shrink_to_fit();
    (t, validation)
}

/// Scales every feature to zero mean and unit variance using the training part's
/// statistics only; constant features are only centred.
pub fn standardize(train: &mut Table, val: &mut Table) {
    let (n, d) = (train.rows().max(1) as f64, train.cols);
    let mut mean = vec![0f64; d];
    let mut sq = vec![0f64; d];
    for row in train.x.chunks(d) {
        for (j, &v) in row.iter().enumerate() {
            mean[j] += v as f64;
            sq[j] += (v as f64) * (v as f64);
        }
    }
    let stats: Vec<(f64, f64)> = (0..d)
        .map(|j| {
            let m = mean[j] / n;
            let var = (sq[j] / n - m * m).max(0.0);
            (m, if var > 1e-12 { var.sqrt() } else { 1.0 })
        })
        .collect();
    for t in [train, val] {
        for row in t.x.chunks_mut(d) {
            for (v, &(m, s)) in row.iter_mut().zip(&stats) {
                *v = ((*v as f64 - m) / s) as f32;
            }
        }
    }
}

/// Zero mean and unit variance per channel of channel-major images (`channels` planes a
/// row), from the training part's statistics (population std, as torchvision's CIFAR
/// normalisation constants are computed).
pub fn standardize_channels(train: &mut Table, val: &mut Table, channels: usize) {
    let d = train.cols;
    let plane = d / channels.max(1);
    let mut sum = vec![0f64; channels];
    let mut sq = vec![0f64; channels];
    for row in train.x.chunks(d) {
        for (c, values) in row.chunks(plane).enumerate().take(channels) {
            let (s, q) = values.iter().fold((0f64, 0f64), |(s, q), &v| (s + v as f64, q + (v as f64) * (v as f64)));
            sum[c] += s;
            sq[c] += q;
        }
    }
    let count = (train.rows() * plane).max(1) as f64;
    let stats: Vec<(f32, f32)> = (0..channels)
        .map(|c| {
            let m = sum[c] / count;
            let var = (sq[c] / count - m * m).max(0.0);
            (m as f32, if var > 1e-12 { var.sqrt() as f32 } else { 1.0 })
        })
        .collect();
    for t in [train, val] {
        for row in t.x.chunks_mut(d) {
            for (values, &(m, s)) in row.chunks_mut(plane).zip(&stats) {
                for v in values {
                    *v = (*v - m) / s;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_standardised_with_the_training_parts_statistics() {
        // Two images of 2 channels x 2 pixels: channel 0 holds 1,3 and 5,7 (mean 4, std
        // sqrt(5)), channel 1 holds 10 everywhere (std 0: divided by 1).
        let mut train = Table { x: vec![1.0, 3.0, 10.0, 10.0, 5.0, 7.0, 10.0, 10.0], cols: 4, y: vec![0.0, 1.0] };
        let mut val = Table { x: vec![4.0, 9.0, 12.0, 10.0], cols: 4, y: vec![0.0] };
        standardize_channels(&mut train, &mut val, 2);
        let s = 5f32.sqrt();
        assert_eq!(train.x, vec![-3.0 / s, -1.0 / s, 0.0, 0.0, 1.0 / s, 3.0 / s, 0.0, 0.0]);
        assert_eq!(val.x, vec![0.0, 5.0 / s, 2.0, 0.0]);
    }

    #[test]
    fn stratified_and_seeded() {
        let t =
            Table { x: (0..100).map(|i| i as f32).collect(), cols: 1, y: (0..100).map(|i| (i % 4) as f32).collect() };
        let (a, b) = split(t.clone(), 0.2, Task::Classification, 1);
        // File order within each part, every row in exactly one part.
        let mut all: Vec<f32> = a.x.iter().chain(&b.x).copied().collect();
        assert!(a.x.windows(2).all(|w| w[0] < w[1]) && b.x.windows(2).all(|w| w[0] < w[1]));
        all.sort_by(f32::total_cmp);
        assert_eq!(all, t.x);
        assert!(a.x.iter().zip(&a.y).chain(b.x.iter().zip(&b.y)).all(|(x, y)| (*x as usize % 4) as f32 == *y));
        assert_eq!((a.rows(), b.rows()), (80, 20));
        for c in 0..4 {
            assert_eq!(b.y.iter().filter(|&&v| v == c as f32).count(), 5);
        }
        assert_eq!(split(t.clone(), 0.2, Task::Classification, 1), (a.clone(), b.clone()));
        assert_ne!(split(t, 0.2, Task::Classification, 2).1, b);
    }

    #[test]
    fn standardizes_with_training_statistics() {
        let mut train = Table { x: vec![1.0, 3.0], cols: 1, y: vec![0.0, 0.0] };
        let mut val = Table { x: vec![5.0], cols: 1, y: vec![0.0] };
        standardize(&mut train, &mut val);
        assert_eq!(train.x, vec![-1.0, 1.0]);
        assert_eq!(val.x, vec![3.0]);
    }
}
