//! The signed-in state kept in the session, and the tags a flow grants:
//! domain types, no actix.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::store::UserId;
use crate::token::SecretHash;

pub(crate) const AUTH_KEY: &str = "rm.auth";

/// A fact a flow has established about the current user: the crate's two
/// ([`Tag::WEAK_AUTHENTICATION`], [`Tag::PASSWORD_VERIFIED`]) or the app's
/// own (`Tag::new("SECOND_FACTOR")`), named in capitals, digits and `_`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag(Cow<'static, str>);

impl Tag {
    /// The user is identified, possibly only by a remember-me cookie.
    pub const WEAK_AUTHENTICATION: Tag = Tag(Cow::Borrowed("WEAK_AUTHENTICATION"));
    /// The user typed their password in this session.
    pub const PASSWORD_VERIFIED: Tag = Tag(Cow::Borrowed("PASSWORD_VERIFIED"));

    /// A tag of the app's own, as a constant:
    /// `const SECOND_FACTOR: Tag = Tag::new("SECOND_FACTOR");`.
    ///
    /// # Panics
    ///
    /// If `name` is empty, longer than 64 bytes, or holds anything but
    /// `A`–`Z`, `0`–`9` and `_` (at compile time for a constant).
    pub const fn new(name: &'static str) -> Tag {
        assert!(
            valid_name(name.as_bytes()),
            "a tag is 1 to 64 of A-Z, 0-9, _"
        );
        Tag(Cow::Borrowed(name))
    }

    /// A tag read back from a session or a token; `None` for an invalid name.
    fn parse(name: &str) -> Option<Tag> {
        valid_name(name.as_bytes()).then(|| match name {
            "WEAK_AUTHENTICATION" => Tag::WEAK_AUTHENTICATION,
            "PASSWORD_VERIFIED" => Tag::PASSWORD_VERIFIED,
            other => Tag(Cow::Owned(other.to_owned())),
        })
    }

    /// The tag's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

const fn valid_name(name: &[u8]) -> bool {
    if name.is_empty() || name.len() > 64 {
        return false;
    }
    let mut i = 0;
    while i < name.len() {
        if !matches!(name[i], b'A'..=b'Z' | b'0'..=b'9' | b'_') {
            return false;
        }
        i += 1;
    }
    true
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Tag {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Tag {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Tag::parse(&name).ok_or_else(|| serde::de::Error::custom("not a tag name"))
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a session was signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignInMethod {
    /// The user typed a password.
    Password,
    /// A remember-me cookie identified the user.
    RememberMe,
    /// The app authenticated the user itself (OAuth, a magic link, a
    /// passkey) and signed them in by id: [`Auth::sign_in`](crate::Auth::sign_in).
    App,
}

/// The signed-in state kept in the session.
///
/// Read on every request of a signed-in user, so it is stored as one short
/// string (see [`AuthState::encode`]) rather than a JSON object: the session
/// cookie stays small, and reading it is a split and a few integer parses
/// instead of a second JSON parse inside actix-session's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuthState {
    pub user_id: UserId,
    pub username: String,
    pub is_admin: bool,
    pub tags: BTreeSet<Tag>,
    pub method: SignInMethod,
    /// The user's auth epoch when the session was made.
    pub epoch: i64,
    /// When the epoch was last compared with the database.
    pub checked_at: i64,
    /// When the session was signed in (absolute session lifetime). A
    /// step-up never moves it.
    pub signed_in_at: i64,
    /// When the password was last typed in this session ("sudo mode", see
    /// [`RememberMeConfig::reauth_window`]); `None` for a session signed in
    /// by cookie and never stepped up.
    pub password_at: Option<i64>,
    /// Random id renewed at every sign-in and step-up.
    pub sid: String,
    /// SHA-256 of the remember-me series this session came from or was
    /// issued; the session ends when that token is revoked.
    pub series: Option<SecretHash>,
}

/// Flag bits of the encoded [`AuthState`].
const ADMIN: u8 = 1;
const WEAK: u8 = 2;
const PASSWORD: u8 = 4;
const BY_COOKIE: u8 = 8;
const BY_APP: u8 = 16;

impl AuthState {
    /// `a4.<user>.<epoch>.<signed_in_at>.<checked_at>.<password_at>.<flags>.<sid>.<series>.<tags>.<username>`:
    /// integers in decimal, `checked_at` and `password_at` as seconds after
    /// `signed_in_at` (usually `0` or a few digits: the cookie is read on
    /// every request, and its length costs on each), `password_at` empty
    /// when none, the flags a bit set (the crate's two tags among them),
    /// the user id, `sid` and `series` (SHA-256, or empty) in unpadded
    /// base64url, the app's own tags by name, comma-separated, and the
    /// username last, so that it may hold any character. Inside the
    /// encrypted session cookie.
    fn encode(&self) -> String {
        use base64::Engine as _;
        let mut flags = 0;
        if self.is_admin {
            flags |= ADMIN;
        }
        flags |= match self.method {
            SignInMethod::Password => 0,
            SignInMethod::RememberMe => BY_COOKIE,
            SignInMethod::App => BY_APP,
        };
        let mut own = Vec::new();
        for tag in &self.tags {
            if *tag == Tag::WEAK_AUTHENTICATION {
                flags |= WEAK;
            } else if *tag == Tag::PASSWORD_VERIFIED {
                flags |= PASSWORD;
            } else {
                own.push(tag.as_str());
            }
        }
        let own = own.join(",");
        let series = self
            .series
            .as_ref()
            .map(|s| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s.as_bytes()))
            .unwrap_or_default();
        // Offsets that wrap: exact for any two times, however far apart.
        let after = |t: i64| t.wrapping_sub(self.signed_in_at);
        let password_at = self
            .password_at
            .map(|t| after(t).to_string())
            .unwrap_or_default();
        format!(
            "a4.{}.{}.{}.{}.{password_at}.{flags}.{}.{series}.{own}.{}",
            self.user_id.to_field(),
            self.epoch,
            self.signed_in_at,
            after(self.checked_at),
            self.sid,
            self.username
        )
    }

    /// The state `encode` wrote; or an earlier layout: `a3.` (0.2's
    /// development versions, the times absolute and `checked_at` before
    /// `signed_in_at`) or `a2.` (0.1: that, with the user id in decimal and
    /// no tags field); `None` for anything else (another version, a damaged
    /// value), which reads as "not signed in".
    fn decode(value: &str) -> Option<Self> {
        use base64::Engine as _;
        let mut fields = Fields(value);
        let version = fields.next()?;
        let user_id = match version {
            "a4" | "a3" => UserId::from_field(fields.next()?)?,
            "a2" => UserId::from(fields.next()?.parse::<i64>().ok()?),
            _ => return None,
        };
        let mut int = || fields.next()?.parse::<i64>().ok();
        let (epoch, first, second) = (int()?, int()?, int()?);
        let password_at = match fields.next()? {
            "" => None,
            at => Some(at.parse::<i64>().ok()?),
        };
        let (signed_in_at, checked_at, password_at) = match version {
            "a4" => (
                first,
                first.wrapping_add(second),
                password_at.map(|t| first.wrapping_add(t)),
            ),
            _ => (second, first, password_at),
        };
        let flags: u8 = fields.next()?.parse().ok()?;
        if flags & !(ADMIN | WEAK | PASSWORD | BY_COOKIE | BY_APP) != 0
            || flags & (BY_COOKIE | BY_APP) == BY_COOKIE | BY_APP
        {
            return None;
        }
        let sid = fields.next()?.to_owned();
        let series = match fields.next()? {
            "" => None,
            b64 => {
                // Into a buffer on the stack: this runs on every request.
                let mut hash = [0u8; 33];
                let len = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode_slice(b64, &mut hash)
                    .ok()?;
                Some(SecretHash::from_slice(&hash[..len])?)
            }
        };
        let own = match version {
            "a2" => "",
            _ => fields.next()?,
        };
        let tags = tags_of(flags, own)?;
        // The username is the rest, dots and all (0.1's layout, `a2`, had
        // no tags field before it).
        let username = fields.0.to_owned();
        Some(AuthState {
            user_id,
            username,
            is_admin: flags & ADMIN != 0,
            tags,
            method: method_of(flags),
            epoch,
            checked_at,
            signed_in_at,
            password_at,
            sid,
            series,
        })
    }
}

/// The tags of an encoded state: the crate's two from their flag bits, the
/// app's from their names (`own`, comma-separated); `None` for a name that
/// is not a tag's. Inserted one by one: a set of one tag is one allocation.
fn tags_of(flags: u8, own: &str) -> Option<BTreeSet<Tag>> {
    let mut tags = BTreeSet::new();
    if flags & WEAK != 0 {
        tags.insert(Tag::WEAK_AUTHENTICATION);
    }
    if flags & PASSWORD != 0 {
        tags.insert(Tag::PASSWORD_VERIFIED);
    }
    for name in own.split(',').filter(|n| !n.is_empty()) {
        tags.insert(Tag::parse(name)?);
    }
    Some(tags)
}

/// The fields of an encoded state, taken one at a time up to the next `.`;
/// what is left after the last (the username, which may hold dots) is
/// `.0`. A byte scan: `str::splitn`'s searcher cost more than the fields'
/// parsing on this path, which runs on every request.
struct Fields<'a>(&'a str);

impl<'a> Fields<'a> {
    fn next(&mut self) -> Option<&'a str> {
        let end = self.0.bytes().position(|b| b == b'.')?;
        let field = &self.0[..end];
        self.0 = &self.0[end + 1..];
        Some(field)
    }
}

/// The sign-in method an encoded state's flags name.
fn method_of(flags: u8) -> SignInMethod {
    if flags & BY_COOKIE != 0 {
        SignInMethod::RememberMe
    } else if flags & BY_APP != 0 {
        SignInMethod::App
    } else {
        SignInMethod::Password
    }
}

impl Serialize for AuthState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.encode())
    }
}

/// Read straight from the session's JSON string, borrowed: no copy of it is
/// made on the way (this runs on every request of a signed-in user).
impl<'de> Deserialize<'de> for AuthState {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Encoded;
        impl serde::de::Visitor<'_> for Encoded {
            type Value = AuthState;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an encoded auth state")
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<AuthState, E> {
                AuthState::decode(value).ok_or_else(|| E::custom("not an encoded auth state"))
            }
        }
        deserializer.deserialize_str(Encoded)
    }
}

pub(crate) fn random_id() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests;
