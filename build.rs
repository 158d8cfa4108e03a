// Only for `--features cuda`: candle-kernels (a dependency of candle's CUDA backend) compiles a
// static library of MoE/GGUF kernels and asks the linker for `-lcudart`. Left alone, that links
// the shared libcudart, and the binary would not start where libcudart.so is missing. Point the
// linker at a folder holding only `libcudart.a` (the toolkit's libcudart_static.a), so cudart is
// linked statically: with cudarc's dynamic loading (vendor/candle-core) the binary then needs
// nothing CUDA to start, and loads the driver and cuBLAS only when a run asks for a GPU.
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for var in ["CUDA_ROOT", "CUDA_HOME", "CUDA_PATH", "CUDA_TOOLKIT_ROOT_DIR", "PATH"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    // The GPU generation candle's kernels are compiled for: runner checks it against the
    // GPU it opens and says what to rebuild with, rather than failing on the first kernel.
    if let Ok(cap) = std::env::var("CUDA_COMPUTE_CAP") {
        println!("cargo:rustc-env=RUNNER_CUDA_COMPUTE_CAP={}", cap.trim());
    }
    let Some(lib) = cudart_static() else {
        println!(
            "cargo:warning=libcudart_static.a not found under CUDA_ROOT, CUDA_HOME, CUDA_PATH or \
             beside nvcc: cudart is linked dynamically, so the binary needs libcudart.so to start"
        );
        return;
    };
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("cudart-static");
    std::fs::create_dir_all(&out).expect("create OUT_DIR/cudart-static");
    let link = out.join("libcudart.a");
    let _ = std::fs::remove_file(&link);
    if std::os::unix::fs::symlink(&lib, &link).is_err() {
        std::fs::copy(&lib, &link).expect("copy libcudart_static.a into OUT_DIR");
    }
    println!("cargo:rustc-link-search=native={}", out.display());
}

/// The toolkit's static cudart: under `$CUDA_ROOT` (or CUDA_HOME, CUDA_PATH,
/// CUDA_TOOLKIT_ROOT_DIR), else under the folder above the `nvcc` found on PATH; in `lib64/`
/// (a toolkit install) or `lib/` (the PyPI wheels' layout).
fn cudart_static() -> Option<PathBuf> {
    let mut roots: Vec<PathBuf> = ["CUDA_ROOT", "CUDA_HOME", "CUDA_PATH", "CUDA_TOOLKIT_ROOT_DIR"]
        .iter()
        .filter_map(|v| std::env::var_os(v).map(PathBuf::from))
        .collect();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("nvcc").is_file()
                && let Some(root) = dir.parent()
            {
                roots.push(root.to_path_buf());
            }
        }
    }
    roots.iter().find_map(|root| {
        ["lib64", "lib", "lib/x64"]
            .iter()
            .map(|sub| Path::new(root).join(sub).join("libcudart_static.a"))
            .find(|p| p.is_file())
    })
}
