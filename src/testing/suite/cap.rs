//! The suite's check of the bounds on a user's tokens: the cap, one token
//! per app device, and only once a sign-in completes.

use super::*;

pub(super) fn the_cap_and_the_device_key_bound_a_users_tokens<S: TokenStore + ?Sized>(store: &S) {
    let dave = user(4, "dave");
    let ids: Vec<i64> = (0..4)
        .map(|i| {
            insert(
                store,
                &dave,
                (&hash(4, i), &hash(4, 100 + i)),
                NOW + i64::from(i),
                None,
                3,
            )
        })
        .collect();
    let left: Vec<i64> = store
        .list_for_user(&dave)
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(
        left,
        [ids[3], ids[2], ids[1]],
        "beyond the cap the least recently used go"
    );
    let tablet = insert(
        store,
        &dave,
        (&hash(4, 10), &hash(4, 110)),
        NOW + 10,
        Some("tablet"),
        10,
    );
    let again = insert(
        store,
        &dave,
        (&hash(4, 11), &hash(4, 111)),
        NOW + 11,
        Some("tablet"),
        10,
    );
    let devices: Vec<i64> = store
        .list_for_user(&dave)
        .unwrap()
        .iter()
        .filter(|t| t.device_key.as_deref() == Some("tablet"))
        .map(|t| t.id)
        .collect();
    assert_eq!(
        devices,
        [again],
        "a device holds one token: #{tablet} replaced"
    );
}

/// An insert alone deletes nothing (a sign-in that stops half-way must
/// leave the user's devices as they were); the completed sign-in's
/// `retire_replaced` then takes the browser's series, the device's other
/// token and the least recently used beyond the cap, and keeps its own
/// token, however old its use.
pub(super) fn a_new_token_replaces_others_only_once_retired<S: TokenStore + ?Sized>(store: &S) {
    let dora = user(4, "dora");
    let ids: Vec<i64> = (0..4)
        .map(|i| {
            let device = (i == 0).then_some("tablet");
            let pair = (&hash(4, 20 + i), &hash(4, 120 + i));
            insert(store, &dora, pair, NOW + i64::from(i), device, 10)
        })
        .collect();
    let pending = insert_only(
        store,
        &dora,
        (&hash(4, 30), &hash(4, 130)),
        NOW - 100,
        Some("tablet"),
    );
    let all = |store: &S| ids_of(store, &dora);
    assert_eq!(
        all(store),
        [ids[3], ids[2], ids[1], ids[0], pending],
        "an insert deletes nothing: not the device's token, not beyond the cap"
    );
    let gone = store
        .retire_replaced(Retire {
            user: &dora,
            kept: pending,
            browser_series: Some(&hash(4, 21)),
            device_key: Some("tablet"),
            max_per_user: 2,
        })
        .expect("retire_replaced");
    assert_eq!(
        (gone, all(store)),
        (3, vec![ids[3], pending]),
        "the browser's series, the device's other token and the least recently used \
         beyond the cap go, never the new one"
    );
}

/// Two sign-ins of one device, in parallel: each inserts, then each
/// retires. Neither deletes the other's token while it runs (a newer row
/// is a sign-in still running); the later's retire then takes the earlier
/// one. Some token of the device survives whatever the order.
pub(super) fn parallel_sign_ins_do_not_retire_each_others_tokens<S: TokenStore + ?Sized>(
    store: &S,
) {
    let dirk = user(4, "dirk");
    let first = insert_only(
        store,
        &dirk,
        (&hash(4, 40), &hash(4, 140)),
        NOW,
        Some("phone"),
    );
    let second = insert_only(
        store,
        &dirk,
        (&hash(4, 41), &hash(4, 141)),
        NOW,
        Some("phone"),
    );
    let retire = |kept| Retire {
        user: &dirk,
        kept,
        browser_series: None,
        device_key: Some("phone"),
        max_per_user: 1,
    };
    store
        .retire_replaced(retire(first))
        .expect("retire_replaced");
    assert_eq!(
        ids_of(store, &dirk),
        [second, first],
        "the first to retire leaves the newer token of a sign-in still running"
    );
    store
        .retire_replaced(retire(second))
        .expect("retire_replaced");
    assert_eq!(ids_of(store, &dirk), [second], "one token per device");
    // The other order: the later sign-in retires first.
    let third = insert_only(
        store,
        &dirk,
        (&hash(4, 42), &hash(4, 142)),
        NOW,
        Some("phone"),
    );
    let fourth = insert_only(
        store,
        &dirk,
        (&hash(4, 43), &hash(4, 143)),
        NOW,
        Some("phone"),
    );
    store
        .retire_replaced(retire(fourth))
        .expect("retire_replaced");
    store
        .retire_replaced(retire(third))
        .expect("retire_replaced");
    assert_eq!(ids_of(store, &dirk), [fourth], "the newer token stays");
}

/// An app's logout ([`TokenStore::delete_device`]) ends the device's
/// tokens, and only its user's.
pub(super) fn an_apps_logout_ends_its_devices_tokens_only<S: TokenStore + ?Sized>(store: &S) {
    let (gail, hank) = (user(7, "gail"), user(7, "hank"));
    let browser = insert(store, &gail, (&hash(7, 1), &hash(7, 2)), NOW, None, 10);
    for (item, who) in [(3, &gail), (5, &hank)] {
        let token = (&hash(7, item), &hash(7, item + 1));
        insert(store, who, token, NOW + 1, Some("tablet"), 10);
    }
    assert_eq!(store.delete_device(&gail, "tablet").unwrap(), 1);
    assert_eq!(ids_of(store, &gail), [browser], "her browser stays");
    assert_eq!(ids_of(store, &hank).len(), 1, "another user's device stays");
}

/// The ids of `owner`'s tokens, most recently used first.
fn ids_of<S: TokenStore + ?Sized>(store: &S, owner: &UserId) -> Vec<i64> {
    let tokens = store.list_for_user(owner).unwrap();
    tokens.iter().map(|t| t.id).collect()
}
