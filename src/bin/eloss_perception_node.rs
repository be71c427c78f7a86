//! The ROS 2 node. Run it with the environment from scripts/env.sh:
//! `eloss_perception_node --ros-args --params-file config/eloss_perception.yaml -r points:=/velodyne_points`
//! Logs go through ROS logging (console, /rosout, `--ros-args --log-level`);
//! `RUST_LOG` still filters by target (src/ros/logging.rs).

use std::io::Write as _;

/// After SIGINT/SIGTERM and the node's own shutdown, how long blocking work
/// still running (a large relabel request being embedded, the GDC loader)
/// may hold up the exit: the process ends, it does not wait for them.
const BLOCKING_WORK_GRACE: std::time::Duration = std::time::Duration::from_millis(300);

fn main() {
    eloss_perception::ros::logging::init();
    // before anything asks libtorch about CUDA (a seed, a device), or it never will see it
    eloss_perception::torch_cuda::load();
    // test builds only (feature `failpoints`): faults injected at the points named in FAILPOINTS
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    let code = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => {
            let result = rt.block_on(eloss_perception::ros::node::run());
            // dropping the runtime would wait for every blocking task, however long
            rt.shutdown_timeout(BLOCKING_WORK_GRACE);
            match result {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("Error: {e:?}");
                    1
                }
            }
        }
        Err(e) => {
            eprintln!("Error: tokio runtime: {e}");
            1
        }
    };
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // libtorch may still run on threads nobody joins (a class in generation,
    // a relabel request past the grace period): exit() would run libtorch's
    // static destructors under them (SIGSEGV seen under service load), so the
    // process ends here without them; the node was already shut down.
    // SAFETY: _exit only ends the process.
    unsafe { libc::_exit(code) }
}
