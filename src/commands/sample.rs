//! `runner sample RUN_DIR [--prompt TEXT] [--tokens N] [--temperature T] [--top-k K]
//! [--seed S] [--weights model|best]`: text from a language model run's saved weights,
//! printed to stdout (nothing is written).

use super::print;
use crate::cli::SampleArgs;
use crate::config;
use crate::data::SourceSpec;
use crate::data::text::Vocab;
use crate::error::input_error;
use crate::model::ModelSpec;
use crate::model::network::load_state_dict;
use crate::model::sampling::{Sampling, generate};
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
    let run = config::load(&config_path)?;
    let (SourceSpec::Text { context, .. }, ModelSpec::Transformer { .. }) = (&run.dataset.source, &run.model) else {
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
    let how = Sampling { tokens: args.tokens, temperature: args.temperature, top_k: args.top_k, seed: args.seed };
    let tokens = generate(&*model, *context as usize, &prompt, &how)?;
    let mut text = vocab.decode(&tokens);
    if !text.ends_with('\n') {
        text.push('\n');
    }
    print(&text)?;
    Ok(())
}
