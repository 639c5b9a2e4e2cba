//! The admin commands: users, tokens, migrations.

use std::io::BufRead as _;

use rememberme::store::{StoreError, UsersTable};
use rememberme::{Database, DieselStore, Stores};

/// The crate's tables and the demo's users table on `url`, migrated.
pub(crate) fn open(url: &str, pool_size: u32) -> Result<(DieselStore, UsersTable), String> {
    let db = Database::connect(url, pool_size).map_err(|e| e.to_string())?;
    let users = UsersTable::open(db.clone()).map_err(|e| e.to_string())?;
    Ok((DieselStore::new(db), users))
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

pub(crate) fn add_user(url: &str, name: &str, admin: bool) -> Result<(), String> {
    let name = name.trim();
    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return Err("a username is 1 to 64 characters, without control characters".into());
    }
    let password = read_new_password(name)?;
    // Characters, as the password page counts them.
    if password.chars().count() < 8 {
        return Err("the password must have at least 8 characters".into());
    }
    let (_, users) = open(url, 1)?;
    match users.create(name, &password, admin) {
        Ok(id) => {
            eprintln!(
                "user {name} created (id {id}{})",
                if admin { ", admin" } else { "" }
            );
            Ok(())
        }
        Err(StoreError::AlreadyExists) => Err(format!("user {name} already exists")),
        Err(e) => Err(e.to_string()),
    }
}

pub(crate) fn set_admin(url: &str, name: &str, admin: bool) -> Result<(), String> {
    let (_, users) = open(url, 1)?;
    let user = users
        .find_by_name(name)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no user {name}"))?;
    users
        .set_admin(&user.id, admin)
        .map_err(|e| e.to_string())?;
    eprintln!(
        "{name} is {}an admin; open sessions see it at their next check",
        if admin { "" } else { "no longer " }
    );
    Ok(())
}

/// The new user's password: typed twice at a terminal, without echo (not
/// left on the screen or in a terminal's scrollback); else the first line
/// of stdin (a script's pipe).
fn read_new_password(name: &str) -> Result<String, String> {
    use std::io::IsTerminal as _;
    let failed = |e: std::io::Error| format!("cannot read the password: {e}");
    if std::io::stdin().is_terminal() {
        let password =
            rpassword::prompt_password(format!("Password for {name}: ")).map_err(failed)?;
        let again = rpassword::prompt_password("The same again: ").map_err(failed)?;
        return match password == again {
            true => Ok(password),
            false => Err("the two passwords differ".into()),
        };
    }
    let mut password = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut password)
        .map_err(failed)?;
    Ok(password.trim_end_matches(['\r', '\n']).to_owned())
}

pub(crate) fn purge(url: &str, lockout_secs: u64) -> Result<(), String> {
    let (store, users) = open(url, 1)?;
    // Never a counter that may still throttle (a lockout longer than a
    // day keeps its counters as long); audit events stay.
    let purged = rememberme::Stores::new(store, users)
        .purge(now(), std::time::Duration::from_secs(lockout_secs), None)
        .map_err(|e| e.to_string())?;
    eprintln!("{} expired token(s) deleted", purged.tokens);
    eprintln!(
        "{} stale failure counter(s) deleted",
        purged.failure_counters
    );
    Ok(())
}

pub(crate) fn list_tokens(url: &str, user: Option<&str>) -> Result<(), String> {
    use rememberme::store::{TokenStore as _, UserDirectory as _};
    let (store, users) = open(url, 1)?;
    let user = match user {
        Some(name) => Some(
            users
                .find_by_name(name)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no user {name}"))?
                .id,
        ),
        None => None,
    };
    let rows = store
        .list(user.as_ref(), None, i64::MAX)
        .map_err(|e| e.to_string())?;
    let mut names = std::collections::HashMap::new();
    println!(
        "{:>6}  {:<20} {:<20} {:<16} {:<16} user agent",
        "id", "user", "expires (unix)", "last used", "ip"
    );
    for t in &rows {
        if !names.contains_key(&t.user_id) {
            let name = users.find_by_id(&t.user_id).map_err(|e| e.to_string())?;
            let name = name.map_or_else(|| format!("#{}", t.user_id), |u| u.username);
            names.insert(t.user_id.clone(), name);
        }
        println!(
            "{:>6}  {:<20} {:<20} {:<16} {:<16} {}",
            t.id,
            names[&t.user_id],
            t.expires_at,
            t.last_used_at,
            t.ip.as_deref().unwrap_or("-"),
            t.user_agent
                .as_deref()
                .unwrap_or("-")
                .chars()
                .take(60)
                .collect::<String>(),
        );
    }
    eprintln!("{} token(s)", rows.len());
    Ok(())
}

pub(crate) fn revoke_tokens(url: &str, name: &str) -> Result<(), String> {
    use rememberme::store::{AuditKind, NewAuditEvent};
    let (store, users) = open(url, 1)?;
    let user = users
        .find_by_name(name)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no user {name}"))?;
    // Tokens, epoch and audit row in one transaction.
    let n = Stores::new(store, users)
        .revoke_everything(
            &user.id,
            NewAuditEvent {
                at: now(),
                kind: AuditKind::SignOutEverywhere,
                user_id: Some(&user.id),
                ip: None,
                user_agent: None,
                detail: "every token revoked from the command line",
            },
        )
        .map_err(|e| e.to_string())?;
    eprintln!("{name}: {n} token(s) revoked; open sessions end at their next check");
    Ok(())
}
