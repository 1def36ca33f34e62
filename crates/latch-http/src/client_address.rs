//! Which address a request comes from, for rate limits and refusal summaries.
//!
//! By default it is the peer of the TCP connection. Behind a reverse proxy every request comes
//! from the proxy, so the operator names the header the proxy sets (`server.client_address_header`,
//! e.g. `X-Forwarded-For`), and the address is the **last** entry of that header: the one the
//! proxy itself appended. Entries before it were written by the client and are never trusted.
//! A request without a usable header value (one that did not pass through the proxy) is counted
//! by its peer address.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::header::HeaderName;
use axum::http::{Extensions, HeaderMap};

/// How the client address of a request is found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientAddresses {
    header: Option<HeaderName>,
}

impl ClientAddresses {
    /// The connection's peer address, whatever the headers say.
    pub fn peer() -> Self {
        ClientAddresses { header: None }
    }

    /// The last entry of `header`, set by a trusted proxy; the peer address without it.
    pub fn trusted_header(header: HeaderName) -> Self {
        ClientAddresses {
            header: Some(header),
        }
    }

    /// The header trusted, if any.
    pub fn header(&self) -> Option<&HeaderName> {
        self.header.as_ref()
    }

    /// The client address of a request with these headers and extensions (where the server
    /// put the connection's peer); `None` only for a request that came from no connection.
    pub fn of(&self, headers: &HeaderMap, extensions: &Extensions) -> Option<IpAddr> {
        let from_header = self
            .header
            .as_ref()
            .and_then(|name| headers.get_all(name).iter().next_back())
            .and_then(|value| value.to_str().ok())
            .and_then(last_entry);
        from_header.or_else(|| {
            extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(peer)| peer.ip())
        })
    }
}

/// The address in the last comma-separated entry of a forwarding header: `203.0.113.7`,
/// `203.0.113.7:4711`, `2001:db8::1` or `[2001:db8::1]:4711`; `None` if it is none of these.
pub fn last_entry(value: &str) -> Option<IpAddr> {
    let entry = value.rsplit(',').next()?.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    entry.parse::<SocketAddr>().ok().map(|s| s.ip())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    fn request(values: &[&str], peer: &str) -> (HeaderMap, Extensions) {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        let mut extensions = Extensions::new();
        extensions.insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        (headers, extensions)
    }

    #[test]
    fn the_peer_unless_a_trusted_header_is_configured() {
        let (h, e) = request(&["198.51.100.1"], "127.0.0.1:5000");
        assert_eq!(
            ClientAddresses::peer().of(&h, &e),
            Some("127.0.0.1".parse().unwrap())
        );
        let xff = ClientAddresses::trusted_header(HeaderName::from_static("x-forwarded-for"));
        assert_eq!(xff.of(&h, &e), Some("198.51.100.1".parse().unwrap()));
    }

    #[test]
    fn only_the_entry_the_proxy_appended_counts() {
        let xff = ClientAddresses::trusted_header(HeaderName::from_static("x-forwarded-for"));
        // The client wrote the first entries; the proxy appended the last.
        let (h, e) = request(
            &["1.1.1.1, 2.2.2.2", "10.0.0.9, 203.0.113.7"],
            "127.0.0.1:1",
        );
        assert_eq!(xff.of(&h, &e), Some("203.0.113.7".parse().unwrap()));
        for (value, want) in [
            ("203.0.113.7:4711", "203.0.113.7"),
            (" 2001:db8::1 ", "2001:db8::1"),
            ("x, [2001:db8::2]:443", "2001:db8::2"),
        ] {
            assert_eq!(last_entry(value), Some(want.parse().unwrap()), "{value}");
        }
    }

    #[test]
    fn an_unusable_header_falls_back_to_the_peer() {
        let xff = ClientAddresses::trusted_header(HeaderName::from_static("x-forwarded-for"));
        for bad in [
            "",
            "unknown",
            "1.2.3.4, not-an-ip",
            "1.2.3.4.5",
            "[::1",
            "1.2.3.4,",
        ] {
            let (h, e) = request(&[bad], "192.0.2.44:80");
            assert_eq!(
                xff.of(&h, &e),
                Some("192.0.2.44".parse().unwrap()),
                "{bad:?}"
            );
        }
        let (h, e) = request(&[], "192.0.2.44:80");
        assert_eq!(xff.of(&h, &e), Some("192.0.2.44".parse().unwrap()));
    }

    proptest! {
        #[test]
        fn what_the_client_wrote_before_the_proxys_entry_never_counts(
            junk in ".{0,80}", a in any::<[u8; 4]>(), b in any::<[u16; 8]>()
        ) {
            let _ = last_entry(&junk);
            let v4 = IpAddr::from(a);
            prop_assert_eq!(last_entry(&format!("{junk},{v4}")), Some(v4));
            let v6 = IpAddr::from(b);
            prop_assert_eq!(last_entry(&format!("{junk}, [{v6}]:1")), Some(v6));
        }

        #[test]
        fn a_written_address_is_read_back(a in any::<[u8; 4]>(), port in any::<u16>(), junk in "[a-z0-9., ]{0,20}") {
            let ip = IpAddr::from(a);
            prop_assert_eq!(last_entry(&format!("{junk},{ip}")), Some(ip));
            prop_assert_eq!(last_entry(&format!("{junk}, {ip}:{port}")), Some(ip));
        }
    }
}
