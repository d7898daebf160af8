//! What a failed connection to the API server means: a certificate that will not verify
//! (permanent: the kubeconfig must change), a server that refuses connections (it may be
//! restarting: wait for it, within the store's deadline), or anything else (transient).
//!
//! kube reports all of these alike, as `ServiceError: client error (Connect)`; the cause is
//! further down the chain of sources (hyper's error, the connector's, an `io::Error` that
//! wraps rustls' error), so each is recognised by walking that chain.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use kube::config::Kubeconfig;
use rustls::{AlertDescription, CertificateError};
use tower::BoxError;

/// Where the certificates of a connection come from, as a message names them.
#[derive(Clone, Debug)]
pub(crate) struct Sources {
    /// The CA that verifies the server, e.g. `certificate-authority-data of cluster "c" in
    /// /etc/kubeconfig`.
    pub ca: String,
    /// The client certificate, where the user has one.
    pub client_cert: Option<String>,
}

impl Sources {
    /// The sources the current context of `kc` (read from `path`) uses.
    pub fn of_kubeconfig(kc: &Kubeconfig, path: &str) -> Sources {
        let context = kc
            .current_context
            .as_ref()
            .and_then(|name| kc.contexts.iter().find(|c| &c.name == name))
            .and_then(|c| c.context.as_ref());
        let cluster_name = context.map(|c| c.cluster.as_str()).unwrap_or_default();
        let cluster = kc
            .clusters
            .iter()
            .find(|c| c.name == cluster_name)
            .and_then(|c| c.cluster.as_ref());
        let ca = match cluster {
            Some(c) if c.certificate_authority_data.is_some() => {
                format!("certificate-authority-data of cluster {cluster_name:?} in {path}")
            }
            Some(c) if c.certificate_authority.is_some() => format!(
                "{} (certificate-authority of cluster {cluster_name:?} in {path})",
                c.certificate_authority.as_deref().unwrap_or_default()
            ),
            _ => format!(
                "the system's trust store (cluster {cluster_name:?} in {path} names no certificate-authority)"
            ),
        };
        let user_name = context.and_then(|c| c.user.as_deref()).unwrap_or_default();
        let user = kc
            .auth_infos
            .iter()
            .find(|u| u.name == user_name)
            .and_then(|u| u.auth_info.as_ref());
        let client_cert = user.and_then(|u| {
            if u.client_certificate_data.is_some() {
                Some(format!(
                    "client-certificate-data of user {user_name:?} in {path}"
                ))
            } else {
                u.client_certificate.as_ref().map(|file| {
                    format!("{file} (client-certificate of user {user_name:?} in {path})")
                })
            }
        });
        Sources { ca, client_cert }
    }

    /// What kube infers (in-cluster, `$KUBECONFIG` or `~/.kube/config`): not known in detail.
    pub fn inferred() -> Sources {
        Sources {
            ca: "the CA of the in-cluster or default kubeconfig".to_owned(),
            client_cert: Some(
                "the client certificate of the in-cluster or default kubeconfig".to_owned(),
            ),
        }
    }
}

/// A TLS failure that no retry can mend, in words that name the certificate and why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct TlsRefusal(String);

/// The TLS failure in `e`'s chain of causes, if there is one, described with `sources`.
pub(crate) fn tls_refusal(e: &(dyn StdError + 'static), sources: &Sources) -> Option<TlsRefusal> {
    let tls = find::<rustls::Error>(e)?;
    Some(TlsRefusal(match tls {
        rustls::Error::InvalidCertificate(why) => server_certificate(why, &sources.ca),
        rustls::Error::AlertReceived(alert) if is_about_certificates(*alert) => {
            match &sources.client_cert {
                Some(cert) => format!(
                    "the server refused the client certificate in {cert}: TLS alert {alert:?}"
                ),
                None => format!(
                    "the server asked for a client certificate and the kubeconfig has none: TLS alert {alert:?}"
                ),
            }
        }
        other => format!("the TLS handshake with the server failed: {other}"),
    }))
}

fn server_certificate(why: &CertificateError, ca: &str) -> String {
    let what = match why {
        CertificateError::UnknownIssuer | CertificateError::BadSignature => {
            format!("is not signed by the CA in {ca}")
        }
        CertificateError::Expired
        | CertificateError::ExpiredContext { .. }
        | CertificateError::NotValidYet
        | CertificateError::NotValidYetContext { .. } => {
            "is outside its validity period".to_owned()
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            "does not name the server's address".to_owned()
        }
        _ => format!("was refused (verified with the CA in {ca})"),
    };
    format!("the server's certificate {what}: {why}")
}

fn is_about_certificates(alert: AlertDescription) -> bool {
    matches!(
        alert,
        AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateRequired
            | AlertDescription::AccessDenied
    )
}

/// The message for kube's failure to build its TLS configuration from the kubeconfig: kube
/// calls every refusal of the client certificate "invalid private key", and a CA that is
/// not a certificate "failed to add a root certificate".
pub(crate) fn tls_setup_refusal(e: &kube::Error, sources: &Sources) -> Option<TlsRefusal> {
    use kube::client::RustlsTlsError as T;
    let kube::Error::RustlsTls(t) = e else {
        return None;
    };
    let cert = sources
        .client_cert
        .as_deref()
        .unwrap_or("the kubeconfig's client certificate");
    Some(TlsRefusal(match t {
        T::InvalidPrivateKey(rustls::Error::InvalidCertificate(why)) => {
            // webpki's reason comes wrapped as `Other(OtherError(..))`.
            let text = why.to_string();
            let why = if text.contains("UnsupportedCertVersion") {
                "it is not an X.509 v3 certificate (UnsupportedCertVersion)".to_owned()
            } else {
                text
            };
            format!("the client certificate in {cert} cannot be used: {why}")
        }
        T::InvalidPrivateKey(rustls::Error::InconsistentKeys(_)) => {
            format!("the client key does not match the client certificate in {cert}")
        }
        T::InvalidPrivateKey(other) => {
            format!("the client key or certificate in {cert} cannot be used: {other}")
        }
        T::AddRootCertificate(why) => {
            format!("the CA in {} is not a valid certificate: {why}", sources.ca)
        }
        other => one_line(&other.to_string()),
    }))
}

/// Whether `e`'s chain of causes says the server refused the connection: nothing listens on
/// its port (a restart, or the wrong port).
pub(crate) fn is_refused(e: &(dyn StdError + 'static)) -> bool {
    causes(e).any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
    })
}

/// The first cause in `e`'s chain that is a `T`.
pub(crate) fn find<'a, T: StdError + 'static>(e: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    causes(e).find_map(|c| c.downcast_ref::<T>())
}

/// The causes of `e`, `e` first. An `io::Error` that wraps another error reports that
/// error's source as its own (skipping the error itself), so its inner error is taken
/// instead: that is where rustls' error is.
fn causes<'a>(
    e: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    let mut next = Some(e);
    std::iter::from_fn(move || {
        let current = next?;
        next = match current.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
            None => current.source(),
        };
        Some(current)
    })
}

/// The store's connections are refused (nothing listens) and kept being so until the
/// store's deadline, or for [`PATIENCE`] where it has none.
#[derive(Debug, thiserror::Error)]
#[error("connections were refused for {:.1} s: {last}", waited.as_secs_f64())]
pub(crate) struct StillRefused {
    /// From the first attempt to the last.
    pub waited: Duration,
    /// The last refusal.
    #[source]
    pub last: BoxError,
}

/// How long before the deadline the last connection is tried.
const LAST_TRY_BEFORE: Duration = Duration::from_millis(100);

/// How long refused connections are retried by a store without a deadline.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// A connector that waits out a server that refuses connections: an API server restarts in
/// seconds (about 10 s measured here), and a CNI call that gave up within 0.5 s (the
/// engine's quick retries) failed where waiting would have succeeded. Nothing was sent on a
/// refused connection, so trying again is always safe. Retries back off (jittered,
/// doubling from 50 ms to 1 s) until `until`, then give up with [`StillRefused`]. Every
/// other failure, TLS's above all, is passed on at once.
#[derive(Clone)]
pub(crate) struct Patient<C> {
    pub inner: C,
    /// When to stop trying; `None`: [`PATIENCE`] after the first attempt.
    pub until: Option<tokio::time::Instant>,
}

impl<C, R> tower::Service<R> for Patient<C>
where
    C: tower::Service<R> + Clone + Send + 'static,
    C::Future: Send,
    C::Error: Into<BoxError>,
    C::Response: Send,
    R: Clone + Send + 'static,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, target: R) -> Self::Future {
        use tower::ServiceExt;
        // The instance that was polled ready makes the first attempt (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let until = self.until;
        Box::pin(async move {
            let started = tokio::time::Instant::now();
            let until = until.unwrap_or(started + PATIENCE);
            let mut delay = Duration::from_millis(50);
            loop {
                let e: BoxError = match inner.call(target.clone()).await {
                    Ok(connection) => return Ok(connection),
                    Err(e) => e.into(),
                };
                if !is_refused(&*e) {
                    return Err(e);
                }
                // Tried until just before the deadline (where the call as a whole stops), so
                // that a server back a moment before it is still reached, and the caller
                // hears that connections were refused rather than that time ran out.
                let now = tokio::time::Instant::now();
                let last_try = until.checked_sub(LAST_TRY_BEFORE).unwrap_or(until);
                if now >= last_try {
                    return Err(Box::new(StillRefused {
                        waited: started.elapsed(),
                        last: e,
                    }));
                }
                tokio::time::sleep(jittered(delay).min(last_try - now)).await;
                delay = (delay * 2).min(Duration::from_secs(1));
                inner.ready().await.map_err(Into::into)?;
            }
        })
    }
}

/// Between half of `d` and `d`, at random: processes that were refused together do not all
/// come back at the same instant.
fn jittered(d: Duration) -> Duration {
    use std::hash::BuildHasher;
    let random = std::collections::hash_map::RandomState::new().hash_one(0u8);
    d / 2 + Duration::from_nanos(random % (d.as_nanos() as u64 / 2 + 1))
}

/// `e` and each of its causes that says something more, joined by `: `.
pub(crate) fn with_causes(e: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in causes(e) {
        let text = cause.to_string();
        if !parts.last().is_some_and(|last| last.ends_with(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// `text` on one line, for a one-line log record or a CNI error's `msg`. A YAML parser's
/// message goes on, after `-->`, to quote the input with a caret under the column: the line
/// and column before it already say where, so the quote is left out.
pub(crate) fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("-->"))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_and_whole() {
        for _ in 0..100 {
            let d = jittered(Duration::from_millis(100));
            assert!(d >= Duration::from_millis(50) && d <= Duration::from_millis(100));
        }
    }

    /// rustls' error sits inside an `io::Error` inside hyper's: it is found there, and a
    /// refused connection is told from it.
    #[test]
    fn causes_are_found_inside_io_errors() {
        #[derive(Debug, thiserror::Error)]
        #[error("client error (Connect)")]
        struct Hyper(#[source] BoxError);
        let tls = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let e = Hyper(Box::new(tls));
        let sources = Sources {
            ca: "certificate-authority-data of cluster \"c\" in /k".to_owned(),
            client_cert: None,
        };
        assert_eq!(
            tls_refusal(&e, &sources).unwrap().to_string(),
            "the server's certificate is not signed by the CA in certificate-authority-data of cluster \"c\" in /k: UnknownIssuer"
        );
        assert!(!is_refused(&e));
        let refused = Hyper(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert!(is_refused(&refused));
        assert!(tls_refusal(&refused, &sources).is_none());
    }

    #[test]
    fn one_line_joins_a_parsers_lines() {
        assert_eq!(
            one_line("while parsing a block mapping\n  at line 2\n\n did not find key\n"),
            "while parsing a block mapping at line 2 did not find key"
        );
        assert_eq!(
            one_line("error: line 4 column 12: expected mapping start\n --> <input>:4:12\n  |\n4 |   cluster: [\n  |            ^ expected mapping start"),
            "error: line 4 column 12: expected mapping start"
        );
    }
}
