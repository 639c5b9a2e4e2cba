use super::*;

#[test]
fn a_device_cookie_verifies_for_its_user_until_it_is_a_year_old() {
    let signer = DeviceCookies::from_secret(b"secret");
    let value = signer.issue(&UserId::from(7), Some("$argon2id$old"), 1000);
    let device = signer.verify(value.as_bytes(), 1000).expect("valid");
    assert_eq!(device.user, UserId::from(7));
    assert!(device.is_for(&UserId::from(7), Some("$argon2id$old"), &signer));
    assert!(
        !device.is_for(&UserId::from(7), Some("$argon2id$new"), &signer),
        "a changed password voids it"
    );
    assert!(!device.is_for(&UserId::from(8), Some("$argon2id$old"), &signer));
    assert!(
        signer.verify(value.as_bytes(), 940).is_some(),
        "a clock a minute behind"
    );
    assert!(
        signer.verify(value.as_bytes(), 939).is_none(),
        "from the future"
    );
    let last = 1000 + DEVICE_COOKIE_LIFETIME_SECS;
    assert!(signer.verify(value.as_bytes(), last).is_some());
    assert!(
        signer.verify(value.as_bytes(), last + 1).is_none(),
        "too old"
    );
    let other = signer.issue(&UserId::from(7), Some("$argon2id$old"), 1000);
    assert_ne!(
        signer
            .verify(other.as_bytes(), 1000)
            .unwrap()
            .throttle_key(),
        device.throttle_key(),
        "each device has a budget of its own"
    );
}

#[test]
fn forged_foreign_and_malformed_device_cookies_are_refused() {
    let signer = DeviceCookies::from_secret(b"secret");
    let value = signer.issue(&UserId::from(7), Some("$argon2id$old"), 1000);
    let (signed, tag) = value.rsplit_once('.').unwrap();
    let other_user = format!("{}.{tag}", signed.replacen("d3.Nw.", "d3.OA.", 1));
    let foreign =
        DeviceCookies::from_secret(b"other").issue(&UserId::from(7), Some("$argon2id$old"), 1000);
    let mut flipped = value.clone().into_bytes();
    flipped[6] ^= 1;
    for bad in [
        other_user.into_bytes(),
        foreign.into_bytes(),
        flipped,
        Vec::new(),
        b"d3.".to_vec(),
        b"d3.Nw.1000.AAAA.AAAA.AAAA".to_vec(),
        vec![0xff; 40],
        "d".repeat(5000).into_bytes(),
    ] {
        assert!(signer.verify(&bad, 1000).is_none(), "{bad:?}");
    }
}
