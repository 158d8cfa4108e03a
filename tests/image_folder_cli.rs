//! Images in class folders (`[dataset] kind = "image_folder"`, torchvision's `ImageFolder`
//! layout): the digits written as PNG folders train as well as the embedded digits; classes
//! are numbered as torchvision numbers them; colour images load channel-first; `size`
//! resizes; the decoded pixels are cached when asked; bad folders get one clear error each.

mod common;

use common::{config, runner};
use runner::data::{Color, DatasetSpec, ImageFolderSpec, Resample, Scale, SourceSpec, Unreadable, prepare};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// The embedded digits' rows (64 pixels 0..16, then the label), from data/digits.csv.gz.
fn digits() -> Vec<(Vec<u8>, usize)> {
    let gz = fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("data/digits.csv.gz")).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut text).unwrap();
    text.lines()
        .map(|l| {
            let v: Vec<u32> = l.split(',').map(|s| s.trim().parse::<f64>().unwrap() as u32).collect();
            // 0..16 to 0..255, rounded: pixels / 255 is then within 0.002 of pixels / 16.
            (v[..64].iter().map(|&p| ((p as f64) * 255.0 / 16.0).round() as u8).collect(), v[64] as usize)
        })
        .collect()
}

/// The digits as `dir/<label>/<row>.png`, 8x8 grey.
fn write_digits(dir: &Path) {
    for (row, (pixels, label)) in digits().into_iter().enumerate() {
        let class = dir.join(label.to_string());
        fs::create_dir_all(&class).unwrap();
        image::GrayImage::from_raw(8, 8, pixels).unwrap().save(class.join(format!("{row:04}.png"))).unwrap();
    }
}

fn folder(dir: &Path) -> ImageFolderSpec {
    ImageFolderSpec {
        dir: dir.to_path_buf(),
        validation_dir: None,
        size: None,
        resample: Resample::Bilinear,
        color: Color::Rgb,
        unreadable: Unreadable::Refuse,
        cache: false,
    }
}

#[test]
fn the_digits_as_png_folders_train_as_well_as_the_embedded_digits() {
    let dir = TempDir::new().unwrap();
    let images = dir.path().join("digits");
    write_digits(&images);
    // Loaded as written: grey, classes 0..9 in folder order, pixels / 255.
    let d = prepare(&DatasetSpec {
        source: SourceSpec::ImageFolder(ImageFolderSpec { color: Color::Grayscale, ..folder(&images) }),
        scale: Scale::None,
        validation_split: 0.2,
        ..Default::default()
    })
    .unwrap();
    assert_eq!((d.image, d.classes, d.train.len + d.validation.len), (Some((1, 8, 8)), 10, 1797));

    // Five seeds each: one run's accuracy moves by a sample or two with the batches' order.
    let schedule = "[schedule]\nkind = \"cosine_decay\"\nlearning_rate = 0.1\ndecay_steps = \"run\"\n[sweep]\nseeds = [1, 2, 3, 4, 5]\n";
    let embedded = config(dir.path(), "embedded", &format!("name = \"d\"\n{schedule}"));
    let pngs = config(
        dir.path(),
        "pngs",
        &format!(
            "name = \"d\"\n{schedule}[dataset]\nkind = \"image_folder\"\ndir = {:?}\ncolor = \"grayscale\"\n",
            images.display().to_string()
        ),
    );
    for (cfg, out) in [(&embedded, "a"), (&pngs, "b")] {
        runner().arg("run").arg(cfg).args(["--quiet", "--out"]).arg(dir.path().join(out)).assert().success();
    }
    let mean = |exp: &str| {
        let rows = common::csv_rows(&dir.path().join(exp).join("d/summary.csv"));
        let accuracies = common::column(&rows, "final_val_accuracy");
        accuracies.iter().map(|a| a.parse::<f64>().unwrap()).sum::<f64>() / accuracies.len() as f64
    };
    let (a, b) = (mean("a"), mean("b"));
    // The same 359 validation images (the split is per class, in file order), the pixels
    // within 0.002 of the embedded ones, the batches in another order: within a sample.
    assert!((a - b).abs() <= 1.0 / 359.0 + 1e-9, "embedded {a}, PNG folders {b} (mean of 5 seeds)");
    assert!(b > 0.95, "{b}");
}

#[test]
fn classes_are_numbered_by_sorted_name_and_colour_images_load_channel_first() {
    let dir = TempDir::new().unwrap();
    // "10" sorts before "9", as Python sorts the names torchvision numbers.
    for (class, value) in [("9", 90u8), ("10", 10), ("b", 200)] {
        let d = dir.path().join(class);
        fs::create_dir_all(d.join("nested")).unwrap();
        for i in 0..2u8 {
            let img = image::RgbImage::from_fn(3, 2, |x, y| image::Rgb([value + i, (10 * y + x) as u8, 7]));
            // One in a nested folder: torchvision walks each class folder to any depth.
            let to = if i == 0 { d.join("a.PNG") } else { d.join("nested").join("b.png") };
            img.save_with_format(&to, image::ImageFormat::Png).unwrap();
        }
        fs::write(d.join("notes.txt"), "not an image").unwrap();
    }
    let d = prepare(&DatasetSpec {
        source: SourceSpec::ImageFolder(ImageFolderSpec {
            validation_dir: Some(dir.path().into()),
            ..folder(dir.path())
        }),
        scale: Scale::None,
        ..Default::default()
    })
    .unwrap();
    assert_eq!((d.image, d.classes), (Some((3, 2, 3)), 3));
    let y: Vec<u32> = d.train.y.to_vec1().unwrap();
    assert_eq!(y, vec![0, 0, 1, 1, 2, 2], "10, 9, b");
    let x: Vec<f32> = d.train.x.flatten_all().unwrap().to_vec1().unwrap();
    // The first image of class "10": red 10 everywhere, green 10 y + x, blue 7.
    let mut first = vec![10f32; 6];
    first.extend([0., 1., 2., 10., 11., 12.]);
    first.extend([7f32; 6]);
    assert_eq!(&x[..18], &first[..]);

    // Resized once to size, grey by PIL's weights.
    let d = prepare(&DatasetSpec {
        source: SourceSpec::ImageFolder(ImageFolderSpec {
            size: Some([4, 6]),
            color: Color::Grayscale,
            resample: Resample::Nearest,
            ..folder(dir.path())
        }),
        scale: Scale::None,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(d.image, Some((1, 4, 6)));
}

#[test]
fn decoded_pixels_are_cached_when_asked_and_decoded_again_when_a_file_changes() {
    let dir = TempDir::new().unwrap();
    for class in ["a", "b"] {
        fs::create_dir_all(dir.path().join(class)).unwrap();
        for i in 0..3u8 {
            image::GrayImage::from_pixel(4, 4, image::Luma([i * 40 + class.len() as u8]))
                .save(dir.path().join(class).join(format!("{i}.png")))
                .unwrap();
        }
    }
    let spec = DatasetSpec {
        source: SourceSpec::ImageFolder(ImageFolderSpec { cache: true, color: Color::Grayscale, ..folder(dir.path()) }),
        scale: Scale::None,
        validation_split: 0.34,
        ..Default::default()
    };
    let values =
        |spec: &DatasetSpec| -> Vec<f32> { prepare(spec).unwrap().train.x.flatten_all().unwrap().to_vec1().unwrap() };
    let first = values(&spec);
    let cached: Vec<PathBuf> =
        fs::read_dir(dir.path().join(".runner-cache")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert_eq!(values(&spec), first, "read back from the cache");
    // A changed file (size and time) makes another key: decoded again.
    std::thread::sleep(std::time::Duration::from_millis(20));
    image::GrayImage::from_pixel(4, 4, image::Luma([255])).save(dir.path().join("a/0.png")).unwrap();
    assert_ne!(values(&spec), first);
    assert_eq!(fs::read_dir(dir.path().join(".runner-cache")).unwrap().count(), 2);
}

/// A config reading `dir` as an image folder: exit 2 and stderr.
fn refused(dir: &Path, extra: &str) -> String {
    let cfg = config(
        dir,
        "bad",
        &format!(
            "name = \"bad\"\n[train]\nsteps = 2\n[schedule]\nkind = \"constant\"\nlearning_rate = 0.1\n[dataset]\n\
             kind = \"image_folder\"\ndir = {:?}\n{extra}",
            dir.join("images").display().to_string()
        ),
    );
    let o = runner().arg("run").arg(&cfg).arg("--quiet").arg("--out").arg(dir.join("out")).output().unwrap();
    let stderr = String::from_utf8(o.stderr).unwrap();
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(!dir.join("out").exists() && !stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn bad_folders_get_one_clear_error_each() {
    let dir = TempDir::new().unwrap();
    let images = dir.path().join("images");
    let grey = |path: PathBuf, w: u32, h: u32| {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::GrayImage::from_pixel(w, h, image::Luma([9])).save(path).unwrap();
    };
    grey(images.join("a/1.png"), 8, 8);
    grey(images.join("b/1.png"), 8, 8);
    grey(images.join("b/2.png"), 9, 7);
    let e = refused(dir.path(), "");
    assert!(
        e.contains("the images differ in size:") && e.contains("b/2.png is 9x7") && e.contains("size = [H, W]"),
        "{e}"
    );
    // Resized, they load; a folder without images is refused.
    fs::create_dir_all(images.join("c")).unwrap();
    let e = refused(dir.path(), "size = [8, 8]\n");
    assert!(e.contains("class folder") && e.contains("images/c holds no images (.png, .jpg, .jpeg)"), "{e}");
    fs::remove_dir(images.join("c")).unwrap();
    // A corrupt PNG: refused with its name, or skipped when asked.
    fs::write(images.join("a/broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let e = refused(dir.path(), "size = [8, 8]\n");
    assert!(e.contains("a/broken.png cannot be read as an image") && e.contains("unreadable = \"skip\""), "{e}");
    let cfg = dir.path().join("bad.toml");
    let text = fs::read_to_string(&cfg).unwrap() + "unreadable = \"skip\"\n";
    fs::write(&cfg, text).unwrap();
    let o = runner().arg("run").arg(&cfg).arg("--quiet").arg("--dry-run").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("left out 1 unreadable image"));
    // One class is no classification; a validation folder must have the same classes.
    fs::remove_file(images.join("a/broken.png")).unwrap();
    let e =
        refused(dir.path(), &format!("size = [8, 8]\nvalidation_dir = {:?}\n", images.join("b").display().to_string()));
    assert!(e.contains("holds 0 class folders"), "{e}");
    fs::remove_dir_all(images.join("a")).unwrap();
    let e = refused(dir.path(), "size = [8, 8]\n");
    assert!(e.contains("holds 1 class folder;"), "{e}");
    let e = refused(dir.path(), "size = [8]\n");
    assert!(e.contains("bad.toml") && e.contains("write size = [height, width]"), "{e}");
}
