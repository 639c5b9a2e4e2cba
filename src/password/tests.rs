use super::*;

#[test]
fn hashes_interoperate_with_the_argon2_crate_and_any_parameters_verify() {
    use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
    // Ours verifies with the stock verifier…
    let ours = hash_password("tr0ub4dor");
    argon2()
        .verify_password(b"tr0ub4dor", ours.as_str())
        .expect("the argon2 crate accepts our hash");
    // …and a stock hash at other parameters (smaller, then larger than
    // the memory the thread kept) verifies with ours.
    for m in [8 * 1024, 24 * 1024] {
        let params = Params::new(m, 1, 1, None).unwrap();
        let stock = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"tr0ub4dor")
            .unwrap()
            .to_string();
        assert!(verify_password(&stock, "tr0ub4dor"), "m={m}");
        assert!(!verify_password(&stock, "tr0ub4dor!"), "m={m}");
    }
    // A tampered output or salt fails.
    let mut tampered = ours.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert!(!verify_password(&tampered, "tr0ub4dor"));
    let salt_at = ours.rfind('$').unwrap() - 2;
    let mut tampered = ours.clone().into_bytes();
    tampered[salt_at] = if tampered[salt_at] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let tampered = String::from_utf8(tampered).unwrap();
    assert!(!verify_password(&tampered, "tr0ub4dor"));
}

#[test]
fn passwords_are_hashed_with_argon2id_at_owasp_parameters_and_a_fresh_salt() {
    let a = hash_password("correct horse");
    let b = hash_password("correct horse");
    assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
    assert_ne!(a, b, "a fresh salt each time");
    assert!(verify_password(&a, "correct horse"));
    assert!(!verify_password(&a, "Correct horse"));
    assert!(!verify_password(dummy_hash(), "correct horse"));
    assert!(dummy_hash().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    assert!(!verify_password("not a phc string", "x"));
}
