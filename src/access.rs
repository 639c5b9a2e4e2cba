//! Short-lived, stateless access tokens for apps that talk JSON.
//!
//! `at1.<claims>.<mac>`: the claims (user, auth epoch, tags, expiry, device)
//! in unpadded URL-safe base64 JSON, and an HMAC-SHA256 over them with a key
//! only the server knows. Nothing is stored. A token is refused when its MAC
//! is wrong, when it expired (15 minutes by default), or when the user's auth
//! epoch moved on (revoke-all, password change, theft): the API checks the
//! epoch on every request, so revocation is immediate. A token issued with
//! a long-lived token, or derived from one, names that token's series (its
//! SHA-256, as the table holds it) and lives only as long as the series:
//! signing the device out, or revoking it on the devices page, ends its
//! access tokens too, as it ends a browser's session.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::session::{SignInMethod, Tag};
use crate::store::UserId;
use crate::token::SecretHash;

const PREFIX: &str = "at1.";
/// Longest token looked at; anything longer is refused unread.
const MAX_LEN: usize = 2048;

/// What an access token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user.
    pub sub: UserId,
    /// The user's auth epoch when the token was made.
    pub epoch: i64,
    /// Tags of the authentication behind the token.
    pub tags: Vec<Tag>,
    /// How the user authenticated.
    pub method: SignInMethod,
    /// The app device, if the token came with a device key.
    pub device: Option<String>,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// When the password behind the token was typed, Unix seconds (`None`
    /// for a token that came from a long-lived token). A token derived from
    /// this one keeps it: a password proves itself for the re-auth window,
    /// however often tokens are exchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pwd_at: Option<i64>,
    /// The series of the long-lived token this token came with or from
    /// (its SHA-256): the token is refused once that series is revoked.
    /// `None` for a token of a sign-in that issued no long-lived token.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "series")]
    pub series: Option<SecretHash>,
}

/// [`AccessClaims::series`] in unpadded URL-safe base64.
mod series {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::token::SecretHash;

    // serde's `with` hands the field by reference.
    #[allow(clippy::ref_option)]
    pub fn serialize<S: Serializer>(
        series: &Option<SecretHash>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match series {
            Some(hash) => serializer.serialize_str(&URL_SAFE_NO_PAD.encode(hash.as_bytes())),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<SecretHash>, D::Error> {
        let Some(text) = Option::<String>::deserialize(deserializer)? else {
            return Ok(None);
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(serde::de::Error::custom)?;
        SecretHash::from_slice(&bytes)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom("not a series hash"))
    }
}

/// Why an access token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
    /// Not an access token, or its signature does not match.
    #[error("invalid access token")]
    Invalid,
    /// Valid once, but expired.
    #[error("access token expired")]
    Expired,
}

/// Signs and verifies access tokens.
#[derive(Clone)]
pub struct AccessTokens {
    key: [u8; 32],
}

impl fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessTokens([redacted])")
    }
}

impl AccessTokens {
    /// A signer whose key is derived from `secret` (for instance the session
    /// key's master bytes), so instances sharing that secret accept each
    /// other's tokens. The derivation separates this use from any other use
    /// of the same secret.
    pub fn from_secret(secret: &[u8]) -> Self {
        Self {
            key: crate::token::derive_key("rememberme access token key v1", secret),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key length")
    }

    /// The token for `claims`.
    pub fn issue(&self, claims: &AccessClaims) -> String {
        let json = serde_json::to_vec(claims).expect("claims serialize");
        let mut out = String::from(PREFIX);
        URL_SAFE_NO_PAD.encode_string(&json, &mut out);
        let mut mac = self.mac();
        mac.update(out.as_bytes());
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(mac.finalize().into_bytes(), &mut out);
        out
    }

    /// The claims of a token whose MAC matches (compared in constant time)
    /// and that has not expired at `now`.
    pub fn verify(&self, token: &str, now: i64) -> Result<AccessClaims, AccessError> {
        if token.len() > MAX_LEN || !token.starts_with(PREFIX) {
            return Err(AccessError::Invalid);
        }
        let (signed, tag) = token.rsplit_once('.').ok_or(AccessError::Invalid)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| AccessError::Invalid)?;
        let mut mac = self.mac();
        mac.update(signed.as_bytes());
        mac.verify_slice(&tag).map_err(|_| AccessError::Invalid)?;
        let json = URL_SAFE_NO_PAD
            .decode(&signed[PREFIX.len()..])
            .map_err(|_| AccessError::Invalid)?;
        let claims: AccessClaims =
            serde_json::from_slice(&json).map_err(|_| AccessError::Invalid)?;
        if claims.exp <= now {
            return Err(AccessError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests;
