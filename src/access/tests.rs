use super::*;

fn claims(exp: i64) -> AccessClaims {
    AccessClaims {
        sub: UserId::from(7),
        epoch: 1,
        tags: vec![Tag::WEAK_AUTHENTICATION],
        method: SignInMethod::RememberMe,
        device: Some("phone".into()),
        exp,
        pwd_at: None,
        series: None,
    }
}

#[test]
fn a_token_verifies_until_it_expires() {
    let signer = AccessTokens::from_secret(b"secret");
    let token = signer.issue(&claims(100));
    assert_eq!(signer.verify(&token, 99), Ok(claims(100)));
    assert_eq!(signer.verify(&token, 100), Err(AccessError::Expired));
}

#[test]
fn tampered_foreign_and_malformed_tokens_are_invalid() {
    let signer = AccessTokens::from_secret(b"secret");
    let token = signer.issue(&claims(100));
    let other = AccessTokens::from_secret(b"other").issue(&claims(100));
    let forged = {
        let (_, tag) = token.rsplit_once('.').unwrap();
        let body = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&AccessClaims {
                sub: UserId::from(1),
                ..claims(100)
            })
            .unwrap(),
        );
        format!("{PREFIX}{body}.{tag}")
    };
    let mut flipped = token.clone().into_bytes();
    flipped[10] ^= 1;
    for bad in [
        other,
        forged,
        String::from_utf8_lossy(&flipped).into_owned(),
        String::new(),
        "at1.".into(),
        "at1..".into(),
        "x".repeat(5000),
    ] {
        assert_eq!(signer.verify(&bad, 0), Err(AccessError::Invalid), "{bad}");
    }
}
