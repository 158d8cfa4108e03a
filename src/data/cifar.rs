//! CIFAR-10 and CIFAR-100 in their binary version (https://www.cs.toronto.edu/~kriz/cifar.html):
//! records of label byte(s) then 3x32x32 pixel bytes, channel-major (red plane, green,
//! blue). CIFAR-10: `data_batch_1.bin` ... `data_batch_5.bin` (training) and
//! `test_batch.bin`, one label byte a record; CIFAR-100: `train.bin` and `test.bin`, a
//! coarse (20 superclasses) and a fine (100 classes) label byte a record. The files are
//! read from the directory itself, from the folder the archive unpacks to
//! (`cifar-10-batches-bin/`, `cifar-100-binary/`), gzipped (`.bin.gz`), or straight from
//! the archive as downloaded (`cifar-10-binary.tar.gz`, `cifar-100-binary.tar.gz`).

use super::{Loaded, Table};
use crate::error::input_error;
use anyhow::Result;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Which CIFAR, and for CIFAR-100 which label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cifar {
    Ten,
    /// CIFAR-100's 100 fine classes.
    HundredFine,
    /// CIFAR-100's 20 superclasses.
    HundredCoarse,
}

/// Pixels of one image: 3 channels of 32x32.
pub const PIXELS: usize = 3 * 32 * 32;

/// The most bytes one file may hold (CIFAR-100's train.bin is 150 MB).
const MAX_FILE_BYTES: u64 = 4 << 30;

impl Cifar {
    fn name(self) -> &'static str {
        match self {
            Cifar::Ten => "CIFAR-10",
            _ => "CIFAR-100",
        }
    }

    /// Label bytes before each image.
    fn label_bytes(self) -> usize {
        if self == Cifar::Ten { 1 } else { 2 }
    }

    fn record(self) -> usize {
        self.label_bytes() + PIXELS
    }

    fn classes(self) -> usize {
        match self {
            Cifar::Ten => 10,
            Cifar::HundredFine => 100,
            Cifar::HundredCoarse => 20,
        }
    }

    fn train_files(self) -> Vec<&'static str> {
        match self {
            Cifar::Ten => {
                vec!["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"]
            }
            _ => vec!["train.bin"],
        }
    }

    fn test_file(self) -> &'static str {
        if self == Cifar::Ten { "test_batch.bin" } else { "test.bin" }
    }

    /// The folder the archive unpacks to, and the archive.
    fn folder_and_archive(self) -> (&'static str, &'static str) {
        match self {
            Cifar::Ten => ("cifar-10-batches-bin", "cifar-10-binary.tar.gz"),
            _ => ("cifar-100-binary", "cifar-100-binary.tar.gz"),
        }
    }
}

/// Reads the training files from `dir`, and the test file as validation when
/// `test_as_validation`.
pub fn load(dir: &Path, which: Cifar, test_as_validation: bool) -> Result<Loaded> {
    let mut wanted: Vec<&str> = which.train_files();
    if test_as_validation {
        wanted.push(which.test_file());
    }
    let files = read_files(dir, which, &wanted)?;
    let mut table = Table { x: Vec::new(), cols: PIXELS, y: Vec::new() };
    for (name, bytes) in files.iter().take(which.train_files().len()) {
        append(&mut table, name, bytes, which)?;
    }
    let validation = match files.get(which.train_files().len()) {
        Some((name, bytes)) => {
            let mut t = Table { x: Vec::new(), cols: PIXELS, y: Vec::new() };
            append(&mut t, name, bytes, which)?;
            Some(t)
        }
        None => None,
    };
    Ok(Loaded::new(table, validation, Some((3, 32, 32))))
}

/// Appends the records of one file (`shown` names it in errors) to `table`.
fn append(table: &mut Table, shown: &str, bytes: &[u8], which: Cifar) -> Result<()> {
    let record = which.record();
    if bytes.is_empty() || !bytes.len().is_multiple_of(record) {
        return Err(input_error(format!(
            "{shown}: {} bytes is not a whole number of {} records ({record} bytes each: {} label byte{} and 3x32x32 pixels){}",
            bytes.len(),
            which.name(),
            which.label_bytes(),
            if which.label_bytes() == 1 { "" } else { "s" },
            if bytes.is_empty() {
                String::new()
            } else {
                format!("; {} whole records and {} bytes over", bytes.len() / record, bytes.len() % record)
            }
        )));
    }
    let n = bytes.len() / record;
    table.x.reserve(n * PIXELS);
    super::huge_pages::advise(&mut table.x);
    table.y.reserve(n);
    for (i, r) in bytes.chunks_exact(record).enumerate() {
        let label = match which {
            Cifar::Ten => r[0],
            Cifar::HundredCoarse => r[0],
            Cifar::HundredFine => r[1],
        };
        if label as usize >= which.classes() {
            let what = match which {
                Cifar::Ten => "CIFAR-10 labels are 0 to 9",
                Cifar::HundredCoarse => "CIFAR-100's coarse labels are 0 to 19",
                Cifar::HundredFine => "CIFAR-100's fine labels are 0 to 99",
            };
            return Err(input_error(format!(
                "{shown}: record {i} (byte {}) has label {label}; {what}: is this a {} file?",
                i * record,
                which.name()
            )));
        }
        table.y.push(label as f32);
        table.x.extend(r[which.label_bytes()..].iter().map(|&b| b as f32));
    }
    Ok(())
}

/// The bytes of each of `names`, in order, with the path (or archive member) they came from.
fn read_files(dir: &Path, which: Cifar, names: &[&str]) -> Result<Vec<(String, Vec<u8>)>> {
    let (folder, archive) = which.folder_and_archive();
    let find = |name: &str| -> Option<PathBuf> {
        [
            dir.join(name),
            dir.join(format!("{name}.gz")),
            dir.join(folder).join(name),
            dir.join(folder).join(format!("{name}.gz")),
        ]
        .into_iter()
        .find(|p| p.is_file())
    };
    let found: Vec<Option<PathBuf>> = names.iter().map(|n| find(n)).collect();
    if found.iter().all(Option::is_some) {
        return found.into_iter().flatten().map(|p| Ok((p.display().to_string(), read_file(&p)?))).collect();
    }
    let archive_path = dir.join(archive);
    if archive_path.is_file() {
        return read_archive(&archive_path, names);
    }
    if !dir.is_dir() {
        return Err(input_error(format!(
            "{}: no such directory; `dir` names the directory holding the binary version of {} ({archive} from \
             https://www.cs.toronto.edu/~kriz/cifar.html, as downloaded or unpacked)",
            dir.display(),
            which.name()
        )));
    }
    let missing: Vec<&str> = names.iter().zip(&found).filter(|(_, f)| f.is_none()).map(|(n, _)| *n).collect();
    Err(input_error(format!(
        "{}: no {} (looked for each as it is, gzipped as .gz, and in {folder}/), and no {archive}: this is where \
         the binary version of {} goes ({archive} from https://www.cs.toronto.edu/~kriz/cifar.html, as downloaded or unpacked)",
        dir.display(),
        missing.join(", "),
        which.name()
    )))
}

/// A file's bytes, inflated when it is gzipped; never more than [`MAX_FILE_BYTES`].
fn read_file(path: &Path) -> Result<Vec<u8>> {
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| input_error(format!("cannot read {shown}: {e}")))?;
    let mut raw = std::io::BufReader::new(file);
    let gzipped = std::io::BufRead::fill_buf(&mut raw)
        .map_err(|e| input_error(format!("cannot read {shown}: {e}")))?
        .starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn Read> = if gzipped { Box::new(flate2::read::GzDecoder::new(raw)) } else { Box::new(raw) };
    let mut bytes = Vec::new();
    reader.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| {
        if gzipped {
            input_error(format!("{shown}: not a valid gzip file: {e}"))
        } else {
            input_error(format!("cannot read {shown}: {e}"))
        }
    })?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(input_error(format!("{shown}: more than the {} GiB this runner reads", MAX_FILE_BYTES >> 30)));
    }
    Ok(bytes)
}

/// The members of the `.tar.gz` at `path` whose file names are `names`, in that order.
fn read_archive(path: &Path, names: &[&str]) -> Result<Vec<(String, Vec<u8>)>> {
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| input_error(format!("cannot read {shown}: {e}")))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
    let bad = |e: std::io::Error| input_error(format!("{shown}: not a readable .tar.gz: {e}"));
    let mut got: Vec<Option<(String, Vec<u8>)>> = vec![None; names.len()];
    for entry in archive.entries().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        let member = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        let file_name = member.rsplit('/').next().unwrap_or("").to_string();
        if let Some(i) = names.iter().position(|n| *n == file_name) {
            let mut bytes = Vec::new();
            entry.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(bad)?;
            if bytes.len() as u64 > MAX_FILE_BYTES {
                return Err(input_error(format!("{shown}: {member} is larger than {} GiB", MAX_FILE_BYTES >> 30)));
            }
            got[i] = Some((format!("{shown}:{member}"), bytes));
        }
    }
    let missing: Vec<&str> = names.iter().zip(&got).filter(|(_, g)| g.is_none()).map(|(n, _)| *n).collect();
    if !missing.is_empty() {
        return Err(input_error(format!("{shown} holds no {}", missing.join(", "))));
    }
    Ok(got.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` records of `which` with labels `i % classes` and pixel bytes `(i + p) % 256`.
    pub fn records(which: Cifar, n: usize, first: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in first..first + n {
            let label = (i % which.classes()) as u8;
            match which {
                Cifar::Ten => out.push(label),
                Cifar::HundredFine => out.extend([label / 5, label]),
                Cifar::HundredCoarse => out.extend([label, 0]),
            }
            out.extend((0..PIXELS).map(|p| ((i + p) % 256) as u8));
        }
        out
    }

    #[test]
    fn records_become_rows_of_channel_major_pixels_and_labels() {
        let dir = tempfile::tempdir().unwrap();
        for (k, name) in Cifar::Ten.train_files().iter().enumerate() {
            std::fs::write(dir.path().join(name), records(Cifar::Ten, 3, 3 * k)).unwrap();
        }
        std::fs::write(dir.path().join("test_batch.bin"), records(Cifar::Ten, 2, 100)).unwrap();
        let loaded = load(dir.path(), Cifar::Ten, true).unwrap();
        assert_eq!(loaded.image, Some((3, 32, 32)));
        assert_eq!(loaded.table.rows(), 15);
        assert_eq!(loaded.table.y, (0..15).map(|i| (i % 10) as f32).collect::<Vec<_>>());
        assert_eq!(loaded.table.x[PIXELS * 4 + 1], 5.0);
        let v = loaded.validation.unwrap();
        assert_eq!(v.y, vec![0.0, 1.0]);
        assert_eq!(v.x[0], 100.0);
        // Without the test file as validation it is not even needed.
        std::fs::remove_file(dir.path().join("test_batch.bin")).unwrap();
        assert!(load(dir.path(), Cifar::Ten, false).unwrap().validation.is_none());
    }
}
