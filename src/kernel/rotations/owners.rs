//! The owners of the tokens a batch rotated, read from the app's
//! directory in one call.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;

use super::Outcome;
use crate::store::{User, UserDirectory, UserId};

/// The owner of a token its batch rotated, as the app's directory had it
/// after the batch; `None` where the batch has no user to give (no
/// rotation, no directory, a failed read, or a user the directory does
/// not know): the sign-in then reads it itself, and a user found by
/// nobody is confirmed gone before the series ends.
pub(crate) type Owner = Option<User>;

/// The owners of the tokens a batch rotated, one read of the app's
/// directory for the lot (one round trip, where a read one by one
/// after the batch cost one each), in the order of `outcomes`. Should
/// the read fail (or with no directory), each sign-in reads its owner
/// itself.
pub(super) fn read(users: Option<&dyn UserDirectory>, outcomes: &[Outcome]) -> Vec<Owner> {
    let Some(users) = users else {
        return Vec::new();
    };
    let rotated_owner = |outcome: &Outcome| match outcome {
        Ok(Some(found)) if found.rotated => Some(found.record.user_id.clone()),
        _ => None,
    };
    let mut ids: Vec<UserId> = outcomes.iter().filter_map(rotated_owner).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Vec::new();
    }
    let read = std::panic::catch_unwind(AssertUnwindSafe(|| users.find_by_ids(&ids)));
    let found = match read {
        Ok(Ok(found)) if found.len() == ids.len() => found,
        Ok(Ok(found)) => {
            tracing::error!(
                asked = ids.len(),
                answered = found.len(),
                "the directory's find_by_ids did not answer every id"
            );
            return Vec::new();
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "the owners of a rotation batch could not be read together");
            return Vec::new();
        }
        Err(_) => {
            tracing::error!("the directory's find_by_ids panicked");
            return Vec::new();
        }
    };
    let by_id: HashMap<UserId, Option<User>> = ids.into_iter().zip(found).collect();
    outcomes
        .iter()
        .map(|outcome| rotated_owner(outcome).and_then(|id| by_id.get(&id).cloned().flatten()))
        .collect()
}
