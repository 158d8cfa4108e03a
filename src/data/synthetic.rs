//! Seeded synthetic data sets of any size: spirals, moons, blobs (classification) and a
//! noisy sine (regression).

use super::Table;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, StandardNormal};
use std::f64::consts::PI;

fn rng(seed: u64, salt: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

fn gauss(r: &mut ChaCha8Rng) -> f64 {
    StandardNormal.sample(r)
}

/// `classes` interleaved spiral arms (CS231n style), `noise` on the angle.
pub fn spirals(classes: usize, points_per_class: usize, noise: f64, seed: u64) -> Table {
    let mut r = rng(seed, 1);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for c in 0..classes {
        for i in 0..points_per_class {
            let radius = i as f64 / points_per_class.max(2).saturating_sub(1) as f64;
            let theta = c as f64 * 2.0 * PI / classes as f64 + radius * 4.0 + gauss(&mut r) * noise;
            x.extend([(radius * theta.sin()) as f32, (radius * theta.cos()) as f32]);
            y.push(c as f32);
        }
    }
    Table { x, cols: 2, y }
}

/// Two interleaving half circles (scikit-learn's make_moons).
pub fn moons(points: usize, noise: f64, seed: u64) -> Table {
    let mut r = rng(seed, 2);
    let upper = points / 2;
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for i in 0..points {
        let (class, k, n) = if i < upper { (0, i, upper) } else { (1, i - upper, points - upper) };
        let t = PI * k as f64 / (n.max(2) - 1) as f64;
        let (px, py) = if class == 0 { (t.cos(), t.sin()) } else { (1.0 - t.cos(), 0.5 - t.sin()) };
        x.extend([(px + noise * gauss(&mut r)) as f32, (py + noise * gauss(&mut r)) as f32]);
        y.push(class as f32);
    }
    Table { x, cols: 2, y }
}

/// Gaussian clusters with centres uniform in [-10, 10]^dims.
pub fn blobs(classes: usize, points_per_class: usize, dims: usize, spread: f64, seed: u64) -> Table {
    let mut r = rng(seed, 3);
    let centres: Vec<Vec<f64>> =
        (0..classes).map(|_| (0..dims).map(|_| r.random_range(-10.0..10.0)).collect()).collect();
    let normal = Normal::new(0.0, spread).expect("spread is validated > 0");
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for (c, centre) in centres.iter().enumerate() {
        for _ in 0..points_per_class {
            x.extend(centre.iter().map(|m| (m + normal.sample(&mut r)) as f32));
            y.push(c as f32);
        }
    }
    Table { x, cols: dims, y }
}

/// y = sin(x) + noise, x uniform in [-pi, pi].
pub fn sine(points: usize, noise: f64, seed: u64) -> Table {
    let mut r = rng(seed, 4);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for _ in 0..points {
        let v: f64 = r.random_range(-PI..PI);
        x.push(v as f32);
        y.push((v.sin() + noise * gauss(&mut r)) as f32);
    }
    Table { x, cols: 1, y }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_seeds() {
        let s = spirals(3, 50, 0.1, 7);
        assert_eq!((s.rows(), s.cols), (150, 2));
        assert_eq!(s, spirals(3, 50, 0.1, 7));
        assert_ne!(s, spirals(3, 50, 0.1, 8));
        let m = moons(101, 0.1, 1);
        assert_eq!((m.rows(), m.y.iter().filter(|&&c| c == 1.0).count()), (101, 51));
        let b = blobs(4, 10, 5, 1.0, 1);
        assert_eq!((b.rows(), b.cols), (40, 5));
        let w = sine(30, 0.0, 1);
        assert!(w.x.iter().zip(&w.y).all(|(x, y)| (x.sin() - y).abs() < 1e-6));
    }
}
