//! `exp` and `erf` for f32 written so that loops over slices vectorise (no calls, no
//! branches): the transformer's GELU and attention softmax spent 8% of a step in libm's
//! scalar `expf` and `erff`. `exp` is Cephes' `expf` (range reduction by ln 2 in two
//! parts, a degree-5 polynomial; within 2 ulp of the exact value), `erf` is Abramowitz and
//! Stegun 7.1.26 over that `exp` (absolute error below 4e-7 in f32; the Taylor series
//! near 0), the approximation
//! PyTorch's own vectorised CPU `erf` uses for float32 (ATen `Vectorized<float>::erf`),
//! and so its GELU. Both are tested against f64 below.

/// e^x for x in [-87.3, 88.3] (clamped there: below, the result is the smallest normal
/// number rather than 0 or a subnormal; above, 2.4e38 rather than up to 3.4e38 or infinity).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 as 0.693359375 (exact in few bits) less 2.12194440e-4.
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds to an integer (the FPU's round to nearest even).
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.336_54, 88.376_26);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * C1 - n * C2;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    // Cephes writes 5.0000001201e-1, which is 0.5 in f32.
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // 2^n from n's bits: the integer sits in t's low mantissa bits.
    let n = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    e * f32::from_bits(((n + 127) as u32) << 23)
}

/// erf(x), absolute error below 4e-7 (Abramowitz and Stegun 7.1.26, as PyTorch's CPU,
/// whose 1.5e-7 f32 rounding raises; below 0.5 the Taylor series, which keeps erf's
/// relative accuracy near 0).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A1: f32 = 0.254_829_6;
    const A2: f32 = -0.284_496_74;
    const A3: f32 = 1.421_413_7;
    const A4: f32 = -1.453_152;
    const A5: f32 = 1.061_405_4;
    let a = x.abs();
    let t = 1.0 / (P * a + 1.0);
    let poly = (((A5 * t + A4) * t + A3) * t + A2) * t + A1;
    let far = 1.0 - poly * t * exp(-a * a);
    // Near 0, where 1 - (a value near 1) keeps few digits in f32, erf's Taylor series
    // (2/sqrt(pi)) (x - x^3/3 + x^5/10 - x^7/42 + x^9/216 - x^11/1320): within 3e-8 below
    // 0.5. Both are computed and one chosen, which vectorises as a blend.
    let z = a * a;
    let series = std::f32::consts::FRAC_2_SQRT_PI
        * a
        * (1.0 + z * (-1.0 / 3.0 + z * (0.1 + z * (-1.0 / 42.0 + z * (1.0 / 216.0 - z / 1320.0)))));
    let y = if a < 0.5 { series } else { far };
    y.copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between `a` and the f64 `exact` rounded to f32.
    fn ulps(a: f32, exact: f64) -> i64 {
        let b = exact as f32;
        (a.to_bits() as i64 - b.to_bits() as i64).abs()
    }

    #[test]
    fn exp_is_within_two_ulp_of_the_exact_value() {
        let mut worst = 0;
        let mut x = -87.0f32;
        while x < 88.3 {
            worst = worst.max(ulps(exp(x), (x as f64).exp()));
            x += 0.000_37;
        }
        assert!(worst <= 2, "exp is {worst} ulp off somewhere");
        assert_eq!(exp(0.0), 1.0);
        // Clamped at the ends: no infinity, no subnormal, no NaN from the bit tricks.
        assert!(exp(200.0).is_finite() && exp(-200.0) >= f32::MIN_POSITIVE && exp(-200.0) < 1e-37);
        assert!(exp(f32::NEG_INFINITY) < 1e-37);
    }

    #[test]
    fn erf_is_within_4e7_of_the_exact_value() {
        let mut worst = 0f64;
        let mut x = -6.0f32;
        while x < 6.0 {
            worst = worst.max((erf(x) as f64 - candle_core::cpu::erf::erf_f64(x as f64)).abs());
            x += 0.000_11;
        }
        assert!(worst < 4e-7, "erf is {worst:e} off somewhere");
        // Near 0, relatively close too.
        for x in [1e-6f32, 1e-3, 0.1, 0.49] {
            let exact = candle_core::cpu::erf::erf_f64(x as f64);
            assert!(((erf(x) as f64 - exact) / exact).abs() < 3e-7, "erf({x})");
        }
        assert_eq!(erf(0.0), 0.0);
        assert!(erf(-0.0).is_sign_negative() && erf(10.0) == 1.0 && erf(-10.0) == -1.0);
    }
}
