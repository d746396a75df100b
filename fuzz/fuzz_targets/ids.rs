//! Any bytes as an id, and as an id list (streamed and whole): ids in range
//! or a reason, and both readers agree on text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minimax_dl::ids;

fuzz_target!(|data: &[u8]| {
    let streamed = ids::read_lines(data);
    if let Ok(list) = &streamed {
        assert!(list.iter().all(|&id| id >= 1));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(id) = ids::parse_file_id(text) {
            assert!(id >= 1);
            assert_eq!(ids::parse_file_id(&id.to_string()), Ok(id));
        }
        // Lines past MAX_LINE_BYTES are refused by the stream only.
        if text.lines().all(|l| l.len() < ids::MAX_LINE_BYTES) {
            assert_eq!(
                streamed.map_err(|e| e.to_string()),
                ids::parse_lines(text).map_err(|e| e.to_string())
            );
        }
    }
});
