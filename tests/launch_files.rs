//! The launch files cannot run here (no launch wheels), so they are read
//! statically (tests/python/launch_check.py) and every parameter and topic
//! they name is checked against the node itself; so is the RViz config they
//! start on request.
#![cfg(feature = "ros")]
mod common;

use eloss_perception::ros::node::{TOPIC_CAMERA_INFO, TOPIC_COMPRESSED_IMAGE, TOPIC_IMAGE, TOPIC_MARKERS, TOPIC_POINTS};
use eloss_perception::ros::params::NodeParams;
use serde_json::Value;
use std::process::Command;

#[test]
fn launch_files_name_only_what_the_node_has() {
    let Some(py) = common::python() else { return };
    let repo = common::repo();
    let out = Command::new(py)
        .arg(repo.join("tests/python/launch_check.py"))
        .arg(repo.join("launch/eloss_perception.launch.py"))
        .arg(repo.join("launch/eloss_perception.launch.xml"))
        .output()
        .expect("run launch_check.py");
    assert!(out.status.success(), "launch_check.py failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("launch_check.py prints JSON");

    let declared: Vec<String> = NodeParams::defaults().unwrap().declared().into_iter().map(|(n, _)| n).collect();
    let cargo = std::fs::read_to_string(repo.join("Cargo.toml")).unwrap();
    for kind in ["py", "xml"] {
        let d = &v[kind];
        let nodes = d["nodes"].as_array().unwrap();
        let ours: Vec<&Value> = nodes.iter().filter(|n| n["package"] == "eloss_perception").collect();
        assert_eq!(ours.len(), 1, "{kind}: one node of ours");
        let n = ours[0];
        assert_eq!(n["package"], "eloss_perception", "{kind}");
        let exe = n["executable"].as_str().unwrap();
        assert!(cargo.contains(&format!("name = \"{exe}\"")), "{kind}: executable {exe} is not a binary of this crate");
        assert_eq!(n["name"], eloss_perception::ros::node::NODE_NAME, "{kind}");
        for p in n["param_names"].as_array().unwrap() {
            // use_sim_time is rcl's (r2r's time source follows /clock with it)
            assert!(p == "use_sim_time" || declared.iter().any(|d| d == p.as_str().unwrap()), "{kind}: parameter {p} is not a node parameter");
        }
        assert_eq!(n["param_files"].as_array().unwrap().len(), 1, "{kind}: one params file");
        assert!(n["param_names"].as_array().unwrap().iter().any(|p| p == "use_sim_time"), "{kind}: use_sim_time can be set");
        let remaps: Vec<&str> = n["remaps"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
        for t in &remaps {
            assert!([TOPIC_POINTS, TOPIC_IMAGE, TOPIC_COMPRESSED_IMAGE, TOPIC_CAMERA_INFO].contains(t), "{kind}: remaps unknown topic {t}");
        }
        for t in [TOPIC_POINTS, TOPIC_IMAGE, TOPIC_COMPRESSED_IMAGE, TOPIC_CAMERA_INFO] {
            assert!(remaps.contains(&t), "{kind}: input topic {t} cannot be remapped");
        }
        // every referenced argument is declared, and the default params file exists in the repo
        let args = d["args"].as_object().unwrap();
        for r in d["refs"].as_array().unwrap() {
            assert!(args.contains_key(r.as_str().unwrap()), "{kind}: {r} used but not declared");
        }
        let params_file = args["params_file"].as_str().unwrap();
        let rel = params_file.strip_prefix("<package share>/").expect("default params file from the package share");
        assert!(repo.join(rel).is_file(), "{kind}: {rel} not in the package");

        // RViz only on request, in the node's namespace with the node's remaps, on our config
        let rviz: Vec<&Value> = nodes.iter().filter(|n| n["package"] == "rviz2").collect();
        assert_eq!(rviz.len(), 1, "{kind}: one rviz2 node");
        assert_eq!(rviz[0]["condition"], "$(var rviz)", "{kind}");
        assert_eq!(args["rviz"], "false", "{kind}: RViz is off by default (vehicle computers are headless)");
        assert_eq!(rviz[0]["remaps"], n["remaps"], "{kind}");
        let words: Vec<&str> = rviz[0]["arguments"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        let config = words.windows(2).find(|w| w[0] == "-d").map(|w| w[1]).expect("rviz2 -d CONFIG");
        let rel = config.strip_prefix("<package share>/").expect("RViz config from the package share");
        assert_eq!(rel, "config/eloss_perception.rviz", "{kind}");
        assert!(words.windows(2).any(|w| w == ["-f", "$(var fixed_frame)"]), "{kind}: {words:?}");
    }

    // the RViz config shows the node's inputs and markers, by relative names
    let rviz: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(repo.join("config/eloss_perception.rviz")).unwrap()).unwrap();
    let displays = rviz["Visualization Manager"]["Displays"].as_sequence().unwrap();
    let topic = |class: &str| {
        let d = displays.iter().find(|d| d["Class"].as_str() == Some(class)).unwrap_or_else(|| panic!("no {class} display"));
        d["Topic"]["Value"].as_str().unwrap().to_string()
    };
    assert_eq!(topic("rviz_default_plugins/PointCloud2"), TOPIC_POINTS);
    assert_eq!(topic("rviz_default_plugins/MarkerArray"), TOPIC_MARKERS);
    assert_eq!(topic("rviz_default_plugins/Image"), TOPIC_IMAGE);
    let fixed = rviz["Visualization Manager"]["Global Options"]["Fixed Frame"].as_str().unwrap();
    assert_eq!(Some(fixed), v["py"]["args"]["fixed_frame"].as_str(), "the config's and the launch files' default frame agree");
    assert_eq!(v["py"]["args"], v["xml"]["args"], "the Python and XML launch files declare the same arguments");
    assert_eq!(v["py"]["nodes"][0]["remaps"], v["xml"]["nodes"][0]["remaps"]);
    assert_eq!(v["py"]["nodes"][0]["param_names"], v["xml"]["nodes"][0]["param_names"]);
}
