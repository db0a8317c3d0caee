//! Name resolution without a thread for an address that needs none: ureq's resolver runs
//! each lookup on a fresh thread so that it can time out, which for a controller given as
//! an IP address (the usual field setup) costs a thread and its wake-ups per connection.

use std::net::SocketAddr;

use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// An IP literal is its own address; a name goes to ureq's resolver (with its timeout).
#[derive(Debug, Default)]
pub(super) struct LiteralFirst(DefaultResolver);

impl Resolver for LiteralFirst {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        if let Some(addr) = literal(uri) {
            let mut out = self.empty();
            out.push(addr);
            return Ok(out);
        }
        self.0.resolve(uri, config, timeout)
    }
}

/// `host:port` of `uri` when the host is an IPv4 or bracketed IPv6 address.
fn literal(uri: &ureq::http::Uri) -> Option<SocketAddr> {
    let port = uri.port_u16().or(match uri.scheme_str()? {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    })?;
    let host = uri.host()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Some(SocketAddr::new(host.parse().ok()?, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ip_literals_skip_the_lookup() {
        let cases = [
            ("http://127.0.0.1:8080/api/v1", Some("127.0.0.1:8080")),
            ("https://10.0.0.7/api/v1", Some("10.0.0.7:443")),
            ("http://[::1]:9/x", Some("[::1]:9")),
            ("http://192.168.1.2/x", Some("192.168.1.2:80")),
            ("https://controller.example/api/v1", None),
            ("http://localhost:8080/", None),
        ];
        for (url, want) in cases {
            let uri: ureq::http::Uri = url.parse().unwrap();
            let want = want.map(|w| w.parse::<SocketAddr>().unwrap());
            assert_eq!(literal(&uri), want, "{url}");
        }
    }
}
