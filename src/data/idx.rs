//! MNIST-format IDX files (also Fashion-MNIST): `train-images-idx3-ubyte[.gz]`,
//! `train-labels-idx1-ubyte[.gz]`, and optionally the `t10k-*` pair for validation.

use super::{Loaded, Table};
use crate::error::input_error;
use anyhow::Result;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Reads the training pair from `dir` (and the t10k pair when `test_as_validation`).
pub fn load(dir: &Path, test_as_validation: bool) -> Result<Loaded> {
    let (table, shape) = pair(dir, "train")?;
    let validation = if test_as_validation { Some(pair(dir, "t10k")?.0) } else { None };
    Ok(Loaded { table, validation, image: Some(shape) })
}

fn pair(dir: &Path, prefix: &str) -> Result<(Table, (usize, usize, usize))> {
    let images_path = find(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = find(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let (dims, pixels) = read_idx(&images_path, 0x0803)?;
    let (ldims, labels) = read_idx(&labels_path, 0x0801)?;
    let (n, rows, cols) = match dims[..] {
        [n, r, c] => (n, r, c),
        _ => return Err(input_error(format!("{}: expected 3 dimensions", images_path.display()))),
    };
    if ldims[0] != n {
        return Err(input_error(format!(
            "{} holds {} labels but {} holds {n} images",
            labels_path.display(),
            ldims[0],
            images_path.display()
        )));
    }
    let x = pixels.iter().map(|&p| p as f32).collect();
    let y = labels.iter().map(|&l| l as f32).collect();
    Ok((Table { x, cols: rows * cols, y }, (1, rows, cols)))
}

fn find(dir: &Path, name: &str) -> Result<PathBuf> {
    for candidate in [dir.join(name), dir.join(format!("{name}.gz"))] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(input_error(format!("{}: no {name} or {name}.gz (MNIST-format IDX files)", dir.display())))
}

/// Reads an unsigned-byte IDX file: magic `0x00 0x00 0x08 ndim`, big-endian u32 sizes, data.
fn read_idx(path: &Path, magic: u32) -> Result<(Vec<usize>, Vec<u8>)> {
    let shown = path.display();
    let raw = std::fs::read(path).map_err(|e| input_error(format!("cannot read {shown}: {e}")))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| input_error(format!("{shown}: not a valid gzip file: {e}")))?;
        out
    } else {
        raw
    };
    let be = |i: usize| bytes.get(i..i + 4).map(|b| u32::from_be_bytes(b.try_into().unwrap()));
    let found = be(0).ok_or_else(|| input_error(format!("{shown}: too short to be an IDX file")))?;
    if found != magic {
        return Err(input_error(format!(
            "{shown}: not an IDX file of unsigned bytes (magic {found:#010x}, expected {magic:#010x})"
        )));
    }
    let ndim = (magic & 0xff) as usize;
    let dims: Vec<usize> = (0..ndim)
        .map(|d| be(4 + 4 * d).map(|v| v as usize))
        .collect::<Option<_>>()
        .ok_or_else(|| input_error(format!("{shown}: header is cut short")))?;
    let start = 4 + 4 * ndim;
    let len: usize = dims.iter().product();
    if bytes.len() != start + len {
        return Err(input_error(format!(
            "{shown}: header promises {len} bytes of data, file holds {}",
            bytes.len() - start
        )));
    }
    Ok((dims, bytes[start..].to_vec()))
}
