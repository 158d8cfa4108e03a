//! The ten seed decays as fair, comparable variants for `schedules = "all"` in a sweep:
//! each is derived from the base rate and the run's total steps, so every decay spans the
//! whole run and ends near one hundredth of the base rate (inverse time: one tenth, since
//! its 1/(1+kt) tail would otherwise spend most of the run far below the others).

/// A parameter value of a derived schedule.
#[derive(Debug, Clone, PartialEq)]
pub enum FairValue {
    Number(f64),
    Numbers(Vec<f64>),
    Text(&'static str),
    Flag(bool),
}

/// How each seed decay is derived, in words, for `runner schedules` and the README.
pub fn fair_rule(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "piecewise_constant" => "boundaries at 50% and 75% of the run, values lr, lr/10, lr/100",
        "exponential_decay" => "decay_steps = total steps, decay_rate = 0.01 (lr/100 at the end)",
        "natural_exp_decay" => {
            "staircase: ten stairs of total/10 steps, decay_rate = ln(100)/10 (as continuous, it would equal exponential_decay)"
        }
        "polynomial_decay" => "decay_steps = total steps, end_learning_rate = lr/100, power = 1",
        "inverse_time_decay" => "decay_steps = total steps, decay_rate = 9 (lr/10 at the end)",
        "cosine_decay" => "decay_steps = total steps, alpha = 0.01",
        "cosine_decay_restarts" => "first_decay_steps = total/7, t_mul = 2 (three periods fill the run), alpha = 0.01",
        "linear_cosine_decay" => "decay_steps = total steps, TF's num_periods 0.5, alpha 0, beta 0.001",
        "noisy_linear_cosine_decay" => "decay_steps = total steps, TF's noise (variance 1, decay 0.55) and shape",
        "reduce_on_plateau" => "monitor val_loss, factor 0.5, patience 3 evaluations, min_lr = lr/100",
        _ => return None,
    })
}

/// The parameters (besides `kind`) of seed decay `kind` for base rate `lr` over `total`
/// steps; `None` for a kind that is not one of the ten.
pub fn fair_params(kind: &str, lr: f64, total: u64) -> Option<Vec<(&'static str, FairValue)>> {
    use FairValue::{Number as N, Numbers};
    let t = total.max(1) as f64;
    let whole = |n: f64| n.round().max(1.0);
    let mut p = vec![("learning_rate", N(lr))];
    match kind {
        "piecewise_constant" => {
            p.clear();
            let b1 = whole(t * 0.5);
            let b2 = whole(t * 0.75).max(b1 + 1.0);
            p.push(("boundaries", Numbers(vec![b1, b2])));
            p.push(("values", Numbers(vec![lr, lr / 10.0, lr / 100.0])));
        }
        "exponential_decay" => p.extend([("decay_steps", N(t)), ("decay_rate", N(0.01))]),
        "natural_exp_decay" => p.extend([
            ("decay_steps", N(whole(t / 10.0))),
            ("decay_rate", N(100f64.ln() / 10.0)),
            ("staircase", FairValue::Flag(true)),
        ]),
        "polynomial_decay" => {
            p.extend([("decay_steps", N(t)), ("end_learning_rate", N(lr / 100.0)), ("power", N(1.0))])
        }
        "inverse_time_decay" => p.extend([("decay_steps", N(t)), ("decay_rate", N(9.0))]),
        "cosine_decay" => p.extend([("decay_steps", N(t)), ("alpha", N(0.01))]),
        "cosine_decay_restarts" => {
            p.extend([("first_decay_steps", N(whole(t / 7.0))), ("t_mul", N(2.0)), ("alpha", N(0.01))])
        }
        "linear_cosine_decay" | "noisy_linear_cosine_decay" => p.push(("decay_steps", N(t))),
        "reduce_on_plateau" => p.extend([
            ("monitor", FairValue::Text("val_loss")),
            ("factor", N(0.5)),
            ("patience", N(3.0)),
            ("min_lr", N(lr / 100.0)),
        ]),
        _ => return None,
    }
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::SEED_DECAYS;

    #[test]
    fn every_seed_decay_has_a_fair_variant_and_a_rule() {
        for kind in SEED_DECAYS {
            assert!(fair_params(kind, 0.1, 1000).is_some(), "{kind}");
            assert!(fair_rule(kind).is_some(), "{kind}");
        }
        assert!(fair_params("one_cycle", 0.1, 1000).is_none());
    }

    #[test]
    fn restarts_fill_the_run_with_three_periods() {
        let p = fair_params("cosine_decay_restarts", 0.1, 1400).unwrap();
        assert!(p.contains(&("first_decay_steps", FairValue::Number(200.0))));
    }
}
