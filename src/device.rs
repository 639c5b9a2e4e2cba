//! Device cookies: lockout that an attacker cannot aim at a victim.
//!
//! OWASP's "Slow Down Online Guessing Attacks with Device Cookies": after a
//! successful password check the client gets a signed cookie naming the
//! user. Failed password checks are counted against the account only for
//! clients **without** such a cookie; a client that presents a valid one
//! for that user spends a budget of its own, keyed by the cookie's random
//! nonce. So a guesser who locks an account out locks out only the clients
//! that never signed in as that user, while the user's own browsers (and
//! app devices) keep signing in.
//!
//! A device cookie is also bound to the user's password as it stands (a
//! MAC of its stored hash): a password change voids every device cookie of
//! the user. Otherwise whoever once knew the password could keep a
//! thousand of them and, after the user changed it, guess the new one with
//! a thousand budgets. Nothing else voids them: after a detected theft or
//! "sign out everywhere" the user's own browsers keep their budgets, or
//! whoever set off the revocation could then lock the user out of all of
//! them.
//!
//! The cookie is `d3.<user>.<issued_at>.<password>.<nonce>.<mac>`: the user
//! id (base64url), the issue time in decimal, 128 bits of an HMAC of the
//! user's stored password hash and a 128-bit random nonce in unpadded
//! base64url, and an HMAC-SHA256 over the rest with a key only the server
//! knows. Nothing is stored for it; it holds no secret of the user (the
//! password's MAC is keyed: it tells nothing of the hash). 0.1's `d2.`
//! cookies are no longer honoured: the next sign-in hands out a `d3.` one.
//!
//! The failure counters themselves live in the database (see
//! [`UserStore::failures`](crate::store::StateStore::failures)), keyed by a
//! [`ThrottleKey`], so every instance on one database shares them and a
//! restart resets nothing. The account key is derived from the **typed
//! username**, whether or not such a user exists: unknown names are
//! counted exactly like real ones.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub use crate::store::ThrottleKey;
use crate::store::UserId;

const PREFIX: &str = "d3.";
/// Longest cookie value looked at.
const MAX_LEN: usize = 256;
/// How long a device cookie is honoured: a year. A browser that signs in
/// gets a fresh one each time; one unused for a year is untrusted again.
pub const DEVICE_COOKIE_LIFETIME_SECS: i64 = 365 * 24 * 3600;
/// The device cookie's name (before the `__Host-` prefix).
pub const DEVICE_COOKIE_NAME: &str = "device";

/// Signs and verifies device cookies.
#[derive(Clone)]
pub struct DeviceCookies {
    key: [u8; 32],
}

impl fmt::Debug for DeviceCookies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceCookies([redacted])")
    }
}

/// A device cookie that verified: the client once signed in as `user`.
#[derive(Clone, PartialEq, Eq)]
pub struct TrustedDevice {
    /// The user the cookie names.
    pub user: UserId,
    /// The MAC of the user's password hash when the cookie was issued.
    password: [u8; 16],
    nonce: [u8; 16],
}

impl fmt::Debug for TrustedDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustedDevice")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl TrustedDevice {
    /// The key of this device's own failure budget.
    pub fn throttle_key(&self) -> ThrottleKey {
        ThrottleKey::derive(b"device", &self.nonce)
    }

    /// Whether the cookie stands for `user` with the password `user` has
    /// now (its stored hash, `None` for none): a password changed since
    /// voids it. Constant time in the MAC.
    pub fn is_for(
        &self,
        user: &UserId,
        password_hash: Option<&str>,
        signer: &DeviceCookies,
    ) -> bool {
        use subtle::ConstantTimeEq as _;
        self.user == *user && bool::from(signer.password_mac(password_hash).ct_eq(&self.password))
    }
}

impl DeviceCookies {
    /// A signer with a random key (valid for this process only).
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        Self { key }
    }

    /// A signer whose key is derived from `secret`; the derivation keeps
    /// this use apart from any other use of the same secret.
    pub fn from_secret(secret: &[u8]) -> Self {
        Self {
            key: crate::token::derive_key("rememberme device cookie key v1", secret),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key length")
    }

    /// 128 bits of an HMAC of a stored password hash (`None`: the user has
    /// no password), kept apart from the cookie's own MAC by a label.
    fn password_mac(&self, password_hash: Option<&str>) -> [u8; 16] {
        let mut mac = self.mac();
        mac.update(b"rememberme device cookie password\0");
        mac.update(password_hash.unwrap_or_default().as_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    /// A new device cookie value for `user`, whose stored password hash is
    /// `password_hash` (`None`: no password), issued at `now`.
    pub fn issue(&self, user: &UserId, password_hash: Option<&str>, now: i64) -> String {
        let mut nonce = [0u8; 16];
        rand::fill(&mut nonce);
        let mut out = format!("{PREFIX}{}.{now}.", user.to_field());
        URL_SAFE_NO_PAD.encode_string(self.password_mac(password_hash), &mut out);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(nonce, &mut out);
        let mut mac = self.mac();
        mac.update(out.as_bytes());
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(mac.finalize().into_bytes(), &mut out);
        out
    }

    /// The device a cookie value proves, if its MAC matches (constant time)
    /// and it was issued within [`DEVICE_COOKIE_LIFETIME_SECS`] before `now`.
    /// Whether it stands for the user's password as it is now is for the
    /// caller to check ([`TrustedDevice::is_for`]).
    pub fn verify(&self, value: &[u8], now: i64) -> Option<TrustedDevice> {
        let value = std::str::from_utf8(value).ok()?;
        if value.len() > MAX_LEN || !value.starts_with(PREFIX) {
            return None;
        }
        let (signed, tag) = value.rsplit_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let mut mac = self.mac();
        mac.update(signed.as_bytes());
        mac.verify_slice(&tag).ok()?;
        let mut parts = signed[PREFIX.len()..].splitn(4, '.');
        let user = UserId::from_field(parts.next()?)?;
        let issued_at: i64 = parts.next()?.parse().ok()?;
        let mut bytes =
            || -> Option<[u8; 16]> { URL_SAFE_NO_PAD.decode(parts.next()?).ok()?.try_into().ok() };
        let (password, nonce) = (bytes()?, bytes()?);
        let age = now.checked_sub(issued_at)?;
        (-crate::clock::CLOCK_SKEW_SECS..=DEVICE_COOKIE_LIFETIME_SECS)
            .contains(&age)
            .then_some(TrustedDevice {
                user,
                password,
                nonce,
            })
    }
}

#[cfg(test)]
mod tests;
