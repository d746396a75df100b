//! Any text as a Content-Range, then as the head of a ranged answer: a
//! consistent range or none, and a plan that appends only where asked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minimax_dl::policy::{Asked, Plan, ResponseHead, parse_content_range, plan_response};

fuzz_target!(|data: &[u8]| {
    let Some((offset, rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    let offset = u64::from_le_bytes(*offset) % 4096;
    let text = String::from_utf8_lossy(rest);
    let range = parse_content_range(&text);
    if let Some(r) = range {
        assert_eq!(r.first.is_some(), r.last.is_some());
        if let (Some(first), Some(last)) = (r.first, r.last) {
            assert!(first <= last);
            if let Some(total) = r.total {
                assert!(last < total);
            }
        }
    }
    for status in [206, 416] {
        let head = ResponseHead {
            status,
            content_range: Some(&text),
            ..ResponseHead::default()
        };
        let asked = Asked {
            offset,
            ..Asked::default()
        };
        match plan_response(asked, &head) {
            Plan::Append { offset: at, .. } => {
                assert_eq!(status, 206);
                assert_eq!(at, offset);
                assert_eq!(range.and_then(|r| r.first), Some(offset));
            }
            Plan::AlreadyComplete { total } => {
                assert_eq!(status, 416);
                assert_eq!(total, offset);
            }
            Plan::RestartFresh { .. } => {}
            other => panic!("{status} planned as {other:?}"),
        }
    }
});
