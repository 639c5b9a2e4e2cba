//! The remember-me cookie parser takes any bytes a client sends: it must
//! never panic, and whatever it accepts must encode back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rememberme::token::RememberCookie;

fuzz_target!(|data: &[u8]| {
    if let Ok(cookie) = RememberCookie::decode(data) {
        assert_eq!(cookie.encode().as_bytes(), data);
    }
});
