//! Codebook configuration: `V`, `K`, `S` and the disabled ids.

use crate::error::CodecError;

/// Largest accepted `max_subtokens`. Phrases are exported as `entries x S` arrays, so an
/// enormous `S` would only waste memory; real use is 2..16.
pub const MAX_SUBTOKENS_LIMIT: u64 = 256;

/// Largest `V + K`: every code must fit in an `int32` NumPy array and in a `u32`.
pub const MAX_CODE_LIMIT: u64 = i32::MAX as u64;

/// Disabled ids below this are looked up in a bitmap, above it by binary search.
const DENSE_DISABLED_LIMIT: u32 = 1 << 24;

/// The fixed parameters of a codebook.
///
/// * `vocab_size` (`V`): rows of the model's embedding; base ids are `0..V`, hypertoken ids
///   start at `V`.
/// * `max_codebook_size` (`K`): entries a codebook may hold; when full it is frozen.
/// * `max_subtokens` (`S`): the longest phrase an entry may stand for (`S >= 1`).
/// * disabled ids: base ids that never become part of an entry (special tokens, pad, digits).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CodebookConfig {
    vocab_size: u32,
    max_codebook_size: u32,
    max_subtokens: u32,
    disabled_ids: Vec<u32>,
    disabled_bits: Vec<u64>,
}

impl CodebookConfig {
    /// Checks and builds a configuration.
    ///
    /// # Errors
    /// [`CodecError::InvalidConfig`] when `vocab_size` is 0, `max_subtokens` is 0 or above
    /// [`MAX_SUBTOKENS_LIMIT`], `vocab_size + max_codebook_size` exceeds [`MAX_CODE_LIMIT`], or a
    /// disabled id is not below `vocab_size`.
    pub fn new(
        vocab_size: u64,
        max_codebook_size: u64,
        max_subtokens: u64,
        disabled_ids: impl IntoIterator<Item = u64>,
    ) -> Result<Self, CodecError> {
        if vocab_size == 0 {
            return Err(CodecError::InvalidConfig(
                "vocab_size must be at least 1, got 0".into(),
            ));
        }
        if max_subtokens == 0 || max_subtokens > MAX_SUBTOKENS_LIMIT {
            return Err(CodecError::InvalidConfig(format!(
                "max_subtokens must be in 1..={MAX_SUBTOKENS_LIMIT}, got {max_subtokens}"
            )));
        }
        let code_limit = vocab_size.checked_add(max_codebook_size);
        if code_limit.is_none_or(|limit| limit > MAX_CODE_LIMIT) {
            return Err(CodecError::InvalidConfig(format!(
                "vocab_size + max_codebook_size must be at most {MAX_CODE_LIMIT} so that every \
                 code fits in int32, got {vocab_size} + {max_codebook_size}"
            )));
        }
        let vocab_size = vocab_size as u32;
        let mut ids = Vec::new();
        for id in disabled_ids {
            if id >= u64::from(vocab_size) {
                return Err(CodecError::InvalidConfig(format!(
                    "disabled id {id} is out of range: valid base ids are 0..{vocab_size}"
                )));
            }
            ids.push(id as u32);
        }
        ids.sort_unstable();
        ids.dedup();
        // A bitmap over the whole vocabulary when it is at most 2^24 ids (2 MiB), so that the
        // per-token check has no range branch; above that, a bitmap up to the largest disabled
        // id under the cap, and binary search beyond it.
        let dense_end = if vocab_size <= DENSE_DISABLED_LIMIT {
            vocab_size
        } else {
            ids.last()
                .map_or(0, |&last| (last + 1).min(DENSE_DISABLED_LIMIT))
        };
        let mut bits = vec![0u64; (dense_end as usize).div_ceil(64)];
        for &id in ids.iter().take_while(|&&id| id < dense_end) {
            bits[(id / 64) as usize] |= 1 << (id % 64);
        }
        Ok(Self {
            vocab_size,
            max_codebook_size: max_codebook_size as u32,
            max_subtokens: max_subtokens as u32,
            disabled_ids: ids,
            disabled_bits: bits,
        })
    }

    /// `V`: the number of base ids.
    pub fn vocab_size(&self) -> u32 {
        self.vocab_size
    }

    /// `K`: the most entries a codebook may hold.
    pub fn max_codebook_size(&self) -> u32 {
        self.max_codebook_size
    }

    /// `S`: the longest phrase an entry may stand for.
    pub fn max_subtokens(&self) -> u32 {
        self.max_subtokens
    }

    /// The disabled base ids, sorted and without repeats.
    pub fn disabled_ids(&self) -> &[u32] {
        &self.disabled_ids
    }

    /// `V + K`: every valid code is below this.
    pub fn code_limit(&self) -> u32 {
        self.vocab_size + self.max_codebook_size
    }

    /// Whether `id` (which must be below `V`) may never be part of an entry.
    #[inline(always)]
    pub fn is_disabled(&self, id: u32) -> bool {
        match self.disabled_bits.get((id / 64) as usize) {
            Some(word) => word & (1 << (id % 64)) != 0,
            None => id >= DENSE_DISABLED_LIMIT && self.disabled_ids.binary_search(&id).is_ok(),
        }
    }
}
