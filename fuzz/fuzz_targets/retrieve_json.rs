//! Any bytes as a retrieve answer: a value that keeps its promises, or a
//! typed error; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minimax_dl::policy::{ApiError, parse_retrieve};

fuzz_target!(|data: &[u8]| {
    // The first 8 bytes choose the id asked for; the rest is the body.
    let (requested, body) = match data.split_first_chunk::<8>() {
        Some((id, body)) => (i64::from_le_bytes(*id), body),
        None => (1, data),
    };
    match parse_retrieve(requested, body, None) {
        Ok(info) => {
            assert_eq!(info.file_id, requested);
            assert!(matches!(info.download_url.scheme(), "http" | "https"));
            assert!(info.download_url.host_str().is_some());
            assert!(info.bytes.is_none_or(|b| b > 0));
        }
        Err(e) => {
            assert!(matches!(
                e,
                ApiError::Malformed { .. }
                    | ApiError::Status { .. }
                    | ApiError::DownloadScheme { .. }
            ));
            let _ = e.to_string();
        }
    }
});
