//! Feeding the ids in arbitrary chunks gives the same codes and installed counts as one call,
//! and a decoder fed the codes in other chunks ends in the encoder's state.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zip2zip_core::{encode_ids, CodeSink, CodecState};

#[path = "common.rs"]
mod common;

#[derive(arbitrary::Arbitrary, Debug)]
struct Input {
    case: common::SmallCase,
    cuts: Vec<u8>,
}

fn chunks<T>(items: &[T], cuts: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut bounds: Vec<usize> = cuts.iter().map(|&c| usize::from(c).min(items.len())).collect();
    bounds.extend([0, items.len()]);
    bounds.sort_unstable();
    bounds.windows(2).map(|w| w[0]..w[1]).collect()
}

fuzz_target!(|input: Input| {
    let (config, ids) = input.case.build();
    let whole = encode_ids(&config, &ids).expect("ids are in range");
    let mut encoder = CodecState::new(config.clone());
    let (mut codes, mut installed) = (Vec::new(), Vec::new());
    for range in chunks(&ids, &input.cuts) {
        let sink = CodeSink { codes: &mut codes, installed: Some(&mut installed) };
        encoder.feed_ids(&ids[range], sink).expect("ids are in range");
    }
    let before_finish = encoder.clone();
    encoder.finish(CodeSink { codes: &mut codes, installed: Some(&mut installed) });
    assert_eq!(codes, whole.codes);
    assert_eq!(installed, whole.installed);

    let mut decoder = CodecState::new(config);
    let mut out = Vec::new();
    for range in chunks(&codes, &input.cuts) {
        decoder.feed_codes(&codes[range], &mut out).expect("own codes decode");
    }
    assert_eq!(out, ids);
    // The decoder keeps the last phrase open, exactly like the encoder before finish().
    assert_eq!(decoder, before_finish);
});
