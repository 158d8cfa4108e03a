//! The UCI handwritten digits (1797 8x8 images, 10 classes), embedded in the binary so the
//! default experiment needs no files. Source and licence: data/README.md.

use super::Table;
use anyhow::{Context as _, Result};
use std::io::Read;

const DIGITS_GZ: &[u8] = include_bytes!("../../data/digits.csv.gz");

/// 64 pixel columns (0..16) then the label, no header.
pub fn load() -> Result<Table> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(DIGITS_GZ).read_to_string(&mut text).context("the embedded digits data is corrupt")?;
    let mut x = Vec::with_capacity(1797 * 64);
    let mut y = Vec::with_capacity(1797);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let values: Vec<f32> = line.split(',').map(|v| v.trim().parse::<f32>()).collect::<Result<_, _>>()?;
        let (label, pixels) = values.split_last().context("empty row in the embedded digits data")?;
        x.extend_from_slice(pixels);
        y.push(*label);
    }
    Ok(Table { x, cols: 64, y })
}

#[cfg(test)]
mod tests {
    #[test]
    fn has_1797_images_of_ten_classes() {
        let t = super::load().unwrap();
        assert_eq!(t.rows(), 1797);
        assert_eq!(t.x.len(), 1797 * 64);
        assert_eq!(t.y.iter().fold(0f32, |m, &v| m.max(v)), 9.0);
        assert!(t.x.iter().all(|&p| (0.0..=16.0).contains(&p)));
    }
}
