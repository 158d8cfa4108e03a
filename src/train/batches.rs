//! A step's samples as the trainer hands them to a model ([`crate::model::Batch`]): rows
//! of the training set (token windows for text), their images augmented where the run
//! augments, their targets gathered as host values for kernels that read them. On a GPU
//! the epoch's order is copied there once an epoch and each step's rows (a text's
//! windows) are gathered from the data set's copy there, so a step sends nothing over
//! (copying host memory to a GPU waits for the work queued before it). Augmentation there
//! is a gather from the zero-padded batch: the epoch's draws (the same the CPU draws, from
//! the seed and each step) go over once an epoch as each sample's flip and offset.

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
    /// Whether rows are gathered from the epoch's order on the device (off the CPU).
    gather_there: bool,
    /// Then: the epoch's order there, with the epoch it is of.
    order_on_device: Option<(u64, Tensor)>,
    /// On a GPU, for text: 0..context and 1..=context, a window's offsets from its start
    /// (of its tokens, of the tokens it predicts).
    offsets: Option<(Tensor, Tensor)>,
    /// On a GPU, augmenting: the epoch's draws there (see [`DeviceAugment`]).
    augment_on_device: Option<DeviceAugment>,
    /// The most samples a step takes.
    step_samples: usize,
}

/// Augmentation as a gather on the device. An output pixel (c, y, x) of a sample with
/// draws (flip, dy, dx) reads the zero-padded image (c, H', W') = (c, h + 2p, w + 2p) at
/// row y + dy + p and column (flip ? w - 1 - (x + dx) : x + dx) + p, which is what
/// [`crate::data::augment_rows`] computes. As indices into the flattened padded image:
/// `base[flip][c, y, x] + offset`, with `offset = dy * W' + (flip ? -dx : dx) + K` and
/// `K = p * W' + p` taken out of the bases so that every term is a u32.
struct DeviceAugment {
    epoch: u64,
    /// Per position of the epoch's order: 1 where the sample is mirrored, (len, 1) u8.
    flips: Tensor,
    /// Per position: the sample's offset, (len, 1) u32.
    shifts: Tensor,
    /// The bases, (1, c * h * w) u32: unmirrored and mirrored.
    base: Tensor,
    base_mirrored: Tensor,
    pad: usize,
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
            gather_there: !data.device().is_cpu(),
            order_on_device: None,
            offsets: None,
            augment_on_device: None,
            step_samples: step_samples.max(1),
        }
    }

    /// The draws of the epoch `epoch` whose order is `order` (position `at` is in step
    /// `step`), made as the CPU makes them, on the device as [`DeviceAugment`].
    fn draw_epoch(
        &self,
        (c, h, w): (usize, usize, usize),
        order: &[u32],
        (at, epoch, step): (usize, u64, u64),
    ) -> Result<DeviceAugment> {
        use rand::Rng;
        let device = self.data.device();
        let (p, size) = (self.augment.crop_padding as usize, self.step_samples);
        let (hp, wp) = (h + 2 * p, w + 2 * p);
        let k = (p * wp + p) as i64;
        let first = step.saturating_sub((at / size) as u64);
        let (mut flips, mut shifts) = (Vec::with_capacity(order.len()), Vec::with_capacity(order.len()));
        for (b, batch) in order.chunks(size).enumerate() {
            // The draws of augment_rows, in its order: per image, the flip, then dy and dx.
            let mut rng = crate::data::step_rng(self.seed, first + b as u64);
            for _ in batch {
                let flip = self.augment.flip && rng.random_bool(0.5);
                let (dy, dx) = if p > 0 {
                    let pad = p as i64;
                    let dy = rng.random_range(0..=2 * pad) - pad;
                    (dy, rng.random_range(0..=2 * pad) - pad)
                } else {
                    (0, 0)
                };
                flips.push(flip as u8);
                shifts.push((dy * wp as i64 + if flip { -dx } else { dx } + k) as u32);
            }
        }
        let (mut base, mut mirrored) = (Vec::with_capacity(c * h * w), Vec::with_capacity(c * h * w));
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let row = (ch * hp * wp + (y + p) * wp) as i64;
                    base.push((row + (x + p) as i64 - k) as u32);
                    mirrored.push((row + (w - 1 - x + p) as i64 - k) as u32);
                }
            }
        }
        let n = order.len();
        Ok(DeviceAugment {
            epoch,
            flips: Tensor::from_vec(flips, (n, 1), device)?,
            shifts: Tensor::from_vec(shifts, (n, 1), device)?,
            base: Tensor::from_vec(base, (1, c * h * w), device)?,
            base_mirrored: Tensor::from_vec(mirrored, (1, c * h * w), device)?,
            pad: p,
        })
    }

    /// Step `step`'s batch: the rows `order[at]` of epoch `epoch`'s order, their images
    /// cropped and flipped as drawn from the seed and the step, targets gathered.
    pub fn batch<'b>(
        &'b mut self,
        order: &'b [u32],
        at: std::ops::Range<usize>,
        epoch: u64,
        step: u64,
    ) -> Result<StepBatch<'b>> {
        let data = self.data;
        let rows = &order[at.clone()];
        let device = data.device();
        if self.gather_there
            && let Some(shape) = self.augment_shape
            && self.augment_on_device.as_ref().is_none_or(|a| a.epoch != epoch)
        {
            self.augment_on_device = Some(self.draw_epoch(shape, order, (at.start, epoch, step))?);
        }
        let on_device = if !self.gather_there {
            None
        } else {
            if self.order_on_device.as_ref().is_none_or(|(e, _)| *e != epoch) {
                self.order_on_device = Some((epoch, Tensor::from_slice(order, order.len(), device)?));
            }
            if let (Some(text), None) = (&data.text, &self.offsets) {
                let t = text.context as u32;
                self.offsets = Some((Tensor::arange(0, t, device)?, Tensor::arange(1, t + 1, device)?));
            }
            let (_, all) = self.order_on_device.as_ref().expect("set above");
            Some(all.narrow(0, at.start, at.len())?)
        };
        let augmented = match self.augment_shape {
            Some(_) if self.gather_there => None,
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
        let draws = match &self.augment_on_device {
            Some(a) if self.gather_there => Some(DeviceDraws {
                flips: a.flips.narrow(0, at.start, at.len())?,
                shifts: a.shifts.narrow(0, at.start, at.len())?,
                base: &a.base,
                base_mirrored: &a.base_mirrored,
                pad: a.pad,
                shape: self.augment_shape.expect("augmenting"),
            }),
            _ => None,
        };
        Ok(StepBatch { data, rows, augmented, targets, on_device, offsets: self.offsets.as_ref(), draws })
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
    /// On a GPU: `rows` there.
    on_device: Option<Tensor>,
    offsets: Option<&'a (Tensor, Tensor)>,
    /// On a GPU, augmenting: this batch's draws there.
    draws: Option<DeviceDraws<'a>>,
}

/// A batch's part of [`DeviceAugment`].
struct DeviceDraws<'a> {
    flips: Tensor,
    shifts: Tensor,
    base: &'a Tensor,
    base_mirrored: &'a Tensor,
    pad: usize,
    shape: (usize, usize, usize),
}

impl DeviceDraws<'_> {
    /// Rows `range` of the batch, `x` (n, c * h * w) as gathered, cropped and flipped.
    fn apply(&self, x: &Tensor, range: std::ops::Range<usize>) -> Result<Tensor> {
        let ((c, h, w), p, n) = (self.shape, self.pad, range.len());
        let padded = x.reshape((n, c, h, w))?.pad_with_zeros(2, p, p)?.pad_with_zeros(3, p, p)?.flatten_from(1)?;
        let d = c * h * w;
        let flips = self.flips.narrow(0, range.start, n)?.broadcast_as((n, d))?;
        let base = flips.where_cond(&self.base_mirrored.broadcast_as((n, d))?, &self.base.broadcast_as((n, d))?)?;
        let idx = base.broadcast_add(&self.shifts.narrow(0, range.start, n)?)?;
        Ok(padded.contiguous()?.gather(&idx.contiguous()?, 1)?)
    }
}

impl Batch for StepBatch<'_> {
    fn len(&self) -> usize {
        self.rows.len()
    }

    fn tensors(&self, range: std::ops::Range<usize>) -> Result<(Tensor, Tensor)> {
        let data = self.data;
        let rows = &self.rows[range.clone()];
        let on_device = match &self.on_device {
            Some(all) => Some(all.narrow(0, range.start, range.len())?),
            None => None,
        };
        if let Some(text) = &data.text {
            return match (on_device, self.offsets) {
                // The windows gathered from the tokens on the device (train.x holds them).
                (Some(starts), Some((inputs, next))) => {
                    let (n, t) = (rows.len(), text.context);
                    let starts = starts.unsqueeze(1)?;
                    let take = |offsets: &Tensor| -> Result<Tensor> {
                        let idx = starts.broadcast_add(offsets)?.flatten_all()?;
                        Ok(data.train.x.index_select(&idx, 0)?)
                    };
                    Ok((take(inputs)?.reshape((n, t))?, take(next)?))
                }
                _ => text.batch(crate::data::text::Part::Train, rows, data.device()),
            };
        }
        let device = data.device();
        let idx = match on_device {
            Some(idx) => idx,
            None => Tensor::from_slice(rows, rows.len(), device)?,
        };
        let x = match (self.augmented, &self.draws) {
            (Some((all, _)), _) => {
                let f = data.features;
                Tensor::from_slice(&all[range.start * f..range.end * f], (rows.len(), f), device)?
            }
            (None, Some(draws)) => draws.apply(&data.train.x.index_select(&idx, 0)?, range.clone())?,
            (None, None) => data.train.x.index_select(&idx, 0)?,
        };
        Ok((x, data.train.y.index_select(&idx, 0)?))
    }

    fn device(&self) -> &candle_core::Device {
        self.data.device()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{DatasetSpec, SourceSpec, prepare};
    use crate::model::Batch;

    /// The rows a GPU gathers from the epoch's order on the device (here the CPU, asked
    /// to), against those the CPU gathers: the same inputs and targets, for images (as
    /// they are, cropped, mirrored, both, drawn as the CPU draws) and for a text's windows.
    #[test]
    fn rows_gathered_from_the_order_on_the_device_are_the_host_ones() {
        let text = DatasetSpec {
            source: SourceSpec::Text { path: None, tokens: crate::data::text::Tokens::Char, context: 8 },
            ..DatasetSpec::default()
        };
        let augments = [
            AugmentSpec::default(),
            AugmentSpec { crop_padding: 2, flip: true },
            AugmentSpec { crop_padding: 0, flip: true },
            AugmentSpec { crop_padding: 3, flip: false },
        ];
        let cases = augments.iter().map(|a| (DatasetSpec::default(), *a)).chain([(text, AugmentSpec::default())]);
        for (spec, augment) in cases {
            let data = prepare(&spec).unwrap();
            let order: Vec<u32> = (0..40u32).map(|i| (i * 37 + 5) % data.train.len as u32).collect();
            let mut host = Batches::new(&data, &data, &augment, 1, 16);
            let mut there = Batches::new(&data, &data, &augment, 1, 16);
            there.gather_there = true;
            // Epoch 1 entered mid-way (a resumed run), then epoch 2 from its start: steps
            // 3 and 4, then 5, 6 and 7 (the last batch short).
            for (epoch, at, step) in [(1, 16..32, 4), (1, 32..40, 5), (2, 0..16, 5), (2, 16..32, 6), (2, 32..40, 7)] {
                let a = host.batch(&order, at.clone(), epoch, step).unwrap();
                let b = there.batch(&order, at.clone(), epoch, step).unwrap();
                for part in [0..at.len(), 2..at.len() - 1] {
                    let ((xa, ya), (xb, yb)) = (a.tensors(part.clone()).unwrap(), b.tensors(part).unwrap());
                    assert_eq!(xa.dims(), xb.dims());
                    let flat = |t: &Tensor| t.flatten_all().unwrap().to_dtype(candle_core::DType::F32).unwrap();
                    assert_eq!(flat(&xa).to_vec1::<f32>().unwrap(), flat(&xb).to_vec1::<f32>().unwrap());
                    assert_eq!(flat(&ya).to_vec1::<f32>().unwrap(), flat(&yb).to_vec1::<f32>().unwrap());
                }
            }
        }
    }
}
