//! [`CsrfForm`]: a posted form that reaches its handler only with the
//! session's CSRF token.

use super::*;

/// A posted form (`application/x-www-form-urlencoded`, UTF-8) whose
/// `csrf_token` field matched the session's: a handler that takes its form
/// through this extractor cannot forget the CSRF check. The body is read
/// up to 16 KiB (a larger one is a 413: refused by its `Content-Length`
/// before it is read, or, with no length declared, as soon as what was
/// read passes the limit), then a missing or wrong token is a 403
/// ([`AuthError::Csrf`]) before the form is parsed; another content type
/// or charset is a 415, a form that does not parse a 400.
///
/// ```
/// # use rememberme::CsrfForm;
/// #[derive(serde::Deserialize)]
/// struct Rename {
///     name: String,
/// }
///
/// async fn rename(CsrfForm(form): CsrfForm<Rename>) -> String {
///     format!("renamed to {}", form.name)
/// }
/// ```
#[derive(Debug, Clone)]
pub struct CsrfForm<T>(pub T);

/// Largest form body [`CsrfForm`] reads.
const FORM_LIMIT: usize = 16 * 1024;

/// Why a request's body is no form [`CsrfForm`] reads, if it is not.
fn not_a_form(req: &HttpRequest) -> Option<actix_web::Error> {
    use actix_web::HttpMessage as _;
    let mime = match req.mime_type() {
        Ok(Some(mime)) => mime,
        _ => {
            return Some(actix_web::error::ErrorUnsupportedMediaType(
                "expected a form",
            ));
        }
    };
    let is_form = mime.type_() == mime::APPLICATION && mime.subtype() == mime::WWW_FORM_URLENCODED;
    let utf8 = mime
        .get_param(mime::CHARSET)
        .is_none_or(|charset| charset == mime::UTF_8);
    if !is_form || !utf8 {
        return Some(actix_web::error::ErrorUnsupportedMediaType(
            "expected a UTF-8 form",
        ));
    }
    if req.headers().contains_key(header::CONTENT_ENCODING) {
        return Some(actix_web::error::ErrorUnsupportedMediaType(
            "expected an uncompressed form",
        ));
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    declared
        .is_some_and(|n| n > FORM_LIMIT)
        .then(|| actix_web::error::ErrorPayloadTooLarge("form too large"))
}

impl<T: serde::de::DeserializeOwned + 'static> FromRequest for CsrfForm<T> {
    type Error = actix_web::Error;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        #[derive(serde::Deserialize)]
        struct Token {
            csrf_token: Option<String>,
        }
        let auth = Auth::from_request(req, payload).into_inner();
        let refused = not_a_form(req);
        // The raw stream, read up to the limit: actix's `Bytes` extractor
        // would buffer up to the app's PayloadConfig (256 KiB by default,
        // or whatever an upload route set) before any check here.
        let body = actix_web::web::Payload::from_request(req, payload).into_inner();
        Box::pin(async move {
            let auth = auth?;
            if let Some(refused) = refused {
                return Err(refused);
            }
            let body = body?
                .to_bytes_limited(FORM_LIMIT)
                .await
                .map_err(|_| actix_web::error::ErrorPayloadTooLarge("form too large"))??;
            let Token { csrf_token } =
                serde_urlencoded::from_bytes(&body).map_err(actix_web::error::ErrorBadRequest)?;
            auth.verify_csrf(csrf_token.as_deref())?;
            serde_urlencoded::from_bytes(&body)
                .map(CsrfForm)
                .map_err(actix_web::error::ErrorBadRequest)
        })
    }
}
