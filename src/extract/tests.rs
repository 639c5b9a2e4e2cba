use super::safe_redirect_path;

#[test]
fn only_paths_on_this_site_are_redirect_targets() {
    for ok in ["/", "/account/devices", "/admin/tokens?user=a%20b"] {
        assert_eq!(safe_redirect_path(Some(ok)), ok);
    }
    for bad in [
        "https://evil.example/",
        "//evil.example",
        "/\\evil.example",
        // Browsers drop tabs and newlines in URLs, so these become
        // "//evil.example", and a backslash may count as a slash.
        "/\t/evil.example",
        "/\n/evil.example",
        "/a\\b",
        "evil",
        "",
    ] {
        assert_eq!(safe_redirect_path(Some(bad)), "/", "{bad:?}");
    }
    assert_eq!(safe_redirect_path(None), "/");
}

#[test]
fn an_htmx_requests_page_is_its_path_on_this_site() {
    use super::guards::page_path;
    let cases = [
        (
            "https://example.com/account/devices",
            Some("/account/devices"),
        ),
        ("http://127.0.0.1:8080/a/b?tab=2#top", Some("/a/b?tab=2")),
        ("https://example.com", Some("/")),
        ("https://example.com?x=/y", Some("/?x=/y")),
        ("https://example.com#/y", Some("/")),
        ("HTTPS://example.com/a", Some("/a")),
        ("https://user@[::1]:8080/a?b", Some("/a?b")),
        // The host is dropped, whichever it is.
        ("https://evil.example/account", Some("/account")),
        // Refused: scheme-relative after the host, backslashes, other
        // schemes, relative values, control characters.
        ("https://example.com//evil.example/x", None),
        ("https://example.com/\\evil.example", None),
        ("javascript:alert(1)", None),
        ("javascript://example.com/%0aalert(1)", None),
        ("ftp://example.com/a", None),
        ("/account", None),
        ("//evil.example/", None),
        ("https://example.com/a\tb", None),
    ];
    for (url, page) in cases {
        assert_eq!(page_path(url).as_deref(), page, "{url}");
    }
}
