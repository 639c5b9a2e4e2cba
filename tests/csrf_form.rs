//! `CsrfForm`: a handler that takes its form through it cannot forget the
//! CSRF check (issue 15). Refused before parsing: a missing or wrong token
//! (403); refused as bad input: not a form (415), too large (413, by its
//! declared length or, with none declared, while it is read), fields of the
//! wrong type (400).

use actix_web::{App, HttpResponse, test, web};
use rememberme::{Auth, CsrfForm, Database, DieselStore, RememberMe, RememberMeConfig, Stores};

#[derive(serde::Deserialize)]
struct Transfer {
    amount: u32,
    to: String,
}

#[actix_web::test]
async fn a_form_reaches_its_handler_only_with_the_sessions_csrf_token() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let database = Database::connect(&url, 2).unwrap();
    let users = rememberme::store::UsersTable::open(database.clone()).unwrap();
    let stores = Stores::new(DieselStore::new(database.clone()), users);
    let config = RememberMeConfig::default();
    let layer = RememberMe::new(stores.clone(), config.clone());
    let app = test::init_service(
        App::new()
            .route(
                "/form",
                web::get().to(|auth: Auth| async move { auth.csrf_token() }),
            )
            .route(
                "/transfer",
                web::post().to(|CsrfForm(form): CsrfForm<Transfer>| async move {
                    HttpResponse::Ok().body(format!("{} to {}", form.amount, form.to))
                }),
            )
            .wrap(layer.clone())
            .wrap(rememberme::session_middleware(
                actix_web::cookie::Key::generate(),
                &config,
            )),
    )
    .await;
    let res = test::call_service(&app, test::TestRequest::get().uri("/form").to_request()).await;
    let session = res
        .response()
        .cookies()
        .find(|c| c.name() == "__Host-session")
        .expect("a session")
        .into_owned();
    let token = String::from_utf8(test::read_body(res).await.to_vec()).unwrap();

    let post = |body: String, content_type: &'static str| {
        test::TestRequest::post()
            .uri("/transfer")
            .cookie(session.clone())
            .insert_header(("content-type", content_type))
            .set_payload(body)
            .to_request()
    };
    const FORM: &str = "application/x-www-form-urlencoded";
    for (body, content_type, status) in [
        (format!("csrf_token={token}&amount=5&to=bob"), FORM, 200),
        ("amount=5&to=bob".to_owned(), FORM, 403),
        (format!("csrf_token={token}x&amount=5&to=bob"), FORM, 403),
        ("csrf_token=&amount=5&to=bob".to_owned(), FORM, 403),
        (format!("csrf_token={token}&amount=lots&to=bob"), FORM, 400),
        (
            format!(r#"{{"csrf_token":"{token}","amount":5,"to":"bob"}}"#),
            "application/json",
            415,
        ),
        (
            format!("csrf_token={token}&amount=5&to={}", "b".repeat(20_000)),
            FORM,
            413,
        ),
        (
            format!("csrf_token={token}&amount=5&to=bob"),
            "Application/X-WWW-Form-Urlencoded; charset=UTF-8",
            200,
        ),
        (
            format!("csrf_token={token}&amount=5&to=bob"),
            "application/x-www-form-urlencoded; charset=iso-8859-1",
            415,
        ),
    ] {
        let res = test::call_service(&app, post(body.clone(), content_type)).await;
        assert_eq!(
            res.status().as_u16(),
            status,
            "{}",
            &body[..body.len().min(60)]
        );
        if status == 200 {
            assert_eq!(test::read_body(res).await, "5 to bob");
        }
    }
    // A body declared larger than the limit is refused before it is read.
    let res = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/transfer")
            .cookie(session.clone())
            .insert_header(("content-type", FORM))
            .set_payload(format!("csrf_token={token}&amount=5&to=bob"))
            .insert_header(("content-length", "100000"))
            .to_request(),
    )
    .await;
    assert_eq!(res.status().as_u16(), 413);
    drop(res);
    // A body that declares no length (chunked) is read only up to the
    // limit: a valid form, over the limit, is refused, not parsed.
    let mut chunked = post(
        format!("csrf_token={token}&amount=5&to={}", "b".repeat(20_000)),
        FORM,
    );
    chunked.headers_mut().remove("content-length");
    chunked.headers_mut().insert(
        actix_web::http::header::TRANSFER_ENCODING,
        actix_web::http::header::HeaderValue::from_static("chunked"),
    );
    let res = test::call_service(&app, chunked).await;
    assert_eq!(res.status().as_u16(), 413);
    drop(res);
    // The same in many small chunks, none over the limit on its own.
    let mut chunked = post(String::new(), FORM);
    chunked.headers_mut().remove("content-length");
    let start = format!("csrf_token={token}&amount=5&to=");
    let chunks = std::iter::once(start.into_bytes())
        .chain(std::iter::repeat_n(vec![b'b'; 1024], 20))
        .map(|chunk| Ok(web::Bytes::from(chunk)));
    let stream: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<web::Bytes, actix_web::error::PayloadError>>>,
    > = Box::pin(futures_util::stream::iter(chunks));
    let (chunked, _) = chunked.replace_payload(actix_web::dev::Payload::Stream { payload: stream });
    let res = test::call_service(&app, chunked).await;
    assert_eq!(res.status().as_u16(), 413);
    drop(res);
    // Without the session, the token is worth nothing.
    let res = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/transfer")
            .insert_header(("content-type", FORM))
            .set_payload(format!("csrf_token={token}&amount=5&to=bob"))
            .to_request(),
    )
    .await;
    assert_eq!(res.status().as_u16(), 403);
    drop((res, app));
    assert!(layer.close(std::time::Duration::from_secs(5)));
    drop(stores);
    assert!(database.close(std::time::Duration::from_secs(5)));
}
