//! The rule behind every test that needs data or a Python peer (issue 18):
//! a missing prerequisite fails the test, saying how to provide it, unless
//! the user opts out with `ELOSS_ALLOW_SKIPS=1` outside CI; under CI it
//! always fails. One test in its own binary: it changes the process's
//! environment, which no other test here reads meanwhile.
mod common;

use std::panic::catch_unwind;

fn with_env(ci: bool, allow: Option<&str>) {
    match ci {
        true => std::env::set_var("CI", "true"),
        false => std::env::remove_var("CI"),
    }
    match allow {
        Some(v) => std::env::set_var("ELOSS_ALLOW_SKIPS", v),
        None => std::env::remove_var("ELOSS_ALLOW_SKIPS"),
    }
}

#[test]
fn a_missing_prerequisite_fails_unless_skips_are_allowed_outside_ci() {
    let python = std::env::var_os("ELOSS_PYTHON");
    std::env::remove_var("ELOSS_PYTHON");
    let cases = [
        // (CI set, ELOSS_ALLOW_SKIPS, the test may skip)
        (false, None, false),
        (false, Some("0"), false),
        (false, Some("1"), true),
        (true, None, false),
        (true, Some("1"), false),
    ];
    for (ci, allow, skips) in cases {
        with_env(ci, allow);
        assert_eq!(common::skips_allowed(), skips, "CI {ci}, ELOSS_ALLOW_SKIPS {allow:?}");
        let outcome = catch_unwind(common::python);
        match (skips, outcome) {
            (true, Ok(None)) => {}
            (false, Err(panic)) => {
                let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
                assert!(message.contains("ELOSS_PYTHON is not set") && message.contains("ELOSS_ALLOW_SKIPS=1"), "{message}");
            }
            (_, other) => panic!("CI {ci}, ELOSS_ALLOW_SKIPS {allow:?}: expected {}, got {other:?}", if skips { "a skip" } else { "a failure" }),
        }
    }
    if let Some(p) = python {
        std::env::set_var("ELOSS_PYTHON", p);
    }
}
