//! TLS on the web port, with OpenSSL (which librdkafka already links). Handshakes run on
//! tasks of their own, so a slow or silent client holds up no other.

use std::{net::SocketAddr, pin::Pin, time::Duration};

use axum::{extract::connect_info::Connected, serve::IncomingStream};
use openssl::ssl::{Ssl, SslAcceptor, SslFiletype, SslMethod, SslVerifyMode};
use tokio::{net::TcpStream, sync::mpsc};
use tokio_openssl::SslStream;
use tracing::debug;

use crate::{config::WebTls, Error, Result};

/// How long a client has to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's TLS settings, read from `tls`'s files; a file that does not hold what
/// it should is named with its setting.
pub(super) fn acceptor(tls: &WebTls) -> Result<SslAcceptor> {
    let unusable = |setting: &str, file: &std::path::Path, e: openssl::error::ErrorStack| {
        Error::Config(format!("{setting}: cannot use '{}': {e}", file.display()))
    };
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())
        .map_err(|e| Error::Config(format!("setting up TLS for the web server: {e}")))?;
    builder
        .set_certificate_chain_file(&tls.cert)
        .map_err(|e| unusable("--web-cert", &tls.cert, e))?;
    builder
        .set_private_key_file(&tls.key, SslFiletype::PEM)
        .map_err(|e| unusable("--web-key", &tls.key, e))?;
    builder
        .check_private_key()
        .map_err(|e| unusable("--web-key (it does not match --web-cert)", &tls.key, e))?;
    if let Some(ca) = &tls.client_ca {
        builder
            .set_ca_file(ca)
            .map_err(|e| unusable("--web-client-ca", ca, e))?;
        // Asked for, checked when given, not required by the handshake: probes reach
        // /health and /metrics without one; `Peer` tells the routes which is which.
        builder.set_verify(SslVerifyMode::PEER);
    }
    Ok(builder.build())
}

/// Accepted TLS connections, their handshakes done.
pub(super) struct TlsListener {
    accepted: mpsc::Receiver<(SslStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `tcp` until the listener is dropped.
    pub(super) fn new(tcp: tokio::net::TcpListener, acceptor: SslAcceptor) -> Result<Self> {
        let local = tcp.local_addr().map_err(|e| Error::Io {
            context: "reading the web server's address".into(),
            source: e,
        })?;
        let (handshaken, accepted) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    _ = handshaken.closed() => return,
                    accepted = tcp.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            debug!(error = %e, "the web server could not accept a connection");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let Ok(ssl) = Ssl::new(acceptor.context()) else {
                    continue;
                };
                let handshaken = handshaken.clone();
                tokio::spawn(async move {
                    let Ok(mut stream) = SslStream::new(ssl, stream) else {
                        return;
                    };
                    let handshake = Pin::new(&mut stream).accept();
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                        Ok(Ok(())) => {
                            let _ = handshaken.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => {
                            debug!(%peer, error = %e, "a TLS handshake on the web port failed")
                        }
                        Err(_) => debug!(%peer, "a TLS handshake on the web port timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { accepted, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = SslStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accepting task holds a sender as long as the listener lives.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// What a request's connection proved.
#[derive(Debug, Clone, Copy)]
pub(super) struct Peer {
    /// It presented a client certificate the web CA signed.
    pub(super) certified: bool,
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        // With `SslVerifyMode::PEER`, a certificate that does not verify fails the
        // handshake: one that is there was verified.
        let certified = stream.io().ssl().peer_certificate().is_some();
        Peer { certified }
    }
}

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for Peer {
    fn connect_info(_: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Peer { certified: false }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_no_certificate_is_named_with_its_setting() {
        let dir = std::env::temp_dir().join(format!("faust-web-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let error = match acceptor(&WebTls::new(&junk, &junk)) {
            Ok(_) => panic!("a junk certificate was taken"),
            Err(e) => e.to_string(),
        };
        let _ = std::fs::remove_dir_all(&dir);
        assert!(error.contains("--web-cert: cannot use"), "{error}");
        assert!(error.contains("junk.pem"), "{error}");
    }
}
