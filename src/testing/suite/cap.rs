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
/// `retire_replaced` then keeps its own token, however old its use.
pub(super) fn a_new_token_replaces_others_only_once_retired<S: TokenStore + ?Sized>(store: &S) {
    let dora = user(4, "dora");
    let ids: Vec<i64> = (0..3)
        .map(|i| {
            let device = (i == 0).then_some("tablet");
            let pair = (&hash(4, 20 + i), &hash(4, 120 + i));
            insert(store, &dora, pair, NOW + i64::from(i), device, 10)
        })
        .collect();
    let pending = store
        .insert(NewToken {
            user_id: &dora,
            series_hash: &hash(4, 30),
            token_hash: &hash(4, 130),
            now: NOW - 100,
            expires_at: NOW + DAY,
            user_agent: None,
            ip: None,
            device_key: Some("tablet"),
        })
        .expect("insert");
    let all = |store: &S| -> Vec<i64> {
        let tokens = store.list_for_user(&dora).unwrap();
        tokens.iter().map(|t| t.id).collect()
    };
    assert_eq!(
        all(store),
        [ids[2], ids[1], ids[0], pending],
        "an insert deletes nothing: not the device's token, not beyond the cap"
    );
    let gone = store
        .retire_replaced(&dora, pending, Some("tablet"), 2)
        .expect("retire_replaced");
    assert_eq!(
        (gone, all(store)),
        (2, vec![ids[2], pending]),
        "the device's other token and the least recently used beyond the cap go, never the new one"
    );
}
