//! The webhook's certificate: a self-signed CA and a serving certificate for the webhook
//! Service's DNS names, made once per installation and kept in a Secret of the controller's
//! namespace, so that every replica serves the same certificate and the API server trusts it
//! through the one `caBundle` of the ValidatingWebhookConfiguration.
//!
//! The Secret is created if absent (a create: of two replicas that start together, the
//! second is told `AlreadyExists` and reads the first's), and replaced only when it cannot
//! be used, conditioned on the `resourceVersion` read (a compare-and-swap: a replica that
//! lost the race reads the winner's). The CA is then written into every webhook of the
//! configuration whose `caBundle` differs; a configuration that is absent (the operator
//! removed it: the escape hatch) is never re-created.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ipam_core::StoreError;
use ipam_kube::KubeStore;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, Patch, PatchParams, PostParams};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The Secret's keys: those of a `kubernetes.io/tls` Secret, and the CA.
const CERT_KEY: &str = "tls.crt";
const KEY_KEY: &str = "tls.key";
const CA_KEY: &str = "ca.crt";

/// How long the certificates are valid: there is no rotation yet, so long enough to outlive
/// an installation (delete the Secret and restart the controller to make new ones).
const VALID_YEARS: i32 = 10;

/// What could not be made, read or published.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rcgen refused to make a key or a certificate.
    #[error("cannot make the webhook's certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The Secret holds something that is not a certificate and its key.
    #[error("Secret {secret}: {reason}")]
    Unusable {
        /// `namespace/name`.
        secret: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A request to the API server failed.
    #[error(transparent)]
    Api(#[from] StoreError),
    /// Every attempt met another replica's write.
    #[error("Secret {0}: changed by another writer at every attempt")]
    Contended(String),
}

/// The CA and the serving certificate with its key, as PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Material {
    /// The CA's certificate: the webhook configuration's `caBundle`.
    pub ca_pem: String,
    /// The serving certificate.
    pub cert_pem: String,
    /// The serving certificate's private key.
    pub key_pem: String,
}

/// The DNS names the API server may dial the webhook Service by.
pub fn service_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_owned(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// A new CA and a certificate signed by it for `names`.
pub fn generate(names: &[String]) -> Result<Material, TlsError> {
    let year = 1970
        + (SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            / 31_556_952) as i32;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "ipam-controller webhook CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    // From the start of last year: a node whose clock is behind still accepts it.
    ca.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    ca.not_after = rcgen::date_time_ymd(year + VALID_YEARS, 1, 1);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    let mut leaf = CertificateParams::new(names.to_vec())?;
    leaf.distinguished_name.push(
        DnType::CommonName,
        names.get(2).or(names.first()).cloned().unwrap_or_default(),
    );
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    leaf.not_after = rcgen::date_time_ymd(year + VALID_YEARS, 1, 1);
    let key = KeyPair::generate()?;
    let cert = leaf.signed_by(&key, &ca)?;
    Ok(Material {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

impl Material {
    /// The server side of rustls for this certificate (HTTP/1.1 only, as the API server
    /// speaks to webhooks).
    pub fn server_config(&self) -> Result<rustls::ServerConfig, String> {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{CERT_KEY} is not PEM certificates: {e}"))?;
        if chain.is_empty() {
            return Err(format!("{CERT_KEY} holds no certificate"));
        }
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| format!("{KEY_KEY} is not a PEM private key: {e}"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| {
                format!("{CERT_KEY} and {KEY_KEY} do not make a serving certificate: {e}")
            })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// Reads the material of a Secret's data; `None` when a key is missing or the PEM does
    /// not make a serving certificate (the Secret is then replaced).
    fn of_secret(secret: &Secret) -> Result<Material, String> {
        let data = secret.data.clone().unwrap_or_default();
        let text = |key: &str| -> Result<String, String> {
            let bytes = data.get(key).ok_or_else(|| format!("no {key}"))?;
            String::from_utf8(bytes.0.clone()).map_err(|_| format!("{key} is not text"))
        };
        let material = Material {
            ca_pem: text(CA_KEY)?,
            cert_pem: text(CERT_KEY)?,
            key_pem: text(KEY_KEY)?,
        };
        material.server_config()?;
        Ok(material)
    }

    fn to_secret(&self, namespace: &str, name: &str, version: Option<String>) -> Secret {
        let data: BTreeMap<String, ByteString> = [
            (CA_KEY, &self.ca_pem),
            (CERT_KEY, &self.cert_pem),
            (KEY_KEY, &self.key_pem),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
        .collect();
        Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                resource_version: version,
                labels: Some(
                    [("app.kubernetes.io/part-of".to_owned(), "ipam-rs".to_owned())].into(),
                ),
                ..ObjectMeta::default()
            },
            type_: Some("kubernetes.io/tls".to_owned()),
            data: Some(data),
            ..Secret::default()
        }
    }
}

/// The webhook's material from the Secret `namespace/name`, made and stored first when the
/// Secret is absent or unusable.
pub async fn ensure_secret(
    store: &KubeStore,
    namespace: &str,
    name: &str,
    names: &[String],
) -> Result<Material, TlsError> {
    let object = format!("{namespace}/{name}");
    for _ in 0..5 {
        let (ns, n) = (namespace.to_owned(), name.to_owned());
        let found = store
            .send("get secret", object.clone(), move |client| async move {
                Api::<Secret>::namespaced(client, &ns).get_opt(&n).await
            })
            .await?;
        let version = match &found {
            Some(secret) => match Material::of_secret(secret) {
                Ok(material) => return Ok(material),
                Err(reason) => {
                    eprintln!("ipam-controller: webhook Secret {object} is unusable ({reason}): replacing it");
                    secret.metadata.resource_version.clone()
                }
            },
            None => None,
        };
        let material = generate(names)?;
        let secret = material.to_secret(namespace, name, version.clone());
        let written = match version {
            // Absent: a create, which only one replica wins.
            None => {
                let ns = namespace.to_owned();
                store
                    .send("create secret", object.clone(), move |client| async move {
                        Api::<Secret>::namespaced(client, &ns)
                            .create(&PostParams::default(), &secret)
                            .await
                    })
                    .await
            }
            // Unusable: replaced only as it was read.
            Some(_) => {
                let (ns, n) = (namespace.to_owned(), name.to_owned());
                store
                    .send("replace secret", object.clone(), move |client| async move {
                        Api::<Secret>::namespaced(client, &ns)
                            .replace(&n, &PostParams::default(), &secret)
                            .await
                    })
                    .await
            }
        };
        match written {
            Ok(_) => {
                eprintln!(
                    "ipam-controller: webhook certificate made and stored in Secret {object}"
                );
                return Ok(material);
            }
            // Another replica wrote first (409: AlreadyExists, or a stale resourceVersion):
            // read what it wrote.
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(TlsError::Contended(object))
}

/// Writes `ca_pem` into the `caBundle` of every webhook of the configuration `name` that has
/// another. Returns whether the configuration exists (an operator may have removed it).
pub async fn publish_ca_bundle(
    store: &KubeStore,
    name: &str,
    ca_pem: &str,
) -> Result<bool, TlsError> {
    let n = name.to_owned();
    let found = store
        .send(
            "get validatingwebhookconfiguration",
            name.to_owned(),
            move |client| async move {
                Api::<ValidatingWebhookConfiguration>::all(client)
                    .get_opt(&n)
                    .await
            },
        )
        .await?;
    let Some(configuration) = found else {
        return Ok(false);
    };
    let bundle = ByteString(ca_pem.as_bytes().to_vec());
    let stale: Vec<String> = configuration
        .webhooks
        .unwrap_or_default()
        .into_iter()
        .filter(|w| w.client_config.ca_bundle.as_ref() != Some(&bundle))
        .map(|w| w.name)
        .collect();
    if stale.is_empty() {
        return Ok(true);
    }
    // A strategic merge patch: the webhooks list merges by name, so only the caBundle of
    // each named webhook changes.
    let encoded = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let patch = serde_json::json!({
        "webhooks": stale
            .iter()
            .map(|w| serde_json::json!({"name": w, "clientConfig": {"caBundle": encoded}}))
            .collect::<Vec<_>>()
    });
    let n = name.to_owned();
    store
        .send(
            "patch validatingwebhookconfiguration",
            name.to_owned(),
            move |client| async move {
                Api::<ValidatingWebhookConfiguration>::all(client)
                    .patch(&n, &PatchParams::default(), &Patch::Strategic(patch))
                    .await
            },
        )
        .await?;
    eprintln!(
        "ipam-controller: the webhook CA written into the caBundle of {} ({})",
        name,
        stale.join(", ")
    );
    Ok(true)
}

/// How often each replica checks the configuration's `caBundle` again (a configuration
/// re-applied by hand, or re-created by the operator after removing it).
pub const CA_BUNDLE_EVERY: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;

    #[test]
    fn the_certificate_names_the_service_and_is_signed_by_the_ca() {
        let names = service_names("ipam-controller-webhook", "ipam-rs");
        assert_eq!(names[2], "ipam-controller-webhook.ipam-rs.svc");
        let m = generate(&names).unwrap();
        assert!(
            m.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"),
            "{}",
            m.ca_pem
        );
        m.server_config().expect("a usable serving certificate");
        // A client that trusts only the CA accepts the certificate for the Service's name.
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(m.ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let leaf = CertificateDer::from_pem_slice(m.cert_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        let now = rustls::pki_types::UnixTime::now();
        for name in &names {
            let server = rustls::pki_types::ServerName::try_from(name.as_str()).unwrap();
            verifier
                .verify_server_cert(&leaf, &[], &server, &[], now)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let other = rustls::pki_types::ServerName::try_from("other.ipam-rs.svc").unwrap();
        assert!(verifier
            .verify_server_cert(&leaf, &[], &other, &[], now)
            .is_err());
        // Two generations are two CAs: replicas must share one (the Secret).
        assert_ne!(generate(&names).unwrap().ca_pem, m.ca_pem);
    }

    #[test]
    fn a_secret_without_a_usable_certificate_is_refused() {
        let m = generate(&service_names("s", "ns")).unwrap();
        let good = m.to_secret("ns", "s", None);
        assert_eq!(Material::of_secret(&good).unwrap(), m);
        let mut broken = good.clone();
        broken
            .data
            .as_mut()
            .unwrap()
            .insert(KEY_KEY.into(), ByteString(b"not a key".to_vec()));
        let why = Material::of_secret(&broken).unwrap_err();
        assert!(why.contains("tls.key"), "{why}");
        let mut missing = good;
        missing.data.as_mut().unwrap().remove(CA_KEY);
        assert_eq!(Material::of_secret(&missing).unwrap_err(), "no ca.crt");
    }
}
