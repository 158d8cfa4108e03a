//! Forks: a run's state at a step, kept so that other runs whose first steps are the same
//! computation continue from it instead of training those steps again (a sweep's shared
//! prefixes). A snapshot is a directory holding the run's checkpoint at that step and its
//! files as they were then (metrics.csv, steps.csv and the TensorBoard events, cut at the
//! checkpoint); [`fork`] writes another run's directory from one, as that run would have
//! written it had it trained those steps itself, ready to resume from the checkpoint.

use super::checkpoints::{self, CheckpointMeta};
use super::tensorboard::{self, What};
use super::{RunDir, write_atomic};
use anyhow::{Context as _, Result, bail};
use std::fs;
use std::path::Path;

/// Copies the checkpoint of the run in `run` at `step` (one it has just written) and its
/// files as they were then into the snapshot directory `to` (written beside it, then
/// renamed: a snapshot that exists is complete, and is kept).
pub fn snapshot(run: &Path, step: u64, to: &Path) -> Result<()> {
    if to.is_dir() {
        // Its name is the hash of what it holds: kept from an earlier attempt.
        return Ok(());
    }
    let (json, tensors) = checkpoints::paths(run, step);
    let meta: CheckpointMeta =
        serde_json::from_str(&fs::read_to_string(&json).with_context(|| format!("cannot read {}", json.display()))?)
            .with_context(|| format!("{} does not parse", json.display()))?;
    let parent = to.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        to.file_name().map_or("fork".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("cannot remove {}", tmp.display()))?;
    }
    fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let head = |path: &Path, len: u64| -> Result<Vec<u8>> {
        let mut bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        if (bytes.len() as u64) < len {
            bail!("{} holds fewer bytes than its checkpoint at step {step} recorded", path.display());
        }
        bytes.truncate(len as usize);
        Ok(bytes)
    };
    write_atomic(&tmp.join("metrics.csv"), &head(&run.join("metrics.csv"), meta.metrics_bytes)?)?;
    write_atomic(&tmp.join("steps.csv"), &head(&run.join("steps.csv"), meta.steps_bytes)?)?;
    if let (Some(events), Some(len)) = (tensorboard::find(run), meta.events_bytes) {
        write_atomic(&tmp.join("events"), &head(&events, len)?)?;
    }
    write_atomic(
        &tmp.join("checkpoint.safetensors"),
        &fs::read(&tensors).with_context(|| format!("cannot read {}", tensors.display()))?,
    )?;
    write_atomic(&tmp.join("checkpoint.json"), &fs::read(&json)?)?;
    fs::rename(&tmp, to).with_context(|| format!("cannot move {} to {}", tmp.display(), to.display()))
}

/// Writes the run directory `run` (its config `config_toml`, its hyperparameters for
/// TensorBoard under `group`) from the snapshot `from`: the snapshot's rows and events,
/// and its checkpoint as this run's, from which the run then resumes. Returns the step.
pub fn fork(from: &Path, run: &Path, config_toml: &str, group: &str, hparams: &[(String, String)]) -> Result<u64> {
    let json = from.join("checkpoint.json");
    let mut meta: CheckpointMeta =
        serde_json::from_str(&fs::read_to_string(&json).with_context(|| format!("cannot read {}", json.display()))?)
            .with_context(|| format!("{} does not parse", json.display()))?;
    // A fresh directory as the run's own start writes it (a finished run of another config
    // moves to replaced/), its event file opened with this run's hyperparameters.
    let mut dir = RunDir::create(run, config_toml)?;
    dir.hparams(group, hparams)?;
    let events_path = dir.events_path().to_path_buf();
    drop(dir);
    for name in ["metrics.csv", "steps.csv"] {
        let bytes = fs::read(from.join(name)).with_context(|| format!("cannot read {}", from.join(name).display()))?;
        write_atomic(&run.join(name), &bytes)?;
    }
    // The snapshot's events but its file version and its run's hyperparameters.
    if from.join("events").exists() {
        let mut writer = tensorboard::EventWriter::reopen(&events_path, fs::metadata(&events_path)?.len())?;
        for event in tensorboard::read(&from.join("events"))? {
            if !matches!(event.what, Some(What::FileVersion(_))) && !tensorboard::is_hparams(&event) {
                writer.append(&event)?;
            }
        }
        writer.flush()?;
    }
    meta.config_hash = crate::config::hash_text(config_toml);
    meta.events_bytes = Some(fs::metadata(&events_path)?.len());
    let (to_json, to_tensors) = checkpoints::paths(run, meta.step);
    fs::create_dir_all(to_json.parent().unwrap_or(run))?;
    write_atomic(&to_tensors, &fs::read(from.join("checkpoint.safetensors"))?)?;
    super::write_json_atomic(&to_json, &meta)?;
    Ok(meta.step)
}
