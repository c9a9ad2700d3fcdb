//! # zip2zip-core
//!
//! Exact, streaming LZW over token ids: the codec that turns repeated runs of base tokens into
//! *hypertokens*. Pure Rust, no Python; the `zip2zip-py` crate is a thin binding over it.
//!
//! One state machine ([`CodecState`]) both encodes base ids and tracks a code stream, so the
//! dictionary is a function of the base-id text alone, whatever way it was cut into codes. The
//! contract is `shared/DESIGN.md` section 2; codes and entry ids are identical to the greedy LZW
//! of the paper's reference package on valid input.
//!
//! ```
//! use std::sync::Arc;
//! use zip2zip_core::{encode_ids, decode_ids, CodebookConfig};
//!
//! let config = Arc::new(CodebookConfig::new(10, 2048, 4, [9]).unwrap());
//! let ids: Vec<u32> = vec![1, 2, 1, 2, 1, 2, 3];
//! let encoding = encode_ids(&config, &ids).unwrap();
//! assert_eq!(encoding.codes, vec![1, 2, 10, 10, 3]);
//! assert_eq!(decode_ids(&config, &encoding.codes).unwrap(), ids);
//! ```

mod config;
mod dictionary;
mod error;
mod state;
#[cfg(feature = "tokenizer")]
mod text;

use std::cell::RefCell;
use std::sync::Arc;

use rayon::prelude::*;

pub use config::{CodebookConfig, MAX_CODE_LIMIT, MAX_SUBTOKENS_LIMIT};
pub use error::CodecError;
pub use state::{step_batch, BatchStep, CodeSink, CodecState, TokenValue};
#[cfg(feature = "tokenizer")]
pub use text::{HyperTokenizer, TextEncoding, TextStream};

/// The result of encoding one sequence of base ids from an empty state.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Encoding {
    /// The codes: base ids and hypertoken ids (`V + slot`).
    pub codes: Vec<u32>,
    /// For each code, the entries a decoder has installed after reading it.
    pub installed: Vec<u32>,
    /// The entries created, row-major `entries x S`, padded with 0.
    pub phrases: Vec<u32>,
    /// The phrase length of each entry.
    pub lengths: Vec<u32>,
}

/// Encodes a whole sequence with `state`, which is reset first; the pending phrase is flushed.
fn encode_with<T: TokenValue>(state: &mut CodecState, ids: &[T]) -> Result<Encoding, CodecError> {
    state.reset();
    let mut codes = Vec::with_capacity(ids.len() / 2 + 1);
    let mut installed = Vec::with_capacity(ids.len() / 2 + 1);
    state.feed_ids(
        ids,
        CodeSink {
            codes: &mut codes,
            installed: Some(&mut installed),
        },
    )?;
    state.finish(CodeSink {
        codes: &mut codes,
        installed: Some(&mut installed),
    });
    let (phrases, lengths) = state.phrases(0, state.installed(), 0);
    Ok(Encoding {
        codes,
        installed,
        phrases,
        lengths,
    })
}

/// Encodes base ids from an empty state.
///
/// # Errors
/// [`CodecError::IdOutOfRange`] naming the first id that is not below `V`.
pub fn encode_ids<T: TokenValue>(
    config: &Arc<CodebookConfig>,
    ids: &[T],
) -> Result<Encoding, CodecError> {
    // Reuse one state per thread: a fresh one allocates and clears its lookup table, which costs
    // about as much as encoding a few hundred ids.
    thread_local! {
        static SCRATCH: RefCell<Option<CodecState>> = const { RefCell::new(None) };
    }
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let state = match scratch.as_mut() {
            Some(state) if Arc::ptr_eq(state.config(), config) => state,
            _ => scratch.insert(CodecState::new(Arc::clone(config))),
        };
        encode_with(state, ids)
    })
}

/// Decodes a complete code stream that starts from an empty state back to base ids.
///
/// # Errors
/// [`CodecError::CodeOutOfRange`] or [`CodecError::UnknownCode`] naming the first bad code.
pub fn decode_ids<T: TokenValue>(
    config: &Arc<CodebookConfig>,
    codes: &[T],
) -> Result<Vec<u32>, CodecError> {
    let mut out = Vec::with_capacity(codes.len() * 2);
    CodecState::new(Arc::clone(config)).feed_codes(codes, &mut out)?;
    Ok(out)
}

fn in_batch(index: usize) -> impl Fn(CodecError) -> CodecError {
    move |source| CodecError::InBatch {
        index,
        source: Box::new(source),
    }
}

/// Encodes many sequences in parallel (rayon), each from an empty state.
///
/// # Errors
/// The first failing sequence's error, wrapped in [`CodecError::InBatch`] with its index.
pub fn encode_batch<T: TokenValue, S: AsRef<[T]> + Sync>(
    config: &Arc<CodebookConfig>,
    sequences: &[S],
) -> Result<Vec<Encoding>, CodecError> {
    sequences
        .par_iter()
        .enumerate()
        .map_init(
            || CodecState::new(Arc::clone(config)),
            |state, (index, ids)| encode_with(state, ids.as_ref()).map_err(in_batch(index)),
        )
        .collect()
}

/// Decodes many code streams in parallel (rayon), each from an empty state.
///
/// # Errors
/// The first failing sequence's error, wrapped in [`CodecError::InBatch`] with its index.
pub fn decode_batch<T: TokenValue, S: AsRef<[T]> + Sync>(
    config: &Arc<CodebookConfig>,
    sequences: &[S],
) -> Result<Vec<Vec<u32>>, CodecError> {
    sequences
        .par_iter()
        .enumerate()
        .map(|(index, codes)| decode_ids(config, codes.as_ref()).map_err(in_batch(index)))
        .collect()
}
