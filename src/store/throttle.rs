//! Keys of the failure counters of password checks.

use std::fmt;

use sha2::{Digest, Sha256};

/// The key of one failure counter: SHA-256 over a label and a subject, so
/// the table holds no username and keys of different kinds never meet.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ThrottleKey([u8; 32]);

impl fmt::Debug for ThrottleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ThrottleKey(..)")
    }
}

impl ThrottleKey {
    pub(crate) fn derive(kind: &[u8], subject: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"rememberme throttle v1\0");
        hasher.update(kind);
        hasher.update(b"\0");
        hasher.update(subject);
        Self(hasher.finalize().into())
    }

    /// The counter of the account named `username` for clients without a
    /// device cookie, whether or not the account exists.
    pub fn account(username: &str) -> Self {
        Self::derive(b"account", username.as_bytes())
    }

    /// The stored bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A key read back from storage.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_keys_depend_on_the_typed_name_only() {
        assert_eq!(ThrottleKey::account("alice"), ThrottleKey::account("alice"));
        assert_ne!(ThrottleKey::account("alice"), ThrottleKey::account("Alice"));
    }
}
