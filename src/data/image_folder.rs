//! `[dataset] kind = "image_folder"`: images in torchvision's `ImageFolder` layout,
//! `dir/<class>/**/*.png|jpg|jpeg`, classes numbered in the sorted order of their folder
//! names (as torchvision numbers them), files within a class in sorted order. Decoded in
//! parallel (a progress bar on a terminal), converted to RGB or grey (PIL's weights, as
//! torchvision's `Grayscale`), resized once to `size` with the resampling named, stored
//! channel-first as the convolutional models read them. With `cache = true` the decoded
//! pixels are kept in `dir/.runner-cache/`, keyed by the files' names, sizes and times and
//! the options, so a sweep's Slurm tasks (each a process) decode once.

use super::{Loaded, Table};
use crate::error::input_error;
use anyhow::{Context as _, Result};
use rayon::prelude::*;
use std::path::Path;
use std::path::PathBuf;

/// `kind = "image_folder"`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ImageFolderSpec {
    pub dir: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation_dir: Option<PathBuf>,
    /// `[H, W]` every image is resized to at load; `None`: all must be one size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<[u64; 2]>,
    pub resample: Resample,
    pub color: Color,
    pub unreadable: Unreadable,
    /// Keep the decoded pixels in `dir/.runner-cache/` for the next process.
    pub cache: bool,
}

/// How images are resized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resample {
    Nearest,
    /// Linear interpolation in both directions (torchvision's default).
    Bilinear,
    /// Catmull-Rom cubic.
    Bicubic,
    Lanczos3,
}

/// Colour or grey images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Color {
    Rgb,
    Grayscale,
}

/// What to do with a file that does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unreadable {
    Refuse,
    Skip,
}

/// The file endings read (any case).
pub const EXTENSIONS: &[&str] = &["png", "jpg", "jpeg"];

/// Reads the training folder (and the validation folder).
pub fn load(spec: &ImageFolderSpec) -> Result<Loaded> {
    let train = read_folder(&spec.dir, spec, None)?;
    let validation = match &spec.validation_dir {
        Some(v) => Some(read_folder(v, spec, Some((&train.classes, &spec.dir)))?),
        None => None,
    };
    if let Some(v) = &validation
        && v.shape != train.shape
    {
        let ((c, h, w), (vc, vh, vw)) = (train.shape, v.shape);
        return Err(input_error(format!(
            "{}: its images are {vw}x{vh} with {vc} channel(s), the training images {w}x{h} with {c}: give size = [H, W] to \
             resize both",
            spec.validation_dir.as_deref().unwrap_or(Path::new("")).display()
        )));
    }
    let image = Some(train.shape);
    let mut loaded = Loaded::new(train.table, validation.map(|v| v.table), image);
    loaded.task = Some(super::Task::Classification);
    loaded.pixel_max = Some(255.0);
    Ok(loaded)
}

/// One folder read.
struct Folder {
    table: Table,
    classes: Vec<String>,
    shape: (usize, usize, usize),
}

/// The images of one class folder and their class.
struct Listing {
    classes: Vec<String>,
    /// (file, class index), classes in order, files sorted within each.
    files: Vec<(PathBuf, usize)>,
}

fn list(dir: &Path) -> Result<Listing> {
    let shown = dir.display();
    let entries = std::fs::read_dir(dir).map_err(|e| {
        input_error(format!("cannot read the image folder {shown}: {e} (expected {shown}/<class>/<image>.png or .jpg)"))
    })?;
    let mut classes: Vec<(String, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {shown}"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        classes.push((name, entry.path()));
    }
    // torchvision sorts the class names as Python sorts strings: by code point.
    classes.sort_by(|a, b| a.0.cmp(&b.0));
    if classes.len() < 2 {
        return Err(input_error(format!(
            "{shown} holds {} class folder{}; image_folder reads {shown}/<class>/<image>.png (or .jpg, .jpeg), one folder \
             per class, at least two",
            classes.len(),
            if classes.len() == 1 { "" } else { "s" }
        )));
    }
    let mut files = Vec::new();
    for (index, (_, path)) in classes.iter().enumerate() {
        let mut found = Vec::new();
        walk(path, &mut found)?;
        if found.is_empty() {
            return Err(input_error(format!(
                "class folder {} holds no images ({}); remove it or add images",
                path.display(),
                EXTENSIONS.iter().map(|e| format!(".{e}")).collect::<Vec<_>>().join(", ")
            )));
        }
        found.sort();
        files.extend(found.into_iter().map(|f| (f, index)));
    }
    Ok(Listing { classes: classes.into_iter().map(|(n, _)| n).collect(), files })
}

/// The image files under `dir`, at any depth.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry.with_context(|| format!("cannot list {}", dir.display()))?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads `dir`; `same_as`: the training folder's classes (and the folder), which a
/// validation folder must have.
fn read_folder(dir: &Path, spec: &ImageFolderSpec, same_as: Option<(&Vec<String>, &PathBuf)>) -> Result<Folder> {
    let listing = list(dir)?;
    if let Some((classes, train_dir)) = same_as
        && *classes != listing.classes
    {
        let missing: Vec<&String> = classes.iter().filter(|c| !listing.classes.contains(c)).collect();
        let extra: Vec<&String> = listing.classes.iter().filter(|c| !classes.contains(c)).collect();
        return Err(input_error(format!(
            "{} and {} have different classes (validation lacks [{}], has [{}] more): the class folders must be the same",
            dir.display(),
            train_dir.display(),
            missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
            extra.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    let key = cache_key(dir, &listing, spec);
    let cache_path = dir.join(".runner-cache").join(format!("{key}.safetensors"));
    if spec.cache
        && let Some(folder) = read_cache(&cache_path, &listing)
    {
        return Ok(folder);
    }
    let channels = if spec.color == Color::Grayscale { 1 } else { 3 };
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(listing.files.len() as u64),
        indicatif::ProgressDrawTarget::stderr_with_hz(4),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template("decoding {prefix} {bar:30} {pos}/{len} images")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_prefix(dir.display().to_string());
    let decoded: Vec<Result<Decoded, String>> = listing
        .files
        .par_iter()
        .map(|(path, _)| {
            let r = decode(path, spec, channels);
            bar.inc(1);
            r
        })
        .collect();
    bar.finish_and_clear();
    let mut kept: Vec<(&Path, usize, u32, u32, Vec<u8>)> = Vec::with_capacity(decoded.len());
    let mut skipped: Vec<String> = Vec::new();
    for ((path, class), result) in listing.files.iter().zip(decoded) {
        match result {
            Ok((w, h, pixels)) => kept.push((path, *class, w, h, pixels)),
            Err(why) if spec.unreadable == Unreadable::Skip => skipped.push(format!("{} ({why})", path.display())),
            Err(why) => {
                return Err(input_error(format!(
                    "{} cannot be read as an image: {why}; remove it, or write unreadable = \"skip\" in [dataset] to leave \
                     such files out",
                    path.display()
                )));
            }
        }
    }
    if !skipped.is_empty() {
        eprintln!(
            "warning: {}: left out {} unreadable image{}: {}",
            dir.display(),
            skipped.len(),
            if skipped.len() == 1 { "" } else { "s" },
            skipped.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
        );
    }
    let Some(&(first, _, w, h, _)) = kept.first() else {
        return Err(input_error(format!("{}: none of its images could be read", dir.display())));
    };
    // Without `size`, every image must already be the first's size.
    if let Some(&(other, _, ow, oh, _)) = kept.iter().find(|k| (k.2, k.3) != (w, h)) {
        return Err(input_error(format!(
            "the images differ in size: {} is {w}x{h}, {} is {ow}x{oh}; give size = [H, W] in [dataset] to resize them \
             all (once, at load)",
            first.display(),
            other.display()
        )));
    }
    let (h, w) = (h as usize, w as usize);
    let per = channels * h * w;
    let mut x = Vec::with_capacity(kept.len() * per);
    let mut y = Vec::with_capacity(kept.len());
    for (_, class, _, _, pixels) in &kept {
        x.extend(pixels.iter().map(|&p| p as f32));
        y.push(*class as f32);
    }
    let folder = Folder { table: Table { x, cols: per, y }, classes: listing.classes.clone(), shape: (channels, h, w) };
    if spec.cache {
        let bytes: Vec<u8> = kept.iter().flat_map(|k| k.4.iter().copied()).collect();
        if let Err(e) = write_cache(&cache_path, &folder, &bytes) {
            eprintln!("warning: cannot keep the decoded images in {}: {e:#}", cache_path.display());
        }
    }
    Ok(folder)
}

/// An image's width, height and `channels` x H x W bytes (channel-first).
type Decoded = (u32, u32, Vec<u8>);

/// One image, resized to `spec.size`.
fn decode(path: &Path, spec: &ImageFolderSpec, channels: usize) -> Result<Decoded, String> {
    let reader = image::io::Reader::open(path).map_err(|e| e.to_string())?;
    let reader = reader.with_guessed_format().map_err(|e| e.to_string())?;
    let img = reader.decode().map_err(|e| e.to_string())?;
    let rgb = img.to_rgb8();
    let rgb = match spec.size {
        Some([h, w]) if (rgb.height(), rgb.width()) != (h as u32, w as u32) => {
            image::imageops::resize(&rgb, w as u32, h as u32, spec.resample.filter())
        }
        _ => rgb,
    };
    let (w, h) = (rgb.width(), rgb.height());
    let n = (w * h) as usize;
    let mut out = vec![0u8; channels * n];
    for (i, p) in rgb.pixels().enumerate() {
        let [r, g, b] = p.0;
        if channels == 1 {
            // PIL's convert("L"): ITU-R 601-2 luma, rounded.
            out[i] = ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8;
        } else {
            out[i] = r;
            out[n + i] = g;
            out[2 * n + i] = b;
        }
    }
    Ok((w, h, out))
}

/// What decides the decoded pixels: the options, and each file's name, size and time.
fn cache_key(dir: &Path, listing: &Listing, spec: &ImageFolderSpec) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(format!("v1 {:?} {:?} {:?}\n", spec.color, spec.size, spec.resample).as_bytes());
    for (path, class) in &listing.files {
        let meta = std::fs::metadata(path).ok();
        let time = meta
            .as_ref()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let rel = path.strip_prefix(dir).unwrap_or(path);
        h.update(format!("{} {class} {} {time}\n", rel.display(), meta.map_or(0, |m| m.len())).as_bytes());
    }
    h.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect()
}

fn read_cache(path: &Path, listing: &Listing) -> Option<Folder> {
    let bytes = std::fs::read(path).ok()?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).ok()?;
    let tensors = safetensors::SafeTensors::deserialize(&bytes).ok()?;
    let x = tensors.tensor("x").ok()?;
    let y = tensors.tensor("y").ok()?;
    let &[n, c, h, w] = x.shape() else { return None };
    let classes: Vec<String> = serde_json::from_str(meta.metadata().as_ref()?.get("classes")?).ok()?;
    if classes != listing.classes || y.shape() != [n] {
        return None;
    }
    let table = Table {
        x: x.data().iter().map(|&p| p as f32).collect(),
        cols: c * h * w,
        y: y.data().chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32).collect(),
    };
    Some(Folder { table, classes, shape: (c, h, w) })
}

fn write_cache(path: &Path, folder: &Folder, pixels: &[u8]) -> Result<()> {
    let (c, h, w) = folder.shape;
    let n = folder.table.rows();
    let labels: Vec<u8> = folder.table.y.iter().flat_map(|&v| (v as u32).to_le_bytes()).collect();
    let x = safetensors::tensor::TensorView::new(safetensors::Dtype::U8, vec![n, c, h, w], pixels)?;
    let y = safetensors::tensor::TensorView::new(safetensors::Dtype::U32, vec![n], &labels)?;
    let meta = std::collections::HashMap::from([("classes".to_string(), serde_json::to_string(&folder.classes)?)]);
    let bytes = safetensors::serialize([("x", x), ("y", y)], Some(meta))?;
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(".tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

impl Resample {
    fn filter(self) -> image::imageops::FilterType {
        match self {
            Resample::Nearest => image::imageops::FilterType::Nearest,
            Resample::Bilinear => image::imageops::FilterType::Triangle,
            Resample::Bicubic => image::imageops::FilterType::CatmullRom,
            Resample::Lanczos3 => image::imageops::FilterType::Lanczos3,
        }
    }
}
