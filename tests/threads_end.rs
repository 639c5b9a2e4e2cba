//! `RememberMe::close` ends every thread the crate started (issue 15): the
//! store threads, the audit writer and the password (Argon2) threads. A
//! binary of its own, so no other test's threads are counted.

use std::time::Duration;

use rememberme::{Database, DieselStore, RememberMe, RememberMeConfig, Stores};

/// The names of this process's threads (Linux).
fn threads() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect()
}

fn of_the_crate(names: &[String]) -> Vec<String> {
    names
        .iter()
        .filter(|n| n.starts_with("argon2") || n.starts_with("rememberme"))
        .cloned()
        .collect()
}

#[test]
fn close_ends_every_thread_the_crate_started() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let database = Database::connect(&url, 2).unwrap();
    let users = rememberme::store::UsersTable::open(database.clone()).unwrap();
    // A password hash: the Argon2 threads start.
    users.create("alice", "alice-password", false).unwrap();
    let layer = RememberMe::new(
        Stores::new(DieselStore::new(database.clone()), users),
        RememberMeConfig::default(),
    );
    let running = of_the_crate(&threads());
    assert!(
        running.iter().any(|n| n.starts_with("argon2")),
        "{running:?}"
    );
    assert!(
        running.iter().any(|n| n.starts_with("rememberme")),
        "{running:?}"
    );

    assert!(layer.close(Duration::from_secs(10)));
    assert!(database.close(Duration::from_secs(10)));
    assert_eq!(
        of_the_crate(&threads()),
        Vec::<String>::new(),
        "every thread ended"
    );
}
