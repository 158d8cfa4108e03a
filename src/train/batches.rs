//! A step's samples as the trainer hands them to a model ([`crate::model::Batch`]): rows
//! of the training set (token windows for text), their images augmented where the run
//! augments, their targets gathered as host values for kernels that read them. On a GPU
//! the rows are gathered from the data set's copy there; augmented images are cropped and
//! flipped on the host, and only the batch is copied over.

use crate::data::{AugmentSpec, Dataset, Task};
use crate::kernels::{gather, with_values};
use crate::model::{Batch, HostRows, Targets};
use anyhow::Result;
use candle_core::Tensor;

/// The buffers a run's steps reuse.
pub struct Batches<'a> {
    /// The data set on the run's device.
    data: &'a Dataset,
    /// The same on the CPU (the same value when the run is on the CPU), which augmentation
    /// reads.
    host: &'a Dataset,
    augment: &'a AugmentSpec,
    seed: u64,
    /// (channels, height, width) of images that are augmented.
    augment_shape: Option<(usize, usize, usize)>,
    augmented: Vec<f32>,
    /// 0, 1, ...: the rows of the augmented images, in order.
    in_order: Vec<u32>,
    classes: Vec<u32>,
    values: Vec<f32>,
}

impl<'a> Batches<'a> {
    /// `step_samples`: the most samples a step takes; `data` is on the run's device,
    /// `host` the same data set on the CPU.
    pub fn new(
        data: &'a Dataset,
        host: &'a Dataset,
        augment: &'a AugmentSpec,
        seed: u64,
        step_samples: usize,
    ) -> Batches<'a> {
        Batches {
            data,
            host,
            augment,
            seed,
            augment_shape: data.image.filter(|_| !augment.is_off()),
            augmented: Vec::new(),
            in_order: (0..step_samples.min(data.train.len) as u32).collect(),
            classes: Vec::new(),
            values: Vec::new(),
        }
    }

    /// Step `step`'s batch of the training rows `rows`: images cropped and flipped as drawn
    /// from the seed and the step, targets gathered.
    pub fn batch<'b>(&'b mut self, rows: &'b [u32], step: u64) -> Result<StepBatch<'b>> {
        let data = self.data;
        let augmented = match self.augment_shape {
            Some(shape) => {
                let (augment, seed, out) = (self.augment, self.seed, &mut self.augmented);
                with_values(&self.host.train.x, |all: &[f32]| {
                    let mut rng = crate::data::step_rng(seed, step);
                    crate::data::augment_rows(all, rows, shape, augment, &mut rng, out);
                })?;
                Some((&self.augmented[..], &self.in_order[..rows.len()]))
            }
            None => None,
        };
        let targets = match (&data.text, data.task) {
            (Some(_), _) => None,
            // Host targets are for the CPU kernels.
            _ if !data.device().is_cpu() => None,
            (None, Task::Classification) => {
                gather(&data.train.y, rows, &mut self.classes)?;
                Some(Targets::Classes(&self.classes))
            }
            (None, Task::Regression) => {
                gather(&data.train.y, rows, &mut self.values)?;
                Some(Targets::Values(&self.values))
            }
        };
        Ok(StepBatch { data, rows, augmented, targets })
    }
}

/// One step's samples: rows `rows` of the training set (token windows for text), their
/// images augmented where `augmented` holds them, their targets gathered for kernels
/// that read host values.
pub struct StepBatch<'a> {
    data: &'a Dataset,
    rows: &'a [u32],
    /// The augmented images and the rows 0, 1, ... of them.
    augmented: Option<(&'a [f32], &'a [u32])>,
    targets: Option<Targets<'a>>,
}

impl Batch for StepBatch<'_> {
    fn len(&self) -> usize {
        self.rows.len()
    }

    fn tensors(&self, range: std::ops::Range<usize>) -> Result<(Tensor, Tensor)> {
        let data = self.data;
        let rows = &self.rows[range.clone()];
        if let Some(text) = &data.text {
            return text.batch(crate::data::text::Part::Train, rows, data.device());
        }
        let device = data.device();
        let idx = Tensor::from_slice(rows, rows.len(), device)?;
        let x = match self.augmented {
            Some((all, _)) => {
                let f = data.features;
                Tensor::from_slice(&all[range.start * f..range.end * f], (rows.len(), f), device)?
            }
            None => data.train.x.index_select(&idx, 0)?,
        };
        Ok((x, data.train.y.index_select(&idx, 0)?))
    }

    fn host(&self) -> Option<(HostRows<'_>, Targets<'_>, usize)> {
        let targets = self.targets?;
        let rows = match self.augmented {
            Some((x, rows)) => HostRows::Gathered { x, rows },
            None => HostRows::Of { x: &self.data.train.x, rows: self.rows },
        };
        Some((rows, targets, self.data.features))
    }
}
