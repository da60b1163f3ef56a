//! Which receivers Hookline may reach. A webhook URL is chosen by a merchant,
//! so without this policy it is a way into the network Hookline runs in.
//! URLs are checked when a rule is saved; the sender checks every resolved
//! address again at connect time, which is what defeats DNS rebinding.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

#[derive(Debug, Clone, Copy, Default)]
pub struct TargetPolicy {
    /// Permits loopback and private receivers (local development, tests).
    pub allow_private: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("is not a valid URL: {0}")]
    Malformed(String),
    #[error("must use http or https, not {0:?}")]
    Scheme(String),
    #[error("must name a host")]
    NoHost,
    #[error("must not carry credentials")]
    Credentials,
    #[error("must be at most 2000 characters")]
    TooLong,
    /// Within the limit as written, past it once normalized (punycode,
    /// percent-encoding): the limit is on what is stored and sent.
    #[error("is more than 2000 bytes once normalized (punycode, percent-encoding)")]
    GrowsTooLong,
    #[error("{host} is a {reason} address, which receivers may not use")]
    Forbidden { host: String, reason: &'static str },
}

/// The longest rule URL: in characters as written, in bytes as normalized
/// (then all ASCII).
pub const MAX_URL_LEN: usize = 2000;

impl TargetPolicy {
    pub fn check_url(&self, raw: &str) -> Result<Url, TargetError> {
        if raw.chars().count() > MAX_URL_LEN {
            return Err(TargetError::TooLong);
        }
        let url = Url::parse(raw).map_err(|e| TargetError::Malformed(e.to_string()))?;
        // Parsing can lengthen it (punycode, percent-encoding): the limit is
        // on what is stored and sent, or a stored URL would be refused when
        // sent back unchanged (found by the target_url fuzzer).
        if url.as_str().len() > MAX_URL_LEN {
            return Err(TargetError::GrowsTooLong);
        }
        if !matches!(url.scheme(), "http" | "https") {
            return Err(TargetError::Scheme(url.scheme().to_owned()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(TargetError::Credentials);
        }
        let ip = match url.host() {
            None => return Err(TargetError::NoHost),
            Some(Host::Domain(_)) => None,
            Some(Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
            Some(Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        };
        if let Some(ip) = ip {
            self.check_ip(ip)?;
        }
        Ok(url)
    }

    pub fn check_ip(&self, ip: IpAddr) -> Result<(), TargetError> {
        match forbidden_reason(ip) {
            Some(reason) if !self.allow_private => Err(TargetError::Forbidden {
                host: ip.to_string(),
                reason,
            }),
            _ => Ok(()),
        }
    }
}

/// Why an address is not a globally reachable unicast one, or `None` when
/// it is. Addresses that embed an IPv4 address (IPv4-mapped,
/// IPv4-compatible, NAT64, 6to4) are judged by the embedded one.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

/// The IPv4 ranges receivers may not use: the entries of IANA's IPv4
/// Special-Purpose Address Registry that are not globally reachable, plus
/// multicast and broadcast. The first match decides, so the metadata
/// address comes before link-local.
const V4_REFUSED: &[([u8; 4], u8, &str)] = &[
    ([169, 254, 169, 254], 32, "cloud metadata"),
    ([0, 0, 0, 0], 8, "\"this network\""),
    ([10, 0, 0, 0], 8, "private"),
    ([100, 64, 0, 0], 10, "shared (carrier-grade NAT)"),
    ([127, 0, 0, 0], 8, "loopback"),
    ([169, 254, 0, 0], 16, "link-local"),
    ([172, 16, 0, 0], 12, "private"),
    ([192, 0, 0, 0], 24, "IETF protocol assignment"),
    ([192, 0, 2, 0], 24, "documentation"),
    ([192, 88, 99, 0], 24, "deprecated 6to4 relay"),
    ([192, 168, 0, 0], 16, "private"),
    ([198, 18, 0, 0], 15, "benchmarking"),
    ([198, 51, 100, 0], 24, "documentation"),
    ([203, 0, 113, 0], 24, "documentation"),
    ([224, 0, 0, 0], 4, "multicast"),
    ([240, 0, 0, 0], 4, "reserved"),
];

/// What an IPv6 range is: refused, or judged by the IPv4 address in its last
/// 32 bits (or, for 6to4, bits 16 to 47).
enum V6Rule {
    Refused(&'static str),
    EmbeddedLow,
    Embedded6to4,
}

/// The IPv6 ranges of IANA's IPv6 Special-Purpose Address Registry, plus
/// site-local and multicast; the first match decides. Beyond these, only
/// global unicast (2000::/3) is allowed.
const V6_RULES: &[([u16; 8], u8, V6Rule)] = &[
    (
        [0, 0, 0, 0, 0, 0, 0, 0],
        128,
        V6Rule::Refused("unspecified"),
    ),
    ([0, 0, 0, 0, 0, 0, 0, 1], 128, V6Rule::Refused("loopback")),
    ([0, 0, 0, 0, 0, 0xffff, 0, 0], 96, V6Rule::EmbeddedLow),
    ([0, 0, 0, 0, 0, 0, 0, 0], 96, V6Rule::EmbeddedLow),
    ([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96, V6Rule::EmbeddedLow),
    (
        [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        V6Rule::Refused("local-use NAT64"),
    ),
    (
        [0x100, 0, 0, 0, 0, 0, 0, 0],
        64,
        V6Rule::Refused("discard-only"),
    ),
    (
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
        32,
        V6Rule::Refused("documentation"),
    ),
    (
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        23,
        V6Rule::Refused("IETF protocol assignment"),
    ),
    ([0x2002, 0, 0, 0, 0, 0, 0, 0], 16, V6Rule::Embedded6to4),
    (
        [0x3fff, 0, 0, 0, 0, 0, 0, 0],
        20,
        V6Rule::Refused("documentation"),
    ),
    (
        [0x5f00, 0, 0, 0, 0, 0, 0, 0],
        16,
        V6Rule::Refused("segment routing"),
    ),
    (
        [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254],
        128,
        V6Rule::Refused("cloud metadata"),
    ),
    (
        [0xfc00, 0, 0, 0, 0, 0, 0, 0],
        7,
        V6Rule::Refused("unique local (private)"),
    ),
    (
        [0xfe80, 0, 0, 0, 0, 0, 0, 0],
        10,
        V6Rule::Refused("link-local"),
    ),
    (
        [0xfec0, 0, 0, 0, 0, 0, 0, 0],
        10,
        V6Rule::Refused("site-local"),
    ),
    (
        [0xff00, 0, 0, 0, 0, 0, 0, 0],
        8,
        V6Rule::Refused("multicast"),
    ),
];

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    if ip.is_broadcast() {
        return Some("broadcast");
    }
    let bits = u32::from(ip);
    V4_REFUSED
        .iter()
        .find(|(net, len, _)| {
            within(
                u128::from(bits),
                u128::from(u32::from_be_bytes(*net)),
                *len,
                32,
            )
        })
        .map(|(_, _, reason)| *reason)
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let bits = u128::from(ip);
    let rule = V6_RULES
        .iter()
        .find(|(net, len, _)| within(bits, u128::from(Ipv6Addr::from(*net)), *len, 128));
    match rule.map(|(_, _, r)| r) {
        Some(V6Rule::Refused(reason)) => Some(reason),
        Some(V6Rule::EmbeddedLow) => v4_reason(Ipv4Addr::from(bits as u32)),
        Some(V6Rule::Embedded6to4) => v4_reason(Ipv4Addr::from((bits >> 80) as u32)),
        None if ip.segments()[0] & 0xe000 == 0x2000 => None,
        None => Some("reserved"),
    }
}

/// Whether `addr` lies in `net`/`len`, for addresses of `width` bits.
fn within(addr: u128, net: u128, len: u8, width: u32) -> bool {
    let shift = width - u32::from(len);
    shift >= width || (addr >> shift) == (net >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> TargetPolicy {
        TargetPolicy {
            allow_private: false,
        }
    }

    /// Every spelling of a non-public receiver the URL parser accepts is
    /// refused when a rule is saved; names are refused at connect time (the
    /// sender's tests).
    #[test]
    fn refuses_every_non_global_literal() {
        let refused = [
            // IPv4 in the spellings WHATWG URL parsing accepts.
            ("http://127.0.0.1/", "loopback"),
            ("http://127.1/", "loopback"),
            ("http://2130706433/", "loopback"),
            ("http://0x7f000001/", "loopback"),
            ("http://0x7f.1/", "loopback"),
            ("http://0177.0.0.1/", "loopback"),
            ("http://017700000001/", "loopback"),
            ("http://127.0.0.1./", "loopback"),
            ("http://0/", "\"this network\""),
            ("http://0.0.0.0:8080/", "\"this network\""),
            ("http://10.1.2.3/", "private"),
            ("http://172.16.0.1/", "private"),
            ("http://172.31.255.255/", "private"),
            ("http://192.168.1.1/", "private"),
            ("http://100.64.0.1/", "shared (carrier-grade NAT)"),
            ("http://169.254.1.1/", "link-local"),
            ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
            ("http://192.0.0.8/", "IETF protocol assignment"),
            ("http://192.0.2.1/", "documentation"),
            ("http://198.51.100.7/", "documentation"),
            ("http://203.0.113.9/", "documentation"),
            ("http://198.18.0.1/", "benchmarking"),
            ("http://192.88.99.1/", "deprecated 6to4 relay"),
            ("http://224.0.0.1/", "multicast"),
            ("http://240.0.0.1/", "reserved"),
            ("http://255.255.255.255/", "broadcast"),
            // IPv6, and IPv4 embedded in it.
            ("http://[::1]/", "loopback"),
            ("http://[0:0:0:0:0:0:0:1]/", "loopback"),
            ("http://[::]/", "unspecified"),
            ("http://[::ffff:127.0.0.1]/", "loopback"),
            ("http://[::ffff:7f00:1]/", "loopback"),
            ("http://[::ffff:10.0.0.1]/", "private"),
            ("http://[::127.0.0.1]/", "loopback"),
            ("http://[::a9fe:a9fe]/", "cloud metadata"),
            ("http://[64:ff9b::7f00:1]/", "loopback"),
            ("http://[64:ff9b::a9fe:a9fe]/", "cloud metadata"),
            ("http://[64:ff9b:1::1]/", "local-use NAT64"),
            ("http://[2002:7f00:1::]/", "loopback"),
            ("http://[2002:c0a8:101::1]/", "private"),
            ("http://[100::1]/", "discard-only"),
            ("http://[2001::1]/", "IETF protocol assignment"),
            ("http://[2001:db8::1]/", "documentation"),
            ("http://[3fff::1]/", "documentation"),
            ("http://[5f00::1]/", "segment routing"),
            ("http://[fc00::1]/", "unique local (private)"),
            ("http://[fd12::1]/", "unique local (private)"),
            ("http://[fd00:ec2::254]/", "cloud metadata"),
            ("http://[fe80::1]/", "link-local"),
            ("http://[fec0::1]/", "site-local"),
            ("http://[ff02::1]/", "multicast"),
            ("http://[4000::1]/", "reserved"),
        ];
        for (url, reason) in refused {
            match strict().check_url(url) {
                Err(TargetError::Forbidden { reason: r, .. }) => assert_eq!(r, reason, "{url}"),
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    #[test]
    fn allows_global_addresses_and_names() {
        for url in [
            "https://hooks.example.com/x?y=1",
            "http://8.8.8.8/",
            "http://172.32.0.1/",
            "http://100.128.0.1/",
            "http://192.31.196.1/",
            "http://[2606:4700::1111]/",
            "http://[64:ff9b::808:808]/",
            "http://[2002:808:808::1]/",
            "http://[::ffff:8.8.8.8]/",
        ] {
            assert!(strict().check_url(url).is_ok(), "{url}");
        }
    }

    #[test]
    fn refuses_malformed_and_foreign_urls() {
        for bad in [
            "ftp://example.com/",
            "https://user:pw@example.com/",
            "not a url",
            "http://[fe80::1%25eth0]/",
        ] {
            assert!(strict().check_url(bad).is_err(), "{bad}");
        }
        let open = TargetPolicy {
            allow_private: true,
        };
        assert!(open.check_url("http://127.0.0.1:8080/").is_ok());
    }
}
