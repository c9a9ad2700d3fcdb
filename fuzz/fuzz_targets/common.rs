//! Input shapes shared by the fuzz targets.

use std::sync::Arc;

use arbitrary::Arbitrary;
use zip2zip_core::CodebookConfig;

/// A small configuration (so codebooks fill and phrases repeat) and ids folded into range.
#[derive(Arbitrary, Debug)]
pub struct SmallCase {
    vocab: u8,
    max_codebook_size: u8,
    max_subtokens: u8,
    disabled: Vec<u8>,
    ids: Vec<u8>,
}

impl SmallCase {
    pub fn build(&self) -> (Arc<CodebookConfig>, Vec<u32>) {
        let vocab = u64::from(self.vocab % 16) + 1;
        let config = CodebookConfig::new(
            vocab,
            u64::from(self.max_codebook_size),
            u64::from(self.max_subtokens % 8) + 1,
            self.disabled.iter().take(3).map(|&d| u64::from(d) % vocab),
        )
        .expect("folded parameters are always valid");
        let ids = self.ids.iter().map(|&t| u32::from(t) % vocab as u32).collect();
        (Arc::new(config), ids)
    }
}
