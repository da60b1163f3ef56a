#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hookline_fuzz::ingest_body(data));
