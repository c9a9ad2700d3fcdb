//! Text in and out: a [`HyperTokenizer`] runs a Hugging Face `tokenizers` tokenizer and the
//! codec in one call (text to codes, codes to text), and a [`TextStream`] turns codes into text
//! incrementally, never splitting a UTF-8 character.

use std::sync::Arc;

use rayon::prelude::*;
use tokenizers::tokenizer::step_decode_stream;
use tokenizers::Tokenizer;

use crate::{encode_with, CodebookConfig, CodecError, CodecState, Encoding, TokenValue};

fn tokenizer_error(context: &str) -> impl Fn(tokenizers::Error) -> CodecError + '_ {
    move |error| CodecError::Tokenizer(format!("{context}: {error}"))
}

/// A base tokenizer and a codebook configuration: text to codes and back without Python.
#[derive(Clone)]
pub struct HyperTokenizer {
    tokenizer: Tokenizer,
    config: Arc<CodebookConfig>,
}

/// The result of encoding one text: the base ids and their [`Encoding`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextEncoding {
    /// The base tokenizer's ids for the text.
    pub ids: Vec<u32>,
    /// The codes, installed counts and codebook of those ids, from an empty state.
    pub encoding: Encoding,
}

impl HyperTokenizer {
    /// Loads the base tokenizer from its `tokenizer.json` text.
    ///
    /// Truncation and padding stored in the JSON are turned off: lengths are counted in codes,
    /// by the caller, and the ids must be exactly what the base tokenizer gives for the text.
    ///
    /// # Errors
    /// [`CodecError::Tokenizer`] if the JSON does not load; [`CodecError::InvalidConfig`] if the
    /// tokenizer has ids that are not below the config's `vocab_size`.
    pub fn from_json(json: &str, config: Arc<CodebookConfig>) -> Result<Self, CodecError> {
        let mut tokenizer: Tokenizer = json
            .parse()
            .map_err(tokenizer_error("the tokenizer JSON does not load"))?;
        tokenizer
            .with_truncation(None)
            .map_err(tokenizer_error("cannot disable truncation"))?;
        tokenizer.with_padding(None);
        let base_size = tokenizer.get_vocab_size(true) as u64;
        // Added tokens may have ids above the model's vocabulary size: check the largest id.
        let largest = tokenizer
            .get_vocab(true)
            .values()
            .copied()
            .max()
            .map_or(0, u64::from);
        if largest >= u64::from(config.vocab_size()) {
            return Err(CodecError::InvalidConfig(format!(
                "the tokenizer has ids up to {largest} ({base_size} tokens) but vocab_size is {}",
                config.vocab_size()
            )));
        }
        Ok(Self { tokenizer, config })
    }

    /// The codebook configuration.
    pub fn config(&self) -> &Arc<CodebookConfig> {
        &self.config
    }

    /// The base tokenizer.
    pub fn base(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The base tokenizer's ids for `text`.
    ///
    /// # Errors
    /// [`CodecError::Tokenizer`] if the base tokenizer fails.
    pub fn base_ids(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, CodecError> {
        let encoding = self
            .tokenizer
            .encode_fast(text, add_special_tokens)
            .map_err(tokenizer_error("the base tokenizer failed"))?;
        Ok(encoding.get_ids().to_vec())
    }

    fn encode_with_state(
        &self,
        state: &mut CodecState,
        text: &str,
        add_special_tokens: bool,
    ) -> Result<TextEncoding, CodecError> {
        let ids = self.base_ids(text, add_special_tokens)?;
        let encoding = encode_with(state, &ids)?;
        Ok(TextEncoding { ids, encoding })
    }

    /// Tokenizes and encodes one text from an empty codebook.
    ///
    /// # Errors
    /// [`CodecError::Tokenizer`] if the base tokenizer fails.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<TextEncoding, CodecError> {
        let mut state = CodecState::new(Arc::clone(&self.config));
        self.encode_with_state(&mut state, text, add_special_tokens)
    }

    /// Tokenizes and encodes many texts in parallel, each from an empty codebook.
    ///
    /// # Errors
    /// The first failing text's error, in [`CodecError::InBatch`].
    pub fn encode_batch<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        add_special_tokens: bool,
    ) -> Result<Vec<TextEncoding>, CodecError> {
        texts
            .par_iter()
            .enumerate()
            .map_init(
                || CodecState::new(Arc::clone(&self.config)),
                |state, (index, text)| {
                    self.encode_with_state(state, text.as_ref(), add_special_tokens)
                        .map_err(|source| CodecError::InBatch {
                            index,
                            source: Box::new(source),
                        })
                },
            )
            .collect()
    }

    /// The text of base ids.
    ///
    /// # Errors
    /// [`CodecError::IdOutOfRange`] for an id not below `V`; [`CodecError::Tokenizer`] if the
    /// base tokenizer fails.
    pub fn decode_base<T: TokenValue>(
        &self,
        ids: &[T],
        skip_special_tokens: bool,
    ) -> Result<String, CodecError> {
        let vocab_size = self.config.vocab_size();
        let mut base = Vec::with_capacity(ids.len());
        for (position, &id) in ids.iter().enumerate() {
            let wide = id.widen();
            if !(0..i128::from(vocab_size)).contains(&wide) {
                return Err(CodecError::IdOutOfRange {
                    id: wide,
                    position,
                    vocab_size,
                });
            }
            base.push(wide as u32);
        }
        self.decode_valid(&base, skip_special_tokens)
    }

    fn decode_valid(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, CodecError> {
        self.tokenizer
            .decode(ids, skip_special_tokens)
            .map_err(tokenizer_error("the base tokenizer cannot decode"))
    }

    /// The text of codes read from `state` (a copy is advanced; `None` starts empty).
    ///
    /// # Errors
    /// [`CodecError::CodeOutOfRange`] or [`CodecError::UnknownCode`] for a code the state cannot
    /// read; [`CodecError::Tokenizer`] if the base tokenizer fails.
    pub fn decode<T: TokenValue>(
        &self,
        codes: &[T],
        state: Option<&CodecState>,
        skip_special_tokens: bool,
    ) -> Result<String, CodecError> {
        let mut state = match state {
            Some(state) => {
                self.check_state(state)?;
                state.clone()
            }
            None => CodecState::new(Arc::clone(&self.config)),
        };
        let mut ids = Vec::with_capacity(codes.len() * 2);
        state.feed_codes(codes, &mut ids)?;
        self.decode_valid(&ids, skip_special_tokens)
    }

    /// Decodes many code streams in parallel, each from an empty codebook.
    ///
    /// # Errors
    /// The first failing stream's error, in [`CodecError::InBatch`].
    pub fn decode_batch<T: TokenValue, S: AsRef<[T]> + Sync>(
        &self,
        sequences: &[S],
        skip_special_tokens: bool,
    ) -> Result<Vec<String>, CodecError> {
        sequences
            .par_iter()
            .enumerate()
            .map(|(index, codes)| {
                self.decode(codes.as_ref(), None, skip_special_tokens)
                    .map_err(|source| CodecError::InBatch {
                        index,
                        source: Box::new(source),
                    })
            })
            .collect()
    }

    fn check_state(&self, state: &CodecState) -> Result<(), CodecError> {
        if **state.config() != *self.config {
            return Err(CodecError::InvalidConfig(
                "the state was made with another codebook config than the tokenizer's".into(),
            ));
        }
        Ok(())
    }
}

/// Streaming detokenizer: codes in, text out as soon as whole characters are known.
///
/// It tracks the codes with its own [`CodecState`] (so a generated suffix is read with the
/// prompt's state) and decodes the base ids the way `tokenizers`' `DecodeStream` does: text is
/// produced only when the decoded string grows without ending in a replacement character, so a
/// multi-byte character split over tokens is never emitted in pieces. The chunks join to the
/// full decode of the same ids.
#[derive(Clone)]
pub struct TextStream {
    state: CodecState,
    skip_special_tokens: bool,
    ids: Vec<u32>,
    prefix: String,
    prefix_index: usize,
}

impl TextStream {
    /// A stream that reads codes from `state`.
    pub fn new(state: CodecState, skip_special_tokens: bool) -> Self {
        Self {
            state,
            skip_special_tokens,
            ids: Vec::new(),
            prefix: String::new(),
            prefix_index: 0,
        }
    }

    /// The codebook state after the codes read so far.
    pub fn state(&self) -> &CodecState {
        &self.state
    }

    /// Reads codes; returns the text they complete (possibly empty).
    ///
    /// # Errors
    /// [`CodecError::CodeOutOfRange`] or [`CodecError::UnknownCode`] for a code the state cannot
    /// read (nothing is consumed then); [`CodecError::Tokenizer`] if decoding fails;
    /// [`CodecError::InvalidConfig`] if `tokenizer` has another config than the stream's state.
    pub fn step<T: TokenValue>(
        &mut self,
        tokenizer: &HyperTokenizer,
        codes: &[T],
    ) -> Result<String, CodecError> {
        tokenizer.check_state(&self.state)?;
        let mut ids = Vec::new();
        self.state.feed_codes(codes, &mut ids)?;
        let mut text = String::new();
        for id in ids {
            let chunk = step_decode_stream(
                &tokenizer.tokenizer,
                vec![id],
                self.skip_special_tokens,
                &mut self.ids,
                &mut self.prefix,
                &mut self.prefix_index,
            )
            .map_err(tokenizer_error("streaming decode failed"))?;
            if let Some(chunk) = chunk {
                text.push_str(&chunk);
            }
        }
        Ok(text)
    }

    /// Ends the stream: returns the text still held back. `step` holds text back while the
    /// decoded string ends in U+FFFD, waiting for the rest of a character; at the end of a
    /// generation there is no rest, and whatever the base tokenizer decodes is the text.
    ///
    /// # Errors
    /// [`CodecError::Tokenizer`] if decoding fails or is inconsistent with what was emitted.
    pub fn flush(&mut self, tokenizer: &HyperTokenizer) -> Result<String, CodecError> {
        let decode = |ids: &[u32]| {
            tokenizer
                .tokenizer
                .decode(ids, self.skip_special_tokens)
                .map_err(tokenizer_error("streaming decode failed"))
        };
        let full = decode(&self.ids)?;
        let Some(rest) = full.strip_prefix(self.prefix.as_str()) else {
            return Err(CodecError::Tokenizer(
                "streaming decode: the text no longer starts with what was emitted".into(),
            ));
        };
        let rest = rest.to_string();
        if !rest.is_empty() {
            self.ids.drain(..self.prefix_index);
            self.prefix = decode(&self.ids)?;
            self.prefix_index = self.ids.len();
        }
        Ok(rest)
    }
}
