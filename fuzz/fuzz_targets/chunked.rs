//! Any bytes as a chunked body after a fixed `200` head, read in the
//! splits the input encodes: the outcome must not depend on the splits.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| notifier::__fuzz::fuzz_chunked(data));
