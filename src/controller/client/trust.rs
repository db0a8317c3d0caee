//! What the client trusts, decided once before any traffic: the base URL (https, or
//! plain http only on loopback or when the operator allows it), the CA file, and the
//! node token (refused if others can read it; never shown by `Debug`).

use std::fmt;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ureq::http::Uri;
use ureq::tls::{Certificate, PemItem, RootCerts};

use super::ClientError;

/// The node token. Its `Debug` never shows it.
pub(super) struct Token(pub(super) String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Returns the base URL without its trailing `/`, whether it is https, and whether the
/// host is loopback. Refuses plain http off loopback unless `allow_insecure`.
pub(super) fn check_base_url(
    url: &str,
    allow_insecure: bool,
) -> Result<(String, bool, bool), ClientError> {
    let bad = |reason: &str| ClientError::BadUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let uri: Uri = url.trim().parse().map_err(|e| bad(&format!("{e}")))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        Some(other) => return Err(bad(&format!("scheme {other:?} is not http or https"))),
        None => return Err(bad("no scheme (expected https://…)")),
    };
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("no host"))?;
    if uri.query().is_some() {
        return Err(bad("a base URL takes no query"));
    }
    if let Some(auth) = uri.authority()
        && auth.as_str().contains('@')
    {
        return Err(bad(
            "credentials in the URL; the token file carries the credential",
        ));
    }
    let loopback = is_loopback(host);
    if !https && !loopback && !allow_insecure {
        return Err(ClientError::Insecure {
            url: url.to_string(),
        });
    }
    Ok((
        url.trim().trim_end_matches('/').to_string(),
        https,
        loopback,
    ))
}

/// 127.0.0.0/8, ::1 (and its IPv4-mapped form), or the name `localhost`. Other names are
/// not resolved: a name is not proof of loopback.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") || host.eq_ignore_ascii_case("localhost.") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

pub(super) fn read_token(path: &Path) -> Result<Token, ClientError> {
    let io_err = |source| ClientError::TokenFile {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io_err)?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(ClientError::TokenPermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(io_err)?;
    let token = text.trim();
    let bad = |problem| ClientError::BadToken {
        path: path.to_path_buf(),
        problem,
    };
    if token.is_empty() {
        return Err(bad("is empty"));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad(
            "holds more than one token or characters a token cannot have",
        ));
    }
    Ok(Token(token.to_string()))
}

pub(super) fn read_ca_file(path: &Path) -> Result<RootCerts, ClientError> {
    let bad = |reason: String| ClientError::CaFile {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut certs: Vec<Certificate<'static>> = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item.map_err(|e| bad(e.to_string()))? {
            PemItem::Certificate(c) => certs.push(c),
            _ => continue,
        }
    }
    if certs.is_empty() {
        return Err(bad("holds no PEM certificate".into()));
    }
    Ok(RootCerts::new_with_certs(&certs))
}
