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
    #[error("must be at most 2000 bytes")]
    TooLong,
    #[error("{host} is a {reason} address, which receivers may not use")]
    Forbidden { host: String, reason: &'static str },
}

impl TargetPolicy {
    pub fn check_url(&self, raw: &str) -> Result<Url, TargetError> {
        if raw.len() > 2000 {
            return Err(TargetError::TooLong);
        }
        let url = Url::parse(raw).map_err(|e| TargetError::Malformed(e.to_string()))?;
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

/// Why an address is not a public unicast one, or `None` when it is.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) => "cloud metadata",
        (127, _, _) => "loopback",
        (0, _, _) => "unspecified",
        (10, _, _) | (192, 168, _) => "private",
        (172, 16..=31, _) => "private",
        (169, 254, _) => "link-local",
        (100, 64..=127, _) => "shared (carrier-grade NAT)",
        (192, 0, 0) | (198, 18..=19, _) => "reserved",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved",
        _ => return None,
    })
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_reason(v4);
    }
    let s = ip.segments();
    Some(match s {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() => "unspecified",
        [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254] => "cloud metadata",
        // NAT64 and 6to4 embed an IPv4 address that decides.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => return v4_reason(embedded(hi, lo)),
        [0x2002, hi, lo, ..] => return v4_reason(embedded(hi, lo)),
        [0, 0, 0, 0, 0, 0, _, _] => "reserved (IPv4-compatible)",
        [x, ..] if x & 0xfe00 == 0xfc00 => "unique local (private)",
        [x, ..] if x & 0xffc0 == 0xfe80 => "link-local",
        [x, ..] if x & 0xff00 == 0xff00 => "multicast",
        [0x2001, 0xdb8, ..] => "documentation",
        _ => return None,
    })
}

fn embedded(hi: u16, lo: u16) -> Ipv4Addr {
    let [a, b] = hi.to_be_bytes();
    let [c, d] = lo.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(s: &str) -> Option<&'static str> {
        forbidden_reason(s.parse().unwrap())
    }

    #[test]
    fn classifies_non_public_ranges() {
        assert_eq!(reason("127.0.0.1"), Some("loopback"));
        assert_eq!(reason("10.1.2.3"), Some("private"));
        assert_eq!(reason("172.16.0.1"), Some("private"));
        assert_eq!(reason("172.31.255.255"), Some("private"));
        assert_eq!(reason("192.168.1.1"), Some("private"));
        assert_eq!(reason("169.254.1.1"), Some("link-local"));
        assert_eq!(reason("169.254.169.254"), Some("cloud metadata"));
        assert_eq!(reason("0.0.0.0"), Some("unspecified"));
        assert_eq!(reason("::1"), Some("loopback"));
        assert_eq!(reason("::ffff:127.0.0.1"), Some("loopback"));
        assert_eq!(reason("::ffff:10.0.0.1"), Some("private"));
        assert_eq!(reason("fe80::1"), Some("link-local"));
        assert_eq!(reason("fd12::1"), Some("unique local (private)"));
        assert_eq!(reason("fd00:ec2::254"), Some("cloud metadata"));
        assert_eq!(reason("64:ff9b::a9fe:a9fe"), Some("cloud metadata"));
        assert_eq!(reason("2002:7f00:1::"), Some("loopback"));
        for public in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "1.1.1.1",
        ] {
            assert_eq!(reason(public), None, "{public}");
        }
    }

    #[test]
    fn checks_urls() {
        let strict = TargetPolicy {
            allow_private: false,
        };
        assert!(strict.check_url("https://hooks.example.com/x?y=1").is_ok());
        for bad in [
            "http://127.0.0.1:8080/",
            "http://[::1]/",
            "http://169.254.169.254/latest/meta-data",
            "http://192.168.0.10/",
            "http://0x7f000001/",
            "ftp://example.com/",
            "https://user:pw@example.com/",
            "not a url",
        ] {
            assert!(strict.check_url(bad).is_err(), "{bad}");
        }
        let open = TargetPolicy {
            allow_private: true,
        };
        assert!(open.check_url("http://127.0.0.1:8080/").is_ok());
    }
}
