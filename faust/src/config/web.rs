//! TLS on the worker's web port.

use std::path::PathBuf;

/// TLS on the worker's web server (`https://`), and optionally client certificates:
/// `faust::WebTls::new("web.crt", "web.key").client_ca("clients-ca.pem")`. With a
/// client CA, everything but `/health` and `/metrics` (which probes and scrapers reach
/// without one) answers only requests over a connection that presented a certificate
/// the CA signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebTls {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) client_ca: Option<PathBuf>,
}

impl WebTls {
    /// The server's certificate chain and private key (PEM files).
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> WebTls {
        WebTls {
            cert: cert.into(),
            key: key.into(),
            client_ca: None,
        }
    }

    /// Require client certificates signed by this CA (PEM file).
    pub fn client_ca(mut self, ca: impl Into<PathBuf>) -> Self {
        self.client_ca = Some(ca.into());
        self
    }

    /// Each file with the setting that names it.
    pub(crate) fn files(&self) -> Vec<(&'static str, &PathBuf)> {
        let mut files = vec![
            ("--web-cert (FAUST_WEB_CERT)", &self.cert),
            ("--web-key (FAUST_WEB_KEY)", &self.key),
        ];
        if let Some(ca) = &self.client_ca {
            files.push(("--web-client-ca (FAUST_WEB_CLIENT_CA)", ca));
        }
        files
    }
}
