//! `runner sample RUN_DIR [--prompt TEXT] [--tokens N] [--temperature T] [--top-k K]
//! [--seed S] [--weights model|best]`: text from a language model run's saved weights,
//! printed to stdout (nothing is written).

use crate::cli::SampleArgs;
use crate::data::SourceSpec;
use crate::data::text::Vocab;
use crate::error::input_error;
use crate::model::network::load_state_dict;
use crate::model::sampling::{Sampling, generate_each};
use crate::plan;
use anyhow::{Context as _, Result};

pub fn run(args: &SampleArgs) -> Result<()> {
    let dir = &args.dir;
    let config_path = dir.join("config.toml");
    if !config_path.is_file() {
        return Err(input_error(format!(
            "{} has no config.toml; give a language model run's directory (experiments/NAME/RUN)",
            dir.display()
        )));
    }
    let run = plan::load(&config_path)?;
    let (SourceSpec::Text { context, .. }, true) = (&run.dataset.source, run.model.reads_tokens()) else {
        return Err(input_error(format!(
            "{} is not a language model run: sampling needs a transformer trained on a text data set ([dataset] kind = \"text\")",
            dir.display()
        )));
    };
    let vocab_path = dir.join("vocab.json");
    let vocab: Vocab = serde_json::from_str(&std::fs::read_to_string(&vocab_path).map_err(|e| {
        input_error(format!("cannot read {}: {e} (written when the run starts)", vocab_path.display()))
    })?)
    .with_context(|| format!("{} is not a vocabulary runner wrote", vocab_path.display()))?;
    let (name, params) = super::saved_weights(dir, args.weights)?;
    let spec = run.run_spec();
    let device = args.device.unwrap_or_default();
    crate::train::check_devices(&[device]).map_err(|e| input_error(format!("--device: {e}")))?;
    let device = device.open().map_err(|e| input_error(format!("--device {device}: {e}")))?;
    let t = &spec.train;
    let model = crate::model::build(&spec.model, *context as usize, vocab.len(), None, t.seed, t.kernels, &device)?;
    load_state_dict(&*model, &params, &format!("{name}.safetensors in {}", dir.display()), "its vocabulary")
        .context("its config.toml changed since it trained?")?;
    let prompt = vocab.encode(&args.prompt).map_err(|why| {
        input_error(format!("--prompt: {why} ({}); write the prompt with those characters", vocab_path.display()))
    })?;
    if prompt.is_empty() {
        return Err(input_error(
            "--prompt is empty: give at least one character to continue (the default is a newline)",
        ));
    }
    if !(args.temperature >= 0.0 && args.temperature.is_finite()) {
        return Err(input_error(format!("--temperature {}: must be 0 or more", args.temperature)));
    }
    if args.top_k == Some(0) {
        return Err(input_error("--top-k 0: must be at least 1"));
    }
    let how =
        Sampling { tokens: args.tokens as usize, temperature: args.temperature, top_k: args.top_k, seed: args.seed };
    // The text streams out as it is drawn: the prompt, then each token (a byte token once
    // it completes a character), then a newline if the text did not end with one. A reader
    // that goes away (`| head`) ends the sampling; nothing else depends on it.
    let mut out = Stream { pending: Vec::new(), last: None, open: true };
    out.write(&vocab, &prompt);
    generate_each(&*model, *context as usize, &prompt, &how, &mut |token| {
        out.write(&vocab, &[token]);
        Ok(out.open)
    })?;
    out.finish();
    Ok(())
}

/// Decoded text written to stdout as tokens arrive.
struct Stream {
    /// Bytes of a character not yet complete (byte tokens).
    pending: Vec<u8>,
    /// The last character written.
    last: Option<char>,
    /// Whether stdout still takes text.
    open: bool,
}

impl Stream {
    fn write(&mut self, vocab: &Vocab, tokens: &[u32]) {
        let text = match vocab.tokens {
            crate::data::text::Tokens::Char => vocab.decode(tokens),
            crate::data::text::Tokens::Byte => {
                self.pending.extend(tokens.iter().map(|&t| t as u8));
                self.complete(false)
            }
        };
        self.emit(&text);
    }

    /// The pending bytes that make whole characters (invalid ones as U+FFFD, as
    /// `String::from_utf8_lossy`); at the end, all of them.
    fn complete(&mut self, end: bool) -> String {
        let mut text = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    text.push_str(s);
                    self.pending.clear();
                    return text;
                }
                Err(e) => {
                    let good = e.valid_up_to();
                    text.push_str(std::str::from_utf8(&self.pending[..good]).expect("valid up to here"));
                    match e.error_len() {
                        Some(bad) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..good + bad);
                        }
                        None if end => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            self.pending.clear();
                            return text;
                        }
                        None => {
                            self.pending.drain(..good);
                            return text;
                        }
                    }
                }
            }
        }
    }

    fn emit(&mut self, text: &str) {
        if text.is_empty() || !self.open {
            return;
        }
        self.last = text.chars().last();
        self.open = super::write_out(text).is_ok();
    }

    fn finish(&mut self) {
        let rest = self.complete(true);
        self.emit(&rest);
        if self.last != Some('\n') {
            self.emit("\n");
        }
    }
}
