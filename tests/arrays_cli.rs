//! NumPy data (`[dataset] kind = "npz"` / `"npy"`): files numpy wrote
//! (tests/reference/make_arrays.py: plain and compressed `.npz`, channel-last and
//! channel-first images, Fortran order, big-endian) load with the right shapes, values and
//! labels; the digits as an `.npz` train to the embedded digits' very files; bad files get
//! one clear error each.

mod common;

use common::{config, results_without_clock, runner};
use runner::data::{DatasetSpec, Layout, Scale, SourceSpec, Task, prepare};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/arrays").join(name)
}

/// The generator's formula for sample n, channel c, row h, column w.
fn value(n: usize, c: usize, h: usize, w: usize) -> f32 {
    ((n * 7 + c * 3 + h * 5 + w) % 256) as f32
}

/// Every sample's values channel-first, as the table must hold them.
fn images(n: usize, (c, h, w): (usize, usize, usize)) -> Vec<f32> {
    (0..n)
        .flat_map(|n| (0..c).flat_map(move |c| (0..h).flat_map(move |h| (0..w).map(move |w| value(n, c, h, w)))))
        .collect()
}

fn npz(name: &str, x: &str, y: &str, validation: Option<&str>) -> SourceSpec {
    SourceSpec::Npz {
        path: fixture(name),
        x: x.into(),
        y: y.into(),
        validation_path: validation.map(fixture),
        layout: Layout::Auto,
        task: None,
    }
}

fn npy(x: &str, y: &str) -> SourceSpec {
    SourceSpec::Npy {
        x_path: fixture(x),
        y_path: fixture(y),
        validation_x_path: Some(fixture(x)),
        validation_y_path: Some(fixture(y)),
        layout: Layout::Auto,
        task: None,
    }
}

/// The training part's features and targets as loaded (a validation file keeps the
/// training rows in the file's order).
/// The task, image shape, features and targets of a loaded data set.
type Loaded = (Task, Option<(usize, usize, usize)>, Vec<f32>, Vec<f32>);

fn load(source: SourceSpec, scale: Scale) -> Loaded {
    let d = prepare(&DatasetSpec { source, scale, ..Default::default() }).unwrap();
    let x: Vec<f32> = d.train.x.flatten_all().unwrap().to_vec1().unwrap();
    let y: Vec<f32> = d.train.y.flatten_all().unwrap().to_dtype(candle_core::DType::F32).unwrap().to_vec1().unwrap();
    (d.task, d.image, x, y)
}

fn labels(n: usize) -> Vec<f32> {
    (0..n).map(|i| (i % 3) as f32).collect()
}

#[test]
fn images_load_channel_first_whatever_their_layout_and_file() {
    // Channel-last u8 in a compressed .npz with other names; u8 is scaled as pixels.
    let both = Some("nhwc_u8.npz");
    let (task, image, x, y) = load(npz("nhwc_u8.npz", "images", "labels", both), Scale::Auto);
    assert_eq!((task, image), (Task::Classification, Some((3, 6, 5))));
    assert_eq!(x, images(12, (3, 6, 5)).iter().map(|v| v / 255.0).collect::<Vec<_>>());
    assert_eq!(y, labels(12));
    // The same images channel-first as f32 (i64 labels), as they are.
    let (_, image, x, y) = load(npz("nchw_f32.npz", "x", "y", Some("nchw_f32.npz")), Scale::None);
    assert_eq!((image, x, y), (Some((3, 6, 5)), images(12, (3, 6, 5)), labels(12)));
    // Grey [N, H, W] with its own validation file.
    let d = prepare(&DatasetSpec {
        source: npz("nhw_u8.npz", "x", "y", Some("nhw_u8_validation.npz")),
        scale: Scale::None,
        ..Default::default()
    })
    .unwrap();
    assert_eq!((d.image, d.features, d.classes, d.train.len, d.validation.len), (Some((1, 6, 7)), 42, 3, 9, 6));
    assert_eq!(d.validation.x.flatten_all().unwrap().to_vec1::<f32>().unwrap(), images(6, (1, 6, 7)));
}

#[test]
fn fortran_order_and_big_endian_npy_files_read_as_numpy_reads_them() {
    let features = images(10, (1, 1, 6));
    let (task, image, x, y) = load(npy("fortran_x.npy", "fortran_y.npy"), Scale::None);
    assert_eq!((task, image), (Task::Regression, None), "float targets: a regression");
    assert_eq!(x, features);
    assert_eq!(y, (0..10).map(|i| i as f32 * 0.5).collect::<Vec<_>>());
    let (task, _, x, y) = load(npy("big_x.npy", "big_y.npy"), Scale::None);
    assert_eq!((task, x, y), (Task::Classification, features, labels(10)));
}

#[test]
fn the_digits_as_an_npz_train_to_the_embedded_digits_files() {
    let dir = TempDir::new().unwrap();
    let npz = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/digits.npz");
    let embedded = config(
        dir.path(),
        "embedded",
        "name = \"d\"\n[train]\nepochs = 3\n[schedule]\nkind = \"cosine_decay\"\nlearning_rate = 0.1\ndecay_steps = \"run\"\n",
    );
    let arrays = config(
        dir.path(),
        "arrays",
        &format!(
            "name = \"d\"\n[train]\nepochs = 3\n[schedule]\nkind = \"cosine_decay\"\nlearning_rate = 0.1\ndecay_steps = \"run\"\n[dataset]\nkind = \"npz\"\npath = {:?}\nscale = \"none\"\n",
            npz.display().to_string()
        ),
    );
    for (cfg, out) in [(&embedded, "a"), (&arrays, "b")] {
        runner().arg("run").arg(cfg).args(["--quiet", "--out"]).arg(dir.path().join(out)).assert().success();
    }
    assert_eq!(results_without_clock(&dir.path().join("a/d")), results_without_clock(&dir.path().join("b/d")));
    // The shipped example runs as it is.
    runner()
        .args(["run", "configs/digits_npz.toml", "--quiet", "--set", "train.epochs=1", "--out"])
        .arg(dir.path().join("example"))
        .assert()
        .success();
}

/// `[dataset]` of `body` run as a config: exit 2 and stderr.
fn refused(dir: &Path, body: &str) -> String {
    let cfg = config(
        dir,
        "bad",
        &format!(
            "name = \"bad\"\n[train]\nsteps = 2\n[schedule]\nkind = \"constant\"\nlearning_rate = 0.1\n[dataset]\n{body}"
        ),
    );
    let o = runner().arg("run").arg(&cfg).arg("--quiet").arg("--out").arg(dir.join("out")).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{body}");
    assert!(!dir.join("out").exists(), "nothing written for {body}");
    String::from_utf8(o.stderr).unwrap()
}

#[test]
fn bad_arrays_get_one_clear_error_each() {
    let dir = TempDir::new().unwrap();
    let f = |name: &str| format!("{:?}", fixture(name).display().to_string());
    let cases = [
        (format!("kind = \"npz\"\npath = {}\n", f("object.npz")), "is an object array (dtype=object"),
        (
            format!("kind = \"npz\"\npath = {}\n", f("no_x.npz")),
            "holds no array named \"x\" (it holds features, y); name the arrays with x = \"...\"",
        ),
        (format!("kind = \"npz\"\npath = {}\n", f("lengths.npz")), "holds 10 samples but"),
        (format!("kind = \"npz\"\npath = {}\n", f("negative.npz")), "holds -1, which is no class index"),
        (format!("kind = \"npz\"\npath = {}\n", f("corrupt.npz")), "is not an .npz file (a zip archive of .npy files)"),
        (
            format!("kind = \"npz\"\npath = {}\nlayout = \"nhwc\"\n", f("nhw_u8.npz")),
            "has shape [9, 6, 7], and layout = \"nhwc\" is [N, H, W, C]",
        ),
        (
            format!("kind = \"npz\"\npath = {}\nscale = \"pixels\"\n", f("nchw_f32.npz")),
            "scale = \"pixels\" divides by the largest value a pixel takes",
        ),
        (
            format!("kind = \"npz\"\npath = {}\nvalidation_path = {}\n", f("nchw_f32.npz"), f("nhw_u8.npz")),
            "validation must have the training samples' shape",
        ),
        (format!("kind = \"npy\"\nx_path = {}\ny_path = \"missing.npy\"\n", f("big_x.npy")), "cannot read"),
        (
            format!(
                "kind = \"npy\"\nx_path = {}\ny_path = {}\nvalidation_x_path = {}\n",
                f("big_x.npy"),
                f("big_y.npy"),
                f("big_x.npy")
            ),
            "needs its pair",
        ),
    ];
    for (body, expected) in cases {
        let stderr = refused(dir.path(), &body);
        assert!(stderr.contains(expected), "{body}: expected {expected:?} in {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
