//! The demo site: the crate wired into an actix-web app, with the crate's
//! pages mounted
//! ([`crate::pages::configure`]). The binary serves it; the tests drive it.
//! Library users turn it off with `default-features = false`.

use actix_web::body::MessageBody;
use actix_web::cookie::Key;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::DefaultHeaders;
use actix_web::{App, Error, web};

use crate::{RememberMe, RememberMeConfig, Stores, session_middleware};

/// Everything the demo site needs. Build it once (outside
/// `HttpServer::new`'s closure) and clone it into each worker.
#[derive(Clone)]
pub struct Site {
    stores: Stores,
    config: RememberMeConfig,
    session_key: Key,
    layer: RememberMe,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

impl Site {
    /// The site over these stores, settings and session key.
    pub fn new(stores: Stores, mut config: RememberMeConfig, session_key: Key) -> Self {
        if config.access_tokens.is_none() {
            // Instances sharing the session key accept each other's API tokens.
            config.access_tokens = Some(crate::access::AccessTokens::from_secret(
                session_key.master(),
            ));
        }
        // Instances sharing the session key accept each other's device
        // cookies and open each other's grace seals.
        config.set_server_secret(session_key.master());
        let layer = RememberMe::new(stores.clone(), config.clone());
        Self {
            stores,
            config,
            session_key,
            layer,
            metrics: None,
        }
    }

    /// Serves the metrics of the recorder behind `handle` at `GET /metrics`
    /// (Prometheus text). Install the recorder before [`Site::new`], so the
    /// layer describes its metrics to it. Anyone who reaches the site can
    /// read them: sign-in counts, not secrets.
    #[must_use]
    pub fn with_metrics(mut self, handle: metrics_exporter_prometheus::PrometheusHandle) -> Self {
        self.metrics = Some(handle);
        self
    }

    /// The remember-me layer's purge task (see
    /// [`RememberMe::purge_every`]).
    pub fn purge_every(
        &self,
        every: std::time::Duration,
        audit_retention: std::time::Duration,
    ) -> impl std::future::Future<Output = ()> + 'static {
        self.layer.purge_every(every, audit_retention)
    }

    /// Ends the site's remember-me layer once the server has stopped (see
    /// [`RememberMe::close`]); `false` if the workers still held it after
    /// `timeout`.
    pub fn close(self, timeout: std::time::Duration) -> bool {
        self.layer.close(timeout)
    }
}

impl std::fmt::Debug for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Site")
            .field("config", &self.config)
            .field("session_key", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// Content-Security-Policy of every page: no script at all, styles from this
/// site only, no framing (clickjacking), forms post only here.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The demo site as an actix `App`, with the session and remember-me layers.
pub fn app(
    site: Site,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = Error,
        InitError = (),
    >,
> {
    let metrics = site.metrics.clone();
    App::new()
        .configure(move |cfg| {
            if let Some(handle) = metrics {
                cfg.app_data(web::Data::new(handle))
                    .route("/metrics", web::get().to(render_metrics));
            }
        })
        .app_data(web::Data::new(site.stores.clone()))
        .app_data(web::FormConfig::default().limit(16 * 1024))
        .service(crate::api::scope())
        .configure(crate::pages::demo_routes)
        .configure(crate::pages::configure)
        .wrap(site.layer)
        .wrap(session_middleware(site.session_key, &site.config))
        .wrap(
            DefaultHeaders::new()
                .add((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
                .add((header::REFERRER_POLICY, "same-origin"))
                .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                .add((header::X_FRAME_OPTIONS, "DENY")),
        )
        .wrap(actix_web::middleware::Logger::new("%r %s %Dms").log_target("rememberme::http"))
}

/// `GET /metrics`: the recorder's metrics in Prometheus text.
async fn render_metrics(
    handle: web::Data<metrics_exporter_prometheus::PrometheusHandle>,
) -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(handle.render())
}
