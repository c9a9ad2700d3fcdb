//! Arbitrary codes fed to a tracking state give a result or a typed error, never a panic; an
//! error leaves the state untouched, a result equals feeding the expanded ids.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zip2zip_core::{CodeSink, CodecError, CodecState};

#[path = "common.rs"]
mod common;

#[derive(arbitrary::Arbitrary, Debug)]
struct Input {
    case: common::SmallCase,
    codes: Vec<i16>,
}

fuzz_target!(|input: Input| {
    let (config, ids) = input.case.build();
    let mut state = CodecState::new(config);
    let mut sink = Vec::new();
    state.feed_ids(&ids, CodeSink { codes: &mut sink, installed: None }).expect("ids are in range");
    let before = state.clone();
    let mut out = Vec::new();
    match state.feed_codes(&input.codes, &mut out) {
        Ok(_) => {
            let mut expected = before;
            expected.feed_ids(&out, CodeSink { codes: &mut sink, installed: None }).expect("expanded ids are valid");
            assert_eq!(state, expected);
        }
        Err(CodecError::CodeOutOfRange { .. } | CodecError::UnknownCode { .. }) => {
            assert_eq!(state, before);
            assert!(out.is_empty());
        }
        Err(other) => panic!("unexpected error kind: {other}"),
    }
});
