//! Single-core encode/decode throughput of the core, without Python.
//!
//! Usage: `cargo run --release -p zip2zip-core --example throughput -- IDS.u32 [VOCAB]
//! [WINDOW] [DISABLED.u32]` where `IDS.u32` holds little-endian `u32` base ids (the codec
//! benchmark writes one with `--rust`), and `DISABLED.u32` the disabled ids in the same format.
//! The stream is cut into windows of `WINDOW` ids (default 4096), each encoded from an empty
//! codebook with K=2048, S=4, as the Python benchmark does. Bad arguments print a message.

use std::sync::Arc;
use std::time::Instant;

use zip2zip_core::{CodeSink, CodebookConfig, CodecState};

fn read_u32s(path: &str) -> Result<Vec<u32>, String> {
    let bytes = std::fs::read(path).map_err(|error| format!("cannot read {path}: {error}"))?;
    Ok(bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: throughput IDS.u32 [VOCAB] [WINDOW] [DISABLED.u32]";
    let ids = read_u32s(args.get(1).ok_or(usage)?)?;
    let disabled = args
        .get(4)
        .map(|path| read_u32s(path))
        .transpose()?
        .unwrap_or_default();
    let vocab: u64 = args
        .get(2)
        .map_or(
            Ok(u64::from(ids.iter().max().copied().unwrap_or(0)) + 1),
            |v| v.parse(),
        )
        .map_err(|error| format!("VOCAB: {error}"))?;
    let window: usize = args
        .get(3)
        .map_or(Ok(4096), |w| w.parse())
        .map_err(|error| format!("WINDOW: {error}"))?;
    if window == 0 {
        return Err("WINDOW must be at least 1".into());
    }
    let config = Arc::new(
        CodebookConfig::new(vocab, 2048, 4, disabled.iter().map(|&d| u64::from(d)))
            .map_err(|error| error.to_string())?,
    );
    let mut state = CodecState::new(Arc::clone(&config));
    let mut codes = Vec::with_capacity(window);
    let mut all_codes: Vec<Vec<u32>> = Vec::new();

    let rounds = 5;
    let mut best_encode = f64::INFINITY;
    for round in 0..rounds {
        let start = Instant::now();
        let mut total_codes = 0;
        for chunk in ids.chunks(window) {
            state.reset();
            codes.clear();
            state
                .feed_ids(
                    chunk,
                    CodeSink {
                        codes: &mut codes,
                        installed: None,
                    },
                )
                .map_err(|error| error.to_string())?;
            state.finish(CodeSink {
                codes: &mut codes,
                installed: None,
            });
            total_codes += codes.len();
            if round == 0 {
                all_codes.push(codes.clone());
            }
        }
        best_encode = best_encode.min(start.elapsed().as_secs_f64());
        if round == 0 {
            println!(
                "{} base ids -> {} codes ({:.3} codes per id)",
                ids.len(),
                total_codes,
                total_codes as f64 / ids.len() as f64
            );
        }
    }
    let mut best_decode = f64::INFINITY;
    let mut out = Vec::with_capacity(window);
    for _ in 0..rounds {
        let start = Instant::now();
        for chunk in &all_codes {
            state.reset();
            out.clear();
            state
                .feed_codes(chunk, &mut out)
                .map_err(|error| error.to_string())?;
        }
        best_decode = best_decode.min(start.elapsed().as_secs_f64());
    }
    let n = ids.len() as f64;
    println!(
        "encode: {:.1} M base tokens/s (one core, best of {rounds})",
        n / best_encode / 1e6
    );
    println!(
        "decode: {:.1} M base tokens/s (one core, best of {rounds})",
        n / best_decode / 1e6
    );
    Ok(())
}
