//! [`Layer`]: the remember-me layer and the session middleware it needs,
//! as one `wrap`, in the one order that works.

use std::rc::Rc;

use actix_session::SessionMiddleware;
use actix_session::storage::CookieSessionStore;
use actix_web::body::MessageBody;
use actix_web::cookie::Key;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};

use crate::middleware::{RememberMe, RememberMeMiddleware};

/// [`RememberMe`] inside the session middleware it needs
/// ([`session_middleware`](crate::session_middleware)): wrap the app with
/// this once, and the two cannot be put in the wrong order.
///
/// ```no_run
/// # use actix_web::{App, cookie::Key};
/// # fn demo(remember: rememberme::RememberMe, key: Key) {
/// let layer = remember.with_session(key);
/// let app = App::new().wrap(layer.clone());
/// # }
/// ```
#[derive(Clone)]
pub struct Layer {
    remember: RememberMe,
    key: Key,
}

impl std::fmt::Debug for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layer")
            .field("remember", &self.remember)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl RememberMe {
    /// This layer inside the session middleware, with the session cookie
    /// encrypted under `key` (64 bytes; load a persistent one in
    /// production, or every restart signs everyone out of their sessions).
    pub fn with_session(self, key: Key) -> Layer {
        Layer {
            remember: self,
            key,
        }
    }
}

impl Layer {
    /// Ends the remember-me layer at shutdown (see [`RememberMe::close`]).
    pub fn close(self, timeout: std::time::Duration) -> bool {
        self.remember.close(timeout)
    }

    /// Purges expired tokens and old rows now (see [`RememberMe::purge`]).
    pub async fn purge(
        &self,
        audit_retention: std::time::Duration,
    ) -> Result<crate::store::Purged, crate::store::StoreError> {
        self.remember.purge(audit_retention).await
    }

    /// A task that purges now and then (see [`RememberMe::purge_every`]).
    pub fn purge_every(
        &self,
        every: std::time::Duration,
        audit_retention: std::time::Duration,
    ) -> impl std::future::Future<Output = ()> + 'static {
        self.remember.purge_every(every, audit_retention)
    }
}

impl<S, B> Transform<S, ServiceRequest> for Layer
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = <SessionMiddleware<CookieSessionStore> as Transform<
        RememberMeMiddleware<S>,
        ServiceRequest,
    >>::Transform;
    type InitError = ();
    type Future = <SessionMiddleware<CookieSessionStore> as Transform<
        RememberMeMiddleware<S>,
        ServiceRequest,
    >>::Future;

    fn new_transform(&self, service: S) -> Self::Future {
        let inner = self.remember.middleware(Rc::new(service));
        crate::session_middleware(self.key.clone(), self.remember.config()).new_transform(inner)
    }
}
