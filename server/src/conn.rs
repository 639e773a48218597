//! Serving connections: the router over hyper's HTTP/1.1, with the limits that
//! a server facing the open network needs and `axum::serve` leaves unset.
//!
//! - A deadline for each request's headers. It also closes keep-alive
//!   connections that sit idle, so a client that opens sockets and sends
//!   nothing (or a byte at a time) cannot hold them.
//! - A deadline between the pieces of a request's body, and a lowest upload
//!   rate over each stretch of that length: an upload that stalls, or trickles
//!   in a byte at a time (after a fast start or not), ends in a 400 instead of
//!   holding its handler.
//! - A cap on open connections, taken before accepting: past it, new clients
//!   wait in the kernel's backlog instead of exhausting file descriptors.
//! - A cap per client address, so that one client cannot take every slot of
//!   the first cap: its connections past it are closed at once.
//! - At shutdown, no new connections, and a bounded wait for requests in flight.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::serve::Listener;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
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
    /// Longest a request's body may go without sending anything; also the
    /// stretch over which `min_upload_rate` is measured.
    pub body_idle_timeout: Duration,
    /// Lowest rate of a request body over each stretch, in bytes per second.
    pub min_upload_rate: u64,
    /// Connections open at once.
    pub max_connections: u32,
    /// Connections open at once from one client address.
    pub max_connections_per_client: u32,
    /// Longest the server waits at shutdown for the requests in flight.
    pub drain_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(20),
            body_idle_timeout: Duration::from_secs(20),
            // 64 kbit/s: a phone on a poor mobile link still sends a photo.
            min_upload_rate: 8 * 1024,
            max_connections: 512,
            max_connections_per_client: 64,
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
    let clients = Arc::new(ClientCounts::default());
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
        let Some(client) = clients.admit(peer.ip(), limits.max_connections_per_client) else {
            tracing::debug!("a client is over its connection limit; connection closed");
            continue;
        };
        let service = router.clone().map_request(move |request: Request<Incoming>| {
            let mut request = request.map(|body| {
                let body = MinRateBody::new(body, limits.body_idle_timeout, limits.min_upload_rate);
                Body::new(TimeoutBody::new(limits.body_idle_timeout, body))
            });
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        });
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let (_slot, _client) = (slot, client);
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

/// Open connections per client address.
#[derive(Default)]
struct ClientCounts(Mutex<HashMap<IpAddr, u32>>);

impl ClientCounts {
    /// Counts a new connection from `ip`, or None when it already has `max`.
    fn admit(self: &Arc<Self>, ip: IpAddr, max: u32) -> Option<ClientConnection> {
        let mut counts = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = counts.entry(ip).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(ClientConnection { counts: self.clone(), ip })
    }
}

/// One admitted connection; dropping it gives its place back.
struct ClientConnection {
    counts: Arc<ClientCounts>,
    ip: IpAddr,
}

impl Drop for ClientConnection {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// A request body that fails when a stretch of `window` brings fewer than
/// `min_rate` bytes per second: checked as pieces arrive, stretch by stretch,
/// so that a fast start buys no time for a trickle after it. A body that
/// sends nothing at all is the idle deadline's to end.
struct MinRateBody {
    inner: Incoming,
    window: Duration,
    min_rate: u64,
    window_started: Instant,
    window_bytes: u64,
}

impl MinRateBody {
    fn new(inner: Incoming, window: Duration, min_rate: u64) -> Self {
        let now = Instant::now();
        Self { inner, window, min_rate, window_started: now, window_bytes: 0 }
    }

    /// Counts `bytes` that just arrived; false when the stretch that ended
    /// with them was too slow.
    fn keeps_pace(&mut self, bytes: u64) -> bool {
        self.window_bytes += bytes;
        let elapsed = self.window_started.elapsed();
        if elapsed < self.window {
            return true;
        }
        let fast_enough = self.window_bytes as f64 >= self.min_rate as f64 * elapsed.as_secs_f64();
        self.window_started = Instant::now();
        self.window_bytes = 0;
        fast_enough
    }
}

impl HttpBody for MinRateBody {
    type Data = hyper::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        let bytes = frame.data_ref().map_or(0, |data| data.len() as u64);
        if !self.keeps_pace(bytes) {
            let message = format!(
                "the upload is too slow (under {} KiB/s over {} s)",
                self.min_rate / 1024,
                self.window.as_secs()
            );
            return Poll::Ready(Some(Err(message.into())));
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
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
            min_upload_rate: 1024,
            max_connections,
            max_connections_per_client: max_connections,
            drain_timeout: Duration::from_secs(5),
        }
    }

    /// A connection from another loopback address than 127.0.0.1.
    async fn connect_from(source: [u8; 4], addr: SocketAddr) -> TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((source, 0))).unwrap();
        socket.connect(addr).await.unwrap()
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

    /// Sends `opening`, then a byte every 100 ms for at most 4 s; the answer.
    async fn trickle(addr: SocketAddr, opening: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(opening).await.unwrap();
        let mut answer = Vec::new();
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if stream.write_all(b"x").await.is_err() {
                break;
            }
            let mut buffer = [0; 1024];
            if let Ok(Ok(read)) =
                tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buffer)).await
            {
                answer.extend_from_slice(&buffer[..read]);
                break;
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.read_to_end(&mut answer)).await;
        String::from_utf8_lossy(&answer).into_owned()
    }

    /// Regression: a body sent a byte every few seconds reset the idle
    /// deadline each time and held its connection for as long as it liked.
    #[tokio::test]
    async fn a_body_that_trickles_in_ends_in_a_client_error() {
        let (addr, _stop) = start(limits(400, 8)).await;
        let answer =
            trickle(addr, b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains("too slow"), "{answer}");
    }

    /// Regression: with the rate averaged from the start, a fast first burst
    /// bought a trickle after it time in proportion (8 KiB: 8 s here).
    #[tokio::test]
    async fn a_fast_start_buys_a_trickle_no_time() {
        let (addr, _stop) = start(limits(400, 8)).await;
        let mut opening = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n".to_vec();
        opening.extend_from_slice(&[b'x'; 8 * 1024]);
        let answer = trickle(addr, &opening).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains("too slow"), "{answer}");
    }

    #[tokio::test]
    async fn one_client_cannot_take_every_connection() {
        let limits = ConnectionLimits { max_connections_per_client: 2, ..limits(60_000, 8) };
        let (addr, _stop) = start(limits).await;
        let _held =
            [connect_from([127, 0, 0, 3], addr).await, connect_from([127, 0, 0, 3], addr).await];
        tokio::time::sleep(Duration::from_millis(100)).await;
        // A third from the same address is closed unanswered...
        let mut third = connect_from([127, 0, 0, 3], addr).await;
        let mut rest = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(10), third.read_to_end(&mut rest)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{:?}", String::from_utf8_lossy(&rest));
        // ... while another client is served.
        let answer = get_root(&mut connect_from([127, 0, 0, 4], addr).await).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("127.0.0.4"), "{answer}");
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
