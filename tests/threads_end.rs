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
    // A new thread names itself once it runs: wait for the names.
    let running = eventually(|names| {
        names.iter().any(|n| n.starts_with("argon2"))
            && names.iter().any(|n| n.starts_with("rememberme"))
    });
    assert!(running.is_ok(), "the crate's threads run: {running:?}");

    assert!(layer.close(Duration::from_secs(10)));
    assert!(database.close(Duration::from_secs(10)));
    // A thread that signalled its end leaves the process a moment later.
    let ended = eventually(|names| names.is_empty());
    assert!(ended.is_ok(), "every thread ended: {ended:?}");
}

/// The crate's threads once `done` holds of them (within 5 s), or what
/// they were when the wait ran out.
fn eventually(done: impl Fn(&[String]) -> bool) -> Result<Vec<String>, Vec<String>> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let names = of_the_crate(&threads());
        if done(&names) {
            return Ok(names);
        }
        if std::time::Instant::now() > deadline {
            return Err(names);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
