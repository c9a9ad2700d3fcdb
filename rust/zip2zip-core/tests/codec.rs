//! Properties of the codec, checked against a naive oracle written from DESIGN.md section 2.

use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;
use zip2zip_core::{
    decode_batch, decode_ids, encode_batch, encode_ids, step_batch, CodeSink, CodebookConfig,
    CodecError, CodecState,
};

/// The contract, written as plainly as possible: phrases as vectors in a `HashMap`.
fn oracle(v: u32, k: u32, s: u32, disabled: &[u32], ids: &[u32]) -> (Vec<u32>, Vec<Vec<u32>>) {
    let mut table: HashMap<Vec<u32>, u32> = HashMap::new();
    let mut entries: Vec<Vec<u32>> = Vec::new();
    let mut pending: Vec<u32> = Vec::new();
    let mut out = Vec::new();
    let code =
        |p: &Vec<u32>, table: &HashMap<Vec<u32>, u32>| if p.len() == 1 { p[0] } else { table[p] };
    for &t in ids {
        if disabled.contains(&t) {
            if !pending.is_empty() {
                out.push(code(&pending, &table));
            }
            out.push(t);
            pending.clear();
            continue;
        }
        let mut extended = pending.clone();
        extended.push(t);
        if pending.is_empty() || table.contains_key(&extended) {
            pending = extended;
        } else {
            if (entries.len() as u32) < k {
                table.insert(extended.clone(), v + entries.len() as u32);
                entries.push(extended);
            }
            out.push(code(&pending, &table));
            pending = vec![t];
        }
        if pending.len() as u32 == s {
            out.push(code(&pending, &table));
            pending.clear();
        }
    }
    if !pending.is_empty() {
        out.push(code(&pending, &table));
    }
    (out, entries)
}

#[derive(Debug, Clone)]
struct Case {
    v: u32,
    k: u32,
    s: u32,
    disabled: Vec<u32>,
    ids: Vec<u32>,
}

impl Case {
    fn config(&self) -> Arc<CodebookConfig> {
        let disabled = self.disabled.iter().map(|&d| u64::from(d));
        Arc::new(
            CodebookConfig::new(self.v.into(), self.k.into(), self.s.into(), disabled).unwrap(),
        )
    }
}

/// Small alphabets so that phrases repeat and the dictionary fills.
fn case() -> impl Strategy<Value = Case> {
    (1u32..8, 0u32..40, 1u32..6).prop_flat_map(|(v, k, s)| {
        let disabled = proptest::collection::vec(0..v, 0..3);
        let ids = proptest::collection::vec(0..v, 0..200);
        (Just(v), Just(k), Just(s), disabled, ids).prop_map(|(v, k, s, disabled, ids)| Case {
            v,
            k,
            s,
            disabled,
            ids,
        })
    })
}

fn entries_of(state: &CodecState) -> Vec<Vec<u32>> {
    let v = state.config().vocab_size();
    (0..state.installed())
        .map(|i| state.phrase(v + i).unwrap())
        .collect()
}

fn encode_stream(state: &mut CodecState, ids: &[u32]) -> Vec<u32> {
    let mut codes = Vec::new();
    state
        .feed_ids(
            ids,
            CodeSink {
                codes: &mut codes,
                installed: None,
            },
        )
        .unwrap();
    codes
}

fn track(state: &mut CodecState, codes: &[u32]) -> Result<Vec<u32>, CodecError> {
    let mut out = Vec::new();
    state.feed_codes(codes, &mut out).map(|_| out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(512)))]

    #[test]
    fn step_batch_matches_tracking_each_row(case in case()) {
        // Two rows: the text and the text reversed, stepped together one code at a time.
        let config = case.config();
        let reversed: Vec<u32> = case.ids.iter().rev().copied().collect();
        let streams = [encode_ids(&config, &case.ids).unwrap().codes,
                       encode_ids(&config, &reversed).unwrap().codes];
        let mut batch = vec![CodecState::new(Arc::clone(&config)), CodecState::new(Arc::clone(&config))];
        let mut single = batch.clone();
        let width = case.s as usize;
        for (&first, &second) in streams[0].iter().zip(&streams[1]) {
            let codes = [first, second];
            let step = step_batch(&mut batch, &codes).unwrap();
            let mut created = 0;
            for row in 0..2 {
                let before = single[row].installed();
                let ids = track(&mut single[row], &codes[row..=row]).unwrap();
                prop_assert_eq!(step.code_lengths[row] as usize, ids.len());
                prop_assert_eq!(step.installed[row], single[row].installed());
                prop_assert_eq!(&batch[row], &single[row]);
                for slot in before..single[row].installed() {
                    let phrase = single[row].phrase(case.v + slot).unwrap();
                    prop_assert_eq!(step.created_rows[created], row as u32);
                    prop_assert_eq!(step.created_slots[created], slot);
                    prop_assert_eq!(step.lengths[created] as usize, phrase.len());
                    let stored = &step.phrases[created * width..(created + 1) * width];
                    prop_assert_eq!(&stored[..phrase.len()], phrase.as_slice());
                    prop_assert!(stored[phrase.len()..].iter().all(|&p| p == 0));
                    created += 1;
                }
            }
            prop_assert_eq!(step.created_rows.len(), created);
            prop_assert_eq!(step.phrases.len(), created * width);
        }
    }

    #[test]
    fn matches_oracle_and_round_trips(case in case()) {
        let config = case.config();
        let encoding = encode_ids(&config, &case.ids).unwrap();
        let (codes, entries) = oracle(case.v, case.k, case.s, &case.disabled, &case.ids);
        prop_assert_eq!(&encoding.codes, &codes);
        prop_assert_eq!(encoding.lengths.len(), entries.len());
        for (row, phrase) in entries.iter().enumerate() {
            let width = case.s as usize;
            let stored = &encoding.phrases[row * width..row * width + phrase.len()];
            prop_assert_eq!(stored, phrase.as_slice());
            prop_assert_eq!(encoding.lengths[row] as usize, phrase.len());
        }
        prop_assert_eq!(decode_ids(&config, &encoding.codes).unwrap(), case.ids.clone());
    }

    #[test]
    fn limits_hold(case in case()) {
        let config = case.config();
        let encoding = encode_ids(&config, &case.ids).unwrap();
        prop_assert!(encoding.lengths.len() as u32 <= case.k);
        let width = case.s as usize;
        for (row, &len) in encoding.lengths.iter().enumerate() {
            prop_assert!((2..=case.s).contains(&len));
            for &id in &encoding.phrases[row * width..row * width + len as usize] {
                prop_assert!(!config.is_disabled(id), "disabled id {} merged", id);
            }
        }
        prop_assert!(encoding.codes.iter().all(|&c| c < case.v + case.k));
        prop_assert_eq!(encoding.installed.len(), encoding.codes.len());
        prop_assert!(encoding.installed.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn chunking_does_not_change_codes(case in case(), cuts in proptest::collection::vec(0usize..200, 0..6)) {
        let config = case.config();
        let whole = encode_ids(&config, &case.ids).unwrap();
        let mut bounds: Vec<usize> = cuts.into_iter().map(|c| c.min(case.ids.len())).collect();
        bounds.push(0);
        bounds.push(case.ids.len());
        bounds.sort_unstable();
        let mut state = CodecState::new(config);
        let mut codes = Vec::new();
        let mut installed = Vec::new();
        for pair in bounds.windows(2) {
            state.feed_ids(&case.ids[pair[0]..pair[1]], CodeSink { codes: &mut codes, installed: Some(&mut installed) }).unwrap();
        }
        state.finish(CodeSink { codes: &mut codes, installed: Some(&mut installed) });
        prop_assert_eq!(codes, whole.codes);
        prop_assert_eq!(installed, whole.installed);
    }

    /// After every code, a decoder has exactly the encoder's entries up to that point, and the
    /// reported installed count is the decoder's entry count.
    #[test]
    fn tracking_state_follows_encoder(case in case()) {
        let config = case.config();
        let encoding = encode_ids(&config, &case.ids).unwrap();
        let mut decoder = CodecState::new(Arc::clone(&config));
        let mut encoder = CodecState::new(Arc::clone(&config));
        let mut consumed = 0;
        for (index, &code) in encoding.codes.iter().enumerate() {
            let ids = track(&mut decoder, &[code]).unwrap();
            prop_assert_eq!(&case.ids[consumed..consumed + ids.len()], ids.as_slice());
            consumed += ids.len();
            prop_assert_eq!(decoder.installed(), encoding.installed[index]);
            encode_stream(&mut encoder, &ids);
            prop_assert_eq!(&decoder, &encoder);
        }
        prop_assert_eq!(consumed, case.ids.len());
    }

    /// Cutting the same text into other valid codes (a hypertoken replaced by pieces, a known
    /// shorter phrase) leaves the same state as canonical encoding of the text.
    #[test]
    fn state_is_path_independent(case in case(), choices in proptest::collection::vec(0usize..4, 200)) {
        let config = case.config();
        let mut tracker = CodecState::new(Arc::clone(&config));
        let mut position = 0;
        let mut step = 0;
        while position < case.ids.len() {
            // Pick the longest, a shorter or a single-token known phrase starting here.
            let mut options = vec![case.ids[position]];
            for end in position + 2..=case.ids.len() {
                let phrase = &case.ids[position..end];
                let code = (0..tracker.installed()).map(|i| config.vocab_size() + i)
                    .find(|&id| tracker.phrase(id).unwrap() == phrase);
                match code { Some(code) => options.push(code), None => break }
            }
            let code = options[choices[step % choices.len()] % options.len()];
            step += 1;
            let ids = track(&mut tracker, &[code]).unwrap();
            prop_assert_eq!(&case.ids[position..position + ids.len()], ids.as_slice());
            position += ids.len();
            let mut fresh = CodecState::new(Arc::clone(&config));
            encode_stream(&mut fresh, &case.ids[..position]);
            prop_assert_eq!(&tracker, &fresh);
        }
    }

    /// Arbitrary codes give a result or a typed error; on error nothing changed.
    #[test]
    fn arbitrary_codes_never_corrupt(case in case(), codes in proptest::collection::vec(-3i64..60, 0..60)) {
        let config = case.config();
        let mut state = CodecState::new(Arc::clone(&config));
        encode_stream(&mut state, &case.ids);
        let before = state.clone();
        let mut out = vec![7u32];
        match state.feed_codes(&codes, &mut out) {
            Ok(_) => {
                let mut expected = before.clone();
                encode_stream(&mut expected, &out[1..]);
                prop_assert_eq!(&state, &expected);
            }
            Err(error) => {
                let typed = matches!(error, CodecError::CodeOutOfRange { .. } | CodecError::UnknownCode { .. });
                prop_assert!(typed, "unexpected error {}", error);
                prop_assert_eq!(&state, &before);
                prop_assert_eq!(out, vec![7u32]);
                // The table is rebuilt after a rollback: it must still find every entry.
                let mut again = state.clone();
                let mut fresh = before.clone();
                let tail: Vec<u32> = case.ids.iter().rev().copied().collect();
                prop_assert_eq!(encode_stream(&mut again, &tail), encode_stream(&mut fresh, &tail));
            }
        }
    }

    #[test]
    fn snapshot_round_trips(case in case(), split in 0usize..200) {
        let config = case.config();
        let split = split.min(case.ids.len());
        let mut state = CodecState::new(config);
        encode_stream(&mut state, &case.ids[..split]);
        let restored = CodecState::from_bytes(&state.to_bytes()).unwrap();
        prop_assert_eq!(&restored, &state);
        let mut a = state.clone();
        let mut b = restored;
        prop_assert_eq!(encode_stream(&mut a, &case.ids[split..]), encode_stream(&mut b, &case.ids[split..]));
        prop_assert_eq!(entries_of(&a), entries_of(&b));
    }

    #[test]
    fn corrupted_snapshots_error(case in case(), index in 0usize..1000, byte in 0u8..=255) {
        let mut state = CodecState::new(case.config());
        encode_stream(&mut state, &case.ids);
        let mut bytes = state.to_bytes();
        let index = index % bytes.len();
        bytes[index] = byte;
        // Either a valid state (the byte changed nothing that matters) or a typed error.
        if let Ok(restored) = CodecState::from_bytes(&bytes) {
            prop_assert_eq!(CodecState::from_bytes(&restored.to_bytes()).unwrap(), restored);
        }
        prop_assert!(CodecState::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn batches_equal_singles(cases in proptest::collection::vec(proptest::collection::vec(0u32..6, 0..100), 0..8)) {
        let config = Arc::new(CodebookConfig::new(6, 16, 3, [5]).unwrap());
        let batch = encode_batch(&config, &cases).unwrap();
        for (ids, encoding) in cases.iter().zip(&batch) {
            prop_assert_eq!(encoding, &encode_ids(&config, ids).unwrap());
        }
        let codes: Vec<Vec<u32>> = batch.into_iter().map(|e| e.codes).collect();
        prop_assert_eq!(decode_batch(&config, &codes).unwrap(), cases);
    }
}

#[test]
fn kwkwk_is_decoded() {
    let config = Arc::new(CodebookConfig::new(4, 100, 4, []).unwrap());
    // a a a: the encoder emits a, then [a a] (id 4) before the decoder has installed it.
    let encoding = encode_ids(&config, &[1u32, 1, 1]).unwrap();
    assert_eq!(encoding.codes, vec![1, 4]);
    assert_eq!(encoding.installed, vec![0, 1]);
    assert_eq!(decode_ids(&config, &encoding.codes).unwrap(), vec![1, 1, 1]);
}

#[test]
fn bad_codes_name_position_and_reason() {
    let config = Arc::new(CodebookConfig::new(4, 3, 4, [0]).unwrap());
    let error = decode_ids(&config, &[1u32, 2, 9]).unwrap_err();
    assert_eq!(
        error,
        CodecError::CodeOutOfRange {
            code: 9,
            position: 2,
            limit: 7
        }
    );
    let error = decode_ids(&config, &[1i64, 6]).unwrap_err();
    assert!(
        matches!(
            error,
            CodecError::UnknownCode {
                code: 6,
                position: 1,
                installed: 0,
                ..
            }
        ),
        "{error}"
    );
    // Next id with nothing pending is not a KwKwK code.
    let error = decode_ids(&config, &[4u32]).unwrap_err();
    assert!(
        error.to_string().contains("no phrase is pending"),
        "{error}"
    );
    // After a disabled id nothing is pending either.
    let error = decode_ids(&config, &[1u32, 0, 4]).unwrap_err();
    assert!(
        error.to_string().contains("no phrase is pending"),
        "{error}"
    );
    let error = decode_ids(&config, &[-1i64]).unwrap_err();
    assert!(matches!(
        error,
        CodecError::CodeOutOfRange {
            code: -1,
            position: 0,
            ..
        }
    ));
}

#[test]
fn bad_ids_are_reported_and_change_nothing() {
    let config = Arc::new(CodebookConfig::new(10, 8, 4, []).unwrap());
    let mut state = CodecState::new(Arc::clone(&config));
    encode_stream(&mut state, &[1, 2, 1, 2]);
    let before = state.clone();
    let mut codes = Vec::new();
    let error = state
        .feed_ids(
            &[1i64, 2, 10, 3],
            CodeSink {
                codes: &mut codes,
                installed: None,
            },
        )
        .unwrap_err();
    assert_eq!(
        error,
        CodecError::IdOutOfRange {
            id: 10,
            position: 2,
            vocab_size: 10
        }
    );
    assert_eq!(state, before);
    assert!(codes.is_empty());
    let error = encode_batch(&config, &[vec![1i32], vec![-5]]).unwrap_err();
    assert_eq!(error.to_string(), "sequence 1 of the batch: base id -5 at position 0 is out of range: valid base ids are 0..10");
}

#[test]
fn invalid_configs_are_rejected() {
    assert!(CodebookConfig::new(0, 10, 4, []).is_err());
    assert!(CodebookConfig::new(10, 10, 0, []).is_err());
    assert!(CodebookConfig::new(10, 10, 257, []).is_err());
    assert!(CodebookConfig::new(10, u64::from(u32::MAX), 4, []).is_err());
    assert!(CodebookConfig::new(10, u64::MAX, 4, []).is_err());
    assert!(CodebookConfig::new(10, 10, 4, [10]).is_err());
    let largest = CodebookConfig::new(10, (i32::MAX - 10) as u64, 4, [3, 3, 1]).unwrap();
    assert_eq!(largest.disabled_ids(), &[1, 3]);
    // Disabled ids far up a huge vocabulary: looked up without a giant bitmap.
    let huge = CodebookConfig::new(2_000_000_000, 10, 4, [5, 1_999_999_999, 40_000_000]).unwrap();
    let disabled: Vec<u32> = [0, 5, 6, 40_000_000, 40_000_001, 1_999_999_999]
        .into_iter()
        .filter(|&id| huge.is_disabled(id))
        .collect();
    assert_eq!(disabled, vec![5, 40_000_000, 1_999_999_999]);
}

#[test]
fn worst_cases() {
    let config = Arc::new(CodebookConfig::new(50_000, 2048, 4, []).unwrap());
    let same = vec![7u32; 100_000];
    let encoding = encode_ids(&config, &same).unwrap();
    // [7], [7 7], [7 7 7], [7 7 7 7] and then full-length phrases only.
    assert_eq!(encoding.lengths, vec![2, 3, 4]);
    assert_eq!(decode_ids(&config, &encoding.codes).unwrap(), same);
    let distinct: Vec<u32> = (0..50_000).collect();
    let encoding = encode_ids(&config, &distinct).unwrap();
    assert_eq!(encoding.codes, distinct);
    assert_eq!(encoding.lengths.len(), 2048);
    assert_eq!(decode_ids(&config, &encoding.codes).unwrap(), distinct);
    // Unlimited codebook: the table grows far past its initial size.
    let unlimited = Arc::new(CodebookConfig::new(300, (i32::MAX - 300) as u64, 8, []).unwrap());
    let ids: Vec<u32> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) % 300)
        .collect();
    let encoding = encode_ids(&unlimited, &ids).unwrap();
    assert!(
        encoding.lengths.len() > 20_000,
        "{} entries",
        encoding.lengths.len()
    );
    assert_eq!(decode_ids(&unlimited, &encoding.codes).unwrap(), ids);
}

#[test]
fn step_batch_is_all_or_nothing() {
    let config = Arc::new(CodebookConfig::new(4, 8, 3, []).unwrap());
    let mut states = vec![CodecState::new(Arc::clone(&config)); 3];
    for state in &mut states {
        track(state, &[0, 1, 2]).unwrap();
    }
    let before = states.clone();
    // Rows 0 and 1 read valid codes (row 0 a hypertoken), row 2 an entry nobody installed.
    let error = step_batch(&mut states, &[4u32, 3, 11]).unwrap_err();
    match &error {
        CodecError::InBatch { index, .. } => assert_eq!(*index, 2),
        other => panic!("expected InBatch, got {other:?}"),
    }
    assert!(matches!(error.root(), CodecError::UnknownCode { .. }));
    assert_eq!(states, before);
    assert!(step_batch(&mut states, &[4u32, 3, 2]).is_ok());
    assert_ne!(states, before);
}
