//! The LZW state machine, shared by encoding and by tracking (decoding) a code stream.

use std::sync::Arc;

use crate::config::CodebookConfig;
use crate::dictionary::Dictionary;
use crate::error::CodecError;

/// An integer type that ids and codes can be read from: lets callers pass `i32`, `i64`, `u32`
/// or `u64` slices straight from NumPy without a conversion copy.
pub trait TokenValue: Copy + Send + Sync {
    /// The value widened to `i128`, so that negative and huge values can be reported exactly.
    fn widen(self) -> i128;
}

macro_rules! token_value {
    ($($t:ty),*) => {$(
        impl TokenValue for $t {
            #[inline(always)]
            fn widen(self) -> i128 {
                self as i128
            }
        }
    )*};
}
token_value!(u16, i16, u32, i32, u64, i64, usize);

/// Codebook state: the dictionary plus the pending phrase `P`.
///
/// The same machine encodes base ids ([`CodecState::feed_ids`]) and tracks a code stream
/// ([`CodecState::feed_codes`]): tracking expands each code to its base ids and feeds them, so
/// the dictionary depends only on the base-id text, never on how it was cut into codes.
#[derive(Clone, Debug)]
pub struct CodecState {
    config: Arc<CodebookConfig>,
    dictionary: Dictionary,
    /// Code of the pending phrase `P`; meaningless while `pending_len == 0`.
    pending_code: u32,
    /// First base id of `P` (what a KwKwK code repeats).
    pending_first: u32,
    /// `len(P)`, always below `S`.
    pending_len: u32,
}

impl PartialEq for CodecState {
    fn eq(&self, other: &Self) -> bool {
        self.config == other.config
            && self.pending_len == other.pending_len
            && (self.pending_len == 0 || self.pending_code == other.pending_code)
            && self.dictionary.same_entries(&other.dictionary)
    }
}

impl Eq for CodecState {}

/// Where the codes emitted by one call go: codes and, optionally, the per-code installed counts.
pub struct CodeSink<'a> {
    /// Emitted codes are appended here.
    pub codes: &'a mut Vec<u32>,
    /// If given, for each emitted code, the entries a decoder has installed after reading it.
    pub installed: Option<&'a mut Vec<u32>>,
}

impl CodecState {
    /// An empty state: no entries, nothing pending.
    pub fn new(config: Arc<CodebookConfig>) -> Self {
        let dictionary = Dictionary::new(config.vocab_size(), config.max_codebook_size());
        Self {
            config,
            dictionary,
            pending_code: 0,
            pending_first: 0,
            pending_len: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Arc<CodebookConfig> {
        &self.config
    }

    /// Entries installed so far.
    pub fn installed(&self) -> u32 {
        self.dictionary.len()
    }

    /// The id the next entry will get (`V + installed`).
    pub fn next_id(&self) -> u32 {
        self.config.vocab_size() + self.dictionary.len()
    }

    /// Whether no more entries can be added.
    pub fn is_full(&self) -> bool {
        self.dictionary.len() >= self.config.max_codebook_size()
    }

    /// The code of the pending phrase `P`, if any: what [`CodecState::finish`] would emit.
    pub fn pending_code(&self) -> Option<u32> {
        (self.pending_len > 0).then_some(self.pending_code)
    }

    /// The base ids of the pending phrase `P`.
    pub fn pending_phrase(&self) -> Vec<u32> {
        let mut out = Vec::new();
        if let Some(code) = self.pending_code() {
            self.dictionary.extend_phrase(code, &mut out);
        }
        out
    }

    /// Forgets all entries and the pending phrase, keeping allocations.
    pub fn reset(&mut self) {
        self.dictionary.clear();
        self.pending_len = 0;
    }

    /// The base ids of `code`: itself for a base id, the phrase of an installed entry.
    ///
    /// # Errors
    /// [`CodecError::CodeOutOfRange`] or [`CodecError::UnknownCode`] (position 0) otherwise.
    pub fn phrase<T: TokenValue>(&self, code: T) -> Result<Vec<u32>, CodecError> {
        let code = self.check_code_range(code, 0)?;
        if !self.dictionary.contains_code(code) {
            return Err(self.unknown_code(code, 0, ""));
        }
        let mut out = Vec::new();
        self.dictionary.extend_phrase(code, &mut out);
        Ok(out)
    }

    /// Phrases of the entries with ids `V + start .. V + end`, as a row-major `(end - start) x S`
    /// array padded with `pad`, and their lengths. `end` is clamped to the installed entries.
    pub fn phrases(&self, start: u32, end: u32, pad: u32) -> (Vec<u32>, Vec<u32>) {
        let end = end.min(self.installed());
        let start = start.min(end);
        let width = self.config.max_subtokens() as usize;
        let count = (end - start) as usize;
        let mut table = vec![pad; count * width];
        let mut lengths = Vec::with_capacity(count);
        let vocab_size = self.config.vocab_size();
        for (row, index) in (start..end).enumerate() {
            let id = vocab_size + index;
            let len = self.dictionary.phrase_len(id) as usize;
            let offset = row * width;
            let (prefix, last) = self.dictionary.entry_parts(id);
            if prefix >= vocab_size + start {
                // The prefix is an earlier row of this table: copy it instead of walking.
                let source = (prefix - vocab_size - start) as usize * width;
                table.copy_within(source..source + len - 1, offset);
                table[offset + len - 1] = last;
            } else {
                self.dictionary
                    .write_phrase(id, &mut table[offset..offset + len]);
            }
            lengths.push(len as u32);
        }
        (table, lengths)
    }

    /// Checks that every id is a valid base id.
    fn validate_ids<T: TokenValue>(&self, ids: &[T]) -> Result<(), CodecError> {
        let vocab_size = self.config.vocab_size();
        let limit = i128::from(vocab_size);
        match ids.iter().position(|&id| !(0..limit).contains(&id.widen())) {
            None => Ok(()),
            Some(position) => Err(CodecError::IdOutOfRange {
                id: ids[position].widen(),
                position,
                vocab_size,
            }),
        }
    }

    /// Encodes base ids, appending the codes they complete to `sink`. The pending phrase stays
    /// open: call [`CodecState::finish`] at the end of the text.
    ///
    /// # Errors
    /// [`CodecError::IdOutOfRange`] if any id is not below `V`; the state is then unchanged
    /// (all ids are checked before any is fed).
    pub fn feed_ids<T: TokenValue>(
        &mut self,
        ids: &[T],
        sink: CodeSink<'_>,
    ) -> Result<(), CodecError> {
        self.validate_ids(ids)?;
        let CodeSink { codes, installed } = sink;
        // At most one code per id plus the flushed pending phrase: reserving keeps pushes cheap.
        codes.reserve(ids.len() + 1);
        match installed {
            Some(installed) => {
                installed.reserve(ids.len() + 1);
                self.run(ids.iter().map(|&id| id.widen() as u32), |code, count| {
                    codes.push(code);
                    installed.push(count);
                })
            }
            None => self.run(ids.iter().map(|&id| id.widen() as u32), |code, _| {
                codes.push(code)
            }),
        }
        Ok(())
    }

    /// Ends the text: emits the code of the pending phrase, if any, and closes it.
    pub fn finish(&mut self, sink: CodeSink<'_>) {
        if self.pending_len > 0 {
            sink.codes.push(self.pending_code);
            if let Some(installed) = sink.installed {
                installed.push(self.dictionary.len());
            }
            self.pending_len = 0;
        }
    }

    /// The greedy LZW step over valid base ids; `emit(code, installed)` receives each code and
    /// the entries a decoder has after reading it.
    #[inline(always)]
    fn run<I, F>(&mut self, ids: I, mut emit: F)
    where
        I: Iterator<Item = u32>,
        F: FnMut(u32, u32),
    {
        // Borrow the fields apart (no Arc clone: this runs once per code when tracking).
        let config: &CodebookConfig = &self.config;
        let dictionary = &mut self.dictionary;
        let max_entries = config.max_codebook_size();
        let max_len = config.max_subtokens();
        let mut code = self.pending_code;
        let mut first = self.pending_first;
        let mut len = self.pending_len;
        for id in ids {
            if config.is_disabled(id) {
                if len > 0 {
                    emit(code, dictionary.len());
                    len = 0;
                }
                emit(id, dictionary.len());
                continue;
            }
            if len == 0 {
                code = id;
                first = id;
                len = 1;
            } else {
                match dictionary.find(code, id) {
                    Ok(entry) => {
                        code = entry;
                        len += 1;
                    }
                    Err(vacancy) => {
                        let count = dictionary.len();
                        // A decoder learns this entry only from the next code: report the count
                        // before it.
                        emit(code, count);
                        if count < max_entries {
                            dictionary.push_at(vacancy, code, id, len + 1);
                        }
                        code = id;
                        first = id;
                        len = 1;
                    }
                }
            }
            if len == max_len {
                emit(code, dictionary.len());
                len = 0;
            }
        }
        self.pending_code = code;
        self.pending_first = first;
        self.pending_len = len;
    }

    fn check_code_range<T: TokenValue>(&self, code: T, position: usize) -> Result<u32, CodecError> {
        let wide = code.widen();
        let limit = self.config.code_limit();
        if wide < 0 || wide >= i128::from(limit) {
            return Err(CodecError::CodeOutOfRange {
                code: wide,
                position,
                limit: u64::from(limit),
            });
        }
        Ok(wide as u32)
    }

    fn unknown_code(&self, code: u32, position: usize, reason: &'static str) -> CodecError {
        CodecError::UnknownCode {
            code,
            position,
            installed: self.installed(),
            vocab_size: self.config.vocab_size(),
            next_id: self.next_id(),
            reason,
        }
    }

    /// Why the not-yet-installed id `next_id` cannot be read now, or `None` if it is the valid
    /// KwKwK code `P + P[0]`: the entry the next base id will create.
    fn kwkwk_obstacle(&self) -> Option<&'static str> {
        if self.pending_len == 0 {
            Some("; it is the next id, but no phrase is pending, so it cannot be P + P[0]")
        } else if self.is_full() {
            Some("; the codebook is full")
        } else if self.pending_len + 1 > self.config.max_subtokens() {
            Some("; it is the next id, but P + P[0] would exceed max_subtokens")
        } else if self
            .dictionary
            .get(self.pending_code, self.pending_first)
            .is_some()
        {
            Some(
                "; it is the next id, but P + P[0] is already an entry, so reading it creates none",
            )
        } else {
            None
        }
    }

    /// Tracks a code stream: expands each code to its base ids (appended to `out`) and feeds
    /// them through the encoder's state machine. Returns the number of entries installed.
    ///
    /// # Errors
    /// [`CodecError::CodeOutOfRange`] for a code not below `V + K`; [`CodecError::UnknownCode`]
    /// for an entry id not installed that is not the valid KwKwK code. On error the state and
    /// `out` are exactly as before the call.
    pub fn feed_codes<T: TokenValue>(
        &mut self,
        codes: &[T],
        out: &mut Vec<u32>,
    ) -> Result<u32, CodecError> {
        let saved = (
            self.dictionary.len(),
            self.pending_code,
            self.pending_first,
            self.pending_len,
        );
        let out_start = out.len();
        match self.track(codes, out) {
            Ok(()) => Ok(self.dictionary.len() - saved.0),
            Err(error) => {
                self.dictionary.truncate(saved.0);
                (self.pending_code, self.pending_first, self.pending_len) =
                    (saved.1, saved.2, saved.3);
                out.truncate(out_start);
                Err(error)
            }
        }
    }

    /// Where the state stands: enough to undo appends made by later feeds.
    fn mark(&self) -> Mark {
        Mark {
            entries: self.dictionary.len(),
            pending_code: self.pending_code,
            pending_first: self.pending_first,
            pending_len: self.pending_len,
        }
    }

    /// Returns to `mark`, taken on this state before feeds that only appended entries.
    fn rewind(&mut self, mark: &Mark) {
        self.dictionary.truncate(mark.entries);
        (self.pending_code, self.pending_first, self.pending_len) =
            (mark.pending_code, mark.pending_first, mark.pending_len);
    }

    fn track<T: TokenValue>(&mut self, codes: &[T], out: &mut Vec<u32>) -> Result<(), CodecError> {
        for (position, &code) in codes.iter().enumerate() {
            let code = self.check_code_range(code, position)?;
            let start = out.len();
            if self.dictionary.contains_code(code) {
                self.dictionary.extend_phrase(code, out);
            } else if code == self.next_id() {
                if let Some(reason) = self.kwkwk_obstacle() {
                    return Err(self.unknown_code(code, position, reason));
                }
                self.dictionary.extend_phrase(self.pending_code, out);
                out.push(self.pending_first);
            } else {
                return Err(self.unknown_code(code, position, ""));
            }
            self.run(out[start..].iter().copied(), |_, _| {});
        }
        Ok(())
    }
}

/// A state's position, to undo a step of [`step_batch`].
struct Mark {
    entries: u32,
    pending_code: u32,
    pending_first: u32,
    pending_len: u32,
}

/// What [`step_batch`] reports after reading one code per state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchStep {
    /// For each state, how many base ids its code expanded to (its phrase length).
    pub code_lengths: Vec<u32>,
    /// For each state, the entries installed after its code.
    pub installed: Vec<u32>,
    /// For each entry the step created, in state order: the state's index.
    pub created_rows: Vec<u32>,
    /// For each entry the step created: its slot (`id - V`).
    pub created_slots: Vec<u32>,
    /// The created entries' phrases, row-major `created x S`, padded with 0.
    pub phrases: Vec<u32>,
    /// The created entries' phrase lengths.
    pub lengths: Vec<u32>,
}

/// Reads one code into each state (`codes[i]` into `states[i]`; extra codes or states are not
/// read), as [`CodecState::feed_codes`] does, and reports what a decoding step needs: phrase
/// lengths, installed counts and the entries created, with their phrases.
///
/// All or nothing: on error every state is exactly as before the call.
///
/// # Errors
/// [`CodecError::InBatch`] naming the first state whose code cannot be read, and why.
pub fn step_batch<T: TokenValue>(
    states: &mut [CodecState],
    codes: &[T],
) -> Result<BatchStep, CodecError> {
    let rows = states.len().min(codes.len());
    let mut step = BatchStep {
        code_lengths: Vec::with_capacity(rows),
        installed: Vec::with_capacity(rows),
        ..BatchStep::default()
    };
    let mut marks = Vec::with_capacity(rows);
    let mut ids = Vec::new();
    for (row, (state, &code)) in states.iter_mut().zip(codes).enumerate() {
        let mark = state.mark();
        ids.clear();
        match state.feed_codes(&[code], &mut ids) {
            Ok(added) => {
                let width = state.config.max_subtokens() as usize;
                let (table, lengths) = state.phrases(mark.entries, mark.entries + added, 0);
                debug_assert_eq!(table.len(), lengths.len() * width);
                step.code_lengths.push(ids.len() as u32);
                step.installed.push(state.installed());
                step.created_rows
                    .extend(std::iter::repeat_n(row as u32, lengths.len()));
                step.created_slots
                    .extend(mark.entries..mark.entries + lengths.len() as u32);
                step.phrases.extend_from_slice(&table);
                step.lengths.extend_from_slice(&lengths);
                marks.push(mark);
            }
            Err(error) => {
                for (state, mark) in states.iter_mut().zip(&marks) {
                    state.rewind(mark);
                }
                return Err(CodecError::InBatch {
                    index: row,
                    source: Box::new(error),
                });
            }
        }
    }
    Ok(step)
}

/// Snapshot format: magic, version, then little-endian `u32` words.
const SNAPSHOT_MAGIC: &[u8; 4] = b"Z2ZS";
const SNAPSHOT_VERSION: u32 = 1;

impl CodecState {
    /// Serializes the state (config, entries, pending phrase) to bytes, for pickling.
    pub fn to_bytes(&self) -> Vec<u8> {
        let config = &self.config;
        let mut words: Vec<u32> = vec![
            SNAPSHOT_VERSION,
            config.vocab_size(),
            config.max_codebook_size(),
            config.max_subtokens(),
            config.disabled_ids().len() as u32,
        ];
        words.extend_from_slice(config.disabled_ids());
        words.push(self.installed());
        for index in 0..self.installed() {
            let (prefix, last) = self.dictionary.entry_parts(config.vocab_size() + index);
            words.push(prefix);
            words.push(last);
        }
        words.push(self.pending_len);
        words.push(if self.pending_len > 0 {
            self.pending_code
        } else {
            0
        });
        let mut bytes = Vec::with_capacity(4 + 4 * words.len());
        bytes.extend_from_slice(SNAPSHOT_MAGIC);
        for word in words {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
        bytes
    }

    /// Restores a state from [`CodecState::to_bytes`], checking that it describes a state the
    /// codec could have reached.
    ///
    /// # Errors
    /// [`CodecError::InvalidState`] for truncated or inconsistent bytes,
    /// [`CodecError::InvalidConfig`] for an invalid embedded config.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CodecError> {
        let invalid = |why: String| CodecError::InvalidState(why);
        if bytes.len() < 4 || &bytes[..4] != SNAPSHOT_MAGIC {
            return Err(invalid("missing the Z2ZS header".into()));
        }
        if (bytes.len() - 4) % 4 != 0 {
            return Err(invalid(format!(
                "length {} is not a whole number of words",
                bytes.len()
            )));
        }
        let mut words = bytes[4..]
            .chunks_exact(4)
            .map(|chunk| u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]));
        let mut next = |what: &str| {
            words
                .next()
                .ok_or_else(|| invalid(format!("truncated before {what}")))
        };
        let version = next("the version")?;
        if version != SNAPSHOT_VERSION {
            return Err(invalid(format!("unsupported version {version}")));
        }
        let vocab_size = next("vocab_size")?;
        let max_codebook_size = next("max_codebook_size")?;
        let max_subtokens = next("max_subtokens")?;
        let disabled_count = next("the disabled id count")?;
        let mut disabled = Vec::new();
        for _ in 0..disabled_count {
            disabled.push(u64::from(next("a disabled id")?));
        }
        let config = CodebookConfig::new(
            u64::from(vocab_size),
            u64::from(max_codebook_size),
            u64::from(max_subtokens),
            disabled,
        )?;
        let mut state = CodecState::new(Arc::new(config));
        let entries = next("the entry count")?;
        if entries > max_codebook_size {
            return Err(invalid(format!(
                "{entries} entries exceed max_codebook_size {max_codebook_size}"
            )));
        }
        for index in 0..entries {
            let prefix = next("an entry prefix")?;
            let last = next("an entry's last id")?;
            let id = state.next_id();
            if !state.dictionary.contains_code(prefix) {
                return Err(invalid(format!(
                    "entry {id} has prefix {prefix}, which does not exist before it"
                )));
            }
            if last >= vocab_size
                || state.config.is_disabled(last)
                || (prefix < vocab_size && state.config.is_disabled(prefix))
            {
                return Err(invalid(format!(
                    "entry {id} contains a disabled or out-of-range base id"
                )));
            }
            let length = state.dictionary.phrase_len(prefix) + 1;
            if length > max_subtokens {
                return Err(invalid(format!(
                    "entry {id} is longer than max_subtokens {max_subtokens}"
                )));
            }
            if state.dictionary.get(prefix, last).is_some() {
                return Err(invalid(format!("entry {index} repeats an earlier entry")));
            }
            state.dictionary.push(prefix, last, length);
        }
        let pending_len = next("the pending length")?;
        let pending_code = next("the pending code")?;
        if words.next().is_some() {
            return Err(invalid("trailing data after the pending phrase".into()));
        }
        if pending_len > 0 {
            let valid = state.dictionary.contains_code(pending_code)
                && state.dictionary.phrase_len(pending_code) == pending_len
                && pending_len < max_subtokens
                && !(pending_code < vocab_size && state.config.is_disabled(pending_code));
            if !valid {
                return Err(invalid(format!(
                    "pending code {pending_code} of length {pending_len} is not valid"
                )));
            }
            let mut phrase = vec![0; pending_len as usize];
            state.dictionary.write_phrase(pending_code, &mut phrase);
            state.pending_code = pending_code;
            state.pending_first = phrase[0];
            state.pending_len = pending_len;
        }
        Ok(state)
    }
}
