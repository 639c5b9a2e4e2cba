//! Series/token generation, the cookie value codec and hashing.
//!
//! A remember-me cookie carries two random values:
//!
//! * the **series** (128 bits) names one browser's chain of tokens and never
//!   changes while that chain lives;
//! * the **token** (256 bits) is replaced at every use.
//!
//! The database stores only their SHA-256 hashes, so a leaked database gives an
//! attacker no cookie: SHA-256 of a 256-bit random value cannot be inverted and
//! cannot be guessed. The values are high-entropy, so a fast hash is enough (a
//! slow password hash would protect nothing more and cost every request).
//!
//! The cookie value is `v1.<series>.<token>`, both in unpadded URL-safe base64.
//! The version prefix lets a later format be introduced without guessing.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Bytes in a series: 128 bits, enough that nobody finds another's series by guessing.
pub const SERIES_LEN: usize = 16;
/// Bytes in a token: 256 bits.
pub const TOKEN_LEN: usize = 32;
const PREFIX: &str = "v1.";
/// Longest cookie value [`RememberCookie::decode`] looks at; anything longer is rejected unread.
const MAX_ENCODED_LEN: usize = 128;

macro_rules! secret_bytes {
    ($(#[$meta:meta])* $name:ident, $len:expr) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name([u8; $len]);

        impl $name {
            /// A fresh value from the operating system's CSPRNG.
            pub fn generate() -> Self {
                let mut bytes = [0u8; $len];
                rand::fill(&mut bytes);
                Self(bytes)
            }

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }

        // Secrets never reach logs through `{:?}`.
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }
    };
}

secret_bytes!(
    /// The part of a remember-me cookie that names one browser's token chain.
    Series,
    SERIES_LEN
);
secret_bytes!(
    /// The single-use part of a remember-me cookie, replaced at every use.
    Token,
    TOKEN_LEN
);

impl Series {
    /// The SHA-256 hash stored in the database.
    pub fn hash(&self) -> SecretHash {
        SecretHash::of(&self.0)
    }
}

impl Token {
    /// The SHA-256 hash stored in the database.
    pub fn hash(&self) -> SecretHash {
        SecretHash::of(&self.0)
    }
}

/// SHA-256 of a series or a token: what the database holds instead of the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Rebuilds a hash read from the database; `None` if it is not 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }

    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Constant-time comparison, so response timing tells nothing about how
    /// much of a guessed token was right.
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        other.len() == self.0.len() && bool::from(self.0.as_slice().ct_eq(other))
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash([redacted])")
    }
}

/// The server's key of the grace seals (see [`RememberCookie::seal_next`]).
#[derive(Clone)]
pub struct SealKey([u8; 32]);

impl SealKey {
    /// A random key, for this process only.
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        Self(key)
    }

    /// A key derived from `secret` (kept apart from any other use of it),
    /// so instances sharing the secret open each other's seals.
    pub fn from_secret(secret: &[u8]) -> Self {
        Self(derive_key("rememberme grace seal key v1", secret))
    }
}

/// A 32-byte key for one use of a server secret: SHA-256 over the use's
/// label, a NUL, and the secret, so keys of different uses never coincide
/// (the access tokens', the device cookies', the grace seals').
pub(crate) fn derive_key(label: &str, secret: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(label.as_bytes());
    hasher.update(b"\0");
    hasher.update(secret);
    hasher.finalize().into()
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey([redacted])")
    }
}

/// The content of a remember-me cookie.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RememberCookie {
    /// The chain this cookie belongs to.
    pub series: Series,
    /// The current single-use token.
    pub token: Token,
}

/// Why a cookie value was not accepted. Deliberately coarse: the caller only
/// needs to know the value is unusable and must be removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed remember-me cookie")]
pub struct MalformedCookie;

impl RememberCookie {
    /// A new chain: fresh series and token.
    pub fn generate() -> Self {
        Self {
            series: Series::generate(),
            token: Token::generate(),
        }
    }

    /// The same series with a fresh token: what a rotation produces.
    pub fn rotated(&self) -> Self {
        Self {
            series: self.series.clone(),
            token: Token::generate(),
        }
    }

    /// `next`'s token sealed under this cookie's token, for the rotation
    /// that replaces this token by `next`'s: only a holder of this token
    /// (and of the server's `key`) can open it ([`RememberCookie::open_sealed`]).
    /// The database keeps it, so a request that presents the just-replaced
    /// token within the grace window gets the current one back and
    /// converges, instead of drifting into the "one rotation back after the
    /// grace window" case.
    ///
    /// The seal is the new token XORed with HMAC-SHA256, under the server's
    /// key, of a label, the series and this (replaced) token. The database
    /// holds neither the key nor this token (only its SHA-256), so a leak of
    /// the table yields nothing, even to someone who also holds an old copy
    /// of the cookie; and this token seals exactly one value (the rotation
    /// is a compare-and-swap on it), so the pad is never reused. Integrity
    /// needs no tag: an opened token is accepted only when its hash is the
    /// row's current `token_hash`.
    pub fn seal_next(&self, key: &SealKey, next: &Token) -> [u8; TOKEN_LEN] {
        let pad = self.pad(key);
        std::array::from_fn(|i| next.0[i] ^ pad[i])
    }

    /// The token sealed under this cookie's token by [`RememberCookie::seal_next`].
    pub fn open_sealed(&self, key: &SealKey, sealed: &[u8]) -> Option<Token> {
        let sealed: &[u8; TOKEN_LEN] = sealed.try_into().ok()?;
        let pad = self.pad(key);
        Some(Token(std::array::from_fn(|i| sealed[i] ^ pad[i])))
    }

    fn pad(&self, key: &SealKey) -> [u8; 32] {
        use hmac::{KeyInit as _, Mac as _};
        let mut mac = <hmac::Hmac<Sha256>>::new_from_slice(&key.0).expect("HMAC takes any key");
        mac.update(b"rememberme grace seal v1\0");
        mac.update(&self.series.0);
        mac.update(&self.token.0);
        mac.finalize().into_bytes().into()
    }

    /// The cookie value, `v1.<series>.<token>`.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(PREFIX.len() + 22 + 1 + 43);
        out.push_str(PREFIX);
        URL_SAFE_NO_PAD.encode_string(self.series.0, &mut out);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(self.token.0, &mut out);
        out
    }

    /// Parses a cookie value. Any byte sequence is accepted as input; anything
    /// that is not exactly a version-1 value with both parts of the right
    /// length is [`MalformedCookie`].
    pub fn decode(raw: &[u8]) -> Result<Self, MalformedCookie> {
        if raw.len() > MAX_ENCODED_LEN {
            return Err(MalformedCookie);
        }
        let rest = raw.strip_prefix(PREFIX.as_bytes()).ok_or(MalformedCookie)?;
        let dot = rest
            .iter()
            .position(|&b| b == b'.')
            .ok_or(MalformedCookie)?;
        let (series, token) = (&rest[..dot], &rest[dot + 1..]);
        Ok(Self {
            series: Series(decode_exact(series)?),
            token: Token(decode_exact(token)?),
        })
    }
}

fn decode_exact<const N: usize>(encoded: &[u8]) -> Result<[u8; N], MalformedCookie> {
    let mut out = [0u8; N];
    // `decode_slice` fails when the output does not fit, and the length check
    // below refuses short values: only exactly N bytes pass. The engine also
    // refuses non-canonical trailing bits, so one value has one encoding.
    let written = URL_SAFE_NO_PAD
        .decode_slice(encoded, &mut out)
        .map_err(|_| MalformedCookie)?;
    if written != N || URL_SAFE_NO_PAD.encode(out).as_bytes() != encoded {
        return Err(MalformedCookie);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
