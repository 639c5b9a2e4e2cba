//! The suite's check of a batch of rotations.

use super::*;

/// [`TokenStore::find_and_rotate_all`] answers each attempt, in order, as
/// it would be answered alone: the current token rotates, a wrong token
/// and an unknown series do not, and the same series twice (one cookie on
/// parallel requests) rotates once.
pub(super) fn a_batch_answers_each_attempt_as_alone<S: TokenStore + ?Sized>(store: &S) {
    let erin = user(9, "erin");
    let (a, a_token) = (hash(9, 1), hash(9, 2));
    let (b, b_token) = (hash(9, 3), hash(9, 4));
    insert(store, &erin, (&a, &a_token), NOW, None, 10);
    insert(store, &erin, (&b, &b_token), NOW, Some("phone"), 10);
    let (a_next, a_again, b_next, wrong, unknown) =
        (hash(9, 5), hash(9, 6), hash(9, 7), hash(9, 8), hash(9, 9));
    let attempts = [
        attempt(&b, &wrong, &b_next, NOW),
        attempt(&a, &a_token, &a_next, NOW),
        attempt(&unknown, &wrong, &b_next, NOW),
        attempt(&a, &a_token, &a_again, NOW),
    ];
    let outcomes: Vec<_> = store
        .find_and_rotate_all(&attempts)
        .into_iter()
        .map(|outcome| outcome.expect("no error"))
        .collect();
    assert_eq!(outcomes.len(), attempts.len(), "one outcome per attempt");
    let seen: Vec<_> = outcomes
        .iter()
        .map(|found| {
            found
                .as_ref()
                .map(|f| (f.record.series_hash.clone(), f.rotated))
        })
        .collect();
    assert_eq!(
        seen[0],
        Some((b.clone(), false)),
        "a wrong token does not rotate"
    );
    assert_eq!(seen[2], None, "an unknown series");
    let a_rotated = [&seen[1], &seen[3]]
        .iter()
        .filter(|s| ***s == Some((a.clone(), true)))
        .count();
    assert_eq!(
        a_rotated, 1,
        "one cookie twice in a batch rotates once: {seen:?}"
    );
    assert!(
        [&seen[1], &seen[3]]
            .iter()
            .all(|s| s.as_ref().is_some_and(|(series, _)| *series == a)),
        "each attempt gets its own series' row, in order"
    );
    // The token stored is the one of the attempt told it rotated: the
    // other's cookie would read as theft on its next visit.
    let stored = if seen[1] == Some((a.clone(), true)) {
        a_next
    } else {
        a_again
    };
    assert_eq!(
        row(store, &a).token_hash,
        stored,
        "the rotating attempt's token"
    );
    assert_eq!(row(store, &b).token_hash, b_token, "b untouched");
}
