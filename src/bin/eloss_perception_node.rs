//! The ROS 2 node. Run it with the environment from scripts/env.sh:
//! `eloss_perception_node --ros-args --params-file config/eloss_perception.yaml -r points:=/velodyne_points`
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(eloss_perception::ros::node::run())
}
