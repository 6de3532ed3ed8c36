//! The address a request comes from: the peer's, or, when the peer is one
//! of `REPLBOX_TRUSTED_PROXIES`, the client its X-Forwarded-For names.
//! Hand-written rather than a crate's: the rule is ten lines, and it must
//! skip every trusted hop from the right, which the extractors on
//! crates.io leave to the caller.

use super::AppState;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use ipnet::IpNet;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

/// The client's address, for the new-session limit and the log.
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let forwarded: Vec<&str> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        Ok(ClientAddr(client_addr(
            peer,
            &forwarded.join(","),
            &state.config.trusted_proxies,
        )))
    }
}

/// The peer, unless it is a trusted proxy: then the right-most address of
/// X-Forwarded-For that is not one (each proxy appends the address it saw,
/// so only the entries our own proxies added can be believed).
pub fn client_addr(peer: IpAddr, forwarded_for: &str, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer.to_canonical();
    if !is_trusted(&client) {
        return client;
    }
    for hop in forwarded_for.rsplit(',').map(str::trim) {
        if hop.is_empty() {
            continue;
        }
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                client = ip.to_canonical();
                if !is_trusted(&client) {
                    break;
                }
            }
            // Not an address: nothing further left can be believed.
            Err(_) => break,
        }
    }
    client
}

pub use crate::limits::limit_key;

/// The key a client's wrong guesses (class codes, recovery codes,
/// passwords) are counted under.
pub fn guess_key(client: IpAddr) -> String {
    limit_key(client).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn a_direct_client_cannot_choose_its_address() {
        let trusted = nets(&["127.0.0.1/32"]);
        assert_eq!(
            client_addr(ip("198.51.100.7"), "203.0.113.9", &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(client_addr(ip("198.51.100.7"), "", &[]), ip("198.51.100.7"));
    }

    #[test]
    fn behind_trusted_proxies_the_nearest_untrusted_hop_counts() {
        let trusted = nets(&["127.0.0.1/32", "10.0.0.0/8"]);
        // (peer, X-Forwarded-For, counted as, why)
        let cases = [
            (
                "127.0.0.1",
                "203.0.113.9",
                "203.0.113.9",
                "nginx on the same machine",
            ),
            (
                "127.0.0.1",
                "1.1.1.1, 203.0.113.9, 10.1.2.3",
                "203.0.113.9",
                "a balancer, then nginx; the client's own claim on the left is ignored",
            ),
            (
                "127.0.0.1",
                "10.0.0.5",
                "10.0.0.5",
                "only proxies: the left-most",
            ),
            ("127.0.0.1", "", "127.0.0.1", "no header"),
            (
                "127.0.0.1",
                "unknown, 10.0.0.5",
                "10.0.0.5",
                "garbage: what is known so far",
            ),
            (
                "::ffff:127.0.0.1",
                "203.0.113.9",
                "203.0.113.9",
                "IPv4 through an IPv6 socket",
            ),
        ];
        for (peer, header, counted, why) in cases {
            assert_eq!(
                client_addr(ip(peer), header, &trusted),
                ip(counted),
                "{why}"
            );
        }
    }

    #[test]
    fn an_ipv6_client_counts_as_its_64() {
        assert_eq!(limit_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(limit_key(ip("2001:db8:1:2:bbbb::9")), ip("2001:db8:1:2::"));
        assert_eq!(limit_key(ip("203.0.113.9")), ip("203.0.113.9"));
    }
}
