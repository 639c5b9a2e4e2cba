//! Helpers for a site's own tests: sign a user in without the form, keep
//! the crate's tables in memory ([`MemoryStore`]), and prove a store of
//! your own ([`store_acceptance_suite`]).
//!
//! Enabled by the `testing` feature; add it to your dev-dependencies only:
//!
//! ```toml
//! [dev-dependencies]
//! rememberme = { version = "0.2", features = ["testing"] }
//! ```
//!
//! [`remember_me_cookie`] issues a real token through the same step the
//! login flow uses (hashes stored, limits applied, audit written), so a test
//! that sets the cookie in a browser or HTTP client exercises the real
//! remember-me sign-in path.
//!
//! ```no_run
//! # fn demo(stores: rememberme::Stores) {
//! let config = rememberme::RememberMeConfig::default();
//! let user_id = rememberme::UserId::from(42); // your id of the user
//! let cookie = rememberme::testing::remember_me_cookie(&stores, &config, &user_id)
//!     .expect("token issued");
//! // Send it as `Cookie: remember_me=<value>` or add it to a WebDriver session.
//! println!("{}={}", cookie.name(), cookie.value());
//! # }
//! ```

mod memory;
mod suite;

pub use memory::MemoryStore;
pub use suite::store_acceptance_suite;

use actix_web::cookie::Cookie;

use crate::RememberMeConfig;
use crate::flow::ClientInfo;
use crate::kernel::{Visit, issue_token};
use crate::middleware::remember_cookie;
use crate::store::{StoreError, Stores, UserId};

/// Issues a remember-me token for `user` and returns the cookie a browser
/// would have received after ticking "Keep me logged in". Blocking.
pub fn remember_me_cookie(
    stores: &Stores,
    config: &RememberMeConfig,
    user: &UserId,
) -> Result<Cookie<'static>, StoreError> {
    let visit = Visit {
        now: config.now(),
        client: ClientInfo {
            user_agent: Some("rememberme::testing".to_owned()),
            ip: None,
        },
        cookie: None,
        device: None,
    };
    // This helper stands for a sign-in with the password and the box ticked.
    let change = issue_token(stores, config, &visit, user)?;
    Ok(remember_cookie(config, &change))
}
