//! The LZW dictionary: an append-only arena of entries and a lookup table keyed by
//! `(prefix code, last base id)`.
//!
//! Each entry is stored as the code of its prefix (a base id or an earlier entry) plus its last
//! base id, so adding an entry costs O(1) and a phrase is recovered by walking at most `S - 1`
//! parents. The lookup table is a small open-addressing table of our own rather than a general
//! hash map: keys are two `u32` packed in a `u64`, the table only grows, entries are only removed
//! when a failed call is rolled back (rare, so we simply rebuild), and a multiplicative hash with
//! linear probing keeps the hot path to one multiply and usually one cache line.

/// Marks an empty slot. No real key can equal it: both halves of a key are below `2^31`.
const EMPTY: u64 = u64::MAX;

/// Fibonacci hashing constant (2^64 / golden ratio).
const HASH_MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline(always)]
fn pack(prefix: u32, last: u32) -> u64 {
    (u64::from(prefix) << 32) | u64::from(last)
}

#[derive(Clone, Debug)]
struct Table {
    keys: Vec<u64>,
    values: Vec<u32>,
    shift: u32,
    count: usize,
}

impl Table {
    fn with_capacity_for(entries: usize) -> Self {
        let slots = (entries.max(8) * 2).next_power_of_two();
        Self {
            keys: vec![EMPTY; slots],
            values: vec![0; slots],
            shift: 64 - slots.trailing_zeros(),
            count: 0,
        }
    }

    /// The value of `key`, or the empty slot where it would be inserted.
    #[inline(always)]
    fn find(&self, key: u64) -> Result<u32, usize> {
        let mask = self.keys.len() - 1;
        let mut slot = (key.wrapping_mul(HASH_MULTIPLIER) >> self.shift) as usize;
        loop {
            let found = self.keys[slot];
            if found == key {
                return Ok(self.values[slot]);
            }
            if found == EMPTY {
                return Err(slot);
            }
            slot = (slot + 1) & mask;
        }
    }

    /// Inserts an absent key at the empty slot [`Table::find`] returned for it, unless the table
    /// must grow first (then the slot is found again).
    #[inline(always)]
    fn insert_at(&mut self, slot: usize, key: u64, value: u32) {
        if (self.count + 1) * 2 > self.keys.len() {
            self.insert_new(key, value);
            return;
        }
        self.keys[slot] = key;
        self.values[slot] = value;
        self.count += 1;
    }

    /// Inserts a key known to be absent.
    #[inline]
    fn insert_new(&mut self, key: u64, value: u32) {
        if (self.count + 1) * 2 > self.keys.len() {
            self.grow();
        }
        let mask = self.keys.len() - 1;
        let mut slot = (key.wrapping_mul(HASH_MULTIPLIER) >> self.shift) as usize;
        while self.keys[slot] != EMPTY {
            slot = (slot + 1) & mask;
        }
        self.keys[slot] = key;
        self.values[slot] = value;
        self.count += 1;
    }

    fn grow(&mut self) {
        let old_keys = std::mem::take(&mut self.keys);
        let old_values = std::mem::take(&mut self.values);
        *self = Self::with_capacity_for(old_keys.len());
        for (key, value) in old_keys.into_iter().zip(old_values) {
            if key != EMPTY {
                self.insert_new(key, value);
            }
        }
    }

    fn clear(&mut self) {
        self.keys.fill(EMPTY);
        self.count = 0;
    }
}

/// Where an absent phrase would go in the lookup table; valid until the dictionary changes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Vacancy {
    slot: usize,
}

/// One entry: the code of its prefix, its last base id and its phrase length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    prefix: u32,
    last: u32,
    length: u32,
}

/// Entries of one codebook, in creation order. Entry `i` has id `V + i`.
#[derive(Clone, Debug)]
pub(crate) struct Dictionary {
    vocab_size: u32,
    entries: Vec<Entry>,
    table: Table,
}

impl Dictionary {
    pub(crate) fn new(vocab_size: u32, max_codebook_size: u32) -> Self {
        // Reserve for a typical codebook; an unlimited one grows as needed.
        let expected = (max_codebook_size as usize).min(4096);
        Self {
            vocab_size,
            entries: Vec::with_capacity(expected),
            table: Table::with_capacity_for(expected),
        }
    }

    /// Number of entries.
    #[inline(always)]
    pub(crate) fn len(&self) -> u32 {
        self.entries.len() as u32
    }

    /// The id of the phrase `phrase(prefix) + [last]`, if it is an entry.
    #[inline(always)]
    pub(crate) fn get(&self, prefix: u32, last: u32) -> Option<u32> {
        self.table.find(pack(prefix, last)).ok()
    }

    /// The id of `phrase(prefix) + [last]` if it is an entry, else where to add it.
    #[inline(always)]
    pub(crate) fn find(&self, prefix: u32, last: u32) -> Result<u32, Vacancy> {
        self.table
            .find(pack(prefix, last))
            .map_err(|slot| Vacancy { slot })
    }

    /// Adds the entry `phrase(prefix) + [last]` found absent by [`Dictionary::find`], with no
    /// change to the dictionary in between.
    #[inline(always)]
    pub(crate) fn push_at(&mut self, vacancy: Vacancy, prefix: u32, last: u32, length: u32) {
        let id = self.vocab_size + self.len();
        self.table.insert_at(vacancy.slot, pack(prefix, last), id);
        self.entries.push(Entry {
            prefix,
            last,
            length,
        });
    }

    /// Appends the entry `phrase(prefix) + [last]` of the given length, which must be absent.
    pub(crate) fn push(&mut self, prefix: u32, last: u32, length: u32) -> u32 {
        let id = self.vocab_size + self.len();
        self.table.insert_new(pack(prefix, last), id);
        self.entries.push(Entry {
            prefix,
            last,
            length,
        });
        id
    }

    /// The phrase length of `code`: 1 for a base id. `code` must be a base id or an entry.
    #[inline(always)]
    pub(crate) fn phrase_len(&self, code: u32) -> u32 {
        if code < self.vocab_size {
            1
        } else {
            self.entries[(code - self.vocab_size) as usize].length
        }
    }

    /// Whether `code` is a base id or an existing entry.
    #[inline(always)]
    pub(crate) fn contains_code(&self, code: u32) -> bool {
        code < self.vocab_size + self.len()
    }

    /// The prefix code and last id of entry `id` (which must exist).
    pub(crate) fn entry_parts(&self, id: u32) -> (u32, u32) {
        let entry = self.entries[(id - self.vocab_size) as usize];
        (entry.prefix, entry.last)
    }

    /// Writes the base ids of `code` (a base id or an existing entry) into `out[..len]`,
    /// where `out.len()` must equal the phrase length.
    pub(crate) fn write_phrase(&self, code: u32, out: &mut [u32]) {
        let mut current = code;
        let mut position = out.len();
        while current >= self.vocab_size {
            let entry = self.entries[(current - self.vocab_size) as usize];
            position -= 1;
            out[position] = entry.last;
            current = entry.prefix;
        }
        out[position - 1] = current;
    }

    /// Appends the base ids of `code` (a base id or an existing entry) to `out`.
    pub(crate) fn extend_phrase(&self, code: u32, out: &mut Vec<u32>) {
        let start = out.len();
        out.resize(start + self.phrase_len(code) as usize, 0);
        self.write_phrase(code, &mut out[start..]);
    }

    /// Removes every entry from index `len` on (used to roll back a failed call).
    pub(crate) fn truncate(&mut self, len: u32) {
        if len >= self.len() {
            return;
        }
        self.entries.truncate(len as usize);
        self.table.clear();
        for (index, entry) in self.entries.iter().enumerate() {
            self.table.insert_new(
                pack(entry.prefix, entry.last),
                self.vocab_size + index as u32,
            );
        }
    }

    /// Removes every entry, keeping allocations for reuse.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.table.clear();
    }

    pub(crate) fn same_entries(&self, other: &Dictionary) -> bool {
        self.vocab_size == other.vocab_size && self.entries == other.entries
    }
}
