//! Encoding then decoding gives the ids back; the codebook respects its limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zip2zip_core::{decode_ids, encode_ids};

#[path = "common.rs"]
mod common;

fuzz_target!(|case: common::SmallCase| {
    let (config, ids) = case.build();
    let encoding = encode_ids(&config, &ids).expect("ids are in range");
    assert!(encoding.lengths.len() <= config.max_codebook_size() as usize);
    assert!(encoding.lengths.iter().all(|&l| (2..=config.max_subtokens()).contains(&l)));
    assert!(encoding.codes.iter().all(|&c| c < config.code_limit()));
    assert_eq!(decode_ids(&config, &encoding.codes).expect("own codes decode"), ids);
});
