//! The audit log: [`AuditLog`] and its events.

use super::*;

/// What happened, for the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuditKind {
    /// Signed in with a password.
    PasswordSignIn,
    /// Signed in by the app, after its own check (OAuth, a magic link…).
    AppSignIn,
    /// A password sign-in failed.
    SignInFailed,
    /// Signed in by a remember-me cookie.
    RememberMeSignIn,
    /// A remember-me token was issued.
    TokenIssued,
    /// A remember-me token was revoked.
    TokenRevoked,
    /// A replayed remember-me token: every token of the user was revoked.
    TheftDetected,
    /// The token one rotation back, after the grace window: a client that
    /// lost a response, or a fork nobody can tell apart. That series was
    /// ended; the user's other devices were left alone.
    PossibleTheft,
    /// Signed out.
    Logout,
    /// A remembered session confirmed the password.
    StepUp,
    /// The password changed.
    PasswordChanged,
    /// Every session and token of the user was ended.
    SignOutEverywhere,
}

impl AuditKind {
    /// Every kind, in a stable order.
    pub const ALL: [AuditKind; 12] = [
        AuditKind::PasswordSignIn,
        AuditKind::AppSignIn,
        AuditKind::SignInFailed,
        AuditKind::RememberMeSignIn,
        AuditKind::TokenIssued,
        AuditKind::TokenRevoked,
        AuditKind::TheftDetected,
        AuditKind::PossibleTheft,
        AuditKind::Logout,
        AuditKind::StepUp,
        AuditKind::PasswordChanged,
        AuditKind::SignOutEverywhere,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::PasswordSignIn => "password_sign_in",
            AuditKind::AppSignIn => "app_sign_in",
            AuditKind::SignInFailed => "sign_in_failed",
            AuditKind::RememberMeSignIn => "remember_me_sign_in",
            AuditKind::TokenIssued => "token_issued",
            AuditKind::TokenRevoked => "token_revoked",
            AuditKind::TheftDetected => "theft_detected",
            AuditKind::PossibleTheft => "possible_theft",
            AuditKind::Logout => "logout",
            AuditKind::StepUp => "step_up",
            AuditKind::PasswordChanged => "password_changed",
            AuditKind::SignOutEverywhere => "sign_out_everywhere",
        }
    }
}

/// An audit event to record.
#[derive(Debug, Clone)]
pub struct NewAuditEvent<'a> {
    /// Unix seconds.
    pub at: i64,
    /// What happened.
    pub kind: AuditKind,
    /// To whom.
    pub user_id: Option<&'a UserId>,
    /// From where.
    pub ip: Option<&'a str>,
    /// With what.
    pub user_agent: Option<&'a str>,
    /// Free text (never a secret).
    pub detail: &'a str,
}

/// A recorded audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Primary key.
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    /// Stored kind name (see [`AuditKind::as_str`]).
    pub kind: String,
    /// To whom.
    pub user_id: Option<UserId>,
    /// From where.
    pub ip: Option<String>,
    /// With what.
    pub user_agent: Option<String>,
    /// Free text.
    pub detail: String,
}

/// Persistence of audit events.
pub trait AuditLog: Send + Sync {
    /// Records an event.
    fn record(&self, event: NewAuditEvent<'_>) -> Result<(), StoreError>;
    /// Records several events at once: all or none. The default records them
    /// one by one; a database implementation writes them in one transaction
    /// (one commit for the lot).
    fn record_batch(&self, events: &[NewAuditEvent<'_>]) -> Result<(), StoreError> {
        events
            .iter()
            .try_for_each(|event| self.record(event.clone()))
    }
    /// Recent events, newest first (by `at`, then id), optionally of one
    /// kind and/or one user, at most `limit`; with `before` (the `(at, id)`
    /// of the last event of the previous page), only older ones. Keyset
    /// pagination: every page costs the same however deep.
    fn list(
        &self,
        kind: Option<&str>,
        user: Option<&UserId>,
        before: Option<(i64, i64)>,
        limit: i64,
    ) -> Result<Vec<AuditEvent>, StoreError>;
    /// Deletes events older than `cutoff` (Unix seconds). Returns how many went.
    fn purge_before(&self, cutoff: i64) -> Result<usize, StoreError>;
}
