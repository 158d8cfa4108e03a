//! `runner eval RUN_DIR [--data CONFIG] [--weights model|best]`: a run's saved weights on
//! its validation data (or another config's data set); prints the metrics and writes them
//! to `eval.json` (`eval-<config stem>.json` with --data) in the run's directory.

use super::print;
use crate::cli::EvalArgs;
use crate::data;
use crate::error::input_error;
use crate::plan;
use crate::store::write_json_atomic;
use crate::train;
use anyhow::Result;

pub fn run(args: &EvalArgs) -> Result<()> {
    let dir = &args.dir;
    let config_path = dir.join("config.toml");
    if !config_path.is_file() {
        return Err(input_error(format!(
            "{} has no config.toml; give a run's directory (experiments/NAME/RUN)",
            dir.display()
        )));
    }
    let run = plan::load(&config_path)?;
    let (name, params) = super::saved_weights(dir, args.weights)?;
    let (dataset, label, file) = match &args.data {
        None => (run.dataset.clone(), "its validation data".to_string(), "eval.json".to_string()),
        Some(path) => {
            let other = plan::load_experiment(path, &mut |_| Ok(1))?;
            let spec = other.runs[0].config.dataset.clone();
            let stem = path.file_stem().map_or_else(|| "data".into(), |s| s.to_string_lossy().into_owned());
            (spec, format!("the data of {}", path.display()), format!("eval-{stem}.json"))
        }
    };
    let data = data::Cache::default().get(&dataset)?;
    let what = format!("{}", dir.join(format!("{name}.safetensors")).display());
    let mut spec = run.run_spec();
    spec.train.device = args.device.unwrap_or_default();
    train::check_devices(&[spec.train.device]).map_err(|e| input_error(format!("--device: {e}")))?;
    let result = train::evaluate_params(&spec, &data, &params, &what)?;
    let mut text = format!("{}: {name}.safetensors on {label} ({} samples)\n", dir.display(), result.samples);
    text.push_str(&format!("val_loss      {}\n", result.val_loss));
    if let Some(a) = result.val_accuracy {
        text.push_str(&format!("val_accuracy  {a}\n"));
    }
    if let Some(r) = result.val_rmse {
        text.push_str(&format!("val_rmse      {r}\n"));
    }
    print(&text)?;
    write_json_atomic(&dir.join(&file), &result)?;
    Ok(())
}
