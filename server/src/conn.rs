//! Serving connections: the router over hyper's HTTP/1.1, with the limits that
//! a server facing the open network needs and `axum::serve` leaves unset.
//!
//! - A deadline for each request's headers. It also closes keep-alive
//!   connections that sit idle, so a client that opens sockets and sends
//!   nothing (or a byte at a time) cannot hold them.
//! - A deadline between the pieces of a request's body: an upload that stalls
//!   ends in an error instead of holding its handler.
//! - A cap on open connections, taken before accepting: past it, new clients
//!   wait in the kernel's backlog instead of exhausting file descriptors.
//! - At shutdown, no new connections, and a bounded wait for requests in flight.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;
use tower_http::timeout::TimeoutBody;

#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Longest a client may take to send a request's headers, and so also how
    /// long an idle keep-alive connection stays open.
    pub header_timeout: Duration,
    /// Longest a request's body may go without sending anything.
    pub body_idle_timeout: Duration,
    /// Connections open at once.
    pub max_connections: u32,
    /// Longest the server waits at shutdown for the requests in flight.
    pub drain_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(20),
            body_idle_timeout: Duration::from_secs(30),
            max_connections: 512,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets the
/// requests in flight finish (for at most `limits.drain_timeout`).
///
/// Handlers see the peer's address as `ConnectInfo<SocketAddr>`.
pub async fn serve<L>(
    mut listener: L,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) where
    L: Listener<Addr = SocketAddr>,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections as usize));
    let (stopping, stop) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let service = router.clone().map_request(move |request: Request<Incoming>| {
            let mut request =
                request.map(|body| Body::new(TimeoutBody::new(limits.body_idle_timeout, body)));
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        });
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
            let mut connection =
                pin!(builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service)));
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                    return;
                }
                _ = stop.wait_for(|stopping| *stopping) => connection.as_mut().graceful_shutdown(),
            }
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error during shutdown");
            }
        });
    }
    drop(listener);
    stopping.send_replace(true);
    // Each connection holds a slot until it ends: all slots back means all done.
    let drained =
        tokio::time::timeout(limits.drain_timeout, slots.acquire_many(limits.max_connections));
    if drained.await.is_err() {
        tracing::warn!(
            "requests still in flight after {} s; stopping anyway",
            limits.drain_timeout.as_secs()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    async fn start(limits: ConnectionLimits) -> (SocketAddr, watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route(
            "/",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() })
                .post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        );
        let (stop, mut stopped) = watch::channel(false);
        tokio::spawn(serve(listener, router, limits, async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }));
        (addr, stop)
    }

    fn limits(header_timeout_ms: u64, max_connections: u32) -> ConnectionLimits {
        ConnectionLimits {
            header_timeout: Duration::from_millis(header_timeout_ms),
            body_idle_timeout: Duration::from_millis(header_timeout_ms),
            max_connections,
            drain_timeout: Duration::from_secs(5),
        }
    }

    /// Sends one request and reads the whole answer (the request asks to close).
    async fn get_root(stream: &mut TcpStream) -> String {
        stream.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn requests_are_answered_with_the_peer_address() {
        let (addr, _stop) = start(limits(2_000, 8)).await;
        let answer = get_root(&mut TcpStream::connect(addr).await.unwrap()).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("127.0.0.1"), "{answer}");
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_cut_off() {
        let (addr, _stop) = start(limits(300, 8)).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").await.unwrap();
        let started = Instant::now();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the connection was still open after 10 s");
        assert!(started.elapsed() >= Duration::from_millis(250), "closed before the deadline");
        // The server itself goes on answering.
        let answer = get_root(&mut TcpStream::connect(addr).await.unwrap()).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    #[tokio::test]
    async fn a_body_that_stalls_ends_in_a_client_error() {
        let (addr, _stop) = start(limits(300, 8)).await;
        let mut stalled = TcpStream::connect(addr).await.unwrap();
        stalled
            .write_all(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stalled.read_to_end(&mut answer));
        assert!(read.await.is_ok(), "the stalled upload was still open after 10 s");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    }

    #[tokio::test]
    async fn connections_past_the_cap_wait_for_a_free_one() {
        let (addr, _stop) = start(limits(1_000, 1)).await;
        // The one slot: a connection that sends nothing until the deadline ends it.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        let answer = get_root(&mut TcpStream::connect(addr).await.unwrap()).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            started.elapsed() >= Duration::from_millis(500),
            "served before the idle connection gave its slot back"
        );
        let mut rest = Vec::new();
        assert_eq!(idle.read_to_end(&mut rest).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn shutdown_stops_accepting_and_closes_idle_connections() {
        let (addr, stop) = start(limits(60_000, 8)).await;
        let mut idle = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send_replace(true);
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), idle.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the idle connection was still open after shutdown");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(TcpStream::connect(addr).await.is_err(), "still accepting after shutdown");
    }
}
