//! Outgoing HTTP for the workers that fetch what users name (link
//! previews, outgoing-webhook bots): only to public addresses unless
//! configured otherwise, with the name resolved once and the connection
//! pinned to the checked addresses (no second lookup an attacker's DNS
//! could answer differently), no redirects followed by the client, no
//! proxy from the environment, a timeout, and bodies read up to a cap.

use reqwest::Url;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Why a page or service was not reached.
#[derive(Debug)]
pub struct FetchError {
    /// Worth trying again (no answer, a timeout, a 5xx).
    pub transient: bool,
    /// What happened.
    pub msg: String,
}

/// A failure trying again cannot mend.
pub fn permanent(msg: String) -> FetchError {
    FetchError { transient: false, msg }
}

/// A failure that may pass.
pub fn transient(msg: String) -> FetchError {
    FetchError { transient: true, msg }
}

fn v4_public(v4: Ipv4Addr) -> bool {
    let o = v4.octets();
    !(v4.is_private()
        || v4.is_loopback()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (64..128).contains(&o[1]))
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        || (o[0] == 192 && o[1] == 88 && o[2] == 99)
        || (o[0] == 198 && (o[1] == 18 || o[1] == 19))
        || o[0] >= 240)
}

/// Whether `ip` is a public address: not loopback, private, link-local,
/// shared, benchmarking, multicast, reserved or unspecified, also when
/// an IPv4 address hides in an IPv6 one (mapped, compatible, NAT64, 6to4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_public(v4),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_public(v4);
            }
            if v6.is_loopback() || v6.is_unspecified() || v6.is_multicast() {
                return false;
            }
            // IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::/96).
            if s[..6] == [0; 6] || (s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4]) {
                return v4_public(embedded(s[6], s[7]));
            }
            // 6to4 (2002::/16) carries its IPv4 address in segments 1-2.
            if s[0] == 0x2002 {
                return v4_public(embedded(s[1], s[2]));
            }
            !((s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80 || (s[0] == 0x2001 && s[1] == 0x0db8))
        }
    }
}

/// A client for one request to `url`: its host resolved now (5 s at
/// most), private addresses refused unless `allow_private`, the
/// connection pinned to the addresses checked.
pub async fn pinned_client(
    url: &Url,
    allow_private: bool,
    timeout: Duration,
    user_agent: &str,
) -> Result<reqwest::Client, FetchError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(permanent(format!("{url}: not an http(s) URL")));
    }
    let host = url.host_str().ok_or_else(|| permanent(format!("{url}: no host")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs: Vec<SocketAddr> =
        tokio::time::timeout(Duration::from_secs(5), tokio::net::lookup_host((host.as_str(), port)))
            .await
            .map_err(|_| transient(format!("{host}: name lookup timed out")))?
            .map_err(|e| permanent(format!("{host}: {e}")))?
            .collect();
    let allowed: Vec<SocketAddr> = addrs.iter().copied().filter(|a| allow_private || is_public(a.ip())).collect();
    if allowed.is_empty() {
        return Err(permanent(format!(
            "{host}: no public address (private, loopback and link-local addresses are not contacted)"
        )));
    }
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(user_agent)
        .resolve_to_addrs(&host, &allowed)
        .build()
        .map_err(|e| permanent(e.to_string()))
}

/// Reads at most `max` bytes of a response's body (the rest is dropped).
pub async fn read_capped(resp: &mut reqwest::Response, max: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = max.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= max {
            break;
        }
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "64:ff9b::808:808", "2002:808:808::"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }
}
