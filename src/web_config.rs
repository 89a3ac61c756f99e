//! `--web.config.file`: the Prometheus exporter-toolkit web configuration (`tls_server_config` and
//! `basic_auth_users`), read at start-up and re-read when it changes. It owns parsing the file, building
//! the rustls server configuration from its certificate files, and checking HTTP basic-auth credentials
//! against bcrypt hashes. The crypto is rustls' and the bcrypt crate's; nothing here implements any.
//!
//! Relative file names in the file are resolved against the file's directory, as exporter-toolkit does.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use serde::Deserialize;

/// Why a web configuration file cannot be used. Each message names the file and, where there is one,
/// the key.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("cannot read {}: {error}", path.display())]
    Unreadable { path: PathBuf, error: std::io::Error },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("{}: {key}: {message}", path.display())]
    Key { path: PathBuf, key: &'static str, message: String },
    #[error("{}: basic_auth_users: {user}: not a bcrypt hash ($2a$, $2b$ or $2y$)", path.display())]
    NotBcrypt { path: PathBuf, user: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    #[serde(default)]
    tls_server_config: Option<TlsFormat>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFormat {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    #[serde(default)]
    client_auth_type: ClientAuthType,
    client_ca_file: Option<PathBuf>,
    min_version: Option<String>,
    max_version: Option<String>,
}

/// exporter-toolkit's `client_auth_type` values (Go's `tls.ClientAuthType` names).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum ClientAuthType {
    #[default]
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

/// A loaded web configuration: what the server applies to each new connection.
#[derive(Clone)]
pub struct WebConfig {
    /// `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `None`: no authentication.
    pub auth: Option<Arc<BasicAuth>>,
    /// Every byte read to build this configuration (the file and the files it names), to tell whether a
    /// re-read changed anything.
    inputs: Vec<u8>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the hashes or keys.
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("users", &self.auth.as_ref().map_or(0, |a| a.users.len()))
            .finish()
    }
}

fn read(path: &Path, inputs: &mut Vec<u8>) -> Result<Vec<u8>, WebConfigError> {
    let bytes = std::fs::read(path).map_err(|error| WebConfigError::Unreadable { path: path.to_owned(), error })?;
    inputs.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    inputs.extend_from_slice(&bytes);
    Ok(bytes)
}

fn tls_version(path: &Path, key: &'static str, v: &str) -> Result<u8, WebConfigError> {
    match v {
        "TLS12" => Ok(12),
        "TLS13" => Ok(13),
        "TLS10" | "TLS11" => Err(WebConfigError::Key {
            path: path.to_owned(),
            key,
            message: format!("{v} is not supported (TLS12 or TLS13)"),
        }),
        _ => Err(WebConfigError::Key {
            path: path.to_owned(),
            key,
            message: format!("unknown TLS version {v:?} (TLS12 or TLS13)"),
        }),
    }
}

impl WebConfig {
    /// Reads and checks `path` and every file it names.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let mut inputs = Vec::new();
        let text = read(path, &mut inputs)?;
        let file: FileFormat = if text.iter().all(u8::is_ascii_whitespace) {
            // An empty file is a valid, empty configuration, as in exporter-toolkit.
            FileFormat { tls_server_config: None, basic_auth_users: None }
        } else {
            serde_norway::from_slice(&text)
                .map_err(|e| WebConfigError::Invalid { path: path.to_owned(), message: e.to_string() })?
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let tls = file.tls_server_config.map(|t| build_tls(path, dir, t, &mut inputs)).transpose()?;
        let auth = match file.basic_auth_users {
            Some(users) if !users.is_empty() => {
                for (user, hash) in &users {
                    let known_prefix = ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p));
                    if !known_prefix || hash.parse::<bcrypt::HashParts>().is_err() {
                        return Err(WebConfigError::NotBcrypt { path: path.to_owned(), user: user.clone() });
                    }
                }
                Some(Arc::new(BasicAuth::new(users)))
            }
            _ => None,
        };
        Ok(WebConfig { tls, auth, inputs })
    }

    /// Whether `other` was built from exactly the same bytes.
    pub fn same_inputs(&self, other: &WebConfig) -> bool {
        self.inputs == other.inputs
    }
}

fn build_tls(
    path: &Path,
    dir: &Path,
    t: TlsFormat,
    inputs: &mut Vec<u8>,
) -> Result<Arc<rustls::ServerConfig>, WebConfigError> {
    let key_err = |key: &'static str, message: String| WebConfigError::Key { path: path.to_owned(), key, message };
    let cert_file = t.cert_file.ok_or_else(|| key_err("tls_server_config.cert_file", "is required".into()))?;
    let key_file = t.key_file.ok_or_else(|| key_err("tls_server_config.key_file", "is required".into()))?;
    let cert_path = dir.join(cert_file);
    let certs = CertificateDer::pem_slice_iter(&read(&cert_path, inputs)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| key_err("tls_server_config.cert_file", format!("{}: {e}", cert_path.display())))?;
    if certs.is_empty() {
        return Err(key_err("tls_server_config.cert_file", format!("{}: no certificate", cert_path.display())));
    }
    let key_path = dir.join(key_file);
    let key = PrivateKeyDer::from_pem_slice(&read(&key_path, inputs)?)
        .map_err(|e| key_err("tls_server_config.key_file", format!("{}: {e}", key_path.display())))?;

    let min = tls_version(path, "tls_server_config.min_version", t.min_version.as_deref().unwrap_or("TLS12"))?;
    let max = tls_version(path, "tls_server_config.max_version", t.max_version.as_deref().unwrap_or("TLS13"))?;
    if min > max {
        return Err(key_err("tls_server_config.max_version", "is below min_version".into()));
    }
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (min..=max).contains(v))
            .map(|(_, p)| p)
            .collect();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| key_err("tls_server_config.min_version", e.to_string()))?;

    let roots = match &t.client_ca_file {
        Some(ca) => {
            let ca_path = dir.join(ca);
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&read(&ca_path, inputs)?) {
                let c =
                    c.map_err(|e| key_err("tls_server_config.client_ca_file", format!("{}: {e}", ca_path.display())))?;
                roots
                    .add(c)
                    .map_err(|e| key_err("tls_server_config.client_ca_file", format!("{}: {e}", ca_path.display())))?;
            }
            if roots.is_empty() {
                return Err(key_err(
                    "tls_server_config.client_ca_file",
                    format!("{}: no certificate", ca_path.display()),
                ));
            }
            Some(Arc::new(roots))
        }
        None => None,
    };
    let verify = |allow_anonymous: bool| -> Result<Arc<dyn ClientCertVerifier>, WebConfigError> {
        let roots = roots.clone().ok_or_else(|| {
            key_err(
                "tls_server_config.client_ca_file",
                format!("is required by client_auth_type {:?}", t.client_auth_type),
            )
        })?;
        let b = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
        let b = if allow_anonymous { b.allow_unauthenticated() } else { b };
        b.build().map_err(|e| key_err("tls_server_config.client_ca_file", e.to_string()))
    };
    let builder =
        match t.client_auth_type {
            ClientAuthType::NoClientCert => {
                if roots.is_some() {
                    // As exporter-toolkit: a CA nobody is checked against is a mistake worth stopping for.
                    return Err(key_err(
                        "tls_server_config.client_ca_file",
                        "is set but client_auth_type is NoClientCert".into(),
                    ));
                }
                builder.with_no_client_auth()
            }
            ClientAuthType::RequestClientCert => builder
                .with_client_cert_verifier(Arc::new(AnyClientCert { provider: provider.clone(), mandatory: false })),
            ClientAuthType::RequireAnyClientCert => builder
                .with_client_cert_verifier(Arc::new(AnyClientCert { provider: provider.clone(), mandatory: true })),
            ClientAuthType::VerifyClientCertIfGiven => builder.with_client_cert_verifier(verify(true)?),
            ClientAuthType::RequireAndVerifyClientCert => builder.with_client_cert_verifier(verify(false)?),
        };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| key_err("tls_server_config.key_file", format!("{}: {e}", key_path.display())))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Go's `RequestClientCert` / `RequireAnyClientCert`: a client certificate is asked for (and, for the
/// latter, required) but not checked against any CA. The handshake signature is still verified by
/// rustls' own routines, so the client proves it holds the key.
#[derive(Debug)]
struct AnyClientCert {
    provider: Arc<rustls::crypto::CryptoProvider>,
    mandatory: bool,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// How many successful verifications [`BasicAuth`] remembers; past it the cache starts over.
const CACHE_CAP: usize = 256;

/// `basic_auth_users`: user → bcrypt hash. A successful check is remembered (as a SHA-256 of user,
/// password and hash, never the password itself), so a scraper re-sending the same credentials costs
/// one bcrypt, not one per scrape — exporter-toolkit caches the same way.
pub struct BasicAuth {
    /// (SHA-256 of the user name, user name, hash).
    users: Vec<([u8; 32], String, String)>,
    verified: Mutex<HashSet<[u8; 32]>>,
    /// Held for every bcrypt: one verification at a time, so a flood of wrong passwords (each a
    /// deliberately slow bcrypt) burns at most one core, and a scraper whose credentials are cached
    /// never waits for it.
    bcrypt_gate: Mutex<()>,
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(&(p.len() as u64).to_le_bytes());
        ctx.update(p);
    }
    ctx.finish().as_ref().try_into().expect("SHA-256 is 32 bytes")
}

impl BasicAuth {
    fn new(users: BTreeMap<String, String>) -> BasicAuth {
        let users = users.into_iter().map(|(u, h)| (sha256(&[u.as_bytes()]), u, h)).collect();
        BasicAuth { users, verified: Mutex::new(HashSet::new()), bcrypt_gate: Mutex::new(()) }
    }

    /// Whether `authorization` (an `Authorization` header value) carries a valid user and password.
    /// Costs one bcrypt unless the same credentials were verified before: call it off the async threads.
    pub fn check(&self, authorization: Option<&[u8]>) -> bool {
        use base64::Engine as _;
        let Some(encoded) = authorization.and_then(|h| h.strip_prefix(b"Basic ")) else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim_ascii()) else {
            return false;
        };
        let Some(colon) = decoded.iter().position(|&b| b == b':') else {
            return false;
        };
        let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
        // Compare digests of every user without stopping at a match, so the time spent does not tell
        // which user names exist.
        let digest = sha256(&[user]);
        let mut found: Option<&str> = None;
        for (d, _, hash) in &self.users {
            if d.iter().zip(&digest).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0 {
                found = Some(hash);
            }
        }
        let hash = found.unwrap_or(&self.users[0].2);
        let key = sha256(&[user, password, hash.as_bytes()]);
        if self.verified.lock().expect("auth cache lock").contains(&key) {
            return true;
        }
        // An unknown user still costs one bcrypt (against another user's hash), as a known one does.
        let ok = {
            let _one_at_a_time = self.bcrypt_gate.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            bcrypt::verify(password, hash).unwrap_or(false) && found.is_some()
        };
        if ok {
            let mut cache = self.verified.lock().expect("auth cache lock");
            if cache.len() >= CACHE_CAP {
                cache.clear();
            }
            cache.insert(key);
        }
        ok
    }

    /// How many verifications are remembered (for tests).
    pub fn cached(&self) -> usize {
        self.verified.lock().expect("auth cache lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn cert(dir: &Path) {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        write(dir, "cert.pem", &c.cert.pem());
        write(dir, "key.pem", &c.signing_key.serialize_pem());
    }

    fn basic(user: &str, password: &str) -> Vec<u8> {
        use base64::Engine as _;
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))).into_bytes()
    }

    fn err(text: &str) -> String {
        let d = dir();
        cert(d.path());
        let p = write(d.path(), "web.yml", text);
        WebConfig::load(&p).unwrap_err().to_string().replace(&d.path().display().to_string(), "DIR")
    }

    #[test]
    fn empty_file_is_plain_http_without_auth() {
        let d = dir();
        let c = WebConfig::load(&write(d.path(), "web.yml", "\n")).unwrap();
        assert!(c.tls.is_none() && c.auth.is_none());
    }

    #[test]
    fn tls_and_users_load_with_paths_relative_to_the_file() {
        let d = dir();
        cert(d.path());
        let hash = bcrypt::hash("pw", 4).unwrap();
        let p = write(
            d.path(),
            "web.yml",
            &format!("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  min_version: TLS13\nbasic_auth_users:\n  alice: {hash}\n"),
        );
        let c = WebConfig::load(&p).unwrap();
        let tls = c.tls.as_ref().unwrap();
        assert_eq!(tls.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert_eq!(c.auth.as_ref().unwrap().users.len(), 1);
        assert!(c.same_inputs(&WebConfig::load(&p).unwrap()));
        write(d.path(), "key.pem", &rcgen::KeyPair::generate().unwrap().serialize_pem());
        // A new key that does not match the certificate: refused, naming the key.
        assert!(WebConfig::load(&p).unwrap_err().to_string().contains(": tls_server_config.key_file: "));
    }

    #[test]
    fn errors_name_the_file_and_key() {
        assert!(err("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  cipher_suites: []\n")
            .starts_with("DIR/web.yml: tls_server_config: unknown field `cipher_suites`, expected one of"));
        assert!(err("basic_auth_user:\n  a: b\n").starts_with("DIR/web.yml: unknown field `basic_auth_user`"));
        assert_eq!(
            err("tls_server_config:\n  cert_file: nope.pem\n  key_file: key.pem\n"),
            "cannot read DIR/nope.pem: No such file or directory (os error 2)"
        );
        assert_eq!(
            err("tls_server_config:\n  key_file: key.pem\n"),
            "DIR/web.yml: tls_server_config.cert_file: is required"
        );
        assert_eq!(
            err("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  min_version: TLS11\n"),
            "DIR/web.yml: tls_server_config.min_version: TLS11 is not supported (TLS12 or TLS13)"
        );
        assert_eq!(
            err("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  min_version: TLS13\n  max_version: TLS12\n"),
            "DIR/web.yml: tls_server_config.max_version: is below min_version"
        );
        assert_eq!(
            err("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  client_auth_type: RequireAndVerifyClientCert\n"),
            "DIR/web.yml: tls_server_config.client_ca_file: is required by client_auth_type RequireAndVerifyClientCert"
        );
        assert_eq!(
            err("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  client_ca_file: cert.pem\n"),
            "DIR/web.yml: tls_server_config.client_ca_file: is set but client_auth_type is NoClientCert"
        );
        assert!(err("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  client_auth_type: Maybe\n")
            .contains("unknown variant `Maybe`"));
        assert_eq!(
            err("basic_auth_users:\n  bob: plain-text\n"),
            "DIR/web.yml: basic_auth_users: bob: not a bcrypt hash ($2a$, $2b$ or $2y$)"
        );
    }

    #[test]
    fn every_client_auth_type_builds() {
        // The verifying types need the client CA; the others take none.
        let ca = "  client_ca_file: cert.pem\n";
        for (t, extra) in [
            ("RequestClientCert", ""),
            ("RequireAnyClientCert", ""),
            ("VerifyClientCertIfGiven", ca),
            ("RequireAndVerifyClientCert", ca),
        ] {
            let d = dir();
            cert(d.path());
            let p = write(
                d.path(),
                "w.yml",
                &format!(
                    "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n{extra}  client_auth_type: {t}\n"
                ),
            );
            WebConfig::load(&p).unwrap();
        }
    }

    #[test]
    fn basic_auth_checks_and_caches() {
        // $2y$ and $2a$ (other tools' prefixes) verify like $2b$.
        let h = bcrypt::hash("s3cret", 4).unwrap();
        let users = BTreeMap::from([
            ("alice".to_owned(), h.replacen("$2b$", "$2y$", 1)),
            ("bob".to_owned(), h.replacen("$2b$", "$2a$", 1)),
        ]);
        let auth = BasicAuth::new(users);
        assert!(!auth.check(None));
        assert!(!auth.check(Some(b"Bearer x")));
        assert!(!auth.check(Some(b"Basic !!!")));
        assert!(!auth.check(Some(&basic("alice", "wrong"))));
        assert!(!auth.check(Some(&basic("carol", "s3cret"))), "unknown user");
        assert_eq!(auth.cached(), 0, "failures are not remembered");
        assert!(auth.check(Some(&basic("alice", "s3cret"))));
        assert!(auth.check(Some(&basic("bob", "s3cret"))));
        assert_eq!(auth.cached(), 2);
        assert!(auth.check(Some(&basic("alice", "s3cret"))));
        assert_eq!(auth.cached(), 2, "the second check came from the cache");
        // A password with a colon: only the first one separates the user.
        let auth = BasicAuth::new(BTreeMap::from([("u".to_owned(), bcrypt::hash("a:b", 4).unwrap())]));
        assert!(auth.check(Some(&basic("u", "a:b"))));
    }

    /// Sixty connections sending wrong passwords saturated both cores and made a cached scrape wait.
    /// bcrypts run one at a time; cached credentials pass without waiting for them.
    #[test]
    fn bcrypts_run_one_at_a_time_and_cached_credentials_do_not_wait() {
        let h = bcrypt::hash("s3cret", 4).unwrap();
        let auth = Arc::new(BasicAuth::new(BTreeMap::from([("alice".to_owned(), h)])));
        assert!(auth.check(Some(&basic("alice", "s3cret"))));
        // A bcrypt in progress (the gate held): a wrong password waits for it…
        let gate = auth.bcrypt_gate.lock().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiting = {
            let auth = auth.clone();
            std::thread::spawn(move || tx.send(auth.check(Some(&basic("alice", "wrong")))).unwrap())
        };
        assert_eq!(
            rx.recv_timeout(std::time::Duration::from_millis(300)),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout)
        );
        // …while the cached scraper passes at once.
        assert!(auth.check(Some(&basic("alice", "s3cret"))));
        drop(gate);
        assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(10)), Ok(false));
        waiting.join().unwrap();
    }
}
