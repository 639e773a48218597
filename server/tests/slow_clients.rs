//! Clients that misbehave at the connection level, against a real `facegate
//! serve`: they connect and send nothing, stop half-way through an upload, or
//! announce one larger than any limit. They are answered or cut off, the
//! server goes on answering everyone else, and SIGTERM still ends it cleanly.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::ServerProcess;

/// Reads until the server closes the connection; None if it is still open
/// after `limit`.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => Some(String::from_utf8_lossy(&answer).into_owned()),
        // A reset also means the server let go of the connection.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(String::new()),
        Err(_) => None,
    }
}

#[test]
fn silent_and_stalled_clients_are_cut_off_and_others_are_served() {
    let data = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start_with(
        data.path(),
        &site.path().join("site"),
        &["--client-timeout-secs", "1", "--max-connections", "16"],
        None,
    );
    let client = server.client.clone();

    // More silent connections than the cap, one of them half-way through its headers.
    let mut silent: Vec<TcpStream> =
        (0..40).map(|_| TcpStream::connect(client.addr).unwrap()).collect();
    silent[0].write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: gate\r\n").unwrap();

    // Someone else is still served once the silent ones have timed out.
    let (status, body) = client.request("GET", "/api/v1/health", None, &[]).unwrap();
    assert_eq!(status, 200, "{body}");

    for (i, stream) in silent.iter_mut().enumerate() {
        assert!(
            read_until_closed(stream, Duration::from_secs(30)).is_some(),
            "silent connection {i} was still open after 30 s"
        );
    }

    // An upload that stops half-way ends in a client error, not a held handler.
    let mut stalled = TcpStream::connect(client.addr).unwrap();
    let head = format!(
        "POST /api/v1/checkins HTTP/1.1\r\nHost: gate\r\nAuthorization: Bearer {}\r\n\
         Content-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n",
        client.token
    );
    stalled.write_all(head.as_bytes()).unwrap();
    stalled.write_all(&[0xFF, 0xD8, 0xFF, 0xE0]).unwrap();
    let answer = read_until_closed(&mut stalled, Duration::from_secs(30))
        .expect("the stalled upload was still open after 30 s");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains(r#""code":"bad_request""#), "{answer}");
    let (status, body) = client.request("GET", "/api/v1/health", None, &[]).unwrap();
    assert_eq!(status, 200, "{body}");

    // An upload announced larger than any limit is refused before it is read,
    // in the API's own error shape.
    let mut huge = TcpStream::connect(client.addr).unwrap();
    let head = format!(
        "POST /api/v1/people HTTP/1.1\r\nHost: gate\r\nAuthorization: Bearer {}\r\n\
         Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 1000000000\r\n\r\n",
        client.token
    );
    huge.write_all(head.as_bytes()).unwrap();
    let answer = read_until_closed(&mut huge, Duration::from_secs(30))
        .expect("the oversized upload was still open after 30 s");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#""code":"body_too_large""#), "{answer}");

    // SIGTERM: the server stops accepting and exits cleanly.
    let pid = server.child.id().to_string();
    let killed = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "the server exited with {exit} after SIGTERM");
    assert!(TcpStream::connect(client.addr).is_err(), "still accepting after it exited");
}
