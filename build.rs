//! Link flags the PyPI ROS 2 wheels need (docs/ENVIRONMENT.md): librcl there
//! references libpython symbols through the rosidl Python generators, so every
//! binary that links r2r must link libpython3.11 even though rustc would drop
//! it as unused. A system ROS 2 install (ELOSS_ROS_MODE=system) does not need it.
fn main() {
    println!("cargo:rerun-if-env-changed=ELOSS_ROS_MODE");
    let ros = std::env::var_os("CARGO_FEATURE_ROS").is_some();
    let wheels = std::env::var("ELOSS_ROS_MODE").map(|m| m == "wheels").unwrap_or(false);
    if ros && wheels {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-lpython3.11");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
