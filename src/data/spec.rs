//! The `[dataset]` table: which data, how it is split and scaled.

use super::arrays::{self, Layout};
use super::augment::AugmentSpec;
use super::cifar::{self, Cifar};
use super::image_folder::{self, Color, ImageFolderSpec, Resample, Unreadable};
use super::text::Tokens;
use super::{Loaded, csv_file, digits, idx, synthetic};
use crate::params::{ParamSource, Rule};
use anyhow::Result;
use std::path::PathBuf;

/// Classification (cross-entropy) or regression (mean squared error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Classification,
    Regression,
}

/// Where the rows come from.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceSpec {
    /// UCI handwritten digits, embedded in the binary.
    Digits,
    Spirals {
        classes: u64,
        points_per_class: u64,
        noise: f64,
    },
    Moons {
        points: u64,
        noise: f64,
    },
    Blobs {
        classes: u64,
        points_per_class: u64,
        dims: u64,
        spread: f64,
    },
    Sine {
        points: u64,
        noise: f64,
    },
    Csv {
        path: PathBuf,
        target: String,
        header: bool,
        task: Task,
        validation_path: Option<PathBuf>,
    },
    Mnist {
        dir: PathBuf,
        test_as_validation: bool,
    },
    /// CIFAR-10 (binary version); validation on the test file by default.
    Cifar10 {
        dir: PathBuf,
        test_as_validation: bool,
    },
    /// CIFAR-100 (binary version), its fine or coarse labels.
    Cifar100 {
        dir: PathBuf,
        label: CifarLabel,
        test_as_validation: bool,
    },
    /// NumPy arrays `x` and `y` in an `.npz` (src/data/arrays.rs).
    Npz {
        path: PathBuf,
        x: String,
        y: String,
        validation_path: Option<PathBuf>,
        layout: Layout,
        /// `None`: classification for integer targets, regression for floats.
        #[serde(skip_serializing_if = "Option::is_none")]
        task: Option<Task>,
    },
    /// NumPy arrays in an `.npy` file each.
    Npy {
        x_path: PathBuf,
        y_path: PathBuf,
        validation_x_path: Option<PathBuf>,
        validation_y_path: Option<PathBuf>,
        layout: Layout,
        #[serde(skip_serializing_if = "Option::is_none")]
        task: Option<Task>,
    },
    /// Images in class folders, torchvision's `ImageFolder` layout (src/data/image_folder.rs).
    ImageFolder(ImageFolderSpec),
    /// A UTF-8 text for a language model (src/data/text.rs); the embedded Shakespeare
    /// without a path.
    Text {
        #[serde(skip_serializing_if = "Option::is_none")]
        path: Option<PathBuf>,
        tokens: Tokens,
        context: u64,
    },
}

/// Which of CIFAR-100's labels is the class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CifarLabel {
    /// The 100 classes.
    Fine,
    /// The 20 superclasses.
    Coarse,
}

/// Every `[dataset] kind`.
pub const SOURCES: &[&str] = &[
    "digits",
    "spirals",
    "moons",
    "blobs",
    "sine",
    "csv",
    "mnist",
    "cifar10",
    "cifar100",
    "npz",
    "npy",
    "image_folder",
    "text",
];

/// A validated `[dataset]` table.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DatasetSpec {
    #[serde(flatten)]
    pub source: SourceSpec,
    pub validation_split: f64,
    pub scale: Scale,
    /// Seed for generating synthetic data and for the split; separate from the training
    /// seed so that runs over several training seeds share one copy of the data.
    pub seed: u64,
    /// Train-time augmentation (`[dataset.augment]`): applied by the trainer, so data sets
    /// that differ only in it are loaded once.
    #[serde(skip_serializing_if = "AugmentSpec::is_off")]
    pub augment: AugmentSpec,
}

impl Default for DatasetSpec {
    fn default() -> Self {
        DatasetSpec {
            source: SourceSpec::Digits,
            validation_split: 0.2,
            scale: Scale::Pixels,
            seed: crate::DEFAULT_SEED,
            augment: AugmentSpec::default(),
        }
    }
}

/// How features are scaled before training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    /// Pixel values divided by their largest possible value (digits: 16, MNIST: 255), to
    /// [0, 1]: the default for images. Standardising near-constant border pixels divides
    /// by tiny deviations (validation z-scores of 39 on digits).
    Pixels,
    /// Zero mean and unit variance per feature, from the training part's statistics: the
    /// default for tabular data.
    Standardize,
    /// Zero mean and unit variance per colour channel, from the training part's
    /// statistics, as CIFAR models are trained: the default for CIFAR.
    Channels,
    /// As the data come.
    None,
    /// NumPy arrays (`npz`, `npy`): `pixels` for u8 arrays, else `standardize` for
    /// features and `channels` for images.
    Auto,
}

impl DatasetSpec {
    /// Reads the parameters of source `kind`; `None` for an unknown kind. Relative paths
    /// are taken from `base` (the config file's directory).
    pub fn read<P: ParamSource>(kind: &str, p: &mut P, base: &std::path::Path) -> Option<Result<Self, P::Error>> {
        let path = |s: String| base.join(s);
        let source = (|| -> Result<Option<SourceSpec>, P::Error> {
            Ok(Some(match kind {
                "digits" => SourceSpec::Digits,
                "spirals" => SourceSpec::Spirals {
                    classes: p.steps("classes", Some(3), 2, "number of spiral arms")?,
                    points_per_class: p.steps("points_per_class", Some(200), 1, "points on each arm")?,
                    noise: p.number("noise", Some(0.2), Rule::NonNegative, "Gaussian noise on the angle")?,
                },
                "moons" => SourceSpec::Moons {
                    points: p.steps("points", Some(1000), 2, "total points, half per moon")?,
                    noise: p.number("noise", Some(0.1), Rule::NonNegative, "Gaussian noise added to each point")?,
                },
                "blobs" => SourceSpec::Blobs {
                    classes: p.steps("classes", Some(3), 2, "number of clusters")?,
                    points_per_class: p.steps("points_per_class", Some(200), 1, "points per cluster")?,
                    dims: p.steps("dims", Some(2), 1, "features per point")?,
                    spread: p.number("spread", Some(1.0), Rule::Positive, "standard deviation of each cluster")?,
                },
                "sine" => SourceSpec::Sine {
                    points: p.steps("points", Some(1000), 2, "points with x uniform in [-pi, pi]")?,
                    noise: p.number("noise", Some(0.1), Rule::NonNegative, "Gaussian noise added to sin(x)")?,
                },
                "csv" => SourceSpec::Csv {
                    path: path(p.text("path", "the CSV file, relative to the config file")?),
                    target: p
                        .optional_text(
                            "target",
                            "the last column",
                            "the target column: its header name or 0-based index",
                        )?
                        .unwrap_or_default(),
                    header: p.flag("header", true, "whether the first row names the columns")?,
                    task: match p.choice(
                        "task",
                        &["classification", "regression"],
                        Some("classification"),
                        "what to predict",
                    )? {
                        "regression" => Task::Regression,
                        _ => Task::Classification,
                    },
                    validation_path: p
                        .optional_text(
                            "validation_path",
                            "split off validation_split",
                            "a validation CSV in the same layout",
                        )?
                        .map(path),
                },
                "mnist" => SourceSpec::Mnist {
                    dir: path(
                        p.text("dir", "directory with train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]")?,
                    ),
                    test_as_validation: p.flag(
                        "test_as_validation",
                        false,
                        "validate on the t10k-* files instead of a split",
                    )?,
                },
                "cifar10" | "cifar100" => {
                    let dir = path(p.text(
                        "dir",
                        "directory with the binary version of CIFAR (data_batch_1.bin ... or train.bin, or the .tar.gz as downloaded)",
                    )?);
                    let label = if kind == "cifar100" {
                        match p.choice(
                            "label",
                            &["fine", "coarse"],
                            Some("fine"),
                            "CIFAR-100's 100 fine classes or its 20 coarse superclasses",
                        )? {
                            "coarse" => CifarLabel::Coarse,
                            _ => CifarLabel::Fine,
                        }
                    } else {
                        CifarLabel::Fine
                    };
                    let test_as_validation = p.flag(
                        "test_as_validation",
                        true,
                        "validate on the test file, as papers report (false: split validation_split off the training files)",
                    )?;
                    if kind == "cifar10" {
                        SourceSpec::Cifar10 { dir, test_as_validation }
                    } else {
                        SourceSpec::Cifar100 { dir, label, test_as_validation }
                    }
                }
                "npz" | "npy" => {
                    let layout = Layout::from_word(p.choice(
                        "layout",
                        Layout::WORDS,
                        Some("auto"),
                        "how x holds its samples: features [N, D], or images [N, H, W], [N, H, W, C] (nhwc) or [N, C, H, W] (nchw); auto: by its shape",
                    )?);
                    let task = match p.choice(
                        "task",
                        &["auto", "classification", "regression"],
                        Some("auto"),
                        "what to predict; auto: classes for integer y, a value for float y",
                    )? {
                        "classification" => Some(Task::Classification),
                        "regression" => Some(Task::Regression),
                        _ => None,
                    };
                    if kind == "npz" {
                        SourceSpec::Npz {
                            path: path(p.text("path", "the .npz file (np.savez or np.savez_compressed), relative to the config file")?),
                            x: p.optional_text("x", "x", "the name of the features' array in the .npz")?.unwrap_or_else(|| "x".into()),
                            y: p.optional_text("y", "y", "the name of the targets' array in the .npz")?.unwrap_or_else(|| "y".into()),
                            validation_path: p
                                .optional_text(
                                    "validation_path",
                                    "split off validation_split",
                                    "a validation .npz with arrays of the same names",
                                )?
                                .map(path),
                            layout,
                            task,
                        }
                    } else {
                        let x_path = path(p.text("x_path", "the features' .npy file, relative to the config file")?);
                        let y_path = path(p.text("y_path", "the targets' .npy file, relative to the config file")?);
                        let vx = p.optional_text("validation_x_path", "split off validation_split", "validation features (.npy)")?;
                        let vy = p.optional_text("validation_y_path", "split off validation_split", "validation targets (.npy)")?;
                        p.check(vx.is_some() == vy.is_some(), if vx.is_some() { "validation_x_path" } else { "validation_y_path" }, || {
                            "needs its pair: give validation_x_path and validation_y_path together, or neither (then validation_split is split off)".to_string()
                        })?;
                        SourceSpec::Npy {
                            x_path,
                            y_path,
                            validation_x_path: vx.map(path),
                            validation_y_path: vy.map(path),
                            layout,
                            task,
                        }
                    }
                }
                "image_folder" => {
                    let dir = path(p.text("dir", "the folder of class folders: dir/<class>/<image>.png (or .jpg, .jpeg)")?);
                    let validation_dir = p
                        .optional_text("validation_dir", "split off validation_split", "a validation folder with the same class folders")?
                        .map(path);
                    let size = p.counts("size", &[], 1, "[height, width] every image is resized to at load (default: as they are, all one size)")?;
                    p.check(size.is_empty() || size.len() == 2, "size", || {
                        format!("has {} numbers; write size = [height, width], e.g. [32, 32]", size.len())
                    })?;
                    let resample = match p.choice(
                        "resample",
                        &["bilinear", "nearest", "bicubic", "lanczos3"],
                        Some("bilinear"),
                        "how images are resized to size (bilinear: torchvision's default)",
                    )? {
                        "nearest" => Resample::Nearest,
                        "bicubic" => Resample::Bicubic,
                        "lanczos3" => Resample::Lanczos3,
                        _ => Resample::Bilinear,
                    };
                    let color = match p.choice("color", &["rgb", "grayscale"], Some("rgb"), "3 colour channels, or 1 grey (PIL's weights)")? {
                        "grayscale" => Color::Grayscale,
                        _ => Color::Rgb,
                    };
                    let unreadable = match p.choice(
                        "unreadable",
                        &["refuse", "skip"],
                        Some("refuse"),
                        "a file that does not decode: refuse the data set, naming it, or skip it with a warning",
                    )? {
                        "skip" => Unreadable::Skip,
                        _ => Unreadable::Refuse,
                    };
                    let cache = p.flag("cache", false, "keep the decoded pixels in dir/.runner-cache/ for the next process (Slurm tasks)")?;
                    SourceSpec::ImageFolder(ImageFolderSpec {
                        dir,
                        validation_dir,
                        size: (size.len() == 2).then(|| [size[0], size[1]]),
                        resample,
                        color,
                        unreadable,
                        cache,
                    })
                }
                "text" => SourceSpec::Text {
                    path: p
                        .optional_text(
                            "path",
                            "the embedded Shakespeare (eight plays, data/README.md)",
                            "a UTF-8 text file (.gz for gzipped), relative to the config file",
                        )?
                        .map(path),
                    tokens: match p.choice(
                        "tokens",
                        &["char", "byte"],
                        Some("char"),
                        "char: one token per character, the vocabulary is the text's characters; byte: one per UTF-8 byte, 256 tokens",
                    )? {
                        "byte" => Tokens::Byte,
                        _ => Tokens::Char,
                    },
                    context: p.steps("context", Some(128), 1, "tokens per window: the most a model reads to predict the next")?,
                },
                _ => return Ok(None),
            }))
        })();
        let source = match source {
            Ok(Some(s)) => s,
            Ok(None) => return None,
            Err(e) => return Some(Err(e)),
        };
        Some((|| {
            let is_text = matches!(source, SourceSpec::Text { .. });
            let validation_split = p.number(
                "validation_split",
                Some(if is_text { 0.1 } else { 0.2 }),
                Rule::OpenUnitInterval,
                if is_text {
                    "fraction of the text, at its end, held out for validation"
                } else {
                    "fraction held out for validation (seeded, stratified for classes)"
                },
            )?;
            let arrays = matches!(source, SourceSpec::Npz { .. } | SourceSpec::Npy { .. });
            let folder = matches!(source, SourceSpec::ImageFolder(_));
            let default = match &source {
                SourceSpec::Text { .. } => "none",
                _ if arrays => "auto",
                SourceSpec::Cifar10 { .. } | SourceSpec::Cifar100 { .. } => "channels",
                _ if folder => "pixels",
                s if s.pixel_max().is_some() => "pixels",
                _ => "standardize",
            };
            let words: &[&str] = if arrays {
                &["auto", "pixels", "standardize", "channels", "none"]
            } else {
                &["pixels", "standardize", "channels", "none"]
            };
            let word = p.choice(
                "scale",
                words,
                Some(default),
                "pixels: divide by the largest pixel value, to [0, 1] (default for digits and mnist); standardize: training mean and std per feature (default for tables); channels: training mean and std per colour channel (default for CIFAR); none; auto (npz, npy, the default there): pixels for u8 arrays, else standardize, or channels for images",
            )?;
            let scale = match word {
                "pixels" => Scale::Pixels,
                "standardize" => Scale::Standardize,
                "channels" => Scale::Channels,
                "auto" => Scale::Auto,
                _ => Scale::None,
            };
            for (wanted, what) in [(Scale::Pixels, "pixels"), (Scale::Channels, "channels")] {
                p.check(scale != wanted || arrays || folder || source.pixel_max().is_some(), "scale", || {
                    format!("is \"{what}\", which is for image data sets (digits, mnist, cifar10, cifar100); {} data are scaled with \"standardize\" or \"none\"", source.kind())
                })?;
            }
            p.check(!is_text || scale == Scale::None, "scale", || {
                "applies to numeric features; text is tokens: leave scale out (or write \"none\")".to_string()
            })?;
            // The key this replaced, refused with what to write instead.
            if p.optional_flag("standardize")?.is_some() {
                return Err(p.invalid(
                    "standardize",
                    "was replaced by `scale`: write scale = \"standardize\" (or \"none\"); image data sets now default to scale = \"pixels\"".into(),
                ));
            }
            let seed = p.steps(
                "seed",
                Some(crate::DEFAULT_SEED),
                0,
                "seed for synthetic data and the split (not the training seed, so seeds share one data set)",
            )?;
            Ok(DatasetSpec { source, validation_split, scale, seed, augment: AugmentSpec::default() })
        })())
    }
}

impl SourceSpec {
    /// The largest value a pixel of an image source takes; `None` for other data.
    pub fn pixel_max(&self) -> Option<f32> {
        match self {
            SourceSpec::Digits => Some(16.0),
            SourceSpec::Mnist { .. } | SourceSpec::Cifar10 { .. } | SourceSpec::Cifar100 { .. } => Some(255.0),
            _ => None,
        }
    }

    /// Whether a mirror image of a sample is still a sample of its class (photographs).
    pub fn mirrored(&self) -> bool {
        matches!(self, SourceSpec::Cifar10 { .. } | SourceSpec::Cifar100 { .. })
    }

    /// The `kind` word.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceSpec::Digits => "digits",
            SourceSpec::Spirals { .. } => "spirals",
            SourceSpec::Moons { .. } => "moons",
            SourceSpec::Blobs { .. } => "blobs",
            SourceSpec::Sine { .. } => "sine",
            SourceSpec::Csv { .. } => "csv",
            SourceSpec::Mnist { .. } => "mnist",
            SourceSpec::Cifar10 { .. } => "cifar10",
            SourceSpec::Cifar100 { .. } => "cifar100",
            SourceSpec::Npz { .. } => "npz",
            SourceSpec::Npy { .. } => "npy",
            SourceSpec::ImageFolder(_) => "image_folder",
            SourceSpec::Text { .. } => "text",
        }
    }

    pub fn task(&self) -> Task {
        match self {
            SourceSpec::Sine { .. } => Task::Regression,
            SourceSpec::Csv { task, .. } => *task,
            // Inferred from the targets where the config does not say (`Loaded::task`).
            SourceSpec::Npz { task, .. } | SourceSpec::Npy { task, .. } => task.unwrap_or(Task::Classification),
            _ => Task::Classification,
        }
    }

    /// Reads or generates the rows.
    pub fn load(&self, seed: u64) -> Result<Loaded> {
        let plain = |table| Loaded::new(table, None, None);
        Ok(match self {
            SourceSpec::Digits => Loaded::new(digits::load()?, None, Some((1, 8, 8))),
            SourceSpec::Spirals { classes, points_per_class, noise } => {
                plain(synthetic::spirals(*classes as usize, *points_per_class as usize, *noise, seed))
            }
            SourceSpec::Moons { points, noise } => plain(synthetic::moons(*points as usize, *noise, seed)),
            SourceSpec::Blobs { classes, points_per_class, dims, spread } => {
                plain(synthetic::blobs(*classes as usize, *points_per_class as usize, *dims as usize, *spread, seed))
            }
            SourceSpec::Sine { points, noise } => plain(synthetic::sine(*points as usize, *noise, seed)),
            SourceSpec::Csv { path, target, header, task, validation_path } => {
                let table = csv_file::load(path, target, *header, *task)?;
                let validation = match validation_path {
                    Some(v) => Some(csv_file::load(v, target, *header, *task)?),
                    None => None,
                };
                Loaded::new(table, validation, None)
            }
            SourceSpec::Npz { path, x, y, validation_path, layout, task } => arrays::load(
                &arrays::Files::Npz { path, x, y, validation: validation_path.as_deref() },
                *layout,
                *task,
            )?,
            SourceSpec::ImageFolder(spec) => image_folder::load(spec)?,
            SourceSpec::Npy { x_path, y_path, validation_x_path, validation_y_path, layout, task } => {
                let validation = validation_x_path.as_deref().zip(validation_y_path.as_deref());
                arrays::load(&arrays::Files::Npy { x: x_path, y: y_path, validation }, *layout, *task)?
            }
            SourceSpec::Mnist { dir, test_as_validation } => idx::load(dir, *test_as_validation)?,
            SourceSpec::Cifar10 { dir, test_as_validation } => cifar::load(dir, Cifar::Ten, *test_as_validation)?,
            SourceSpec::Cifar100 { dir, label, test_as_validation } => {
                let which = if *label == CifarLabel::Coarse { Cifar::HundredCoarse } else { Cifar::HundredFine };
                cifar::load(dir, which, *test_as_validation)?
            }
            SourceSpec::Text { .. } => anyhow::bail!("text is loaded as tokens (data::text), not as a table"),
        })
    }
}
