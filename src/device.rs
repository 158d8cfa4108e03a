//! Where a run's tensors live: `cpu`, or an NVIDIA GPU (`cuda`, `cuda:N`) when runner is
//! built with `--features cuda`. Opening a GPU checks, before candle or cudarc is asked
//! (cudarc panics when a library cannot be loaded), that the driver and the CUDA
//! libraries can be loaded, that the device exists and that it runs runner's kernels, and
//! says in one line what is wrong and what to do.

use candle_core::Device;

/// A device as a config or `--device` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(into = "String")]
pub enum DeviceSpec {
    #[default]
    Cpu,
    /// A GPU: `cuda` (`None`: the first one, or the one a sweep places the run on) or
    /// `cuda:N`.
    Cuda(Option<usize>),
}

/// What `device` accepts, for messages.
pub const DEVICES: &str = "\"cpu\", \"cuda\" (the first GPU) or \"cuda:N\" (GPU N, from 0)";

impl DeviceSpec {
    /// Reads `cpu`, `cuda` or `cuda:N`.
    pub fn parse(text: &str) -> Result<DeviceSpec, String> {
        let t = text.trim();
        match t {
            "cpu" => return Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => return Ok(DeviceSpec::Cuda(None)),
            _ => {}
        }
        if let Some(n) = t.strip_prefix("cuda:").or_else(|| t.strip_prefix("gpu:"))
            && let Ok(n) = n.parse::<usize>()
            && n < 1024
        {
            return Ok(DeviceSpec::Cuda(Some(n)));
        }
        Err(format!("\"{text}\" is not a device; give {DEVICES}"))
    }

    pub fn is_cpu(self) -> bool {
        self == DeviceSpec::Cpu
    }

    /// The GPU's number, where it is one (`cuda` is GPU 0).
    pub fn ordinal(self) -> Option<usize> {
        match self {
            DeviceSpec::Cpu => None,
            DeviceSpec::Cuda(n) => Some(n.unwrap_or(0)),
        }
    }

    /// The device opened, or why not (one line: what is wrong, what to do).
    pub fn open(self) -> Result<Device, String> {
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(n) => cuda::open(n.unwrap_or(0)),
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(None) => write!(f, "cuda"),
            DeviceSpec::Cuda(Some(n)) => write!(f, "cuda:{n}"),
        }
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> String {
        d.to_string()
    }
}

/// Whether this runner was built with the `cuda` feature.
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

/// The GPUs visible to this process (after `CUDA_VISIBLE_DEVICES`), or why none: the
/// default GPU list of a sweep.
pub fn gpu_count() -> Result<usize, String> {
    cuda::count()
}

/// A one-line description of `device` for summaries: `cpu`, `cuda:0 (NVIDIA H200, compute
/// capability 9.0)`.
pub fn describe(device: &Device) -> String {
    match device {
        Device::Cpu => "cpu".to_string(),
        _ => cuda::describe(device),
    }
}

#[cfg(not(feature = "cuda"))]
mod cuda {
    use candle_core::Device;

    fn not_built() -> String {
        "this runner was built without GPU support: build it with `cargo build --release --features cuda` \
         (README, \"Training on NVIDIA GPUs\"), or train with device = \"cpu\""
            .to_string()
    }

    pub fn open(_ordinal: usize) -> Result<Device, String> {
        Err(not_built())
    }

    pub fn count() -> Result<usize, String> {
        Err(not_built())
    }

    pub fn describe(device: &Device) -> String {
        format!("{:?}", device.location())
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use candle_core::Device;
    use candle_core::cuda::cudarc;
    use cudarc::driver::{CudaContext, sys};
    use std::sync::Mutex;

    /// The compute capability the kernels were compiled for (`CUDA_COMPUTE_CAP` at build
    /// time), e.g. 90; `None` where the build did not say.
    fn built_for() -> Option<u32> {
        option_env!("RUNNER_CUDA_COMPUTE_CAP").and_then(|c| c.parse().ok())
    }

    /// Runs `f`, turning a panic of cudarc into an error and keeping its message off the
    /// terminal (the panic hook is silenced meanwhile; openings are serialised).
    fn quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
        static OPENING: Mutex<()> = Mutex::new(());
        let _one = OPENING.lock().unwrap_or_else(|p| p.into_inner());
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        std::panic::set_hook(hook);
        out.map_err(|p| {
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic in the CUDA libraries".into())
        })
    }

    /// The libraries candle dlopen()s, each with the file names cudarc tries.
    fn missing_libraries() -> Vec<&'static str> {
        // SAFETY: each only tries dlopen() on cudarc's candidate names.
        let found = unsafe {
            [
                ("libcublas (cuBLAS)", cudarc::cublas::sys::is_culib_present()),
                ("libcublasLt (cuBLASLt)", cudarc::cublaslt::sys::is_culib_present()),
                ("libcurand (cuRAND)", cudarc::curand::sys::is_culib_present()),
            ]
        };
        found.iter().filter(|(_, ok)| !ok).map(|(name, _)| *name).collect()
    }

    pub fn count() -> Result<usize, String> {
        // SAFETY: only dlopen()s libcuda to see whether it is there.
        if !unsafe { sys::is_culib_present() } {
            return Err("no NVIDIA driver here: libcuda.so.1 cannot be loaded (no GPU, or the driver's folder is \
                        not on LD_LIBRARY_PATH); train with device = \"cpu\" or run on a machine with an NVIDIA GPU"
                .into());
        }
        let n = quietly(CudaContext::device_count)?
            .map_err(|e| format!("the NVIDIA driver cannot start ({e:?}); check `nvidia-smi`"))?;
        Ok(n.max(0) as usize)
    }

    pub fn open(ordinal: usize) -> Result<Device, String> {
        let n = count()?;
        if n == 0 {
            return Err("the NVIDIA driver sees no GPU (check `nvidia-smi` and CUDA_VISIBLE_DEVICES)".into());
        }
        if ordinal >= n {
            return Err(format!(
                "there is no GPU {ordinal}: {n} visible (cuda:0 to cuda:{}; check CUDA_VISIBLE_DEVICES)",
                n - 1
            ));
        }
        let missing = missing_libraries();
        if !missing.is_empty() {
            return Err(format!(
                "the CUDA libraries {} cannot be loaded: install them (pip install nvidia-cublas nvidia-curand, or \
                 a CUDA 13 toolkit) and put their lib folder on LD_LIBRARY_PATH",
                missing.join(", ")
            ));
        }
        let ctx = quietly(|| CudaContext::new(ordinal))?.map_err(|e| format!("cannot open GPU {ordinal}: {e:?}"))?;
        if let (Some(built), Ok((major, minor))) = (built_for(), ctx.compute_capability()) {
            let here = (major * 10 + minor) as u32;
            // Kernels for sm_XY (and sm_XYa from 9.0 on) run on that generation only; PTX of
            // an older one is compiled by the driver for a newer GPU.
            if (built >= 90 && here != built) || here < built {
                let name = ctx.name().unwrap_or_else(|_| "this GPU".into());
                return Err(format!(
                    "runner's GPU kernels were built for compute capability {}.{}, and GPU {ordinal} ({name}) is \
                     {major}.{minor}: rebuild with CUDA_COMPUTE_CAP={here} (README, \"Training on NVIDIA GPUs\")",
                    built / 10,
                    built % 10
                ));
            }
        }
        let device = quietly(|| Device::new_cuda_with_stream(ordinal))?
            .map_err(|e| format!("cannot open GPU {ordinal}: {e}"))?;
        // One kernel of runner's: a driver older than the PTX refuses it here, not mid-run.
        let probe = quietly(|| -> candle_core::Result<f32> {
            candle_core::Tensor::ones(4, candle_core::DType::F32, &device)?.sum_all()?.to_scalar::<f32>()
        })?;
        match probe {
            Ok(v) if v == 4.0 => Ok(device),
            Ok(v) => Err(format!("GPU {ordinal} computed 1+1+1+1 = {v}: the device is not working")),
            Err(e) => {
                let text = e.to_string();
                if text.contains("UNSUPPORTED_PTX_VERSION") || text.contains("INVALID_PTX") {
                    let mut version = 0i32;
                    // SAFETY: a plain query of the driver's CUDA version.
                    let _ = unsafe { sys::cuDriverGetVersion(&mut version) };
                    Err(format!(
                        "the NVIDIA driver (CUDA {}.{}) is older than runner's GPU kernels (built with CUDA 13.0): \
                         update the driver to 580 or later, or build runner with the nvcc of the driver's CUDA",
                        version / 1000,
                        (version % 1000) / 10
                    ))
                } else {
                    Err(format!("GPU {ordinal} cannot run runner's kernels: {text}"))
                }
            }
        }
    }

    pub fn describe(device: &Device) -> String {
        let Device::Cuda(d) = device else { return format!("{:?}", device.location()) };
        let ctx = d.cuda_stream().context().clone();
        let name = ctx.name().unwrap_or_default();
        match ctx.compute_capability() {
            Ok((major, minor)) => {
                format!("cuda:{} ({name}, compute capability {major}.{minor})", ctx.ordinal())
            }
            Err(_) => format!("cuda:{} ({name})", ctx.ordinal()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_read_and_written_back() {
        for (text, spec) in
            [("cpu", DeviceSpec::Cpu), ("cuda", DeviceSpec::Cuda(None)), ("cuda:3", DeviceSpec::Cuda(Some(3)))]
        {
            assert_eq!(DeviceSpec::parse(text), Ok(spec));
            assert_eq!(spec.to_string(), text);
        }
        assert_eq!(DeviceSpec::parse("gpu:1"), Ok(DeviceSpec::Cuda(Some(1))));
        for bad in ["", "cuda:", "cuda:-1", "cuda:x", "tpu", "cuda:99999", "CUDA"] {
            let e = DeviceSpec::parse(bad).unwrap_err();
            assert!(e.contains("\"cpu\", \"cuda\""), "{bad}: {e}");
        }
        assert_eq!(DeviceSpec::Cuda(None).ordinal(), Some(0));
        assert_eq!(DeviceSpec::Cpu.open().map(|d| d.is_cpu()), Ok(true));
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn without_the_feature_a_gpu_says_how_to_build_one() {
        let e = DeviceSpec::Cuda(Some(0)).open().unwrap_err();
        assert!(e.contains("--features cuda"), "{e}");
        assert!(gpu_count().unwrap_err().contains("--features cuda"));
    }
}
