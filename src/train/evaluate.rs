//! Evaluations: a model's loss and accuracy on the validation part (a text data set's
//! fixed validation windows), as rows of metrics.csv during training ([`Evaluator`]) and
//! for saved weights ([`evaluate_params`]).

use super::state::{Prepared, RunState};
use super::{EvalRow, RunSpec};
use crate::data::{Dataset, Split, Task};
use crate::model::network::load_state_dict;
use crate::model::{Mode, Network, accuracy};
use anyhow::Result;
use candle_core::Tensor;
use std::collections::HashMap;
use std::sync::Arc;

/// What a run's evaluations read: the validation part, or a text data set's windows at
/// fixed starts (the same for every evaluation and run).
pub struct Evaluator<'a> {
    data: &'a Dataset,
    starts: Option<Vec<u32>>,
    batch: usize,
}

impl<'a> Evaluator<'a> {
    pub fn new(spec: &RunSpec, data: &'a Dataset) -> Evaluator<'a> {
        let starts = data.text.as_ref().map(|text| text.evaluation_starts(spec.train.eval_windows()));
        Evaluator { data, starts, batch: spec.train.batch_size as usize }
    }

    /// The metrics of `model` on the validation part (its windows, for text).
    pub fn evaluate(&self, model: &dyn Network) -> Result<Evaluation> {
        let data = self.data;
        let (val_loss, val_accuracy, samples) = match (&data.text, &self.starts) {
            (Some(text), Some(starts)) => {
                let (loss, accuracy) = evaluate_text(model, data.device(), text, starts, self.batch)?;
                (loss, Some(accuracy), starts.len())
            }
            _ => {
                let (loss, accuracy) = evaluate(model, &data.validation, data.task)?;
                (loss, accuracy, data.validation.len)
            }
        };
        let (val_bits_per_char, val_bits_per_byte, val_perplexity) =
            language_metrics(val_loss, data.text.as_ref().map(|t| t.vocab.tokens));
        Ok(Evaluation {
            val_loss,
            val_accuracy: val_accuracy.filter(|_| data.task == Task::Classification),
            val_rmse: (data.task == Task::Regression).then(|| val_loss.sqrt()),
            val_bits_per_char,
            val_bits_per_byte,
            val_perplexity,
            samples,
        })
    }

    /// The evaluation row of `model` at the position of `state`, `seconds` trained in
    /// this process; the training losses summed since the last evaluation start again.
    pub fn row(&self, model: &dyn Network, state: &mut RunState, seconds: f64) -> Result<EvalRow> {
        let e = self.evaluate(model)?;
        let row = EvalRow {
            epoch: state.epoch,
            step: state.step,
            lr: state.last_lr,
            train_loss: if state.loss_count > 0 { state.loss_sum / state.loss_count as f64 } else { f64::NAN },
            val_loss: e.val_loss,
            val_accuracy: e.val_accuracy,
            val_rmse: e.val_rmse,
            val_bits_per_char: e.val_bits_per_char,
            val_bits_per_byte: e.val_bits_per_byte,
            val_perplexity: e.val_perplexity,
            seconds: state.seconds_before + seconds,
        };
        (state.loss_sum, state.loss_count) = (0.0, 0);
        Ok(row)
    }

    /// What each evaluation reads: validation samples (a text data set: tokens, in its
    /// fixed windows).
    pub fn samples(&self) -> usize {
        match (&self.data.text, &self.starts) {
            (Some(text), Some(starts)) => starts.len() * text.context,
            _ => self.data.validation.len,
        }
    }
}

/// A language model's (bits per char, bits per byte, perplexity) for a validation loss
/// `val_loss` in nats per token of `tokens`: bits per char or per byte by the tokens; none
/// of them for other data sets.
fn language_metrics(
    val_loss: f64,
    tokens: Option<crate::data::text::Tokens>,
) -> (Option<f64>, Option<f64>, Option<f64>) {
    use crate::data::text::Tokens;
    let bits = val_loss / std::f64::consts::LN_2;
    (
        (tokens == Some(Tokens::Char)).then_some(bits),
        (tokens == Some(Tokens::Byte)).then_some(bits),
        tokens.map(|_| val_loss.exp()),
    )
}

/// The metrics of a set of weights on a data set's validation part.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Evaluation {
    pub val_loss: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_rmse: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_bits_per_char: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_bits_per_byte: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_perplexity: Option<f64>,
    /// Validation samples read (a text data set: windows).
    pub samples: usize,
}

/// Evaluates the model `spec` describes with the tensors `params` (named as
/// model.safetensors holds them; see [`load_state_dict`]) on `data`'s validation part,
/// exactly as training evaluates; `what` names the weights in errors.
pub fn evaluate_params(
    spec: &RunSpec,
    data: &Arc<Dataset>,
    params: &HashMap<String, Tensor>,
    what: &str,
) -> Result<Evaluation> {
    let run = Prepared::new(spec.clone(), data.clone()).map_err(anyhow::Error::msg)?;
    let (device, on_device) = run.open_device()?;
    let model = run.build_model(&device)?;
    load_state_dict(&*model, params, what, &data.name)?;
    Evaluator::new(spec, &on_device).evaluate(&*model)
}

/// Mean loss per token and the fraction of tokens predicted right (the largest logit) over
/// the text's validation windows at `starts`, in batches of `batch`, without dropout.
fn evaluate_text(
    model: &dyn Network,
    device: &candle_core::Device,
    text: &crate::data::text::TextData,
    starts: &[u32],
    batch: usize,
) -> Result<(f64, f64)> {
    let (mut loss, mut correct, mut tokens) = (0f64, 0f64, 0usize);
    for chunk in starts.chunks(batch.max(1)) {
        let (x, y) = text.batch(crate::data::text::Part::Validation, chunk, device)?;
        let out = model.forward(&x, Mode::Eval)?.detach();
        let logp = candle_nn::ops::log_softmax(&out, 1)?;
        let picked = logp.gather(&y.unsqueeze(1)?, 1)?.neg()?;
        loss += picked.flatten_all()?.to_vec1::<f32>()?.iter().map(|&v| v as f64).sum::<f64>();
        correct += accuracy(&out, &y)? * y.dim(0)? as f64;
        tokens += y.dim(0)?;
    }
    let n = tokens.max(1) as f64;
    Ok((loss / n, correct / n))
}

/// Mean loss (and accuracy for classification) over `split`, without dropout, in the
/// pieces the model computes its outputs in.
fn evaluate(model: &dyn Network, split: &Split, task: Task) -> Result<(f64, Option<f64>)> {
    let (mut loss, mut correct) = (0f64, 0f64);
    let mut start = 0;
    model.outputs(&split.x, &mut |out: Tensor| {
        let len = out.dim(0)?;
        let y = split.y.narrow(0, start, len)?;
        // Per-sample losses summed in f64, as the training loss is averaged: a piece's f32
        // mean would carry f32 rounding into the written value.
        let per_sample = if task == Task::Classification {
            let logp = candle_nn::ops::log_softmax(&out, 1)?;
            logp.gather(&y.unsqueeze(1)?, 1)?.neg()?
        } else {
            (&out - &y)?.sqr()?
        };
        loss += per_sample.flatten_all()?.to_vec1::<f32>()?.iter().map(|&v| v as f64).sum::<f64>()
            / per_sample.dim(1)? as f64;
        if task == Task::Classification {
            correct += accuracy(&out, &y)? * len as f64;
        }
        start += len;
        Ok(())
    })?;
    let n = split.len.max(1) as f64;
    Ok((loss / n, (task == Task::Classification).then_some(correct / n)))
}
