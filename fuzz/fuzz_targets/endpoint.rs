//! Any text as an endpoint URL: parsing never panics, and what it accepts
//! is sendable as it is and parses back to itself.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| notifier::__fuzz::fuzz_endpoint(data));
