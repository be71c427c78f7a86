//! The text of a caught panic. Workers that run libtorch (whose tch ops panic
//! instead of returning errors) catch panics per item and report this
//! message as that item's error, so one bad input never stops the worker.

/// The panic payload as text (`panic!` gives a `String` or a `&str`).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic without a message".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_become_text() {
        let p = std::panic::catch_unwind(|| panic!("shape mismatch {}", 3)).unwrap_err();
        assert_eq!(panic_message(&*p), "shape mismatch 3");
        let p = std::panic::catch_unwind(|| panic!("static")).unwrap_err();
        assert_eq!(panic_message(&*p), "static");
        let p = std::panic::catch_unwind(|| std::panic::panic_any(7u8)).unwrap_err();
        assert_eq!(panic_message(&*p), "panic without a message");
    }
}
