//! Train-time augmentation of images (`[dataset.augment]`): a random crop of the image
//! padded with zeros (`crop_padding`: the image shifted by up to that many pixels each
//! way, what leaves the frame replaced by zeros, as `RandomCrop(32, padding=4)` does) and
//! a random horizontal flip (`flip`). Applied to each training batch as it is gathered,
//! never stored, never to evaluation; drawn from the run's seed and the step, so a run
//! is reproducible and a resumed run draws what the uninterrupted one drew.

use crate::params::ParamSource;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What `[dataset.augment]` asks for; all off by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct AugmentSpec {
    /// Pixels of zero padding around the image before a random crop back to its size.
    pub crop_padding: u64,
    /// Mirror left-right with probability 1/2.
    pub flip: bool,
}

impl AugmentSpec {
    /// Reads `[dataset.augment]` for a data set of kind `kind`: `image` is whether its
    /// samples are images, `mirrored` whether a mirror image is still one of its classes
    /// (photographs, not digits).
    pub fn read<P: ParamSource>(p: &mut P, kind: &str, image: bool, mirrored: bool) -> Result<Self, P::Error> {
        let crop_padding = p.steps(
            "crop_padding",
            Some(0),
            0,
            "pixels of zero padding before a random crop back to the image's size (4 for CIFAR)",
        )?;
        let flip = p.flag("flip", false, "mirror each training image left-right with probability 1/2")?;
        let spec = AugmentSpec { crop_padding, flip };
        p.check(image || spec.is_off(), "crop_padding", || {
            format!("augments images; the {kind} data set's samples are not images (digits, mnist, cifar10 and cifar100 are)")
        })?;
        p.check(!flip || mirrored, "flip", || {
            format!(
                "mirrors images, which turns the {kind} data set's digits into other shapes; use crop_padding alone (flip is for photographs: cifar10, cifar100)"
            )
        })?;
        Ok(spec)
    }

    /// Whether nothing is done.
    pub fn is_off(&self) -> bool {
        self.crop_padding == 0 && !self.flip
    }
}

/// The generator of step `step`'s augmentation in a run seeded with `seed`: a function of
/// the two alone, so a resumed run needs no saved state to draw the same.
pub fn step_rng(seed: u64, step: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xA06_3E47);
    rng.set_stream(step);
    rng
}

/// Writes rows `rows` of `data` (channel-major images of `shape` = (c, h, w), one per
/// row) into `out`, each cropped and flipped as `spec` says with draws from `rng`: per
/// image, whether to flip (when `flip`), then the crop's row and column offsets in
/// `0..=2 * crop_padding` (when `crop_padding > 0`).
pub fn augment_rows(
    data: &[f32],
    rows: &[u32],
    (c, h, w): (usize, usize, usize),
    spec: &AugmentSpec,
    rng: &mut impl Rng,
    out: &mut Vec<f32>,
) {
    let d = c * h * w;
    out.clear();
    out.resize(rows.len() * d, 0.0);
    let pad = spec.crop_padding as i64;
    for (&row, dst) in rows.iter().zip(out.chunks_exact_mut(d)) {
        let src = &data[row as usize * d..(row as usize + 1) * d];
        let flip = spec.flip && rng.random_bool(0.5);
        let (dy, dx) = if pad > 0 {
            let dy = rng.random_range(0..=2 * pad) - pad;
            (dy as isize, (rng.random_range(0..=2 * pad) - pad) as isize)
        } else {
            (0, 0)
        };
        for ch in 0..c {
            let (src, dst) = (&src[ch * h * w..(ch + 1) * h * w], &mut dst[ch * h * w..(ch + 1) * h * w]);
            for y in 0..h {
                let sy = y as isize + dy;
                if sy < 0 || sy >= h as isize {
                    continue; // zeros
                }
                let line = &src[sy as usize * w..(sy as usize + 1) * w];
                for (x, v) in dst[y * w..(y + 1) * w].iter_mut().enumerate() {
                    // The crop's column x reads column x + dx of the (mirrored) image.
                    let sx = x as isize + dx;
                    if sx >= 0 && sx < w as isize {
                        let sx = sx as usize;
                        *v = line[if flip { w - 1 - sx } else { sx }];
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two 1x3x3 images: 1..=9 and 11..=19.
    fn images() -> Vec<f32> {
        (1..=9).chain(11..=19).map(|v| v as f32).collect()
    }

    #[test]
    fn off_copies_the_rows_asked_for() {
        let mut out = Vec::new();
        augment_rows(&images(), &[1, 0], (1, 3, 3), &AugmentSpec::default(), &mut step_rng(1, 0), &mut out);
        assert_eq!(out, [&images()[9..], &images()[..9]].concat());
    }

    #[test]
    fn crops_shift_the_image_in_zeros_and_flips_mirror_it() {
        let data = images();
        let spec = AugmentSpec { crop_padding: 1, flip: true };
        let mut seen = std::collections::BTreeSet::new();
        for step in 0..200 {
            let mut out = Vec::new();
            augment_rows(&data, &[0], (1, 3, 3), &spec, &mut step_rng(7, step), &mut out);
            // Every output is the image shifted by at most one pixel each way, perhaps
            // mirrored, zeros where it left the frame.
            let found = (-1..=1)
                .flat_map(|dy| (-1..=1).map(move |dx| (dy, dx)))
                .flat_map(|s| [(s, false), (s, true)])
                .find(|&((dy, dx), flip)| {
                    (0..3).all(|y| {
                        (0..3).all(|x| {
                            let (sy, sx) = (y as isize + dy, x as isize + dx);
                            let want = if (0..3).contains(&sy) && (0..3).contains(&sx) {
                                let sx = if flip { 2 - sx } else { sx };
                                data[sy as usize * 3 + sx as usize]
                            } else {
                                0.0
                            };
                            out[y * 3 + x] == want
                        })
                    })
                });
            seen.insert(found.expect("a shifted, perhaps mirrored copy"));
        }
        // All nine shifts, flipped and not, were drawn.
        assert_eq!(seen.len(), 18);
        // A pure flip of the first image, row by row.
        let mirrored: Vec<f32> = vec![3.0, 2.0, 1.0, 6.0, 5.0, 4.0, 9.0, 8.0, 7.0];
        assert!((0..200).any(|step| {
            let mut out = Vec::new();
            augment_rows(&data, &[0], (1, 3, 3), &spec, &mut step_rng(7, step), &mut out);
            out == mirrored
        }));
    }

    #[test]
    fn draws_depend_on_the_seed_and_step_alone() {
        let data: Vec<f32> = (0..3 * 8 * 8 * 4).map(|v| v as f32).collect();
        let spec = AugmentSpec { crop_padding: 2, flip: true };
        let run = |seed, step| {
            let mut out = Vec::new();
            augment_rows(&data, &[3, 1, 2, 0], (3, 8, 8), &spec, &mut step_rng(seed, step), &mut out);
            out
        };
        assert_eq!(run(1, 5), run(1, 5));
        assert_ne!(run(1, 5), run(2, 5));
        assert_ne!(run(1, 5), run(1, 6));
    }
}
