//! Any bytes as a CloudEvents batch, fed to the incremental `ArraySplitter` in two chunks (split
//! where the first byte's value, modulo the length, says); every element it finds is parsed as
//! an event. The split must not change what is found: the result equals that of one chunk.
#![no_main]

use std::ops::Range;

use libfuzzer_sys::fuzz_target;
use revshare_core::json::{ArraySplitter, JsonError};
use revshare_core::usage::parse_cloudevent;

/// The element ranges found, and the first error (of a feed, or of `finish`).
fn split(chunks: &[&[u8]]) -> (Vec<Range<usize>>, Result<(), JsonError>) {
    let mut splitter = ArraySplitter::default();
    let mut ranges = Vec::new();
    for chunk in chunks {
        if let Err(e) = splitter.feed(chunk, &mut ranges) {
            return (ranges, Err(e));
        }
    }
    let end = splitter.finish();
    (ranges, end)
}

fuzz_target!(|data: &[u8]| {
    let Some(&first) = data.first() else {
        return;
    };
    let at = usize::from(first) % data.len();
    let (ranges, result) = split(&[&data[..at], &data[at..]]);
    assert_eq!((ranges.clone(), result), split(&[data]), "chunking changed the split at {at}");
    let mut previous_end = 0;
    for range in &ranges {
        assert!(previous_end <= range.start && range.start < range.end && range.end <= data.len(), "bad range {range:?}");
        // An element starts at `{` and ends where the nesting closes: at `}`, or at a `]` that
        // mis-closes it (the splitter counts nesting only; the event parser then refuses it).
        assert!(data[range.start] == b'{' && matches!(data[range.end - 1], b'}' | b']'), "an element is not braced: {range:?}");
        previous_end = range.end;
        let _ = parse_cloudevent(&data[range.clone()]);
    }
});
