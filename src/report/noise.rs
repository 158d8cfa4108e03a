//! Is a difference real? Each variant's difference from the best variant, against the
//! noise: over seeds, Welch's 95% interval for the difference of two means (unequal
//! variances, Welch–Satterthwaite degrees of freedom); for single runs ranked by
//! accuracy, the 95% interval of the difference of two proportions measured on a
//! validation set of `n` samples (unpaired: the two runs' errors on the same samples are
//! not compared one by one, so it is wide rather than narrow). A variant whose interval
//! contains 0 cannot be told apart from the best.

/// How a variant compares with the best one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// The variant's value less the best's (in the metric's units).
    pub difference: f64,
    /// Half the width of the 95% interval around `difference`.
    pub half_width: f64,
}

impl Comparison {
    /// Whether the interval contains 0: within noise of the best.
    pub fn indistinguishable(&self) -> bool {
        self.difference.abs() <= self.half_width
    }

    /// `best`, `tied` (cannot be told apart from the best) or `worse`, as the report says.
    pub fn verdict(&self, is_best: bool) -> &'static str {
        if is_best {
            "best"
        } else if self.indistinguishable() {
            "tied"
        } else {
            "worse"
        }
    }
}

/// Mean and (n - 1) variance of `values`.
fn mean_var(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 { values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var)
}

/// Welch's 95% interval for mean(a) - mean(b); `None` unless both have two values or more.
pub fn welch(a: &[f64], b: &[f64]) -> Option<Comparison> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let ((ma, va), (mb, vb)) = (mean_var(a), mean_var(b));
    let (sa, sb) = (va / a.len() as f64, vb / b.len() as f64);
    let se = (sa + sb).sqrt();
    let difference = ma - mb;
    if se == 0.0 {
        return Some(Comparison { difference, half_width: 0.0 });
    }
    // Welch–Satterthwaite.
    let df = (sa + sb).powi(2) / (sa * sa / (a.len() as f64 - 1.0) + sb * sb / (b.len() as f64 - 1.0));
    Some(Comparison { difference, half_width: t_975(df) * se })
}

/// The 95% interval for p_a - p_b, two accuracies each measured on `n` samples.
pub fn two_proportions(p_a: f64, p_b: f64, n: usize) -> Option<Comparison> {
    if n == 0 || !(0.0..=1.0).contains(&p_a) || !(0.0..=1.0).contains(&p_b) {
        return None;
    }
    let n = n as f64;
    let se = (p_a * (1.0 - p_a) / n + p_b * (1.0 - p_b) / n).sqrt();
    // With both at 0 or 1 the normal interval is empty: count one sample's worth instead.
    let half_width = (1.959964 * se).max(1.0 / n);
    Some(Comparison { difference: p_a - p_b, half_width })
}

/// Student's t 0.975 quantile for `df` degrees of freedom (fractional, as Welch gives),
/// by bisection on the t distribution's CDF.
pub fn t_975(df: f64) -> f64 {
    if df.is_nan() || df <= 0.0 {
        return f64::INFINITY;
    }
    if df > 1e7 {
        return 1.959964;
    }
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    while t_cdf(hi, df) < 0.975 {
        hi *= 2.0;
    }
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if t_cdf(mid, df) < 0.975 { lo = mid } else { hi = mid }
    }
    0.5 * (lo + hi)
}

/// P(T <= t) for t >= 0 and Student's t with `df` degrees of freedom:
/// 1 - I_{df / (df + t²)}(df / 2, 1 / 2) / 2.
fn t_cdf(t: f64, df: f64) -> f64 {
    1.0 - 0.5 * incomplete_beta(df / (df + t * t), 0.5 * df, 0.5)
}

/// The regularised incomplete beta function I_x(a, b) (Numerical Recipes' continued
/// fraction, with the symmetry I_x(a, b) = 1 - I_{1-x}(b, a) where it converges faster).
fn incomplete_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front = (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(x, a, b) / a
    } else {
        1.0 - front * beta_fraction(1.0 - x, b, a) / b
    }
}

fn beta_fraction(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    d = 1.0 / if d.abs() < TINY { TINY } else { d };
    let mut h = d;
    for m in 1..300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        for aa in [m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))] {
            d = 1.0 + aa * d;
            d = 1.0 / if d.abs() < TINY { TINY } else { d };
            c = 1.0 + aa / c;
            if c.abs() < TINY {
                c = TINY;
            }
            h *= d * c;
        }
        if (d * c - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms: about 15 digits).
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 - x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = C[0];
    for (i, c) in C.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + 7.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_are_students() {
        // scipy.stats.t.ppf(0.975, df) (2.5: by numerical integration of the density).
        for (df, t) in
            [(1.0, 12.706205), (2.0, 4.302653), (2.5, 3.574655), (10.0, 2.228139), (45.0, 2.014103), (1000.0, 1.962339)]
        {
            assert!((t_975(df) - t).abs() < 1e-5, "df {df}: {} vs {t}", t_975(df));
        }
        assert!((t_975(1e9) - 1.959964).abs() < 1e-6);
    }

    #[test]
    fn welch_interval_by_hand() {
        // a: mean 0.9, var 0.0001 (n 3); b: mean 0.95, var 0.0004 (n 3).
        let a = [0.89, 0.90, 0.91];
        let b = [0.93, 0.95, 0.97];
        let c = welch(&a, &b).unwrap();
        let (sa, sb): (f64, f64) = (0.0001 / 3.0, 0.0004 / 3.0);
        let df: f64 = (sa + sb) * (sa + sb) / (sa * sa / 2.0 + sb * sb / 2.0);
        assert!((df - 2.9412).abs() < 1e-3, "{df}");
        let half = t_975(df) * (sa + sb).sqrt();
        assert!((c.difference + 0.05).abs() < 1e-12);
        assert!((c.half_width - half).abs() < 1e-12);
        // 0.05 apart with a half width of about 0.041: told apart.
        assert!(!c.indistinguishable());
        assert_eq!(c.verdict(false), "worse");
        // Three seeds at exactly 0.995 against three at exactly 0.995: a tie.
        let tie = welch(&[0.995; 3], &[0.995; 3]).unwrap();
        assert!(tie.indistinguishable());
        assert_eq!(tie.verdict(false), "tied");
        assert!(welch(&[0.9], &a).is_none());
    }

    #[test]
    fn one_or_two_validation_samples_are_within_noise() {
        // 180 samples: 0.9833 vs 0.9944 (two samples) is within noise, 0.90 vs 0.99 is not.
        let c = two_proportions(177.0 / 180.0, 179.0 / 180.0, 180).unwrap();
        assert!(c.indistinguishable(), "{c:?}");
        let se = ((177.0 / 180.0) * (3.0 / 180.0) / 180.0 + (179.0 / 180.0) * (1.0 / 180.0) / 180.0f64).sqrt();
        assert!((c.half_width - 1.959964 * se).abs() < 1e-12);
        assert!(!two_proportions(0.90, 0.99, 180).unwrap().indistinguishable());
        // Both perfect: a sample's worth, not an empty interval.
        assert_eq!(two_proportions(1.0, 1.0, 360).unwrap().half_width, 1.0 / 360.0);
        assert!(two_proportions(0.5, 0.5, 0).is_none());
    }
}
