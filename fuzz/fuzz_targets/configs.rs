//! Arbitrary configurations and snapshot bytes: a config is accepted or rejected with a typed
//! error; accepted ones encode and decode; arbitrary bytes never restore into a broken state.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use zip2zip_core::{decode_ids, encode_ids, CodebookConfig, CodecError, CodecState};

#[derive(arbitrary::Arbitrary, Debug)]
struct Input {
    vocab_size: u64,
    max_codebook_size: u64,
    max_subtokens: u64,
    disabled: Vec<u64>,
    ids: Vec<u32>,
    snapshot: Vec<u8>,
}

fuzz_target!(|input: Input| {
    match CodebookConfig::new(input.vocab_size, input.max_codebook_size, input.max_subtokens, input.disabled.iter().copied()) {
        Ok(config) => {
            let config = Arc::new(config);
            match encode_ids(&config, &input.ids) {
                Ok(encoding) => assert_eq!(decode_ids(&config, &encoding.codes).expect("own codes decode"), input.ids),
                Err(CodecError::IdOutOfRange { id, .. }) => assert!(id >= i128::from(config.vocab_size())),
                Err(other) => panic!("unexpected error kind: {other}"),
            }
        }
        Err(CodecError::InvalidConfig(_)) => {}
        Err(other) => panic!("unexpected error kind: {other}"),
    }
    if let Ok(state) = CodecState::from_bytes(&input.snapshot) {
        // Whatever was accepted must be a consistent state: it serializes back the same way and
        // keeps working.
        let again = CodecState::from_bytes(&state.to_bytes()).expect("own bytes restore");
        assert_eq!(again, state);
        let mut copy = state.clone();
        let mut out = Vec::new();
        let _ = copy.feed_codes(&[0u32, 1, 2, 3], &mut out);
    }
});
