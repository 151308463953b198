//! The endpoint URL, parsed once at build time into what every request
//! needs: where to connect, the request target and the `Host` header.

use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use crate::error::BuildError;

/// The URL scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Http,
    Https,
}

/// The host part of the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Host {
    Ip(IpAddr),
    Name(String),
}

/// A parsed `http://` or `https://` endpoint.
///
/// Accepted: `http[s]://host[:port][/path][?query][#fragment]` where host is a
/// name, an IPv4 address or a bracketed IPv6 address. The fragment is
/// dropped (it is never sent), userinfo is rejected (credentials belong in
/// a header), and non-ASCII, spaces and control bytes are rejected rather
/// than percent-encoded behind the caller's back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) scheme: Scheme,
    pub(crate) host: Host,
    pub(crate) port: u16,
    /// Path and query, as sent on the request line; at least `/`.
    pub(crate) target: String,
    /// The value of the `Host` header: the host as written, with the port
    /// when the URL names one.
    pub(crate) authority: String,
}

fn invalid(why: &str) -> BuildError {
    BuildError::InvalidUrl(why.to_owned())
}

impl Endpoint {
    pub(crate) fn parse(url: &str) -> Result<Endpoint, BuildError> {
        if url.is_empty() {
            return Err(BuildError::EmptyUrl);
        }
        if let Some(b) = url.bytes().find(|b| !b.is_ascii_graphic()) {
            return Err(BuildError::InvalidUrl(format!(
                "{url:?} contains {:?}; spaces, control bytes and non-ASCII must be percent-encoded",
                char::from(b)
            )));
        }
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("missing scheme (expected http:// or https://)"))?;
        let scheme = if scheme.eq_ignore_ascii_case("http") {
            Scheme::Http
        } else if scheme.eq_ignore_ascii_case("https") {
            Scheme::Https
        } else if scheme.is_empty() {
            return Err(invalid("missing scheme (expected http:// or https://)"));
        } else {
            return Err(BuildError::UnsupportedScheme(scheme.to_owned()));
        };
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, rest) = rest.split_at(authority_end);
        if authority.contains('@') {
            return Err(invalid("userinfo (user@host) is not supported"));
        }
        let (host, port_text) = if let Some(after) = authority.strip_prefix('[') {
            let (inside, after) = after
                .split_once(']')
                .ok_or_else(|| invalid("unclosed '[' in IPv6 host"))?;
            let ip: Ipv6Addr = inside
                .parse()
                .map_err(|_| BuildError::InvalidUrl(format!("invalid IPv6 address {inside:?}")))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| invalid("unexpected text after IPv6 address"))?,
                ),
            };
            (Host::Ip(IpAddr::V6(ip)), port)
        } else {
            let (name, port) = match authority.rsplit_once(':') {
                Some((name, port)) => (name, Some(port)),
                None => (authority, None),
            };
            (parse_name(name)?, port)
        };
        let default_port = match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        };
        let port = match port_text {
            None | Some("") => default_port,
            Some(p) => parse_port(p)?,
        };
        let authority = match port_text {
            None | Some("") => authority.trim_end_matches(':').to_owned(),
            Some(_) => authority.to_owned(),
        };
        let without_fragment = rest.split_once('#').map_or(rest, |(before, _)| before);
        let target = if without_fragment.starts_with('/') {
            without_fragment.to_owned()
        } else {
            format!("/{without_fragment}")
        };
        Ok(Endpoint {
            scheme,
            host,
            port,
            target,
            authority,
        })
    }

    /// The addresses to try, in order. Resolves names with the system
    /// resolver (blocking); IP literals need no lookup.
    pub(crate) fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        match &self.host {
            Host::Ip(ip) => Ok(vec![SocketAddr::new(*ip, self.port)]),
            Host::Name(name) => {
                let addrs: Vec<SocketAddr> =
                    (name.as_str(), self.port).to_socket_addrs()?.collect();
                if addrs.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("{name} resolved to no address"),
                    ));
                }
                Ok(addrs)
            }
        }
    }
}

fn parse_name(name: &str) -> Result<Host, BuildError> {
    if name.is_empty() {
        return Err(invalid("missing host"));
    }
    if let Ok(ip) = name.parse::<std::net::Ipv4Addr>() {
        return Ok(Host::Ip(IpAddr::V4(ip)));
    }
    let valid = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'%'));
    if !valid {
        return Err(BuildError::InvalidUrl(format!("invalid host {name:?}")));
    }
    Ok(Host::Name(name.to_ascii_lowercase()))
}

fn parse_port(p: &str) -> Result<u16, BuildError> {
    match p.parse::<u16>() {
        Ok(port) if port != 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(port),
        _ => Err(BuildError::InvalidUrl(format!(
            "invalid port {p:?} (expected 1-65535)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ok(url: &str) -> Endpoint {
        Endpoint::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    fn err(url: &str) -> String {
        match Endpoint::parse(url) {
            Ok(e) => panic!("{url} parsed as {e:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn names_ipv4_and_ipv6_with_default_and_explicit_ports() {
        let e = ok("http://example.com");
        assert_eq!(e.host, Host::Name("example.com".into()));
        assert_eq!((e.port, e.target.as_str()), (80, "/"));
        assert_eq!(e.authority, "example.com");

        let e = ok("http://127.0.0.1:8080/hook");
        assert_eq!(e.host, Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!((e.port, e.target.as_str()), (8080, "/hook"));
        assert_eq!(e.authority, "127.0.0.1:8080");

        let e = ok("http://[::1]:9000/a");
        assert_eq!(e.host, Host::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert_eq!((e.port, e.authority.as_str()), (9000, "[::1]:9000"));

        let e = ok("http://[::1]");
        assert_eq!((e.port, e.authority.as_str()), (80, "[::1]"));

        assert_eq!(
            ok("HTTP://Example.COM:81").host,
            Host::Name("example.com".into())
        );
        assert_eq!(ok("http://h:").port, 80);
    }

    #[test]
    fn path_and_query_kept_fragment_dropped() {
        assert_eq!(ok("http://h/a/b?x=1&y=%20").target, "/a/b?x=1&y=%20");
        assert_eq!(ok("http://h?x=1").target, "/?x=1");
        assert_eq!(ok("http://h/p#frag").target, "/p");
        assert_eq!(ok("http://h#frag").target, "/");
        assert_eq!(ok("http://h/p?q#f").target, "/p?q");
    }

    #[test]
    fn malformed_urls_name_the_problem() {
        assert!(matches!(Endpoint::parse(""), Err(BuildError::EmptyUrl)));
        assert!(err("http://").contains("missing host"));
        assert!(err("http:///path").contains("missing host"));
        assert!(err("http://:80/").contains("missing host"));
        assert!(err("http://h:99999").contains("invalid port"));
        assert!(err("http://h:0").contains("invalid port"));
        assert!(err("http://h:8a").contains("invalid port"));
        assert!(err("http://h:+80").contains("invalid port"));
        assert!(err("http://h/a b").contains("spaces"));
        assert!(err("http://h/\u{7f}").contains("control"));
        assert!(err("http://h/\n").contains("control"));
        assert!(err("http://hé/").contains("non-ASCII"));
        assert!(err("example.com").contains("missing scheme"));
        assert!(err("://h").contains("missing scheme"));
        assert!(err("http://user:pw@h/").contains("userinfo"));
        assert!(err("http://[::1/").contains("unclosed"));
        assert!(err("http://[zz]/").contains("invalid IPv6"));
        assert!(err("http://[::1]x/").contains("after IPv6"));
        assert!(err("http://a:b:c/").contains("invalid"));
        assert!(err("http://h!/").contains("invalid host"));
    }

    #[test]
    fn https_defaults_to_port_443() {
        let e = ok("https://example.com/x");
        assert_eq!(
            (e.scheme, e.port, e.authority.as_str()),
            (Scheme::Https, 443, "example.com")
        );
        assert_eq!(ok("HTTPS://h:8443").port, 8443);
        assert_eq!(ok("http://h").scheme, Scheme::Http);
    }

    #[test]
    fn only_http_and_https_are_supported() {
        assert!(matches!(
            Endpoint::parse("ftp://h/"),
            Err(BuildError::UnsupportedScheme(s)) if s == "ftp"
        ));
        assert!(matches!(
            Endpoint::parse("ws://h/"),
            Err(BuildError::UnsupportedScheme(_))
        ));
    }

    #[test]
    fn ip_literals_resolve_without_lookup() {
        let e = ok("http://[::1]:9/");
        assert_eq!(e.resolve().unwrap(), vec!["[::1]:9".parse().unwrap()]);
    }
}
