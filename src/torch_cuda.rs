//! libtorch's CUDA half, loaded at run time.
//!
//! libtorch registers CUDA from a static initialiser in `libtorch_cuda.so`,
//! which nothing in a Rust binary references by symbol: rustc's
//! `--as-needed` drops it, and `Device::cuda_if_available()` then answers
//! CPU even on a GPU machine (docs/ENVIRONMENT.md). The `cuda` feature links
//! it explicitly, but only builds against a CUDA torch can do that. This
//! module is the other route: it opens `libtorch_cuda.so` with the dynamic
//! loader (the library search path, then the binary's rpath to torch/lib)
//! the first time a caller asks for CUDA, so a binary built without the
//! `cuda` feature still finds a GPU when the torch beside it has one. On a
//! machine without the NVIDIA driver nothing is opened; where the open
//! fails, the reason is kept for the caller's error message. Either way
//! everything stays on the CPU.
use std::sync::OnceLock;

/// How libtorch's CUDA support came to be (or not to be) available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TorchCuda {
    /// libtorch_cuda was already registered (linked by the `cuda` feature).
    Linked,
    /// Opened at run time by [`load`].
    Loaded,
    /// Could not be opened: the loader's message (no CUDA torch, or its
    /// CUDA libraries missing).
    Unavailable(String),
}

impl TorchCuda {
    /// One word (or the reason) for logs and reports.
    pub fn describe(&self) -> String {
        match self {
            TorchCuda::Linked => "linked".into(),
            TorchCuda::Loaded => "loaded at run time".into(),
            TorchCuda::Unavailable(why) => format!("not loadable: {why}"),
        }
    }
}

/// The file the dynamic loader is asked for.
pub const LIBRARY: &str = "libtorch_cuda.so";
/// The NVIDIA driver's CUDA library, without which no GPU is reachable.
const DRIVER: &str = "libcuda.so.1";

/// Makes libtorch's CUDA support available if this machine's torch has it;
/// idempotent and cheap after the first call. Whether a GPU is present is a
/// separate question: ask `tch::Cuda::is_available()` afterwards.
///
/// It must run before anything asks libtorch about CUDA (`tch::manual_seed`,
/// `tch::Cuda::*`, `Device::cuda_if_available`): libtorch settles its CUDA
/// hooks on the first such question and never looks again, so a library
/// opened later registers too late. Binaries call it first thing in `main`.
pub fn load() -> &'static TorchCuda {
    static STATE: OnceLock<TorchCuda> = OnceLock::new();
    STATE.get_or_init(|| {
        if cuda_registered() {
            return TorchCuda::Linked;
        }
        // Without the NVIDIA driver's libcuda no GPU can be used, and opening
        // libtorch_cuda would only cost seconds and hundreds of MB (it pulls
        // in cuBLAS, cuDNN, NCCL, ...): measured 2.8-5.6 s and +770 MB RSS
        // on the 2-core CPU machine. The driver library is small; it is
        // closed again straight away.
        // SAFETY: libcuda's initialisers only set up the driver library.
        if let Err(e) = unsafe { libloading::os::unix::Library::open(Some(DRIVER), libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_LOCAL) } {
            return TorchCuda::Unavailable(format!("no NVIDIA driver ({})", loader_message(&e)));
        }
        // SAFETY: opening libtorch_cuda runs its static initialisers, which
        // register CUDA hooks with the libtorch already loaded in this process
        // (the same thing the `cuda` feature's link does at start-up). The
        // handle is never closed: libtorch keeps pointers into it.
        match unsafe { libloading::os::unix::Library::open(Some(LIBRARY), libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL) } {
            Ok(lib) => {
                std::mem::forget(lib);
                TorchCuda::Loaded
            }
            Err(e) => TorchCuda::Unavailable(loader_message(&e)),
        }
    })
}

/// libloading's error with the loader's own words (dlerror) behind it.
fn loader_message(e: &libloading::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// Whether libtorch_cuda is already in this process (linked by the `cuda`
/// feature, or opened before). Only the loader's map is read: asking libtorch
/// anything about CUDA here (a device count, a seed) would make it settle
/// its CUDA hooks for good, before the library could register its own, and
/// CUDA would stay off for the life of the process (libtorch's
/// `getCUDAHooks` is initialised once). Linux-only, as is this crate.
fn cuda_registered() -> bool {
    std::fs::read_to_string("/proc/self/maps").map(|m| m.lines().any(|l| l.ends_with(LIBRARY))).unwrap_or(false)
}

/// The device for "use a GPU when there is one": CUDA 0 after [`load`] when
/// libtorch sees a GPU, else the CPU.
pub fn cuda_if_available() -> tch::Device {
    load();
    tch::Device::cuda_if_available()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loading_is_idempotent_and_agrees_with_libtorch() {
        let first = load().clone();
        assert_eq!(&first, load(), "the first answer is kept");
        match &first {
            TorchCuda::Unavailable(why) => {
                assert!(!why.is_empty());
                if !std::path::Path::new("/dev/nvidiactl").exists() {
                    // a CPU machine: nothing of libtorch_cuda was opened
                    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
                    assert!(!maps.lines().any(|l| l.ends_with(LIBRARY)), "{why}");
                }
                assert!(!tch::Cuda::is_available(), "no CUDA without libtorch_cuda");
                assert_eq!(cuda_if_available(), tch::Device::Cpu);
            }
            TorchCuda::Linked | TorchCuda::Loaded => {
                // the library is in this process now
                let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
                assert!(maps.lines().any(|l| l.ends_with(LIBRARY)), "{LIBRARY} mapped after {first:?}");
                assert_eq!(cuda_if_available().is_cuda(), tch::Cuda::is_available());
            }
        }
        assert!(first.describe().len() > 3);
    }
}
