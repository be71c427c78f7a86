//! Link flags the PyPI ROS 2 wheels need (docs/ENVIRONMENT.md): librcl there
//! references libpython symbols through the rosidl Python generators, so every
//! binary that links r2r must link libpython3.11 even though rustc would drop
//! it as unused. A system ROS 2 install (ELOSS_ROS_MODE=system) does not need it.
//!
//! libtorch (tch): the final binaries need an rpath to the torch package's
//! lib/ (torch-sys's own rpath does not reach them), and rustc's --as-needed
//! would drop libtorch_cuda, which only registers CUDA from a static
//! initialiser: the `cuda` feature links it explicitly.
fn main() {
    println!("cargo:rerun-if-env-changed=ELOSS_ROS_MODE");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if std::env::var_os("CARGO_FEATURE_TORCH").is_some() {
        if let Ok(libtorch) = std::env::var("LIBTORCH") {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{libtorch}/lib");
        }
        if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
            println!("cargo:rustc-link-arg=-ltorch_cuda");
            println!("cargo:rustc-link-arg=-ltorch");
            println!("cargo:rustc-link-arg=-Wl,--as-needed");
        }
    }
    let ros = std::env::var_os("CARGO_FEATURE_ROS").is_some();
    let wheels = std::env::var("ELOSS_ROS_MODE").map(|m| m == "wheels").unwrap_or(false);
    if ros && wheels {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-lpython3.11");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
