//! The one error type of the codec.
//!
//! Every fallible operation returns [`CodecError`]. Each variant carries the offending value and
//! where it was found, so that the message shown to a Python user names both. The binding crate
//! maps each variant to its own `ValueError` subclass.

use thiserror::Error;

/// Everything that can go wrong when configuring the codec or feeding it ids or codes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodecError {
    /// A base id given to the encoder is negative or not below the vocabulary size.
    #[error(
        "base id {id} at position {position} is out of range: valid base ids are 0..{vocab_size}"
    )]
    IdOutOfRange {
        /// The offending value, as given.
        id: i128,
        /// Its index in the input of the call.
        position: usize,
        /// The configured vocabulary size `V`.
        vocab_size: u32,
    },

    /// A code is negative or not below `V + K`: no configuration could ever produce it.
    #[error(
        "code {code} at position {position} is out of range: valid codes are 0..{limit} \
         (vocab_size + max_codebook_size)"
    )]
    CodeOutOfRange {
        /// The offending value, as given.
        code: i128,
        /// Its index in the input of the call.
        position: usize,
        /// `V + K`.
        limit: u64,
    },

    /// A hypertoken id that the state has not installed and that is not a valid KwKwK code.
    #[error(
        "code {code} at position {position} is not a known hypertoken: {installed} entries are \
         installed (ids {vocab_size}..{next_id}){reason}"
    )]
    UnknownCode {
        /// The offending code.
        code: u32,
        /// Its index in the input of the call.
        position: usize,
        /// Entries installed when the code was read.
        installed: u32,
        /// The vocabulary size, first hypertoken id.
        vocab_size: u32,
        /// The id the next entry would get.
        next_id: u32,
        /// Why the code is not accepted as the not-yet-installed KwKwK entry, when it is that id.
        reason: &'static str,
    },

    /// A configuration that the codec cannot honour.
    #[error("invalid codebook config: {0}")]
    InvalidConfig(String),

    /// Serialized state bytes that do not describe a state this codec could have reached.
    #[error("invalid codec state: {0}")]
    InvalidState(String),

    /// The base tokenizer failed or its JSON did not load.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),

    /// A batch item failed; `index` is the sequence in the batch.
    #[error("sequence {index} of the batch: {source}")]
    InBatch {
        /// Index of the failing sequence.
        index: usize,
        /// What went wrong in it.
        source: Box<CodecError>,
    },
}

impl CodecError {
    /// The innermost error, looking through [`CodecError::InBatch`].
    pub fn root(&self) -> &CodecError {
        match self {
            CodecError::InBatch { source, .. } => source.root(),
            other => other,
        }
    }
}
