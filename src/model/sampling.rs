//! Text from a language model: tokens drawn one at a time from the model's prediction for
//! the next position, with a temperature and an optional top-k cut, seeded.

use super::{Mode, Network};
use anyhow::{Result, bail};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How to draw tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Tokens to draw.
    pub tokens: usize,
    /// Logits are divided by it: below 1 sharper, above 1 flatter; 0 takes the most likely
    /// token every time.
    pub temperature: f64,
    /// Draw among the `k` most likely tokens only.
    pub top_k: Option<usize>,
    pub seed: u64,
}

/// `prompt` continued by `how.tokens` tokens; the model reads at most the last `context`.
pub fn generate(model: &dyn Network, context: usize, prompt: &[u32], how: &Sampling) -> Result<Vec<u32>> {
    let mut out = prompt.to_vec();
    generate_each(model, context, prompt, how, &mut |t| {
        out.push(t);
        Ok(true)
    })?;
    Ok(out)
}

/// [`generate`], each new token handed to `each` as it is drawn (the text streams); it
/// stops early when `each` returns false (nobody reads the text any more). Only the last
/// `context` tokens are kept: memory does not grow with `how.tokens`.
pub fn generate_each(
    model: &dyn Network,
    context: usize,
    prompt: &[u32],
    how: &Sampling,
    each: &mut dyn FnMut(u32) -> Result<bool>,
) -> Result<()> {
    if prompt.is_empty() {
        bail!("the prompt is empty: a language model continues at least one token");
    }
    if !(how.temperature >= 0.0 && how.temperature.is_finite()) {
        bail!("the temperature is {}; it must be 0 or more", how.temperature);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(how.seed);
    let device = model.named().first().map_or(Device::Cpu, |n| n.var.device().clone());
    let mut window: std::collections::VecDeque<u32> =
        prompt[prompt.len().saturating_sub(context)..].iter().copied().collect();
    for _ in 0..how.tokens {
        let tokens: Vec<u32> = window.iter().copied().collect();
        let x = Tensor::from_slice(&tokens, (1, tokens.len()), &device)?;
        let logits = model.forward(&x, Mode::Eval)?.detach();
        let last = logits.get(tokens.len() - 1)?.to_vec1::<f32>()?;
        let next = draw(&last, how, &mut rng) as u32;
        if window.len() == context.max(1) {
            window.pop_front();
        }
        window.push_back(next);
        if !each(next)? {
            break;
        }
    }
    Ok(())
}

/// A token index from `logits` as `how` says.
fn draw(logits: &[f32], how: &Sampling, rng: &mut ChaCha8Rng) -> usize {
    let best = || logits.iter().enumerate().fold(0, |b, (i, &v)| if v > logits[b] { i } else { b });
    if how.temperature == 0.0 {
        return best();
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    if let Some(k) = how.top_k.filter(|&k| k < logits.len()) {
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        order.truncate(k.max(1));
    }
    let max = order.iter().map(|&i| logits[i] as f64).fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = order.iter().map(|&i| ((logits[i] as f64 - max) / how.temperature).exp()).collect();
    let mut r = rng.random::<f64>() * weights.iter().sum::<f64>();
    for (&i, w) in order.iter().zip(&weights) {
        if r < *w {
            return i;
        }
        r -= w;
    }
    *order.last().unwrap_or(&0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn how(temperature: f64, top_k: Option<usize>) -> Sampling {
        Sampling { tokens: 1, temperature, top_k, seed: 1 }
    }

    #[test]
    fn temperature_zero_is_the_most_likely_token() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert_eq!(draw(&[0.1, 2.0, -1.0, 1.9], &how(0.0, None), &mut rng), 1);
    }

    #[test]
    fn top_k_draws_only_among_the_k_most_likely() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let logits = [0.0f32, 1.0, 0.5, 0.9, -3.0];
        let mut seen = [0usize; 5];
        for _ in 0..2000 {
            seen[draw(&logits, &how(1.0, Some(2)), &mut rng)] += 1;
        }
        assert_eq!((seen[0], seen[2], seen[4]), (0, 0, 0), "{seen:?}");
        // exp(1) : exp(0.9), about 52.5% : 47.5%.
        assert!((seen[1] as f64 / 2000.0 - 0.525).abs() < 0.04, "{seen:?}");
    }

    #[test]
    fn draws_follow_the_softmax() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let logits = [0.0f32, (3.0f32).ln()];
        let ones = (0..4000).filter(|_| draw(&logits, &how(1.0, None), &mut rng) == 1).count();
        assert!((ones as f64 / 4000.0 - 0.75).abs() < 0.03, "{ones}");
    }
}
