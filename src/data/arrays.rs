//! NumPy arrays: `[dataset] kind = "npz"` (an `.npz` archive holding `x` and `y`, plain or
//! compressed as `np.savez_compressed` writes it) and `kind = "npy"` (an `.npy` file each).
//! The `.npy` format is read with the npyz crate (any byte order, C or Fortran order), the
//! archive with zip; values are converted to f32 as they are read, straight into their
//! place in the table (images into channel-first order), so the file's values are never
//! held beside their converted copy.

use super::{Loaded, Table, Task};
use crate::error::input_error;
use anyhow::Result;
use npyz::{DType, NpyFile, Order, TypeChar};
use std::io::Read;
use std::path::Path;

/// How an array's samples are laid out: features, or images (channels first or last).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// By the array's rank: `[N, D]` features, `[N, H, W]` grey images, `[N, H, W, C]` or
    /// `[N, C, H, W]` by where the few channels are.
    Auto,
    Features,
    Nhw,
    Nhwc,
    Nchw,
}

impl Layout {
    pub const WORDS: &[&str] = &["auto", "features", "nhw", "nhwc", "nchw"];

    pub fn word(self) -> &'static str {
        Self::WORDS[self as usize]
    }

    pub(crate) fn from_word(word: &str) -> Layout {
        match word {
            "features" => Layout::Features,
            "nhw" => Layout::Nhw,
            "nhwc" => Layout::Nhwc,
            "nchw" => Layout::Nchw,
            _ => Layout::Auto,
        }
    }
}

/// Where the arrays are.
pub enum Files<'a> {
    /// An `.npz` and the names of `x` and `y` in it; an optional validation `.npz` with the
    /// same names.
    Npz { path: &'a Path, x: &'a str, y: &'a str, validation: Option<&'a Path> },
    /// `.npy` files for `x` and `y`, and optionally a validation pair.
    Npy { x: &'a Path, y: &'a Path, validation: Option<(&'a Path, &'a Path)> },
}

/// What kind of numbers an array holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Numbers {
    /// Unsigned bytes (images: pixels 0 to 255).
    Bytes,
    Integers,
    Floats,
}

/// One array read: its shape, its values in the table's order, what they were.
struct Array {
    shape: Vec<usize>,
    values: Vec<f32>,
    numbers: Numbers,
    dtype: String,
}

/// Reads the training (and validation) arrays; `task` and `layout` as the config says
/// (`None`, `Auto`: from the arrays).
pub fn load(files: &Files<'_>, layout: Layout, task: Option<Task>) -> Result<Loaded> {
    let (train, validation) = match files {
        Files::Npz { path, x, y, validation } => {
            (npz_pair(path, x, y, layout)?, validation.map(|v| npz_pair(v, x, y, layout)).transpose()?)
        }
        Files::Npy { x, y, validation } => {
            (npy_pair(x, y, layout)?, validation.map(|(vx, vy)| npy_pair(vx, vy, layout)).transpose()?)
        }
    };
    let (mut part, y) = train;
    let task = match task {
        Some(t) => t,
        None if y.numbers == Numbers::Floats => Task::Regression,
        None => Task::Classification,
    };
    if let Some((vpart, vy)) = &validation {
        if vpart.image != part.image || vpart.table.cols != part.table.cols {
            return Err(input_error(format!(
                "{}: its samples are {}, the training samples {}: validation must have the training samples' shape",
                vpart.source,
                shape_words(&vpart.sample_shape),
                shape_words(&part.sample_shape)
            )));
        }
        check_targets(vy, task, &vpart.y_source)?;
    }
    check_targets(&y, task, &part.y_source)?;
    part.table.y = y.values;
    let image = part.image;
    let pixel_max = (part.numbers == Numbers::Bytes).then_some(255.0);
    let validation = validation.map(|(mut v, vy)| {
        v.table.y = vy.values;
        v.table
    });
    Ok(Loaded { table: part.table, validation, image, task: Some(task), pixel_max })
}

/// The features of one part, before its targets are checked.
struct Part {
    table: Table,
    image: Option<(usize, usize, usize)>,
    sample_shape: Vec<usize>,
    numbers: Numbers,
    /// The file (and array) the features and targets came from, for messages.
    source: String,
    y_source: String,
}

fn npz_pair(path: &Path, x: &str, y: &str, layout: Layout) -> Result<(Part, Array)> {
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| input_error(format!("cannot read {shown}: {e}")))?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| input_error(format!("{shown} is not an .npz file (a zip archive of .npy files): {e}")))?;
    let names: Vec<String> =
        archive.file_names().filter_map(|n| n.ok()?.strip_suffix(".npy").map(str::to_string)).collect::<Vec<_>>();
    let mut open = |name: &str, key: &str| -> Result<Array> {
        let entry = archive.by_name(&format!("{name}.npy")).map_err(|_| {
            let mut held = names.clone();
            held.sort();
            input_error(format!(
                "{shown} holds no array named \"{name}\" (it holds {}); name the arrays with {key} = \"...\" in [dataset]",
                if held.is_empty() { "none".to_string() } else { held.join(", ") }
            ))
        })?;
        read(entry, &format!("{shown}: array \"{name}\""), layout_for(key, layout))
    };
    let xs = open(x, "x")?;
    let ys = open(y, "y")?;
    part(xs, ys, layout, &format!("{shown} (\"{x}\")"), &format!("{shown} (\"{y}\")"))
}

fn npy_pair(x: &Path, y: &Path, layout: Layout) -> Result<(Part, Array)> {
    let open = |path: &Path, key: &str| -> Result<Array> {
        let file =
            std::fs::File::open(path).map_err(|e| input_error(format!("cannot read {}: {e}", path.display())))?;
        read(std::io::BufReader::new(file), &path.display().to_string(), layout_for(key, layout))
    };
    let (xs, ys) = (open(x, "x")?, open(y, "y")?);
    part(xs, ys, layout, &x.display().to_string(), &y.display().to_string())
}

/// How the values of array `key` are placed: images channel-first, targets as they are.
fn layout_for(key: &str, layout: Layout) -> Option<Layout> {
    (key == "x").then_some(layout)
}

/// `x` and `y` of one part checked against each other and the layout.
fn part(x: Array, y: Array, layout: Layout, source: &str, y_source: &str) -> Result<(Part, Array)> {
    let n = x.shape[0];
    let targets = match y.shape[..] {
        [m] | [m, 1] => m,
        _ => {
            return Err(input_error(format!(
                "{y_source} has shape {}; targets are one per sample: [N] or [N, 1]",
                shape_words(&y.shape)
            )));
        }
    };
    if targets != n {
        return Err(input_error(format!(
            "{source} holds {n} samples but {y_source} holds {targets} targets: x and y must have the same length"
        )));
    }
    let layout = resolve(layout, &x.shape, source)?;
    let (c, h, w) = match (layout, &x.shape[1..]) {
        (Layout::Nhw, &[h, w]) => (1, h, w),
        (Layout::Nhwc, &[h, w, c]) => (c, h, w),
        (Layout::Nchw, &[c, h, w]) => (c, h, w),
        _ => (0, 0, 0),
    };
    let image = (layout != Layout::Features).then_some((c, h, w));
    let cols = x.shape[1..].iter().product();
    let sample_shape = x.shape[1..].to_vec();
    let table = Table { x: x.values, cols, y: Vec::new() };
    Ok((
        Part {
            table,
            image,
            sample_shape,
            numbers: x.numbers,
            source: source.to_string(),
            y_source: y_source.to_string(),
        },
        y,
    ))
}

/// The layout of features of `shape` (`auto`: by rank, a 4-D array by where its few
/// channels are), checked against the shape.
pub fn resolve(layout: Layout, shape: &[usize], source: &str) -> Result<Layout> {
    let resolved = match (layout, shape.len()) {
        (Layout::Auto, 2) => Layout::Features,
        (Layout::Auto, 3) => Layout::Nhw,
        (Layout::Auto, 4) => match (shape[1] <= 4, shape[3] <= 4) {
            (true, false) => Layout::Nchw,
            (false, true) => Layout::Nhwc,
            _ => {
                return Err(input_error(format!(
                    "{source} has shape {}: cannot tell where its channels are; write layout = \"nhwc\" or \"nchw\" in [dataset]",
                    shape_words(shape)
                )));
            }
        },
        (Layout::Auto, _) => {
            return Err(input_error(format!(
                "{source} has shape {}; features are [N, D], images [N, H, W], [N, H, W, C] or [N, C, H, W]",
                shape_words(shape)
            )));
        }
        (l, _) => l,
    };
    let rank = match resolved {
        Layout::Features => 2,
        Layout::Nhw => 3,
        _ => 4,
    };
    if shape.len() != rank {
        return Err(input_error(format!(
            "{source} has shape {}, and layout = \"{}\" is {}",
            shape_words(shape),
            resolved.word(),
            match resolved {
                Layout::Features => "[N, D]",
                Layout::Nhw => "[N, H, W]",
                Layout::Nhwc => "[N, H, W, C]",
                _ => "[N, C, H, W]",
            }
        )));
    }
    if shape[1..].contains(&0) {
        return Err(input_error(format!("{source} has shape {}: its samples hold nothing", shape_words(shape))));
    }
    Ok(resolved)
}

/// Targets `y` are what `task` needs: class indices 0, 1, ... (whole, not negative) for a
/// classifier.
fn check_targets(y: &Array, task: Task, source: &str) -> Result<()> {
    if y.values.iter().any(|v| !v.is_finite()) {
        return Err(input_error(format!("{source} holds a target that is NaN or infinite")));
    }
    if task == Task::Classification
        && let Some(bad) = y.values.iter().find(|v| **v < 0.0 || v.fract() != 0.0)
    {
        return Err(input_error(format!(
            "{source} ({}) holds {bad}, which is no class index (0, 1, 2, ...); for a numeric target write task = \"regression\"",
            y.dtype
        )));
    }
    Ok(())
}

/// `[60000, 28, 28]`.
fn shape_words(shape: &[usize]) -> String {
    format!("[{}]", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "))
}

/// Reads one `.npy` stream: its values as f32, features placed by `layout` (images
/// channel-first; `None`: as they are, targets).
fn read<R: Read>(reader: R, shown: &str, layout: Option<Layout>) -> Result<Array> {
    let file = NpyFile::new(reader).map_err(|e| input_error(format!("{shown} is not a NumPy .npy array: {e}")))?;
    let shape: Vec<usize> = file.shape().iter().map(|&d| d as usize).collect();
    let ty = match file.dtype() {
        DType::Plain(ty) => ty,
        other => {
            return Err(input_error(format!(
                "{shown} is a structured array ({}); save plain numeric arrays (np.asarray(a, dtype=np.float32))",
                other.descr()
            )));
        }
    };
    let dtype = ty.to_string();
    if ty.uses_pickled_array() {
        return Err(input_error(format!(
            "{shown} is an object array (dtype=object, pickled Python objects), which runner does not read; save a numeric \
             array, e.g. np.stack(list_of_arrays).astype(np.float32)"
        )));
    }
    if shape.is_empty() {
        return Err(input_error(format!("{shown} is a single number; expected an array with one row per sample")));
    }
    let len = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&l| l <= MAX_VALUES);
    let Some(len) = len else {
        return Err(input_error(format!(
            "{shown} has shape {}: more than the {MAX_VALUES} values runner reads",
            shape_words(&shape)
        )));
    };
    // Where each axis of the file steps in the table: images go channel-first.
    let rank = shape.len();
    let perm: Vec<usize> = match layout.map(|l| resolve(l, &shape, shown)).transpose()? {
        Some(Layout::Nhwc) => vec![0, 3, 1, 2],
        _ => (0..rank).collect(),
    };
    // The table's order of axes is `perm` of the file's; strides in the table.
    let out_dims: Vec<usize> = perm.iter().map(|&a| shape[a]).collect();
    let mut out_strides = vec![0usize; rank];
    let mut stride = 1;
    for k in (0..rank).rev() {
        out_strides[perm[k]] = stride;
        stride *= out_dims[k];
    }
    let order = file.order();
    let mut values = vec![0f32; len];
    let mut place = Placer::new(&shape, &out_strides, order);
    let numbers = match (ty.type_char(), ty.size_field()) {
        (TypeChar::Uint, 1) => Numbers::Bytes,
        (TypeChar::Bool | TypeChar::Int | TypeChar::Uint, _) => Numbers::Integers,
        (TypeChar::Float, _) => Numbers::Floats,
        _ => Numbers::Floats,
    };
    let bad = |e: std::io::Error| input_error(format!("{shown}: cannot read its values ({dtype}): {e}"));
    macro_rules! fill {
        ($t:ty) => {{
            let data = file.data::<$t>().map_err(|e| input_error(format!("{shown}: {e}")))?;
            for v in data {
                values[place.next()] = v.map_err(bad)? as f32;
            }
        }};
    }
    match (ty.type_char(), ty.size_field()) {
        (TypeChar::Uint, 1) => fill!(u8),
        (TypeChar::Uint, 2) => fill!(u16),
        (TypeChar::Uint, 4) => fill!(u32),
        (TypeChar::Uint, 8) => fill!(u64),
        (TypeChar::Int, 1) => fill!(i8),
        (TypeChar::Int, 2) => fill!(i16),
        (TypeChar::Int, 4) => fill!(i32),
        (TypeChar::Int, 8) => fill!(i64),
        (TypeChar::Float, 4) => fill!(f32),
        (TypeChar::Float, 8) => fill!(f64),
        (TypeChar::Bool, 1) => {
            let data = file.data::<bool>().map_err(|e| input_error(format!("{shown}: {e}")))?;
            for v in data {
                values[place.next()] = f32::from(u8::from(v.map_err(bad)?));
            }
        }
        _ => {
            return Err(input_error(format!(
                "{shown} holds {dtype} values; runner reads bool, integers (u8 ... i64) and floats (f32, f64)"
            )));
        }
    }
    if place.count != len {
        return Err(input_error(format!(
            "{shown}: its header promises {len} values ({}), the file holds {}",
            shape_words(&shape),
            place.count
        )));
    }
    Ok(Array { shape, values, numbers, dtype })
}

/// The most values an array may hold (4 Gi: 16 GiB as f32).
const MAX_VALUES: usize = 1 << 32;

/// Where each value read in the file's order goes in the table: a counter over the file's
/// axes (the last fastest in C order, the first in Fortran order) that keeps the table
/// position as it steps.
struct Placer {
    shape: Vec<usize>,
    strides: Vec<usize>,
    /// The axes, fastest first.
    axes: Vec<usize>,
    index: Vec<usize>,
    at: usize,
    count: usize,
}

impl Placer {
    fn new(shape: &[usize], strides: &[usize], order: Order) -> Placer {
        let rank = shape.len();
        let axes = match order {
            Order::C => (0..rank).rev().collect(),
            Order::Fortran => (0..rank).collect(),
        };
        Placer { shape: shape.to_vec(), strides: strides.to_vec(), axes, index: vec![0; rank], at: 0, count: 0 }
    }

    /// The table position of the next value (past the end once all are placed: the
    /// caller's index then fails, which `count` prevents by the header's promise).
    fn next(&mut self) -> usize {
        let here = self.at;
        self.count += 1;
        for &a in &self.axes {
            self.index[a] += 1;
            self.at += self.strides[a];
            if self.index[a] < self.shape[a] {
                return here;
            }
            self.at -= self.strides[a] * self.shape[a];
            self.index[a] = 0;
        }
        here
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use npyz::WriterBuilder as _;

    /// A C-order array of `shape` written by npyz, read back as `layout`.
    fn round_trip(shape: &[u64], values: &[f32], layout: Option<Layout>) -> Vec<f32> {
        let mut bytes = Vec::new();
        let mut w =
            npyz::WriteOptions::<f32>::new().default_dtype().shape(shape).writer(&mut bytes).begin_nd().unwrap();
        w.extend(values.iter().copied()).unwrap();
        w.finish().unwrap();
        read(&bytes[..], "test", layout).unwrap().values
    }

    #[test]
    fn images_channel_last_are_placed_channel_first() {
        // One 2x2 image of 3 channels, channel-last: value = 100 c + 10 h + w.
        let mut hwc = Vec::new();
        for h in 0..2 {
            for w in 0..2 {
                for c in 0..3 {
                    hwc.push((100 * c + 10 * h + w) as f32);
                }
            }
        }
        let chw: Vec<f32> =
            (0..3).flat_map(|c| (0..2).flat_map(move |h| (0..2).map(move |w| (100 * c + 10 * h + w) as f32))).collect();
        assert_eq!(round_trip(&[1, 2, 2, 3], &hwc, Some(Layout::Nhwc)), chw);
        assert_eq!(round_trip(&[1, 3, 2, 2], &chw, Some(Layout::Nchw)), chw);
    }

    #[test]
    fn fortran_order_is_read_in_c_order() {
        // A 2x3 array [[0 1 2] [3 4 5]] stored column by column.
        let mut p = Placer::new(&[2, 3], &[3, 1], Order::Fortran);
        let places: Vec<usize> = (0..6).map(|_| p.next()).collect();
        assert_eq!(places, vec![0, 3, 1, 4, 2, 5]);
    }

    #[test]
    fn layouts_are_checked_against_shapes() {
        assert_eq!(resolve(Layout::Auto, &[5, 28, 28], "x").unwrap(), Layout::Nhw);
        assert_eq!(resolve(Layout::Auto, &[5, 32, 32, 3], "x").unwrap(), Layout::Nhwc);
        assert_eq!(resolve(Layout::Auto, &[5, 3, 32, 32], "x").unwrap(), Layout::Nchw);
        assert_eq!(resolve(Layout::Auto, &[5, 64], "x").unwrap(), Layout::Features);
        let e = resolve(Layout::Auto, &[5, 3, 3, 3], "x").unwrap_err().to_string();
        assert!(e.contains("cannot tell where its channels are"), "{e}");
        let e = resolve(Layout::Nhwc, &[5, 28, 28], "x.npy").unwrap_err().to_string();
        assert_eq!(e, "x.npy has shape [5, 28, 28], and layout = \"nhwc\" is [N, H, W, C]");
    }
}
