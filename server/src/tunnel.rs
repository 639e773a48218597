//! `serve --ngrok`: a public HTTPS address for FaceGate through ngrok, for a
//! phone that is not on the server's network. Every frame then passes
//! through ngrok's service, so it is off unless asked for; a tunnel that
//! cannot be opened is reported and FaceGate keeps serving locally.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{Context, bail};
use ngrok::prelude::*;

/// The variable ngrok's own tools read the account's authtoken from.
pub const AUTHTOKEN_VAR: &str = "NGROK_AUTHTOKEN";

/// What the tunnel is told.
#[derive(Clone, Debug, Default)]
pub struct TunnelConfig {
    /// A domain reserved in the ngrok account; otherwise ngrok assigns one.
    pub domain: Option<String>,
    /// A custom ngrok ingress (`host:port`); otherwise ngrok's own.
    pub server: Option<String>,
}

/// An open tunnel; it closes when dropped.
pub struct Tunnel {
    forwarder: ngrok::forwarder::Forwarder<ngrok::tunnel::HttpTunnel>,
}

impl Tunnel {
    /// The public address, `https://...`.
    pub fn url(&self) -> &str {
        self.forwarder.url()
    }

    /// Waits until the tunnel ends (the session is lost or closed).
    pub async fn closed(mut self) -> anyhow::Result<()> {
        match self.forwarder.join().await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => bail!("the tunnel failed: {e}"),
            Err(e) => bail!("the tunnel's task failed: {e}"),
        }
    }
}

/// Opens a tunnel whose connections are forwarded to FaceGate at `local`
/// (plain HTTP: ngrok's side is HTTPS).
pub async fn open(local: SocketAddr, config: &TunnelConfig) -> anyhow::Result<Tunnel> {
    let Ok(token) = std::env::var(AUTHTOKEN_VAR) else {
        bail!("{AUTHTOKEN_VAR} is not set (the authtoken of your ngrok account)");
    };
    let mut session = ngrok::Session::builder();
    session.authtoken(token);
    if let Some(server) = &config.server {
        session.server_addr(server.as_str()).context("the ngrok server address is invalid")?;
    }
    let session = session.connect().await.context("cannot connect to ngrok")?;
    let mut endpoint = session.http_endpoint();
    if let Some(domain) = &config.domain {
        endpoint.domain(domain.as_str());
    }
    let target: url::Url = format!("http://{}", loopback_if_unspecified(local))
        .parse()
        .context("cannot form the local address")?;
    let forwarder =
        endpoint.listen_and_forward(target).await.context("ngrok refused the tunnel")?;
    Ok(Tunnel { forwarder })
}

/// Where the tunnel can reach a server listening on `addr`.
fn loopback_if_unspecified(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_on_every_interface_is_reached_on_loopback() {
        let any: SocketAddr = "0.0.0.0:3000".parse().unwrap();
        assert_eq!(loopback_if_unspecified(any), "127.0.0.1:3000".parse().unwrap());
        let lan: SocketAddr = "192.0.2.20:3443".parse().unwrap();
        assert_eq!(loopback_if_unspecified(lan), lan);
    }
}
