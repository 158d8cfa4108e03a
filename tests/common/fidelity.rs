//! Comparisons with PyTorch: runner writes tensors and a config, a script in bench/
//! rebuilds the model in PyTorch from them and says whether the two agree. They run where
//! `python3` (or `$PYTHON`) imports torch; elsewhere they say so and check nothing. To look
//! into a disagreement: `FIDELITY_KEEP=DIR` keeps the files, `FIDELITY_STEPS=1` prints each
//! step's loss (runner, PyTorch float32, PyTorch float64).

use candle_core::Tensor;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The python that has torch and numpy, or `None` after saying why the check is skipped.
pub fn torch_python() -> Option<String> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let has_torch =
        Command::new(&python).args(["-c", "import torch, numpy"]).output().is_ok_and(|o| o.status.success());
    if !has_torch {
        eprintln!(
            "skipped: `{python} -c \"import torch, numpy\"` fails; set PYTHON to a python with torch to compare with PyTorch"
        );
        return None;
    }
    Some(python)
}

/// Appends `tensors` to one little-endian f32 blob (fidelity.bin), with a JSON index of
/// names, shapes and offsets and the `config` (fidelity.json).
pub fn write_tensors(dir: &Path, tensors: &[(String, Tensor)], config: serde_json::Value) {
    let mut blob = std::io::BufWriter::new(std::fs::File::create(dir.join("fidelity.bin")).unwrap());
    let mut index = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, t) in tensors {
        let values = t.flatten_all().unwrap().to_dtype(candle_core::DType::F32).unwrap().to_vec1::<f32>().unwrap();
        for v in &values {
            blob.write_all(&v.to_le_bytes()).unwrap();
        }
        index.insert(name.clone(), serde_json::json!({ "shape": t.dims(), "offset": offset }));
        offset += values.len();
    }
    blob.flush().unwrap();
    let manifest = serde_json::json!({ "tensors": index, "config": config });
    std::fs::write(dir.join("fidelity.json"), serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
}

/// Writes `tensors` and `config`, runs `bench/<script>` on them with `python` and fails
/// the test unless it says runner and PyTorch agree.
pub fn check_with_pytorch(python: &str, script: &str, tensors: &[(String, Tensor)], config: serde_json::Value) {
    let temp = tempfile::tempdir().unwrap();
    let dir: PathBuf = match std::env::var("FIDELITY_KEEP") {
        Ok(keep) => {
            std::fs::create_dir_all(&keep).unwrap();
            tempfile::TempDir::new_in(keep).unwrap().keep()
        }
        Err(_) => temp.path().to_path_buf(),
    };
    write_tensors(&dir, tensors, config);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench").join(script);
    let result =
        Command::new(python).arg(&script).arg(&dir).args(std::env::var("FIDELITY_STEPS").ok()).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&result.stdout), String::from_utf8_lossy(&result.stderr));
    eprintln!("{said}");
    assert!(result.status.success(), "PyTorch disagrees:\n{said}");
    assert!(said.contains("agree"), "{said}");
}
