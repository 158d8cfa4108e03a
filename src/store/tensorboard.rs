//! TensorBoard event files: every run also writes its scalars to
//! `events.out.tfevents.<time>.<host>` in its directory, so `tensorboard --logdir
//! experiments` shows every run of every experiment, grouped by experiment.
//!
//! The format is TensorFlow's record file: for each record its length (u64, little endian),
//! the masked CRC32C of those 8 bytes, the data, and the masked CRC32C of the data; each
//! record's data is a protobuf `Event` (tensorflow/core/util/event.proto): the first says
//! the file version (`brain.Event:2`), the others carry a `Summary` of simple scalar
//! values at a step. prost encodes the messages (declared here, no protoc), crc32c the
//! checksums. [`read`] reads a file back, checking every checksum.

use anyhow::{Context as _, Result, bail};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// tensorflow.Event, the fields runner writes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(oneof = "What", tags = "3, 5")]
    pub what: Option<What>,
}

/// Event's `what`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum What {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
}

/// tensorflow.Summary.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<Value>,
}

/// tensorflow.Summary.Value with a simple value (its oneof's field 2, always written,
/// 0 included).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Value {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
}

/// CRC32C masked as TensorFlow's record files store it.
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Appends events to a run's event file.
pub struct EventWriter {
    path: PathBuf,
    file: BufWriter<File>,
}

/// The event file in `dir`, if the run has one.
pub fn find(dir: &Path) -> Option<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("events.out.tfevents.")))
        .collect();
    files.sort();
    files.pop()
}

impl EventWriter {
    /// A new event file in `dir`, starting with the file-version record.
    pub fn create(dir: &Path) -> Result<EventWriter> {
        let now = super::unix_now();
        let host: String =
            super::host_name().chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        let path = dir.join(format!("events.out.tfevents.{}.{host}", now as u64));
        let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut w = EventWriter { path, file: BufWriter::new(file) };
        w.write(&Event { wall_time: now, step: 0, what: Some(What::FileVersion("brain.Event:2".into())) })?;
        Ok(w)
    }

    /// The event file `path` cut back to its first `len` bytes (what belonged to the run at
    /// a checkpoint), to be appended to.
    pub fn reopen(path: &Path, len: u64) -> Result<EventWriter> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {} to resume", path.display()))?;
        file.set_len(len).with_context(|| format!("cannot trim {}", path.display()))?;
        let file = std::fs::OpenOptions::new().append(true).open(path)?;
        Ok(EventWriter { path: path.to_path_buf(), file: BufWriter::new(file) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&mut self, event: &Event) -> Result<()> {
        let data = prost::Message::encode_to_vec(event);
        let len = (data.len() as u64).to_le_bytes();
        let mut record = Vec::with_capacity(data.len() + 16);
        record.extend_from_slice(&len);
        record.extend_from_slice(&masked_crc(&len).to_le_bytes());
        record.extend_from_slice(&data);
        record.extend_from_slice(&masked_crc(&data).to_le_bytes());
        self.file.write_all(&record).with_context(|| format!("cannot write {}", self.path.display()))
    }

    /// The scalars `values` (tag, value; NaN and infinities are written as they are) at
    /// `step`.
    pub fn scalars(&mut self, step: u64, values: &[(&str, f64)]) -> Result<()> {
        let value =
            values.iter().map(|(tag, v)| Value { tag: tag.to_string(), simple_value: Some(*v as f32) }).collect();
        self.write(&Event {
            wall_time: super::unix_now(),
            step: step as i64,
            what: Some(What::Summary(Summary { value })),
        })
    }

    pub fn flush(&mut self) -> Result<()> {
        self.file.flush().with_context(|| format!("cannot write {}", self.path.display()))
    }
}

/// The events of the event file at `path`, every record's two checksums checked.
pub fn read(path: &Path) -> Result<Vec<Event>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut events = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let Some(head) = bytes.get(at..at + 12) else { bail!("{}: a record cut short at byte {at}", path.display()) };
        let (len, crc) = (&head[..8], u32::from_le_bytes(head[8..12].try_into()?));
        if masked_crc(len) != crc {
            bail!("{}: the length of the record at byte {at} fails its CRC", path.display());
        }
        let n = u64::from_le_bytes(len.try_into()?) as usize;
        let Some(data) = bytes.get(at + 12..at + 12 + n) else {
            bail!("{}: the record at byte {at} is cut short", path.display())
        };
        let Some(crc) = bytes.get(at + 12 + n..at + 16 + n) else {
            bail!("{}: the record at byte {at} has no data CRC", path.display())
        };
        if masked_crc(data) != u32::from_le_bytes(crc.try_into()?) {
            bail!("{}: the data of the record at byte {at} fails its CRC", path.display());
        }
        events.push(
            <Event as prost::Message>::decode(data)
                .with_context(|| format!("{}: the record at byte {at} is not an Event", path.display()))?,
        );
        at += 16 + n;
    }
    Ok(events)
}

/// The (step, value) pairs of scalar `tag` in `events`.
pub fn scalar_series(events: &[Event], tag: &str) -> Vec<(i64, f32)> {
    events
        .iter()
        .filter_map(|e| match &e.what {
            Some(What::Summary(s)) => Some((e.step, s)),
            _ => None,
        })
        .flat_map(|(step, s)| {
            s.value.iter().filter(|v| v.tag == tag).filter_map(move |v| Some((step, v.simple_value?)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_crc_is_tensorflows() {
        // CRC32C("123456789") = 0xE3069283 (the standard check value), then masked.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(masked_crc(b"123456789"), 0xE306_9283u32.rotate_right(15).wrapping_add(0xa282_ead8));
    }

    #[test]
    fn written_events_read_back_and_a_flipped_byte_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path()).unwrap();
        w.scalars(0, &[("lr", 0.0), ("train_loss", 2.5)]).unwrap();
        w.scalars(10, &[("val_loss", 1.25)]).unwrap();
        w.flush().unwrap();
        let path = find(dir.path()).unwrap();
        assert!(path.file_name().unwrap().to_string_lossy().starts_with("events.out.tfevents."));
        let events = read(&path).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].what, Some(What::FileVersion("brain.Event:2".into())));
        assert_eq!(scalar_series(&events, "lr"), vec![(0, 0.0)], "a zero is written, not dropped");
        assert_eq!(scalar_series(&events, "val_loss"), vec![(10, 1.25)]);
        // The protobuf bytes of the last event: wall_time (field 1, fixed64), step 10
        // (field 2, varint), a Summary (field 5) of one Value {tag, simple_value}.
        let data = prost::Message::encode_to_vec(&events[2]);
        assert_eq!(data[0], 0x09);
        assert_eq!(&data[9..11], &[0x10, 10]);
        assert_eq!(data[11], 0x2a);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 6;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("fails its CRC"), "{e}");
    }
}
