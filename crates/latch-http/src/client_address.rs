//! Which address a request comes from, for rate limits and refusal summaries.
//!
//! By default it is the peer of the TCP connection. Behind a reverse proxy every request comes
//! from the proxy, so the operator names the header the proxy sets (`server.client_address_header`,
//! e.g. `X-Forwarded-For`) and the proxies' addresses (`server.trusted_proxies`, as CIDR
//! ranges). For a request whose peer is one of those proxies, the address is the **last** entry
//! of that header: the one the proxy itself appended. Entries before it were written by the
//! client and are never trusted, and neither is the header of a request from anyone else (a
//! client that reached the listener around the proxy chooses nothing). A request without a
//! usable header value is counted by its peer address.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::header::HeaderName;
use axum::http::{Extensions, HeaderMap};

/// A range of addresses: `10.0.0.0/8`, `fd00::/8`, or one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

/// Why a range did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not an address or an address/prefix (e.g. 10.0.0.0/8, fd00::/8)")]
pub struct BadCidr(pub String);

impl Cidr {
    /// `address` or `address/prefix`, the prefix at most 32 (IPv4) or 128 (IPv6).
    pub fn parse(text: &str) -> Result<Cidr, BadCidr> {
        let bad = || BadCidr(text.to_owned());
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let net: IpAddr = addr.parse().map_err(|_| bad())?;
        let most = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => most,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.len() <= 3 => {
                p.parse::<u8>().map_err(|_| bad())?
            }
            Some(_) => return Err(bad()),
        };
        if prefix > most {
            return Err(bad());
        }
        Ok(Cidr { net, prefix })
    }

    /// Whether `ip` is in the range (an IPv4-mapped IPv6 address as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// How the client address of a request is found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientAddresses {
    header: Option<HeaderName>,
    proxies: Vec<Cidr>,
}

impl ClientAddresses {
    /// The connection's peer address, whatever the headers say.
    pub fn peer() -> Self {
        ClientAddresses::default()
    }

    /// For requests from `proxies`, the last entry of `header`; the peer address otherwise.
    pub fn trusted_header(header: HeaderName, proxies: Vec<Cidr>) -> Self {
        ClientAddresses {
            header: Some(header),
            proxies,
        }
    }

    /// The header trusted, if any.
    pub fn header(&self) -> Option<&HeaderName> {
        self.header.as_ref()
    }

    /// The proxies whose header is believed.
    pub fn proxies(&self) -> &[Cidr] {
        &self.proxies
    }

    /// The client address of a request with these headers and extensions (where the server
    /// put the connection's peer); `None` only for a request that came from no connection.
    pub fn of(&self, headers: &HeaderMap, extensions: &Extensions) -> Option<IpAddr> {
        let peer = extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.ip());
        let from_a_proxy = peer.is_some_and(|p| self.proxies.iter().any(|c| c.contains(p)));
        let from_header = self
            .header
            .as_ref()
            .filter(|_| from_a_proxy)
            .and_then(|name| headers.get_all(name).iter().next_back())
            .and_then(|value| value.to_str().ok())
            .and_then(last_entry);
        from_header.or(peer)
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

    fn xff() -> ClientAddresses {
        ClientAddresses::trusted_header(
            HeaderName::from_static("x-forwarded-for"),
            vec![
                Cidr::parse("127.0.0.0/8").unwrap(),
                Cidr::parse("192.0.2.44").unwrap(),
            ],
        )
    }

    #[test]
    fn the_peer_unless_a_trusted_proxy_sent_the_header() {
        let (h, e) = request(&["198.51.100.1"], "127.0.0.1:5000");
        assert_eq!(
            ClientAddresses::peer().of(&h, &e),
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(xff().of(&h, &e), Some("198.51.100.1".parse().unwrap()));
        // A client that reached the listener around the proxy chooses nothing.
        let (h, e) = request(&["198.51.100.1"], "203.0.113.9:5000");
        assert_eq!(xff().of(&h, &e), Some("203.0.113.9".parse().unwrap()));
    }

    #[test]
    fn ranges_parse_and_contain() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.255.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()));
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12:3456::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        assert!(!v6.contains("10.1.0.1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "10.0.0.0/8/8",
            "10.0.0.0/+8",
            "x/8",
            "10.0.0.0/0008",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_the_entry_the_proxy_appended_counts() {
        let xff = xff();
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
        let xff = xff();
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
        fn any_range_text_parses_or_is_refused_and_a_range_holds_its_own_address(
            text in ".{0,24}", a in any::<[u8; 4]>(), prefix in 0u8..=32
        ) {
            let _ = Cidr::parse(&text);
            let ip = IpAddr::from(a);
            let c = Cidr::parse(&format!("{ip}/{prefix}")).unwrap();
            prop_assert!(c.contains(ip));
        }

        #[test]
        fn a_written_address_is_read_back(a in any::<[u8; 4]>(), port in any::<u16>(), junk in "[a-z0-9., ]{0,20}") {
            let ip = IpAddr::from(a);
            prop_assert_eq!(last_entry(&format!("{junk},{ip}")), Some(ip));
            prop_assert_eq!(last_entry(&format!("{junk}, {ip}:{port}")), Some(ip));
        }
    }
}
