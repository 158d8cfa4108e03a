//! A run's checkpoints on disk: `checkpoints/ckpt-<step>.safetensors` (model parameters,
//! optimizer state, the best evaluation's parameters, the epoch's sample order) and beside
//! it `ckpt-<step>.json` (steps, generator positions, schedule and early-stopping state,
//! the rows written so far and the SHA-256 of the tensors). Both are written atomically
//! (temporary file, fsync, rename), the JSON last: a checkpoint whose JSON exists is whole,
//! and one whose tensors do not match their checksum is skipped for the one before it.
//! Also the trained model: `model.safetensors` and `best.safetensors`.

use super::write_atomic;
use crate::train::{Checkpoint, EvalRow};
use anyhow::{Context as _, Result, bail};
use candle_core::{Device, Tensor};
use sha2::Digest;
use std::fs;
use std::path::{Path, PathBuf};

/// What ckpt-<step>.json holds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CheckpointMeta {
    pub format: u32,
    pub step: u64,
    pub epoch: u64,
    pub samples: u64,
    pub loss_sum: f64,
    pub loss_count: u64,
    pub last_lr: f64,
    /// u128 positions, as decimal strings (JSON numbers stop at 2^53).
    pub shuffle_word_pos: String,
    pub dropout_word_pos: String,
    /// The schedule's state; NaN (a plateau with no best yet) as null.
    pub schedule_state: Vec<Option<f64>>,
    pub early_best: Option<f64>,
    pub early_wait: u64,
    pub best_row: Option<EvalRow>,
    pub final_row: Option<EvalRow>,
    pub seconds: f64,
    pub optimizer_t: i64,
    /// Bytes of metrics.csv and steps.csv that belong to the run up to this checkpoint:
    /// rows past them are trimmed on resume, never duplicated.
    pub metrics_bytes: u64,
    pub steps_bytes: u64,
    /// Bytes of the TensorBoard event file, likewise (absent in checkpoints of versions
    /// that wrote none).
    #[serde(default)]
    pub events_bytes: Option<u64>,
    /// SHA-256 of the safetensors file, hex.
    pub tensors_sha256: String,
    /// The hash of the resolved config the run trained.
    pub config_hash: String,
}

/// 2: tensors keyed by the parameters' names in PyTorch's layout; 1 (still read): by
/// position (`param.I`) in runner's layout.
const FORMAT: u32 = 2;

fn dir_of(run: &Path) -> PathBuf {
    run.join("checkpoints")
}

fn stem(step: u64) -> String {
    format!("ckpt-{step:012}")
}

fn hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The JSON and the tensors of the run's checkpoint at `step`.
pub fn paths(run: &Path, step: u64) -> (PathBuf, PathBuf) {
    let (dir, name) = (dir_of(run), stem(step));
    (dir.join(format!("{name}.json")), dir.join(format!("{name}.safetensors")))
}

/// Serialises `tensors` as safetensors bytes.
fn safetensors_bytes(tensors: &[(String, Tensor)]) -> Result<Vec<u8>> {
    let data: Vec<(&str, &Tensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    safetensors::serialize(data, None).map_err(|e| anyhow::anyhow!("cannot serialise the tensors: {e}"))
}

/// Writes `ck` into `run`'s checkpoints/ (metrics.csv, steps.csv and the event file hold
/// `bytes` of the run so far), then keeps only the latest `keep`.
pub fn write(run: &Path, ck: &Checkpoint, config_hash: &str, bytes: (u64, u64, Option<u64>), keep: u64) -> Result<()> {
    let dir = dir_of(run);
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut tensors = ck.tensors.clone();
    tensors.push(("order".into(), Tensor::from_slice(&ck.order, ck.order.len(), &Device::Cpu)?));
    let (metrics_bytes, steps_bytes, events_bytes) = bytes;
    let bytes = safetensors_bytes(&tensors)?;
    let name = stem(ck.step);
    write_atomic(&dir.join(format!("{name}.safetensors")), &bytes)?;
    let meta = CheckpointMeta {
        format: FORMAT,
        step: ck.step,
        epoch: ck.epoch,
        samples: ck.samples,
        loss_sum: ck.loss_sum,
        loss_count: ck.loss_count,
        last_lr: ck.last_lr,
        shuffle_word_pos: ck.shuffle_word_pos.to_string(),
        dropout_word_pos: ck.dropout_word_pos.to_string(),
        schedule_state: ck.schedule_state.iter().map(|v| (!v.is_nan()).then_some(*v)).collect(),
        early_best: ck.early_best,
        early_wait: ck.early_wait,
        best_row: ck.best_row,
        final_row: ck.final_row,
        seconds: ck.seconds,
        optimizer_t: ck.optimizer_t,
        metrics_bytes,
        steps_bytes,
        events_bytes,
        tensors_sha256: hex(&bytes),
        config_hash: config_hash.to_string(),
    };
    super::write_json_atomic(&dir.join(format!("{name}.json")), &meta)?;
    prune(&dir, keep)
}

/// The steps of the checkpoints in `dir` (those whose JSON exists), oldest first.
fn steps_in(dir: &Path) -> Vec<u64> {
    let mut steps: Vec<u64> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("ckpt-")?.strip_suffix(".json")?.parse().ok()
        })
        .collect();
    steps.sort_unstable();
    steps
}

/// Keeps the latest `keep` checkpoints; removes older ones and tensors without a JSON.
fn prune(dir: &Path, keep: u64) -> Result<()> {
    let steps = steps_in(dir);
    let cut = steps.len().saturating_sub(keep.max(1) as usize);
    for &s in &steps[..cut] {
        let _ = fs::remove_file(dir.join(format!("{}.json", stem(s))));
        let _ = fs::remove_file(dir.join(format!("{}.safetensors", stem(s))));
    }
    let kept: Vec<String> = steps[cut..].iter().map(|&s| stem(s)).collect();
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(s) = name.strip_suffix(".safetensors")
            && !kept.iter().any(|k| k == s)
        {
            let _ = fs::remove_file(e.path());
        }
    }
    Ok(())
}

/// A checkpoint read back, with what the run directory must be trimmed to.
pub struct Loaded {
    pub checkpoint: Checkpoint,
    pub meta: CheckpointMeta,
    /// Later checkpoints that were skipped, and why (corrupt, truncated).
    pub skipped: Vec<String>,
}

/// The latest whole checkpoint of the run in `run` that trained `config_hash` and fits
/// its files; later ones that are truncated or corrupt, or record more of metrics.csv,
/// steps.csv or the event file than the run directory holds (a truncated or damaged
/// file), are skipped and named in `skipped`. `Err` with the reasons when the run has
/// checkpoints and none can be used; `Ok(None)` when it has none.
pub fn latest(run: &Path, config_hash: &str) -> Result<Option<Loaded>, Vec<String>> {
    let dir = dir_of(run);
    let mut skipped = Vec::new();
    for step in steps_in(&dir).into_iter().rev() {
        match read(&dir, step, config_hash).and_then(|(c, meta)| fits(run, &meta).map(|()| (c, meta))) {
            Ok((checkpoint, meta)) => return Ok(Some(Loaded { checkpoint, meta, skipped })),
            Err(e) => skipped.push(format!("{}: {e:#}", stem(step))),
        }
    }
    if skipped.is_empty() { Ok(None) } else { Err(skipped) }
}

/// Whether the run directory holds at least what the checkpoint `meta` recorded of its
/// files: resuming cuts them back to those lengths, and must never pad them.
fn fits(run: &Path, meta: &CheckpointMeta) -> Result<()> {
    let size = |path: &Path| fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut files = vec![
        ("metrics.csv".to_string(), run.join("metrics.csv"), meta.metrics_bytes),
        ("steps.csv".to_string(), run.join("steps.csv"), meta.steps_bytes),
    ];
    if let (Some(events), Some(len)) = (super::tensorboard::find(run), meta.events_bytes) {
        let name = events.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        files.push((name, events, len));
    }
    for (name, path, len) in files {
        let have = size(&path);
        if have < len {
            bail!(
                "{name} holds {have} bytes, fewer than the {len} it held at this checkpoint (truncated or damaged), \
                 so resuming from it would pad the file"
            );
        }
    }
    Ok(())
}

fn read(dir: &Path, step: u64, config_hash: &str) -> Result<(Checkpoint, CheckpointMeta)> {
    let name = stem(step);
    let meta: CheckpointMeta = serde_json::from_str(&fs::read_to_string(dir.join(format!("{name}.json")))?)
        .context("its JSON does not parse")?;
    if meta.format != FORMAT && meta.format != 1 {
        bail!("format {} (this runner reads 1 and {FORMAT})", meta.format);
    }
    if meta.config_hash != config_hash {
        bail!("it belongs to another config ({})", meta.config_hash);
    }
    let bytes = fs::read(dir.join(format!("{name}.safetensors"))).context("its tensors cannot be read")?;
    if hex(&bytes) != meta.tensors_sha256 {
        bail!("its tensors do not match their checksum (truncated or corrupt)");
    }
    let mut tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)?;
    let order = tensors.remove("order").context("it has no sample order")?.to_vec1::<u32>()?;
    let pos = |s: &str| s.parse::<u128>().with_context(|| format!("bad generator position {s}"));
    let checkpoint = Checkpoint {
        step: meta.step,
        epoch: meta.epoch,
        samples: meta.samples,
        loss_sum: meta.loss_sum,
        loss_count: meta.loss_count,
        last_lr: meta.last_lr,
        shuffle_word_pos: pos(&meta.shuffle_word_pos)?,
        dropout_word_pos: pos(&meta.dropout_word_pos)?,
        schedule_state: meta.schedule_state.iter().map(|v| v.unwrap_or(f64::NAN)).collect(),
        early_best: meta.early_best,
        early_wait: meta.early_wait,
        best_row: meta.best_row,
        final_row: meta.final_row,
        seconds: meta.seconds,
        order,
        tensors: tensors.into_iter().collect(),
        optimizer_t: meta.optimizer_t,
    };
    Ok((checkpoint, meta))
}

/// Writes `params` as `<run>/<name>.safetensors`, atomically, keyed by the parameters'
/// names (PyTorch's `state_dict()` names and layout).
pub fn write_model(run: &Path, name: &str, params: &[(String, Tensor)]) -> Result<()> {
    write_atomic(&run.join(format!("{name}.safetensors")), &safetensors_bytes(params)?)
}

/// Reads `<run>/<name>.safetensors` back: every tensor by its name.
pub fn read_model(run: &Path, name: &str) -> Result<std::collections::HashMap<String, Tensor>> {
    let path = run.join(format!("{name}.safetensors"));
    let map = candle_core::safetensors::load(&path, &Device::Cpu)
        .with_context(|| format!("cannot read the weights {}", path.display()))?;
    if map.is_empty() {
        bail!("{} holds no tensors", path.display());
    }
    Ok(map)
}
