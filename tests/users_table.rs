//! `UsersTable`, the ready users table (feature `users-table`), on both
//! backends: it hashes with Argon2id, takes a ready hash, refuses a name
//! twice, and answers as a `UserDirectory` (many ids at once;
//! passwords stored only for users it holds).

mod common;

use common::TestDb;
use rememberme::store::{StoreError, UsersTable};
use rememberme::{Database, UserDirectory as _, UserId};

async fn the_users_table_creates_finds_and_verifies(db: TestDb) {
    let database = Database::connect(&db.url, 2).unwrap();
    let users = UsersTable::open(database.clone()).unwrap();
    let alice = users.create("alice", "alice-password", false).unwrap();
    let found = users.find_by_username("alice").unwrap().expect("alice");
    assert_eq!(found.id, alice);
    let hash = found.password_hash.expect("a hash");
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(users.verify_password(&hash, "alice-password"));
    assert!(!users.verify_password(&hash, "alice-passwore"));

    // A ready hash is stored as given.
    let ready = rememberme::password::hash_password("bob-password");
    let bob = users.create_with_hash("bob", &ready, true).unwrap();
    let found = users.find_by_id(&bob).unwrap().expect("bob");
    assert_eq!(found.password_hash.as_deref(), Some(ready.as_str()));
    assert!(found.is_admin);

    assert!(matches!(
        users.create("alice", "another", false),
        Err(StoreError::AlreadyExists)
    ));
    assert!(users.set_admin(&alice, true).unwrap());
    assert!(users.find_by_id(&alice).unwrap().unwrap().is_admin);
    // Ids of this table are integers: any other id names nobody.
    assert_eq!(
        users.find_by_id(&UserId::from("not-a-number")).unwrap(),
        None
    );
    assert!(!users.set_admin(&UserId::from(999_999), true).unwrap());

    // Many ids at once (one query on PostgreSQL), answered in the order asked, as `find_by_id`
    // answers each.
    let asked = [
        bob.clone(),
        UserId::from("not-a-number"),
        alice.clone(),
        UserId::from(999_999),
        bob.clone(),
    ];
    let found = users.find_by_ids(&asked).unwrap();
    assert_eq!(found.len(), asked.len());
    for (id, user) in asked.iter().zip(&found) {
        let one = users.find_by_id(id).unwrap();
        assert_eq!(user.as_ref().map(|u| &u.id), one.as_ref().map(|u| &u.id));
        assert_eq!(
            user.as_ref().map(|u| &u.username),
            one.as_ref().map(|u| &u.username)
        );
    }
    assert_eq!(found[0].as_ref().map(|u| u.username.as_str()), Some("bob"));
    assert!(users.find_by_ids(&[]).unwrap().is_empty());

    // It stores passwords, and says so only for a user it holds.
    assert!(users.sets_passwords());
    users.set_password(&alice, "alice-new-password").unwrap();
    let hash = users.find_by_id(&alice).unwrap().unwrap().password_hash;
    assert!(users.verify_password(&hash.unwrap(), "alice-new-password"));
    for nobody in [UserId::from("not-a-number"), UserId::from(999_999)] {
        assert!(
            users.set_password(&nobody, "whatever-password").is_err(),
            "{nobody}: nothing stored"
        );
    }
    drop(users);
    assert!(database.close(std::time::Duration::from_secs(5)));
}

on_both_backends!(the_users_table_creates_finds_and_verifies);
