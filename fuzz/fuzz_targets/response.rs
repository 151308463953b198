//! Any bytes as a response, read in the splits the input encodes: the
//! outcome (head, end, error, leftover) must not depend on the splits.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| notifier::__fuzz::fuzz_response(data));
