//! Realistic FastCGI PARAMS sets, modelled on what nginx sends.
//!
//! * `light` (25 params): nginx's stock `fastcgi.conf` (19 variables,
//!   SCRIPT_FILENAME included) plus the six request headers a browser
//!   always sends (Host, User-Agent, Accept, Accept-Language,
//!   Accept-Encoding, Connection) as `HTTP_*`.
//! * `heavy` (50 params): the same behind TLS and a proxy chain, with a
//!   real-world cookie jar, forwarded headers, client hints, a bearer token
//!   and tracing ids (about 3.5 KB of params).
//! * `none`: no params at all (only the protocol's framing).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamSet {
    None,
    Light,
    Heavy,
}

impl ParamSet {
    pub fn parse(s: &str) -> Result<ParamSet, String> {
        match s {
            "none" => Ok(ParamSet::None),
            "light" => Ok(ParamSet::Light),
            "heavy" => Ok(ParamSet::Heavy),
            _ => Err(format!("unknown params set {s:?} (none, light, heavy)")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ParamSet::None => "none",
            ParamSet::Light => "light",
            ParamSet::Heavy => "heavy",
        }
    }
}

const USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
const ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7";

const COOKIE: &str = "sessionid=9f2c4e7a1b3d5f6e8a0c2e4f6a8b0d2f; csrftoken=Xk3vQ9pL2mN8rT5wY7zA1bC4dE6fG0hJ; \
_ga=GA1.1.1234567890.1700000000; _ga_ABCDEF1234=GS1.1.1700000000.12.1.1700003600.0.0.0; \
_gid=GA1.2.987654321.1700000000; _fbp=fb.1.1700000000000.1234567890; \
cookie_consent=%7B%22necessary%22%3Atrue%2C%22analytics%22%3Atrue%2C%22marketing%22%3Afalse%7D; \
lang=en-US; theme=dark; tz=Europe%2FBerlin; recently_viewed=1042%2C2231%2C877%2C19%2C4410%2C3012; \
cart=eyJpdGVtcyI6W3siaWQiOjEwNDIsInF0eSI6MX0seyJpZCI6MjIzMSwicXR5IjoyfV0sInRvdGFsIjoxMTkuOTB9; \
ab_test=checkout_v2%3Db%3Bsearch_v5%3Da; _hjSessionUser_123456=eyJpZCI6ImE3YjljMGQxLWUyZjMtNGE1Yi05YzhkLTdlNmY1YTRiM2MyZCIsImNyZWF0ZWQiOjE3MDAwMDAwMDAwMDB9; \
_hjSession_123456=eyJpZCI6IjFhMmIzYzRkLTVlNmYtN2E4Yi05YzBkLTFlMmYzYTRiNWM2ZCIsImMiOjE3MDAwMDM2MDAwMDAsInMiOjB9; \
remember_token=1042%7C5d41402abc4b2a76b9719d911017c592a8f5b2e3c1d4e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3";

const BEARER: &str = "Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6IjIwMjQtMDUta2V5LTEifQ.\
eyJpc3MiOiJodHRwczovL2F1dGguZXhhbXBsZS5jb20vIiwic3ViIjoidXNlcnwxMDQyIiwiYXVkIjoiYXBpLmV4YW1wbGUuY29tIiwiaWF0IjoxNzAwMDAwMDAwLCJleHAiOjE3MDAwMDM2MDAsInNjb3BlIjoicmVhZDpvcmRlcnMgd3JpdGU6Y2FydCJ9.\
Qm9ndXNTaWduYXR1cmVGb3JCZW5jaG1hcmtpbmdPbmx5X1RoaXNJc05vdEFSZWFsVG9rZW5fMDEyMzQ1Njc4OQ";

/// The PARAMS of one request, in the order nginx sends them.
pub fn build(set: ParamSet, body_len: usize, uri: &str) -> Vec<(String, String)> {
    if set == ParamSet::None {
        return Vec::new();
    }
    let heavy = set == ParamSet::Heavy;
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let post = body_len > 0;
    let (scheme, port) = if heavy {
        ("https", "443")
    } else {
        ("http", "80")
    };
    let mut p: Vec<(&str, String)> = vec![
        // nginx fastcgi.conf, in its order.
        ("SCRIPT_FILENAME", format!("/var/www/html{path}")),
        ("QUERY_STRING", query.to_string()),
        ("REQUEST_METHOD", if post { "POST" } else { "GET" }.into()),
        (
            "CONTENT_TYPE",
            if post { "application/octet-stream" } else { "" }.into(),
        ),
        (
            "CONTENT_LENGTH",
            if post {
                body_len.to_string()
            } else {
                String::new()
            },
        ),
        ("SCRIPT_NAME", path.into()),
        ("REQUEST_URI", uri.into()),
        ("DOCUMENT_URI", path.into()),
        ("DOCUMENT_ROOT", "/var/www/html".into()),
        ("SERVER_PROTOCOL", "HTTP/1.1".into()),
        ("REQUEST_SCHEME", scheme.into()),
        ("GATEWAY_INTERFACE", "CGI/1.1".into()),
        ("SERVER_SOFTWARE", "nginx/1.22.1".into()),
        ("REMOTE_ADDR", "127.0.0.1".into()),
        ("REMOTE_PORT", "51234".into()),
        ("SERVER_ADDR", "127.0.0.1".into()),
        ("SERVER_PORT", port.into()),
        ("SERVER_NAME", "www.example.com".into()),
        ("REDIRECT_STATUS", "200".into()),
    ];
    if heavy {
        p.push(("HTTPS", "on".into()));
    }
    // Request headers, as nginx passes them (HTTP_*).
    p.extend([
        ("HTTP_HOST", "www.example.com".to_string()),
        ("HTTP_USER_AGENT", USER_AGENT.into()),
        ("HTTP_ACCEPT", ACCEPT.into()),
        ("HTTP_ACCEPT_LANGUAGE", "en-US,en;q=0.9,de;q=0.8".into()),
        ("HTTP_ACCEPT_ENCODING", "gzip, deflate, br, zstd".into()),
        ("HTTP_CONNECTION", "keep-alive".into()),
    ]);
    if heavy {
        p.extend([
            ("HTTP_COOKIE", COOKIE.to_string()),
            ("HTTP_AUTHORIZATION", BEARER.into()),
            (
                "HTTP_X_FORWARDED_FOR",
                "203.0.113.195, 198.51.100.17, 10.12.0.4".into(),
            ),
            ("HTTP_X_FORWARDED_PROTO", "https".into()),
            ("HTTP_X_FORWARDED_HOST", "www.example.com".into()),
            ("HTTP_X_FORWARDED_PORT", "443".into()),
            ("HTTP_X_REAL_IP", "203.0.113.195".into()),
            (
                "HTTP_FORWARDED",
                "for=203.0.113.195;proto=https;host=www.example.com, for=198.51.100.17".into(),
            ),
            ("HTTP_VIA", "1.1 cdn-edge-fra1 (squid/5.7), 1.1 lb-2".into()),
            (
                "HTTP_REFERER",
                "https://www.example.com/shop/category/shoes?sort=price&page=2".into(),
            ),
            ("HTTP_CACHE_CONTROL", "max-age=0".into()),
            ("HTTP_PRAGMA", "no-cache".into()),
            (
                "HTTP_SEC_CH_UA",
                "\"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\""
                    .into(),
            ),
            ("HTTP_SEC_CH_UA_MOBILE", "?0".into()),
            ("HTTP_SEC_CH_UA_PLATFORM", "\"Linux\"".into()),
            ("HTTP_SEC_FETCH_DEST", "document".into()),
            ("HTTP_SEC_FETCH_MODE", "navigate".into()),
            ("HTTP_SEC_FETCH_SITE", "same-origin".into()),
            ("HTTP_SEC_FETCH_USER", "?1".into()),
            ("HTTP_UPGRADE_INSECURE_REQUESTS", "1".into()),
            ("HTTP_DNT", "1".into()),
            (
                "HTTP_X_REQUEST_ID",
                "7f3c9a2e-4b1d-4e8f-9a6c-2d5e8f1a3b7c".into(),
            ),
            (
                "HTTP_TRACEPARENT",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            ),
            ("HTTP_IF_NONE_MATCH", "W/\"5e1f-17c9a3b2d40\"".into()),
        ]);
    }
    p.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(build(ParamSet::Light, 0, "/hello?x=1").len(), 25);
        assert_eq!(build(ParamSet::Heavy, 10, "/hello").len(), 50);
        assert!(build(ParamSet::None, 0, "/").is_empty());
    }
}
