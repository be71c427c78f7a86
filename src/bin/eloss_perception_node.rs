//! The ROS 2 node. Run it with the environment from scripts/env.sh:
//! `eloss_perception_node --ros-args --params-file config/eloss_perception.yaml -r points:=/velodyne_points`
//! Logs go through ROS logging (console, /rosout, `--ros-args --log-level`);
//! `RUST_LOG` still filters by target (src/ros/logging.rs).

fn main() -> anyhow::Result<()> {
    eloss_perception::ros::logging::init();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(eloss_perception::ros::node::run())
}
