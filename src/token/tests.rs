use super::*;

#[test]
fn only_the_replaced_token_and_the_servers_key_open_the_sealed_successor() {
    let key = SealKey::from_secret(b"server");
    let old = RememberCookie::generate();
    let next = old.rotated();
    let sealed = old.seal_next(&key, &next.token);
    assert_eq!(old.open_sealed(&key, &sealed), Some(next.token.clone()));
    assert_ne!(sealed, *next.token.as_bytes(), "not the token in clear");
    // Another token of the same series (a guess, an older copy) opens
    // something else, which fails the caller's hash check; so does the
    // right token without the server's key (a leaked table and an old
    // cookie are not enough).
    let other = old.rotated();
    assert_ne!(other.open_sealed(&key, &sealed), Some(next.token.clone()));
    let guessed_key = SealKey::from_secret(b"guess");
    assert_ne!(
        old.open_sealed(&guessed_key, &sealed),
        Some(next.token.clone())
    );
    assert_eq!(old.open_sealed(&key, &sealed[..31]), None);
}

#[test]
fn encode_then_decode_gives_the_same_cookie() {
    let cookie = RememberCookie::generate();
    assert_eq!(
        RememberCookie::decode(cookie.encode().as_bytes()),
        Ok(cookie)
    );
}

#[test]
fn malformed_values_are_refused() {
    let good = RememberCookie::generate().encode();
    let cases: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"v1.".to_vec(),
        good.as_bytes()[..good.len() - 1].to_vec(),
        format!("{good}A").into_bytes(),
        good.replacen("v1.", "v2.", 1).into_bytes(),
        good.replace('.', "").into_bytes(),
        vec![0xff, 0xfe, 0x00],
        format!("{good}.{good}").into_bytes(),
    ];
    for case in cases {
        assert_eq!(
            RememberCookie::decode(&case),
            Err(MalformedCookie),
            "{case:?}"
        );
    }
}

#[test]
fn debug_output_redacts_secrets() {
    let cookie = RememberCookie::generate();
    let shown = format!("{cookie:?} {:?}", cookie.token.hash());
    assert!(shown.contains("[redacted]"));
    assert!(!shown.contains(&cookie.encode()[3..10]));
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = RememberCookie::decode(&raw);
        }

        #[test]
        fn encode_decode_round_trips(series in any::<[u8; 16]>(), token in any::<[u8; 32]>()) {
            let cookie = RememberCookie { series: Series(series), token: Token(token) };
            prop_assert_eq!(RememberCookie::decode(cookie.encode().as_bytes()), Ok(cookie));
        }

        #[test]
        fn a_one_bit_change_never_verifies(
            series in any::<[u8; 16]>(),
            token in any::<[u8; 32]>(),
            bit in 0usize..(69 * 8),
        ) {
            let cookie = RememberCookie { series: Series(series), token: Token(token) };
            let mut raw = cookie.encode().into_bytes();
            let bit = bit % (raw.len() * 8);
            raw[bit / 8] ^= 1 << (bit % 8);
            match RememberCookie::decode(&raw) {
                Err(MalformedCookie) => {}
                // Whatever still decodes names another series or token:
                // its hashes match nothing that was stored for this one.
                Ok(other) => prop_assert!(
                    other.series.hash() != cookie.series.hash()
                        || !other.token.hash().ct_eq(cookie.token.hash().as_bytes())
                ),
            }
        }
    }
}

#[test]
fn hashes_compare_in_constant_time_and_exactly() {
    let token = Token::generate();
    let hash = token.hash();
    assert!(hash.ct_eq(token.hash().as_bytes()));
    assert!(!hash.ct_eq(Token::generate().hash().as_bytes()));
    assert!(!hash.ct_eq(&hash.as_bytes()[..31]));
}
