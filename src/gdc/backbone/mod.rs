//! Image backbones that turn a crop into an embedding for the Gaussian bank.
//!
//! - [`dinov2`]: DINOv2 ViT (S/B/L/g, with or without registers) in the
//!   Hugging Face `Dinov2Model` safetensors layout.
//! - [`efficientnet_lite`]: EfficientNet-Lite0 with ImageNet weights that
//!   ship offline (the default backbone; converted by scripts/setup.sh).

pub mod dinov2;
pub mod efficientnet_lite;

/// How an embedding is read off a ViT's final hidden states; stored in the
/// bank file so a bank is never queried with another recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingRecipe {
    /// The CLS token after the final layer norm (HF `pooler_output`).
    Cls,
    /// CLS concatenated with the mean of the patch tokens (registers
    /// excluded), as in DINOv2's linear-probe recipe; twice the width.
    ClsMeanPatch,
    /// A CNN's globally average-pooled last feature map (EfficientNet-Lite0: 1280-d).
    Pooled,
}

impl EmbeddingRecipe {
    pub fn id(self) -> &'static str {
        match self {
            Self::Cls => "cls",
            Self::ClsMeanPatch => "cls+meanpatch",
            Self::Pooled => "pooled",
        }
    }

    pub fn from_id(id: &str) -> Option<Self> {
        [Self::Cls, Self::ClsMeanPatch, Self::Pooled].into_iter().find(|r| r.id() == id)
    }

    /// The recipe a backbone gets when none is named: CLS for a DINOv2
    /// folder, the pooled features for an EfficientNet-Lite0 weights file.
    pub fn default_for(backbone: &std::path::Path) -> Self {
        if backbone.is_dir() { Self::Cls } else { Self::Pooled }
    }
}
