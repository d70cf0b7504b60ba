//! The fleet dashboard: one HTML page, a script and a style sheet, embedded in the binary
//! and served at `/` and `/nodes/{node}` (the same page; the script draws the fleet or the
//! node from the path).
//!
//! The page and its assets hold no data, so they are served without credentials; the
//! script reads the admin key from the URL fragment (`/#key=...`, which browsers never send
//! to a server) or asks for it, keeps it in `sessionStorage`, and calls the fleet JSON API
//! with it. A strict Content-Security-Policy allows nothing but this origin: no inline
//! script, no CDN, no external font, so the page works on an air-gapped network.

use std::sync::LazyLock;

use axum::{
    Router,
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use sha2::{Digest, Sha256};

use crate::serve::Center;

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Path it is served at.
    pub path: &'static str,
    /// Media type.
    pub content_type: &'static str,
    /// The bytes.
    pub body: &'static [u8],
}

/// Every embedded asset. The page is served at several paths; it is listed once, at `/`.
pub const ASSETS: [Asset; 4] = [
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("assets/index.html"),
    },
    Asset {
        path: "/assets/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/app.js"),
    },
    Asset {
        path: "/assets/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("assets/style.css"),
    },
    Asset {
        path: "/assets/favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("assets/favicon.svg"),
    },
];

/// What the page may load and run: this origin only. `connect-src 'self'` keeps the
/// script from sending the admin key anywhere else; `frame-ancestors 'none'` keeps the
/// page out of other sites' frames.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Strong validators of the assets, computed once: a browser revalidates each with
/// `If-None-Match` and gets a bodiless 304 until the binary changes.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let digest = Sha256::digest(a.body);
            format!("\"{}\"", hex::encode(&digest[..12]))
        })
        .collect()
});

/// Routes of the dashboard (no credentials: the page holds no data).
pub fn router() -> Router<Center> {
    let page = || get(|headers: HeaderMap| async move { serve(0, &headers) });
    let mut router = Router::new()
        .route("/", page())
        .route("/nodes/{node}", page());
    for (i, asset) in ASSETS.iter().enumerate().skip(1) {
        router = router.route(
            asset.path,
            get(move |headers: HeaderMap| async move { serve(i, &headers) }),
        );
    }
    router
}

fn serve(index: usize, request: &HeaderMap) -> Response {
    let (Some(asset), Some(etag)) = (ASSETS.get(index), ETAGS.get(index)) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        asset.body.into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    // Revalidate every time: the names are fixed, so a long max-age would keep an old
    // script after an upgrade; the ETag makes revalidation a 304.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        HeaderName::from_static("x-frame-options"),
        HeaderValue::from_static("DENY"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_load_nothing_from_elsewhere() {
        for asset in &ASSETS {
            let text = std::str::from_utf8(asset.body).unwrap();
            for needle in ["http://", "https://", "//cdn", "@import", "<script>"] {
                // The SVG namespace is an identifier, never fetched.
                let text = text.replace("http://www.w3.org/2000/svg", "");
                assert!(
                    !text.contains(needle),
                    "{} contains {needle:?}: assets must be self-contained",
                    asset.path
                );
            }
        }
    }

    #[test]
    fn the_page_runs_no_inline_script_or_style() {
        let html = std::str::from_utf8(ASSETS[0].body).unwrap();
        assert!(html.contains(r#"<script src="/assets/app.js" defer></script>"#));
        assert!(!html.contains(" style="), "inline styles break the CSP");
        let inline_handler = html.split(" on").skip(1).any(|rest| {
            let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        });
        assert!(!inline_handler, "inline handlers break the CSP");
    }
}
