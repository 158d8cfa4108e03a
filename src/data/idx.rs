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
    Ok(Loaded::new(table, validation, Some(shape)))
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
    if rows == 0 || cols == 0 {
        return Err(input_error(format!(
            "{}: images of {rows}x{cols} pixels hold nothing to learn from; expected e.g. 28x28",
            images_path.display()
        )));
    }
    if ldims[0] != n {
        return Err(input_error(format!(
            "{} holds {} labels but {} holds {n} images",
            labels_path.display(),
            ldims[0],
            images_path.display()
        )));
    }
    Ok((Table { x: pixels, cols: rows * cols, y: labels }, (1, rows, cols)))
}

fn find(dir: &Path, name: &str) -> Result<PathBuf> {
    for candidate in [dir.join(name), dir.join(format!("{name}.gz"))] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(input_error(format!("{}: no {name} or {name}.gz (MNIST-format IDX files)", dir.display())))
}

/// The most data an IDX file may promise (4 GiB: MNIST's training images are 47 MB).
pub const MAX_IDX_BYTES: u64 = 4 << 30;

/// Reads an unsigned-byte IDX file: magic `0x00 0x00 0x08 ndim`, big-endian u32 sizes, data.
/// A gzipped file is inflated as a stream and never past what its header promises (plus
/// one byte, to notice a longer file), so a gzip bomb costs nothing. The bytes are
/// converted to f32 as they are read: the file's bytes are never held beside their f32
/// copy (for MNIST's training images, 47 MB that would sit beside 188 MB).
fn read_idx(path: &Path, magic: u32) -> Result<(Vec<usize>, Vec<f32>)> {
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| input_error(format!("cannot read {shown}: {e}")))?;
    let mut raw = std::io::BufReader::new(file);
    let gzipped = {
        let head =
            std::io::BufRead::fill_buf(&mut raw).map_err(|e| input_error(format!("cannot read {shown}: {e}")))?;
        head.starts_with(&[0x1f, 0x8b])
    };
    let mut reader: Box<dyn Read> = if gzipped { Box::new(flate2::read::GzDecoder::new(raw)) } else { Box::new(raw) };
    let bad_read = |e: std::io::Error| {
        if gzipped {
            input_error(format!("{shown}: not a valid gzip file: {e}"))
        } else {
            input_error(format!("cannot read {shown}: {e}"))
        }
    };
    let mut word = [0u8; 4];
    let mut read_word = |reader: &mut Box<dyn Read>, what: &str| -> Result<u32> {
        let mut got = 0;
        while got < 4 {
            match reader.read(&mut word[got..]).map_err(bad_read)? {
                0 => return Err(input_error(format!("{shown}: {what}"))),
                n => got += n,
            }
        }
        Ok(u32::from_be_bytes(word))
    };
    let found = read_word(&mut reader, "too short to be an IDX file")?;
    if found != magic {
        return Err(input_error(format!(
            "{shown}: not an IDX file of unsigned bytes (magic {found:#010x}, expected {magic:#010x})"
        )));
    }
    let ndim = (magic & 0xff) as usize;
    let dims: Vec<usize> =
        (0..ndim).map(|_| read_word(&mut reader, "header is cut short").map(|v| v as usize)).collect::<Result<_>>()?;
    let len = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64)).filter(|&l| l <= MAX_IDX_BYTES);
    let Some(len) = len else {
        return Err(input_error(format!(
            "{shown}: header promises {} bytes of data, more than the {} GiB this runner reads",
            dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(" x "),
            MAX_IDX_BYTES >> 30
        )));
    };
    let mut data: Vec<f32> = Vec::with_capacity(len.min(1 << 26) as usize);
    super::huge_pages::advise(&mut data);
    let (mut limited, mut chunk) = (reader.take(len + 1), vec![0u8; 1 << 16]);
    loop {
        match limited.read(&mut chunk) {
            Ok(0) => break,
            Ok(k) => data.extend(chunk[..k].iter().map(|&b| b as f32)),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(bad_read(e)),
        }
    }
    if data.len() as u64 != len {
        let held = if data.len() as u64 > len { "more".to_string() } else { data.len().to_string() };
        return Err(input_error(format!("{shown}: header promises {len} bytes of data, file holds {held}")));
    }
    Ok((dims, data))
}
