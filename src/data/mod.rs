//! Data sets: loaded once into tensors and shared read-only by every run that uses them.
//!
//! A source produces a plain [`Table`]; [`prepare`] splits it (seeded, stratified for
//! classes), standardises features with the training part's statistics only, and turns both
//! parts into candle tensors.

mod arrays;
mod augment;
mod cifar;
mod csv_file;
mod digits;
mod huge_pages;
mod idx;
mod image_folder;
mod spec;
mod split;
mod synthetic;
pub mod text;

pub use arrays::Layout;
pub use augment::{AugmentSpec, augment_rows, step_rng};
pub use cifar::Cifar;
pub use image_folder::{Color, ImageFolderSpec, Resample, Unreadable};
pub use spec::{CifarLabel, DatasetSpec, SOURCES, Scale, SourceSpec, Task};

use crate::error::input_error;
use anyhow::Result;
use candle_core::{Device, Tensor};
use std::sync::Arc;

/// Rows of features and one target per row, before splitting.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Row-major features, `rows * cols` values.
    pub x: Vec<f32>,
    pub cols: usize,
    /// Class index (as f32) for classification, the value for regression.
    pub y: Vec<f32>,
}

impl Table {
    pub fn rows(&self) -> usize {
        self.y.len()
    }
}

/// One part of a data set as tensors: features `(n, d)` f32 and targets (`(n,)` u32 class
/// indices or `(n, 1)` f32 values).
#[derive(Debug, Clone)]
pub struct Split {
    pub x: Tensor,
    pub y: Tensor,
    pub len: usize,
}

/// A prepared data set, shared by reference between runs.
#[derive(Debug)]
pub struct Dataset {
    pub name: String,
    pub task: Task,
    pub features: usize,
    /// Number of classes (1 for regression).
    pub classes: usize,
    /// (channels, height, width) when the features are an image, for convolutional models.
    pub image: Option<(usize, usize, usize)>,
    pub train: Split,
    pub validation: Split,
    /// A text data set's tokens (`kind = "text"`): samples are windows of them, `train`
    /// and `validation` hold the token sequences and their window counts.
    pub text: Option<text::TextData>,
}

impl Split {
    /// The same samples on `device`.
    pub fn to_device(&self, device: &Device) -> Result<Split> {
        Ok(Split { x: self.x.to_device(device)?, y: self.y.to_device(device)?, len: self.len })
    }
}

impl Dataset {
    /// The device its tensors are on.
    pub fn device(&self) -> &Device {
        self.train.x.device()
    }

    /// The same data set with its tensors on `device` (one copy, made when a run starts
    /// there; batches are then gathered on the device).
    pub fn to_device(&self, device: &Device) -> Result<Dataset> {
        Ok(Dataset {
            name: self.name.clone(),
            task: self.task,
            features: self.features,
            classes: self.classes,
            image: self.image,
            train: self.train.to_device(device)?,
            validation: self.validation.to_device(device)?,
            text: self.text.clone(),
        })
    }
}

/// The most classes a classification data set may have (one output each): a label of a
/// million is far more likely a regression target or a wrong column than a class.
pub const MAX_CLASSES: usize = 10_000;

/// Loads and prepares the data set `spec` describes (its `seed` drives generation and splitting).
pub fn prepare(spec: &DatasetSpec) -> Result<Arc<Dataset>> {
    let seed = spec.seed;
    if let SourceSpec::Text { path, tokens, context } = &spec.source {
        return prepare_text(path.as_deref(), *tokens, *context as usize, spec);
    }
    let loaded = spec.source.load(seed)?;
    let task = loaded.task.unwrap_or_else(|| spec.source.task());
    let name = spec.source.kind();
    let rows = loaded.table.rows();
    if rows == 0 {
        return Err(input_error(format!("the {name} data set holds no samples")));
    }
    if loaded.table.cols == 0 {
        return Err(input_error(format!("the {name} data set's samples have no features")));
    }
    let classes = match task {
        Task::Classification => {
            let tables = std::iter::once(&loaded.table).chain(loaded.validation.as_ref());
            let max = tables.flat_map(|t| t.y.iter()).fold(0f32, |m, &v| m.max(v));
            if max >= MAX_CLASSES as f32 {
                return Err(input_error(format!(
                    "the {name} data set has a class label of {max}; labels are class indices 0 to {} (one output each). \
                     For a numeric target use task = \"regression\"",
                    MAX_CLASSES - 1
                )));
            }
            let classes = max as usize + 1;
            let present = loaded.table.y.iter().fold(vec![false; classes], |mut seen, &v| {
                seen[v as usize] = true;
                seen
            });
            if present.iter().filter(|p| **p).count() < 2 {
                return Err(input_error(format!(
                    "the {name} data set holds only one class ({max}); a classifier needs at least two"
                )));
            }
            classes
        }
        Task::Regression => 1,
    };
    let (mut train, mut validation) = match loaded.validation {
        Some(v) => (loaded.table, v),
        None => split::split(loaded.table, spec.validation_split, task, seed),
    };
    if train.rows() == 0 || validation.rows() == 0 {
        let (empty, other) = if train.rows() == 0 { ("training", "validation") } else { ("validation", "training") };
        return Err(input_error(format!(
            "the {name} data set's {empty} part is empty: its {rows} sample{} with validation_split = {} leave none for {empty} \
             ({} {other}); use more samples or {} validation_split",
            if rows == 1 { "" } else { "s" },
            spec.validation_split,
            if empty == "training" { validation.rows() } else { train.rows() },
            if empty == "training" { "a smaller" } else { "a larger" }
        )));
    }
    let pixel_max = loaded.pixel_max.or(spec.source.pixel_max());
    let scale = match spec.scale {
        Scale::Auto if pixel_max.is_some() => Scale::Pixels,
        Scale::Auto if loaded.image.is_some() => Scale::Channels,
        Scale::Auto => Scale::Standardize,
        Scale::Pixels if pixel_max.is_none() => {
            return Err(input_error(format!(
                "scale = \"pixels\" divides by the largest value a pixel takes, which the {name} data set's features do not \
                 say (u8 arrays: 255); write scale = \"none\" if they are in [0, 1] already, or \"channels\" / \"standardize\""
            )));
        }
        s => s,
    };
    match scale {
        Scale::Standardize => split::standardize(&mut train, &mut validation),
        Scale::Channels => {
            let channels = loaded.image.map_or(1, |(c, _, _)| c);
            split::standardize_channels(&mut train, &mut validation, channels);
        }
        Scale::Pixels => {
            let max = pixel_max.unwrap_or(1.0);
            for v in train.x.iter_mut().chain(validation.x.iter_mut()) {
                *v /= max;
            }
        }
        Scale::None | Scale::Auto => {}
    }
    Ok(Arc::new(Dataset {
        name: spec.source.kind().to_string(),
        task,
        classes,
        image: loaded.image,
        features: train.cols,
        train: to_tensors(train, task)?,
        validation: to_tensors(validation, task)?,
        text: None,
    }))
}

/// A text data set: `features` is the context (a window's tokens), `classes` the
/// vocabulary; each part's split holds its tokens (x and y alike) and its window count.
fn prepare_text(
    path: Option<&std::path::Path>,
    tokens: text::Tokens,
    context: usize,
    spec: &DatasetSpec,
) -> Result<Arc<Dataset>> {
    let name = path.map_or_else(|| "the embedded Shakespeare text".to_string(), |p| p.display().to_string());
    let raw = text::read(path)?;
    let data = text::prepare(&raw, &name, tokens, context, spec.validation_split, spec.seed)?;
    drop(raw);
    let split = |part: text::Part, tokens: &[u32]| -> Result<Split> {
        let t = Tensor::from_slice(tokens, tokens.len(), &Device::Cpu)?;
        Ok(Split { x: t.clone(), y: t, len: data.windows(part) })
    };
    Ok(Arc::new(Dataset {
        name: "text".into(),
        task: Task::Classification,
        features: context,
        classes: data.vocab.len(),
        image: None,
        train: split(text::Part::Train, &data.train)?,
        validation: split(text::Part::Validation, &data.validation)?,
        text: Some(data),
    }))
}

/// A source's output: the table, an explicit validation table if it has one, image shape.
pub struct Loaded {
    pub table: Table,
    pub validation: Option<Table>,
    pub image: Option<(usize, usize, usize)>,
    /// The task where the data decide it (NumPy targets: integers or floats).
    pub task: Option<Task>,
    /// The largest value a pixel takes where the data say it (u8 arrays: 255).
    pub pixel_max: Option<f32>,
}

impl Loaded {
    pub fn new(table: Table, validation: Option<Table>, image: Option<(usize, usize, usize)>) -> Loaded {
        Loaded { table, validation, image, task: None, pixel_max: None }
    }
}

/// The table's values become the tensors' (moved, not copied).
fn to_tensors(t: Table, task: Task) -> Result<Split> {
    let n = t.rows();
    let x = Tensor::from_vec(t.x, (n, t.cols), &Device::Cpu)?;
    let y = match task {
        Task::Classification => {
            let idx: Vec<u32> = t.y.iter().map(|&v| v as u32).collect();
            Tensor::from_vec(idx, n, &Device::Cpu)?
        }
        Task::Regression => Tensor::from_vec(t.y, (n, 1), &Device::Cpu)?,
    };
    Ok(Split { x, y, len: n })
}

/// Prepared data sets by spec: each distinct data set of an experiment is loaded once and
/// shared (by `Arc`) by every run that uses it.
#[derive(Default)]
pub struct Cache {
    entries: Vec<(DatasetSpec, Arc<Dataset>)>,
}

impl Cache {
    /// The data set `spec` describes, prepared on first use.
    pub fn get(&mut self, spec: &DatasetSpec) -> Result<Arc<Dataset>> {
        // Augmentation is the trainer's: it does not change what is loaded.
        let spec = DatasetSpec { augment: AugmentSpec::default(), ..spec.clone() };
        if let Some((_, d)) = self.entries.iter().find(|(s, _)| *s == spec) {
            return Ok(d.clone());
        }
        let d = prepare(&spec)?;
        self.entries.push((spec, d.clone()));
        Ok(d)
    }

    /// How many distinct data sets are loaded.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
