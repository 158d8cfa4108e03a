//! Whether a classifier's run collapsed: its validation accuracy fell back to chance after
//! having been well above it, or its last evaluations sit at chance with a loss no better
//! than the uniform prediction's ln(classes) (every output alike: dead ReLUs, a rate too
//! high). Such a run
//! ends "completed" with numbers that rank it last, but the reader should be told it is
//! not a slow learner: it broke. Distinct from diverged (a loss that is not finite).

use crate::train::EvalRow;

/// Why the run whose evaluations are `rows` collapsed, or `None`. `classes` is the number
/// of classes (chance accuracy 1 / classes, uniform loss ln(classes)).
pub fn collapse(rows: &[EvalRow], classes: usize) -> Option<String> {
    let last = rows.last()?;
    if classes < 2 {
        return None;
    }
    let chance = 1.0 / classes as f64;
    let final_accuracy = last.val_accuracy?;
    // At chance: within 5% of the way from chance to perfect.
    let near_chance = final_accuracy <= chance + 0.05 * (1.0 - chance);
    if !near_chance {
        return None;
    }
    let (peak, at) = rows
        .iter()
        .filter_map(|r| r.val_accuracy.map(|a| (a, r.epoch)))
        .fold((f64::NEG_INFINITY, 0), |best, (a, e)| if a > best.0 { (a, e) } else { best });
    // Well above chance once: a quarter of the way from chance to perfect.
    if peak >= chance + 0.25 * (1.0 - chance) {
        return Some(format!(
            "validation accuracy fell back to chance: {final_accuracy:.4} at the end after {peak:.4} at epoch {at} \
             (chance is {chance:.4} with {classes} classes)"
        ));
    }
    // Stuck: the last evaluations all at chance with a loss no better than predicting
    // every class alike (a network that outputs the same for every input scores ln(C) or
    // worse on balanced classes).
    let uniform = (classes as f64).ln();
    let recent: Vec<&EvalRow> = rows.iter().rev().take(3).collect();
    let stuck = recent.len() >= 2
        && recent.iter().all(|r| {
            r.val_loss >= 0.99 * uniform && r.val_accuracy.is_some_and(|a| a <= chance + 0.05 * (1.0 - chance))
        });
    if stuck {
        return Some(format!(
            "validation loss at or above the uniform prediction's ln({classes}) = {uniform:.4} ({:.4} last) with accuracy at \
             chance ({final_accuracy:.4}) over the last {} evaluations: the network outputs about the same for every input",
            last.val_loss,
            recent.len()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(epoch: u64, val_loss: f64, accuracy: f64) -> EvalRow {
        EvalRow {
            epoch,
            step: epoch * 10,
            lr: 0.1,
            train_loss: val_loss,
            val_loss,
            val_accuracy: Some(accuracy),
            val_rmse: None,
            val_bits_per_char: None,
            val_bits_per_byte: None,
            val_perplexity: None,
            seconds: 0.0,
        }
    }

    #[test]
    fn a_fall_back_to_chance_after_learning_is_a_collapse() {
        let u = std::f64::consts::LN_10;
        let rows = [row(1, 0.5, 0.85), row(2, 0.3, 0.94), row(3, u, 0.1), row(4, u, 0.0972)];
        let why = collapse(&rows, 10).unwrap();
        assert!(
            why.starts_with("validation accuracy fell back to chance: 0.0972 at the end after 0.9400 at epoch 2"),
            "{why}"
        );
    }

    #[test]
    fn a_loss_stuck_at_ln_classes_is_a_collapse_even_without_learning_first() {
        let u = 10f64.ln();
        let why = collapse(&[row(1, u + 0.001, 0.11), row(2, u + 0.05, 0.1), row(3, u - 0.002, 0.1)], 10).unwrap();
        assert!(why.contains("at or above the uniform prediction's ln(10) = 2.3026 (2.3006 last)"), "{why}");
        assert!(why.contains("over the last 3 evaluations"), "{why}");
    }

    #[test]
    fn slow_learners_and_good_runs_are_not() {
        let u = 10f64.ln();
        // Still near chance but the loss moves: learning slowly.
        assert_eq!(collapse(&[row(1, 2.2, 0.12), row(2, 2.0, 0.14)], 10), None);
        // A good run, and one that dipped and recovered.
        assert_eq!(collapse(&[row(1, 0.5, 0.8), row(2, 0.3, 0.9)], 10), None);
        assert_eq!(collapse(&[row(1, 0.5, 0.8), row(2, u, 0.1), row(3, 0.4, 0.88)], 10), None);
        // One evaluation at ln(10) is not yet flat; regression has no accuracy.
        assert_eq!(collapse(&[row(1, u, 0.1)], 10), None);
        let mut r = row(1, 1.0, 0.0);
        r.val_accuracy = None;
        assert_eq!(collapse(&[r], 10), None);
    }
}
