//! Prompt templates that turn a class name into text-to-image prompts, in the
//! style of CLIP's zero-shot templates that the GDC paper generates with
//! ("a photo of a {}"). Image `i` of a class uses template `i mod n`, so every
//! template contributes equally and a resumed run reproduces the same prompts.

use std::path::Path;

/// The 8 default templates (driving-scene flavoured; `{}` is the class name).
pub const DEFAULT_TEMPLATES: [&str; 8] = [
    "a photo of a {}.",
    "a realistic photo of a {} on a road.",
    "a photo of a {} in a city street.",
    "a dashcam photo of a {}.",
    "a close-up photo of a {}.",
    "a photo of a {} seen from the side.",
    "a photo of a {} at night.",
    "a blurry photo of a {}.",
];

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("template {0:?} must contain {{}} exactly once")]
    Placeholder(String),
    #[error("no templates")]
    Empty,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Templates(Vec<String>);

impl Default for Templates {
    fn default() -> Self {
        Self(DEFAULT_TEMPLATES.iter().map(|s| s.to_string()).collect())
    }
}

impl Templates {
    pub fn new(templates: Vec<String>) -> Result<Self, PromptError> {
        if templates.is_empty() {
            return Err(PromptError::Empty);
        }
        if let Some(t) = templates.iter().find(|t| t.matches("{}").count() != 1) {
            return Err(PromptError::Placeholder(t.clone()));
        }
        Ok(Self(templates))
    }

    /// `default`, or a file with one template per line (blank lines and `#` comments skipped).
    pub fn from_arg(arg: &str) -> Result<Self, PromptError> {
        if arg == "default" {
            return Ok(Self::default());
        }
        let text = std::fs::read_to_string(Path::new(arg)).map_err(|e| PromptError::File { path: arg.into(), reason: e.to_string() })?;
        let lines = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned).collect();
        Self::new(lines).map_err(|e| PromptError::File { path: arg.into(), reason: e.to_string() })
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The prompt for image `index` of `class` (underscores read as spaces: `traffic_cone`).
    pub fn prompt(&self, class: &str, index: usize) -> String {
        self.0[index % self.0.len()].replace("{}", &class.replace('_', " "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_templates_and_checks_placeholders() {
        let t = Templates::default();
        assert_eq!(t.len(), 8);
        assert_eq!(t.prompt("traffic_cone", 0), "a photo of a traffic cone.");
        assert_eq!(t.prompt("car", 9), t.prompt("car", 1));
        assert!(matches!(Templates::new(vec!["no placeholder".into()]), Err(PromptError::Placeholder(_))));
        assert!(matches!(Templates::new(vec![]), Err(PromptError::Empty)));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t.txt");
        std::fs::write(&f, "# mine\n\na {} in snow\n").unwrap();
        assert_eq!(Templates::from_arg(f.to_str().unwrap()).unwrap().prompt("bus", 3), "a bus in snow");
        std::fs::write(&f, "a {} and a {}\n").unwrap();
        assert!(Templates::from_arg(f.to_str().unwrap()).is_err());
    }
}
