//! Sends delivery attempts over HTTP: reqwest with rustls, kept-alive
//! connections, connect and total timeouts, no redirects, no proxies, and a
//! resolver that refuses non-public addresses at connect time (so a hostname
//! that later resolves to 127.0.0.1 or 169.254.169.254 gets nowhere).

use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use hookline_core::delivery::RESPONSE_BODY_CAP;
use hookline_core::ports::{OutgoingRequest, ReceiverSignal, Response, Sender, Sent};
use hookline_core::target::TargetPolicy;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Host;

#[derive(Clone)]
pub struct SenderConfig {
    pub policy: TargetPolicy,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    /// How names become addresses: the system resolver, or a test's answers.
    pub lookup: Arc<dyn Lookup>,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            policy: TargetPolicy::default(),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(15),
            lookup: Arc::new(SystemLookup),
        }
    }
}

/// Looks a host name up.
pub trait Lookup: Send + Sync {
    fn lookup(&self, host: String) -> BoxFuture<std::io::Result<Vec<IpAddr>>>;
}

pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// The operating system's resolver.
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: String) -> BoxFuture<std::io::Result<Vec<IpAddr>>> {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .map(|a| a.ip())
                .collect())
        })
    }
}

pub struct HttpSender {
    client: reqwest::Client,
    policy: TargetPolicy,
    timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("could not build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

impl HttpSender {
    pub fn new(config: SenderConfig) -> Result<Self, BuildError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .dns_resolver(Arc::new(FilteringResolver {
                policy: config.policy,
                lookup: config.lookup.clone(),
            }))
            .build()?;
        Ok(Self {
            client,
            policy: config.policy,
            timeout: config.timeout,
        })
    }

    async fn exchange(&self, request: OutgoingRequest) -> Result<Response, String> {
        let url = reqwest::Url::parse(&request.url).map_err(|e| format!("invalid URL: {e}"))?;
        // An IP literal never reaches the resolver, so it is checked here.
        let literal = match url.host() {
            Some(Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
            Some(Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
            _ => None,
        };
        if let Some(ip) = literal {
            self.policy
                .check_ip(ip)
                .map_err(|_| format!("refused: {Unreachable}"))?;
        }
        let mut builder = self.client.post(url).body(request.body);
        for (name, value) in request.headers {
            builder = builder.header(name, value);
        }
        let mut response = builder
            .send()
            .await
            .map_err(|e| describe(&e, self.timeout))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let signal = response
            .headers()
            .get(ReceiverSignal::HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(ReceiverSignal::parse);
        let mut body = Vec::new();
        while body.len() < RESPONSE_BODY_CAP {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                // The status already decided the attempt; a broken body only shortens the log.
                Err(_) => break,
            }
        }
        body.truncate(RESPONSE_BODY_CAP);
        Ok(Response {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
            retry_after,
            signal,
        })
    }
}

#[async_trait]
impl Sender for HttpSender {
    async fn send(&self, request: OutgoingRequest) -> Sent {
        let started = Instant::now();
        let result = self.exchange(request).await;
        Sent {
            result,
            elapsed: started.elapsed(),
        }
    }
}

/// A one-line reason for the attempt log, our resolver's refusal included
/// (reqwest wraps it a few levels down).
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {} ms", timeout.as_millis());
    }
    let mut parts = Vec::new();
    let mut source: Option<&(dyn StdError + 'static)> = e.source();
    while let Some(s) = source {
        if s.is::<Unreachable>() {
            return format!("refused: {Unreachable}");
        }
        parts.push(s.to_string());
        source = s.source();
    }
    if e.is_connect() {
        format!(
            "connection failed: {}",
            parts.last().map_or("unknown error", String::as_str)
        )
    } else {
        format!("request failed: {}", parts.join(": "))
    }
}

/// `Retry-After` as delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Why a target was not connected to, one answer whether its address is
/// not public, its name does not exist or its lookup failed: which of those
/// a name inside Hookline's network is, is not the merchant's to learn.
#[derive(Debug, thiserror::Error)]
#[error("the target is not a public address Hookline may reach, or its name does not resolve")]
pub struct Unreachable;

/// Resolves a name and refuses it unless every address it has is one the
/// policy allows: a name that mixes public and private answers is how a
/// rebinding attack would slip a private one in. The connector only ever
/// sees addresses that passed.
struct FilteringResolver {
    policy: TargetPolicy,
    lookup: Arc<dyn Lookup>,
}

impl Resolve for FilteringResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let (policy, lookup) = (self.policy, self.lookup.clone());
        Box::pin(async move {
            let unreachable = || Box::new(Unreachable) as Box<dyn StdError + Send + Sync>;
            let resolved = lookup
                .lookup(name.as_str().to_owned())
                .await
                .map_err(|_| unreachable())?;
            if resolved.is_empty() || resolved.iter().any(|ip| policy.check_ip(*ip).is_err()) {
                return Err(unreachable());
            }
            let addrs: Vec<SocketAddr> = resolved
                .into_iter()
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
