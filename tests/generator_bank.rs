//! Zero-shot GDC end to end on the CPU: `eloss gdc bank --classes ...
//! --generator DIR` with a tiny random SD pipeline (tests/python/generator_reference.py)
//! and a tiny random DINOv2 (tests/python/dinov2_reference.py): images are
//! generated, cached and sheeted, embedded, and fitted into a bank whose
//! classes, counts, prompts and backbone id are checked; a second run resumes
//! from the cache and regenerates a deleted image bit for bit with another batch size.
#![cfg(feature = "torch")]
mod common;

use eloss_perception::gdc::bank::GaussianBank;
use std::path::Path;
use std::process::Command;

fn run_python(script: &str, out: &Path) -> bool {
    let Some(py) = common::python() else { return false };
    let o = Command::new(py).arg(common::repo().join("tests/python").join(script)).arg(out).output().unwrap();
    assert!(o.status.success(), "{script}: {}", String::from_utf8_lossy(&o.stderr));
    true
}

fn bank_cmd(gen: &Path, backbone: &Path, cache: &Path, out: &Path, gen_batch: &str) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_eloss"))
        .args(["gdc", "bank", "--classes", "car,traffic_cone", "--per-class", "3", "--templates", "default"])
        .args(["--steps", "2", "--guidance", "2.5", "--size", "32", "--gen-batch", gen_batch, "--recipe", "cls"])
        .arg("--generator")
        .arg(gen)
        .arg("--backbone")
        .arg(backbone)
        .arg("--cache")
        .arg(cache)
        .arg("--out")
        .arg(out)
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .output()
        .unwrap();
    assert!(o.status.success(), "eloss gdc bank failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn bank_from_class_names_with_a_tiny_generator() {
    let dir = tempfile::tempdir().unwrap();
    if !run_python("generator_reference.py", dir.path()) || !run_python("dinov2_reference.py", dir.path()) {
        return;
    }
    let (gen, backbone) = (dir.path().join("sd"), dir.path().join("plain"));
    let (cache, out) = (dir.path().join("cache"), dir.path().join("bank.safetensors"));

    let start = std::time::Instant::now();
    let stdout = bank_cmd(&gen, &backbone, &cache, &out, "2");
    eprintln!("6 images (32x32, 2 steps, CFG) + bank in {:.2} s", start.elapsed().as_secs_f64());
    assert!(stdout.contains("6 images (6 new)"), "{stdout}");
    let bank = GaussianBank::load(&out).unwrap();
    assert_eq!(bank.class_names(), ["car", "traffic_cone"]);
    assert!(bank.classes().iter().all(|c| c.count() == 3));
    assert_eq!(bank.classes()[1].prompts()[0], "a photo of a traffic cone.");
    assert_eq!(bank.classes()[1].prompts().len(), 3);
    assert!(bank.spec().backbone.starts_with("dinov2[plain;"), "{}", bank.spec().backbone);
    assert_eq!(bank.spec().recipe, "cls");

    // one settings folder with both classes, their images and contact sheets
    let keyed: Vec<_> = std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(keyed.len(), 1);
    let k = &keyed[0];
    assert!(k.join("settings.json").is_file());
    for class in ["car", "traffic_cone"] {
        let sheet = image::open(k.join("sheets").join(format!("{class}.png"))).unwrap();
        assert_eq!((sheet.width(), sheet.height()), (64, 64)); // 2x2 grid of 32 px thumbnails
        for i in 0..3 {
            assert!(k.join("classes").join(class).join(format!("{i:05}.png")).is_file());
        }
    }
    // images differ within a class (own seeds and prompts)
    let a = std::fs::read(k.join("classes/car/00000.png")).unwrap();
    assert_ne!(a, std::fs::read(k.join("classes/car/00001.png")).unwrap());

    // resume: only the deleted image is generated again, the same image although batched
    // differently (batched kernels may round the last float bit differently: ≤ 1 grey level)
    let victim = k.join("classes/traffic_cone/00001.png");
    let before = image::open(&victim).unwrap().to_rgb8();
    std::fs::remove_file(&victim).unwrap();
    let stdout = bank_cmd(&gen, &backbone, &cache, &out, "3");
    assert!(stdout.contains("6 images (1 new)"), "{stdout}");
    let after = image::open(&victim).unwrap().to_rgb8();
    let worst = before.as_raw().iter().zip(after.as_raw()).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
    assert!(worst <= 1, "regenerated image differs by {worst} grey levels");
    let again = GaussianBank::load(&out).unwrap();
    assert_eq!(again.classes()[0].mean(), bank.classes()[0].mean());
}

#[test]
fn bad_generator_arguments_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_eloss")).args(["gdc", "bank", "--backbone", "x", "--out"]).arg(dir.path().join("b")).args(args).output().unwrap();
    // --classes without --generator, and --images together with --generator, are refused by the parser
    assert!(!run(&["--classes", "car"]).status.success());
    assert!(!run(&["--images", "d", "--generator", "g", "--classes", "car"]).status.success());
    // a folder that is not a diffusers pipeline names the missing file
    let o = run(&["--generator", dir.path().to_str().unwrap(), "--classes", "car,bus", "--per-class", "2"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("model_index.json"), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&["--generator", dir.path().to_str().unwrap(), "--classes", "car,../x"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("plain"), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The background worker behind the node's `~/add_classes`, without ROS:
/// classes are generated in queue order into the shared cache, a class whose
/// bank update panics is a failure with its message, and the worker goes on.
#[test]
fn class_queue_generates_in_the_background_and_survives_a_failing_class() {
    use eloss_perception::gdc::generator::class_queue::{ClassQueue, GeneratorSettings};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    if !run_python("generator_reference.py", dir.path()) {
        return;
    }
    let settings = GeneratorSettings {
        generator_dir: dir.path().join("sd"),
        cache_root: dir.path().join("cache"),
        per_class: 3,
        templates: "default".into(),
        steps: 2,
        guidance: 2.5,
        size: Some(32),
        seed: 0,
        batch: 2,
        device: tch::Device::Cpu,
    };
    let queue = Arc::new(ClassQueue::new());
    let stop = Arc::new(AtomicBool::new(false));
    let added = Arc::new(Mutex::new(Vec::new()));
    let worker = {
        let (queue, stop, added) = (queue.clone(), stop.clone(), added.clone());
        std::thread::spawn(move || {
            queue.run_worker(&settings, &stop, &|| {}, &mut |set| {
                assert_ne!(set.class, "boom", "bank update failed");
                added.lock().unwrap().push((set.class.clone(), set.paths.clone(), set.prompts.clone()));
                Ok(())
            })
        })
    };
    let names: Vec<String> = ["boom", "bus"].map(String::from).to_vec();
    assert_eq!(queue.enqueue(&names, &[], 3).unwrap().queued, names);
    assert!(queue.wait_settled(&names, Duration::from_secs(120)), "{:?}", queue.status());
    let status = queue.status();
    assert_eq!(status.failed.len(), 1);
    assert_eq!(status.failed[0].0, "boom");
    assert!(status.failed[0].1.contains("panicked") && status.failed[0].1.contains("bank update failed"), "{:?}", status.failed);
    assert!(status.seconds_per_image.is_some_and(|t| t > 0.0));
    let added = added.lock().unwrap().clone();
    assert_eq!(added.len(), 1);
    let (class, paths, prompts) = &added[0];
    assert_eq!((class.as_str(), paths.len(), prompts[0].as_str()), ("bus", 3, "a photo of a bus."));
    assert!(paths.iter().all(|p| p.is_file()));
    assert!(paths[0].parent().unwrap().parent().unwrap().parent().unwrap().join("sheets/bus.png").is_file());
    stop.store(true, Ordering::Relaxed);
    worker.join().unwrap();
}
