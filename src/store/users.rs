//! The app's users, as the crate sees them: [`UserDirectory`], the trait an
//! app implements over its own users table, with [`User`] and [`UserId`].
//!
//! The crate never owns the users. It keeps its own state per user (the
//! auth epoch that ends every session at once, failure counters, tokens,
//! audit rows) in its own tables, keyed by the app's id as text.

use std::fmt;

/// A user's id, as the app names it: an integer, a UUID, any string. The
/// crate stores it as text in its own tables and hands it back unchanged.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserId(String);

impl UserId {
    /// The id as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as an integer, for an app whose ids are integers.
    pub fn as_i64(&self) -> Option<i64> {
        self.0.parse().ok()
    }

    /// The id as unpadded base64url: one field of a dot-separated value
    /// (session state, device cookie) whatever characters the id holds.
    pub(crate) fn to_field(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.0.as_bytes())
    }

    /// The id [`UserId::to_field`] wrote.
    pub(crate) fn from_field(field: &str) -> Option<Self> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(field)
            .ok()?;
        String::from_utf8(bytes).ok().map(UserId)
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for UserId {
    fn from(id: String) -> Self {
        UserId(id)
    }
}

impl From<&str> for UserId {
    fn from(id: &str) -> Self {
        UserId(id.to_owned())
    }
}

impl From<i64> for UserId {
    fn from(id: i64) -> Self {
        UserId(id.to_string())
    }
}

impl serde::Serialize for UserId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for UserId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(UserId)
    }
}

/// A user as the app's [`UserDirectory`] describes it.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct User {
    /// The app's id of the user.
    pub id: UserId,
    /// The name shown, and typed at sign-in.
    pub username: String,
    /// May use the admin pages.
    pub is_admin: bool,
    /// The password hash, in whatever scheme the directory's
    /// [`UserDirectory::verify_password`] checks; `None` for a user who
    /// has no password (signs in only through the app, by
    /// [`Auth::sign_in`](crate::Auth::sign_in)).
    ///
    /// Device cookies are bound to it (see [`crate::device`]): it must
    /// change when the password does (a salted hash does) and stay the same
    /// otherwise. A directory that rehashes on sign-in voids its users'
    /// device cookies each time; one that gives a fixed placeholder (the
    /// password checked elsewhere) keeps them past a password change.
    pub password_hash: Option<String>,
}

impl User {
    /// A user without admin rights or password.
    pub fn new(id: impl Into<UserId>, username: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            username: username.into(),
            is_admin: false,
            password_hash: None,
        }
    }

    /// With admin rights, or not.
    #[must_use]
    pub fn admin(mut self, is_admin: bool) -> Self {
        self.is_admin = is_admin;
        self
    }

    /// With a password hash.
    #[must_use]
    pub fn password_hash(mut self, hash: impl Into<String>) -> Self {
        self.password_hash = Some(hash.into());
        self
    }
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("is_admin", &self.is_admin)
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// The app's users: implemented by the app over its own table (or by the
/// ready [`UsersTable`](crate::store::UsersTable) with its Argon2 hashes).
///
/// Every method is blocking: the crate calls them from its own threads,
/// never on an async worker. [`UserDirectory::verify_password`] runs on the
/// crate's password threads (one per core), so a slow hash never holds a
/// store thread.
pub trait UserDirectory: Send + Sync + 'static {
    /// The user who signs in as `username`, if any.
    fn find_by_username(&self, username: &str) -> Result<Option<User>, super::StoreError>;

    /// The form of a typed username under which its failed password
    /// checks are counted: names that [`UserDirectory::find_by_username`]
    /// takes for one user must give one form, or each spelling gets a
    /// budget of its own (`alice`, `Alice`, `ALICE`… for a directory that
    /// ignores case, as e-mail addresses are often looked up). Applied
    /// alike to names that match no user, so the count tells nothing about
    /// which exist. The default is the name as typed, right for a
    /// directory that matches names exactly (as
    /// [`UsersTable`](crate::store::UsersTable) does). A directory that
    /// wraps another must forward it.
    fn canonical_username<'a>(&self, typed: &'a str) -> std::borrow::Cow<'a, str> {
        std::borrow::Cow::Borrowed(typed)
    }

    /// The user with this id, if any. Called at each session check (roles
    /// are re-read), at each password sign-in and step-up (the hash is
    /// read again by id), and at a sign-in by remember-me cookie whose
    /// owner [`UserDirectory::find_by_ids`] did not give (the default
    /// `find_by_ids` calls it too): a user the app deleted is signed out
    /// at the next check. A sign-in with an unknown name calls it with a
    /// placeholder id (`rememberme:no-such-user`), so that it takes as
    /// long as a known name's; its answer is dropped, an error too (a
    /// directory of UUIDs may well refuse such an id), but for
    /// [`StoreError::Unavailable`](super::StoreError::Unavailable): an
    /// outage answers 503 for every name alike.
    fn find_by_id(&self, id: &UserId) -> Result<Option<User>, super::StoreError>;

    /// The users with these ids, in the order asked (`None` for an id
    /// that names nobody). Called once for a batch of sign-ins by cookie
    /// (and API token refreshes) whose tokens rotated together (see
    /// [`TokenStore::find_and_rotate_all`](super::TokenStore::find_and_rotate_all)),
    /// instead of [`UserDirectory::find_by_id`] once for each. The default
    /// calls `find_by_id` for each id; override it with one query (`WHERE
    /// id IN …`) where each call costs a round trip to a database server.
    /// It must answer as `find_by_id` would, id by id; an answer of
    /// another length is ignored (each sign-in then reads its own user),
    /// and "nobody" is checked with `find_by_id` before a series ends.
    fn find_by_ids(&self, ids: &[UserId]) -> Result<Vec<Option<User>>, super::StoreError> {
        ids.iter().map(|id| self.find_by_id(id)).collect()
    }

    /// Whether `password` matches `hash` (a [`User::password_hash`]). The
    /// default checks an Argon2 PHC string ([`crate::password`]). A
    /// directory with another scheme overrides
    /// [`UserDirectory::dummy_hash`] with it: the default dummy is Argon2,
    /// which another scheme's check may refuse at once, so that an unknown
    /// name would answer faster than a wrong password.
    fn verify_password(&self, hash: &str, password: &str) -> bool {
        crate::password::verify_phc(password.as_bytes(), hash)
    }

    /// A hash in this directory's scheme, of a password nobody has, at the
    /// cost of a real one: checked instead when the name is unknown (or the
    /// user has no password), so an unknown name costs the same work as a
    /// wrong password and its timing tells nothing. The default is an
    /// Argon2id hash, made once.
    fn dummy_hash(&self) -> &str {
        crate::password::dummy_hash()
    }

    /// Whether [`UserDirectory::set_password`] stores passwords. The
    /// default is `false`, as `set_password`'s default refuses: override
    /// both, or neither. When `false`,
    /// [`Auth::change_password`](crate::Auth::change_password) answers
    /// [`PasswordChange::Unsupported`](crate::extract::PasswordChange::Unsupported)
    /// before it checks or changes anything (the user's other sessions
    /// stay). A directory that wraps another must forward it.
    fn sets_passwords(&self) -> bool {
        false
    }

    /// Sets a user's password (for the crate's password-change path,
    /// [`Auth::change_password`](crate::Auth::change_password)), called
    /// only when [`UserDirectory::sets_passwords`] says so, with the new
    /// password as typed: hash it in your scheme and store the hash. The
    /// default refuses: an app with its own password page need not
    /// implement it, but that page must end the user's other sessions and
    /// tokens itself ([`Auth::revoke_all`](crate::Auth::revoke_all), or
    /// [`Stores::revoke_everything`](crate::Stores::revoke_everything)
    /// outside a request).
    fn set_password(&self, id: &UserId, password: &str) -> Result<(), super::StoreError> {
        let _ = (id, password);
        Err(super::StoreError::Unsupported("set_password"))
    }
}
