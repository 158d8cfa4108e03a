//! Seeded Gaussian noise indexed by step, so `lr(step)` is a pure function: the same seed
//! gives the same rates whatever order the steps are asked in.

/// SplitMix64: a well-mixed 64-bit hash of `x` (Steele, Lea, Flood 2014).
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A uniform number in (0, 1) from 53 random bits.
fn unit(bits: u64) -> f64 {
    ((bits >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// A standard normal sample for (`seed`, `step`), by the Box-Muller transform.
pub fn standard_normal(seed: u64, step: u64) -> f64 {
    let a = splitmix64(seed ^ splitmix64(step));
    let b = splitmix64(a);
    let (u1, u2) = (unit(a), unit(b));
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::standard_normal;

    #[test]
    fn is_repeatable_and_roughly_standard() {
        assert_eq!(standard_normal(7, 123), standard_normal(7, 123));
        assert_ne!(standard_normal(7, 123), standard_normal(8, 123));
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|s| standard_normal(1, s)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.01, "variance {var}");
    }
}
