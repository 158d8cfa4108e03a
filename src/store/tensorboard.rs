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

/// tensorflow.Summary.Value: a simple value (its oneof's field 2, always written, 0
/// included) or, for a plugin's summary (HParams'), metadata and a tensor.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Value {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
    #[prost(message, optional, tag = "8")]
    pub tensor: Option<TensorProto>,
    #[prost(message, optional, tag = "9")]
    pub metadata: Option<SummaryMetadata>,
}

/// tensorflow.SummaryMetadata: which plugin a value is for, and what class of data.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryMetadata {
    #[prost(message, optional, tag = "1")]
    pub plugin_data: Option<PluginData>,
    /// DATA_CLASS_TENSOR = 2 (summary.proto: unknown 0, scalar 1, tensor 2, blob sequence 3).
    #[prost(int32, tag = "4")]
    pub data_class: i32,
}

/// SummaryMetadata.PluginData.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PluginData {
    #[prost(string, tag = "1")]
    pub plugin_name: String,
    #[prost(bytes = "vec", tag = "2")]
    pub content: Vec<u8>,
}

/// tensorflow.TensorProto, as far as a scalar float (the HParams plugin's empty value) needs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// DT_FLOAT = 1.
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    /// A scalar's shape: no dimensions.
    #[prost(message, optional, tag = "2")]
    pub tensor_shape: Option<TensorShape>,
    #[prost(float, repeated, tag = "5")]
    pub float_val: Vec<f32>,
}

/// tensorflow.TensorShapeProto of a scalar.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShape {}

/// tensorboard.hparams.HParamsPluginData (plugins/hparams/plugin_data.proto): a run's
/// hyperparameters when it starts, its status when it ends.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HParamsPluginData {
    #[prost(int32, tag = "1")]
    pub version: i32,
    #[prost(oneof = "HParamsData", tags = "3, 4")]
    pub data: Option<HParamsData>,
}

/// HParamsPluginData's `data`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum HParamsData {
    #[prost(message, tag = "3")]
    SessionStartInfo(SessionStartInfo),
    #[prost(message, tag = "4")]
    SessionEndInfo(SessionEndInfo),
}

/// tensorboard.hparams.SessionStartInfo: the run's hyperparameters; runs of one group (the
/// seeds of a variant) are shown together.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionStartInfo {
    #[prost(btree_map = "string, message", tag = "1")]
    pub hparams: std::collections::BTreeMap<String, HParamValue>,
    #[prost(string, tag = "4")]
    pub group_name: String,
    #[prost(double, tag = "5")]
    pub start_time_secs: f64,
}

/// tensorboard.hparams.SessionEndInfo; status STATUS_SUCCESS = 1, STATUS_FAILURE = 2.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionEndInfo {
    #[prost(int32, tag = "1")]
    pub status: i32,
    #[prost(double, tag = "2")]
    pub end_time_secs: f64,
}

/// google.protobuf.Value, the kinds a hyperparameter takes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HParamValue {
    #[prost(oneof = "HParamKind", tags = "2, 3, 4")]
    pub kind: Option<HParamKind>,
}

/// google.protobuf.Value's `kind`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum HParamKind {
    #[prost(double, tag = "2")]
    Number(f64),
    #[prost(string, tag = "3")]
    Text(String),
    #[prost(bool, tag = "4")]
    Bool(bool),
}

impl HParamValue {
    /// A config value as written in runs.json: a number where it reads as a finite one (so
    /// TensorBoard sorts and filters it as a number), true/false, else the text.
    pub fn parse(text: &str) -> HParamValue {
        let kind = match text {
            "true" => HParamKind::Bool(true),
            "false" => HParamKind::Bool(false),
            _ => match text.parse::<f64>() {
                Ok(x) if x.is_finite() => HParamKind::Number(x),
                _ => HParamKind::Text(text.to_string()),
            },
        };
        HParamValue { kind: Some(kind) }
    }
}

/// The tags HParams summaries are written under (TensorBoard's metadata.py).
pub const SESSION_START_TAG: &str = "_hparams_/session_start_info";
pub const SESSION_END_TAG: &str = "_hparams_/session_end_info";

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

    /// Appends `event` as it is (an event of another run's file: a fork's first steps).
    pub fn append(&mut self, event: &Event) -> Result<()> {
        self.write(event)
    }

    /// The scalars `values` (tag, value; NaN and infinities are written as they are) at
    /// `step`.
    pub fn scalars(&mut self, step: u64, values: &[(&str, f64)]) -> Result<()> {
        let value = values
            .iter()
            .map(|(tag, v)| Value { tag: tag.to_string(), simple_value: Some(*v as f32), ..Value::default() })
            .collect();
        self.write(&Event {
            wall_time: super::unix_now(),
            step: step as i64,
            what: Some(What::Summary(Summary { value })),
        })
    }

    /// The run's hyperparameters for TensorBoard's HParams tab (`hparams`: key, value as
    /// text), with the group its seeds share. Its metrics there are the last values of
    /// its scalars (val_loss, val_accuracy...), which TensorBoard finds by itself.
    pub fn session_start(&mut self, group: &str, hparams: &[(String, String)]) -> Result<()> {
        let info = SessionStartInfo {
            hparams: hparams.iter().map(|(k, v)| (k.clone(), HParamValue::parse(v))).collect(),
            group_name: group.to_string(),
            start_time_secs: super::unix_now(),
        };
        self.hparams_summary(SESSION_START_TAG, HParamsData::SessionStartInfo(info))
    }

    /// The end of the run for the HParams tab: succeeded (it trained to its end) or failed.
    pub fn session_end(&mut self, succeeded: bool) -> Result<()> {
        let info = SessionEndInfo { status: if succeeded { 1 } else { 2 }, end_time_secs: super::unix_now() };
        self.hparams_summary(SESSION_END_TAG, HParamsData::SessionEndInfo(info))
    }

    /// A summary of the HParams plugin: its data in the metadata, an empty scalar as value
    /// (as TensorBoard's own writer gives it).
    fn hparams_summary(&mut self, tag: &str, data: HParamsData) -> Result<()> {
        let content = prost::Message::encode_to_vec(&HParamsPluginData { version: 0, data: Some(data) });
        let value = Value {
            tag: tag.to_string(),
            simple_value: None,
            tensor: Some(TensorProto { dtype: 1, tensor_shape: Some(TensorShape {}), float_val: vec![0.0] }),
            metadata: Some(SummaryMetadata {
                plugin_data: Some(PluginData { plugin_name: "hparams".into(), content }),
                data_class: 2,
            }),
        };
        self.write(&Event {
            wall_time: super::unix_now(),
            step: 0,
            what: Some(What::Summary(Summary { value: vec![value] })),
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

/// Whether `event` is an HParams summary (a run's hyperparameters, its start or end).
pub fn is_hparams(event: &Event) -> bool {
    match &event.what {
        Some(What::Summary(s)) => s.value.iter().any(|v| {
            v.metadata.as_ref().and_then(|m| m.plugin_data.as_ref()).is_some_and(|p| p.plugin_name == "hparams")
        }),
        _ => false,
    }
}

/// The HParams data of summary `tag` in `events` (the last one written).
pub fn hparams(events: &[Event], tag: &str) -> Option<HParamsData> {
    events
        .iter()
        .rev()
        .filter_map(|e| match &e.what {
            Some(What::Summary(s)) => Some(s),
            _ => None,
        })
        .flat_map(|s| s.value.iter().rev())
        .filter(|v| v.tag == tag)
        .filter_map(|v| v.metadata.as_ref()?.plugin_data.as_ref())
        .filter(|p| p.plugin_name == "hparams")
        .find_map(|p| <HParamsPluginData as prost::Message>::decode(p.content.as_slice()).ok()?.data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes TensorBoard's own protos give for the same messages (tensorboard 2.21's
    /// `plugin_data_pb2.HParamsPluginData(...).SerializeToString(deterministic=True)`,
    /// hparams act = "relu", flag = true, lr = 0.1, group "g", start 1.5; end status
    /// success at 2.5).
    #[test]
    fn hparams_plugin_data_is_encoded_as_tensorboard_encodes_it() {
        let start = HParamsPluginData {
            version: 0,
            data: Some(HParamsData::SessionStartInfo(SessionStartInfo {
                hparams: [("act", "relu"), ("flag", "true"), ("lr", "0.1")]
                    .iter()
                    .map(|(k, v)| (k.to_string(), HParamValue::parse(v)))
                    .collect(),
                group_name: "g".into(),
                start_time_secs: 1.5,
            })),
        };
        let hex = |b: Vec<u8>| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(
            hex(prost::Message::encode_to_vec(&start)),
            "1a380a0d0a0361637412061a0472656c750a0a0a04666c6167120220010a0f0a026c721209119a9999999999b93f22016729000000000000f83f"
        );
        let end = HParamsPluginData {
            version: 0,
            data: Some(HParamsData::SessionEndInfo(SessionEndInfo { status: 1, end_time_secs: 2.5 })),
        };
        assert_eq!(hex(prost::Message::encode_to_vec(&end)), "220b0801110000000000000440");
    }

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
