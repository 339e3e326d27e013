//! TLS with rustls (the `ring` provider): the server's certificate is always verified, against a
//! CA file ([`PostgresOptions::ca_file`]) or the system's roots, and the connector remembers
//! whether the last connection it made used TLS.

use crate::options::PostgresOptions;
use fnmetrics_core::{Error, ErrorKind};
use postgres::tls::{MakeTlsConnect, TlsConnect};
use postgres::Socket;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use std::convert::Infallible;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio_postgres_rustls::MakeRustlsConnect;

type Inner = <MakeRustlsConnect as MakeTlsConnect<Socket>>::TlsConnect;

/// A rustls connector that records whether the TLS handshake was started.
///
/// tokio-postgres calls [`MakeTlsConnect::make_tls_connect`] once per host it tries, and
/// [`TlsConnect::connect`] only when the server agreed to TLS; a failed handshake fails the
/// connection (there is no fallback to plaintext). So after a successful connect the flag tells
/// whether the connection is TLS.
#[derive(Clone)]
pub(crate) struct Tls {
    inner: MakeRustlsConnect,
    used: Arc<AtomicBool>,
}

impl Tls {
    /// A connector for `options`. With `load_roots` false (`sslmode=disable`: TLS is never
    /// started) no certificates are read.
    pub(crate) fn new(options: &PostgresOptions, load_roots: bool) -> Result<Tls, Error> {
        let roots = match (load_roots, options.ca_file()) {
            (false, _) => RootCertStore::empty(),
            (true, Some(path)) => roots_from_file(path)?,
            (true, None) => system_roots(),
        };
        // ring on purpose (aws-lc-rs needs cmake and nasm to build); rustls 0.23.48 deprecates
        // its provider for lacking post-quantum key exchange, and offers no other ring one.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::with_source(ErrorKind::InvalidConfig, "cannot set up rustls", e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Tls {
            inner: MakeRustlsConnect::new(config),
            used: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Whether the last connection made with this connector started TLS.
    pub(crate) fn used(&self) -> bool {
        self.used.load(Ordering::Acquire)
    }
}

/// The certificates of a PEM file (one or more `CERTIFICATE` blocks) as the only trusted roots.
fn roots_from_file(path: &Path) -> Result<RootCertStore, Error> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| {
        Error::with_source(
            ErrorKind::InvalidConfig,
            format!("cannot read the CA file `{shown}`"),
            e,
        )
    })?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| {
            Error::with_source(
                ErrorKind::InvalidConfig,
                format!("the CA file `{shown}` is not valid PEM"),
                e,
            )
        })?;
        roots.add(cert).map_err(|e| {
            Error::with_source(
                ErrorKind::InvalidConfig,
                format!("the CA file `{shown}` holds a certificate rustls cannot use"),
                e,
            )
        })?;
    }
    if roots.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidConfig,
            format!("the CA file `{shown}` holds no certificate"),
        ));
    }
    Ok(roots)
}

/// The operating system's trusted roots (on Linux, `/etc/ssl/certs` and friends, or the files
/// `SSL_CERT_FILE` / `SSL_CERT_DIR` name). Unreadable ones are logged and skipped; with none at
/// all, every TLS handshake fails with a certificate error (which says so).
fn system_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        log::warn!("fnmetrics: cannot load a system root certificate: {e}");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if ignored > 0 {
        log::warn!("fnmetrics: {ignored} system root certificates could not be parsed");
    }
    if added == 0 {
        log::warn!(
            "fnmetrics: no system root certificates found; TLS connections to PostgreSQL will \
             fail unless PostgresOptions::with_ca_file names the server's CA"
        );
    }
    roots
}

impl MakeTlsConnect<Socket> for Tls {
    type Stream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;
    type TlsConnect = TlsStart;
    type Error = Infallible;

    fn make_tls_connect(&mut self, hostname: &str) -> Result<TlsStart, Infallible> {
        self.used.store(false, Ordering::Release);
        let inner = <MakeRustlsConnect as MakeTlsConnect<Socket>>::make_tls_connect(
            &mut self.inner,
            hostname,
        )?;
        Ok(TlsStart {
            inner,
            used: Arc::clone(&self.used),
        })
    }
}

/// One TLS handshake, which sets the flag when it starts.
pub(crate) struct TlsStart {
    inner: Inner,
    used: Arc<AtomicBool>,
}

impl TlsConnect<Socket> for TlsStart {
    type Stream = <Inner as TlsConnect<Socket>>::Stream;
    type Error = <Inner as TlsConnect<Socket>>::Error;
    type Future = <Inner as TlsConnect<Socket>>::Future;

    fn connect(self, stream: Socket) -> Self::Future {
        self.used.store(true, Ordering::Release);
        self.inner.connect(stream)
    }
}
