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
