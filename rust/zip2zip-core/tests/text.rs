//! The text layer with a tiny word-level tokenizer built from JSON.
#![cfg(feature = "tokenizer")]

use std::sync::Arc;

use zip2zip_core::{
    encode_ids, CodebookConfig, CodecError, CodecState, HyperTokenizer, TextStream,
};

const WORDS: &str = r#"{
  "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
  "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
  "decoder": null,
  "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "a": 1, "b": 2, "c": 3, "d": 4}, "unk_token": "[UNK]"}
}"#;

fn tokenizer(vocab_size: u64) -> Result<HyperTokenizer, CodecError> {
    HyperTokenizer::from_json(
        WORDS,
        Arc::new(CodebookConfig::new(vocab_size, 16, 3, [0]).unwrap()),
    )
}

#[test]
fn text_round_trips_through_codes() {
    let tok = tokenizer(5).unwrap();
    let text = "a b a b a b c a b c d";
    let encoded = tok.encode(text, false).unwrap();
    assert_eq!(encoded.ids, vec![1, 2, 1, 2, 1, 2, 3, 1, 2, 3, 4]);
    assert_eq!(
        encoded.encoding,
        encode_ids(tok.config(), &encoded.ids).unwrap()
    );
    assert!(encoded.encoding.codes.len() < encoded.ids.len());
    assert_eq!(
        tok.decode(&encoded.encoding.codes, None, false).unwrap(),
        text
    );
    let batch = tok.encode_batch(&[text, "d d d d"], false).unwrap();
    assert_eq!(batch[0], encoded);
    let codes: Vec<Vec<u32>> = batch.iter().map(|e| e.encoding.codes.clone()).collect();
    assert_eq!(
        tok.decode_batch(&codes, false).unwrap(),
        vec![text.to_string(), "d d d d".into()]
    );
}

#[test]
fn stream_joins_to_the_full_decode_and_reads_suffixes() {
    let tok = tokenizer(5).unwrap();
    let prompt = tok.encode("a b a b", false).unwrap();
    let mut state = CodecState::new(Arc::clone(tok.config()));
    let mut ids = Vec::new();
    state.feed_codes(&prompt.encoding.codes, &mut ids).unwrap();
    // A suffix read from the prompt's state, code by code.
    let suffix: Vec<u32> = vec![5, 3];
    let mut stream = TextStream::new(state.clone(), false);
    let mut text = String::new();
    for code in &suffix {
        text.push_str(&stream.step(&tok, &[*code]).unwrap());
    }
    text.push_str(&stream.flush(&tok).unwrap());
    assert_eq!(text, tok.decode(&suffix, Some(&state), false).unwrap());
    // An unknown code is an error and consumes nothing.
    let before = stream.state().clone();
    assert!(matches!(
        stream.step(&tok, &[15u32]),
        Err(CodecError::UnknownCode { .. })
    ));
    assert_eq!(stream.state(), &before);
}

#[test]
fn bad_tokenizers_and_states_are_errors() {
    assert!(matches!(tokenizer(3), Err(CodecError::InvalidConfig(_))));
    let config = Arc::new(CodebookConfig::new(5, 16, 3, []).unwrap());
    assert!(matches!(
        HyperTokenizer::from_json("{}", config),
        Err(CodecError::Tokenizer(_))
    ));
    let tok = tokenizer(5).unwrap();
    let other = CodecState::new(Arc::new(CodebookConfig::new(5, 8, 3, [0]).unwrap()));
    assert!(matches!(
        tok.decode(&[1u32], Some(&other), false),
        Err(CodecError::InvalidConfig(_))
    ));
    assert!(matches!(
        tok.decode_base(&[7i64], false),
        Err(CodecError::IdOutOfRange {
            id: 7,
            position: 0,
            ..
        })
    ));
}
