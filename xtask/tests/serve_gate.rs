//! `serve`'s WebSocket server (Burn's `burn-communication`, vendored with a patch:
//! vendor/burn-communication) against hostile peers, on 127.0.0.1 (issue 29, B9 and W35): a
//! peer that was never admitted cannot make it buffer a large first message, and the `/data`
//! route of server-to-server transfers survives requests that are not, or never will be,
//! answered; admitted traffic (large messages after a small first one, a real transfer)
//! still flows.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use burn_communication::external_comm::{ExternalCommServer, ExternalCommService};
use burn_communication::websocket::{WebSocket, WsClient, WsServer, WsServerChannel};
use burn_communication::{Address, CommunicationChannel, Message, ProtocolClient, ProtocolServer};
use tokio_util::sync::CancellationToken;

const TIMEOUT: Duration = Duration::from_secs(20);

/// Panics on the test runtime's threads (a handler task that panicked).
static SERVER_PANICS: AtomicUsize = AtomicUsize::new(0);

fn runtime() -> tokio::runtime::Runtime {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("serve-gate"))
        {
            SERVER_PANICS.fetch_add(1, Ordering::SeqCst);
        }
        previous(info);
    }));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("serve-gate")
        .enable_all()
        .build()
        .unwrap()
}

/// Serves `server` on an ephemeral port of 127.0.0.1 until `stop` is cancelled.
async fn start(server: WsServer, stop: &CancellationToken) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(server.serve_on(listener, stop.clone().cancelled_owned()));
    address
}

/// A raw TCP peer that completes the WebSocket upgrade on `path` by hand.
fn raw_upgrade(address: SocketAddr, path: &str) -> std::net::TcpStream {
    let mut tcp = std::net::TcpStream::connect(address).unwrap();
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(tcp.read(&mut byte).unwrap(), 1, "the upgrade was answered");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    tcp
}

/// Whether the server closed `tcp` (EOF or reset) before `TIMEOUT`.
fn closed_by_server(tcp: &mut std::net::TcpStream) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // a close frame, then EOF
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// A masked binary frame header declaring `length` bytes.
fn binary_frame_header(length: u64) -> Vec<u8> {
    let mut h = vec![0x82, 0x80 | 127];
    h.extend_from_slice(&length.to_be_bytes());
    h.extend_from_slice(&[1, 2, 3, 4]);
    h
}

/// B9: a first message declared at 900 MiB is refused at its header (before the fix, the
/// server buffered it whole, up to 1 GiB a connection, before the handler could check the
/// token); a small first message admits large ones after it.
#[test]
fn a_large_first_message_is_refused_and_admitted_traffic_flows() {
    let rt = runtime();
    let stop = CancellationToken::new();
    let received = Arc::new(AtomicUsize::new(0));
    let counted = received.clone();
    let server = WsServer::new(0).route("/session", move |mut channel: WsServerChannel| {
        let counted = counted.clone();
        async move {
            while let Ok(Some(message)) = channel.recv().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let size = (message.data.len() as u64).to_le_bytes().to_vec();
                if channel.send(Message::new(size.into())).await.is_err() {
                    return;
                }
            }
        }
    });
    let address = rt.block_on(start(server, &stop));

    let mut attacker = raw_upgrade(address, "/session");
    attacker.write_all(&binary_frame_header(900 << 20)).unwrap();
    attacker.write_all(&[0u8; 4096]).unwrap();
    assert!(
        closed_by_server(&mut attacker),
        "the server kept the connection"
    );
    assert_eq!(
        received.load(Ordering::SeqCst),
        0,
        "nothing reached the handler"
    );

    rt.block_on(async {
        let url = format!("ws://{address}").parse::<Address>().unwrap();
        let mut client = tokio::time::timeout(TIMEOUT, WsClient::connect(url, "session"))
            .await
            .unwrap()
            .unwrap();
        for size in [100usize, 2 << 20] {
            client
                .send(Message::new(vec![7u8; size].into()))
                .await
                .unwrap();
            let reply = tokio::time::timeout(TIMEOUT, client.recv())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(reply.data.as_ref(), (size as u64).to_le_bytes());
        }
    });
    stop.cancel();
    assert_eq!(SERVER_PANICS.load(Ordering::SeqCst), 0);
}

/// W35: on `/data`, bytes that are no request, a request for an id never exposed followed
/// by more talk, and a large request each end their connection, without a panic; an exposed
/// tensor is still downloaded by a server that asks for it.
#[test]
fn the_data_route_survives_hostile_requests_and_still_transfers() {
    type Service = ExternalCommService<burn_flex::Flex, WebSocket>;
    let rt = runtime();
    let stop = CancellationToken::new();
    let service = Arc::new(Service::new(stop.clone()));
    let server = WsServer::new(0).route_external_comm(service.clone());
    let address = rt.block_on(start(server, &stop));
    let send_raw = |payloads: &[&[u8]]| {
        let mut peer = raw_upgrade(address, "/data");
        for payload in payloads {
            let mut frame = vec![0x82, 0x80 | payload.len() as u8, 0, 0, 0, 0];
            frame.extend_from_slice(payload);
            peer.write_all(&frame).unwrap();
        }
        closed_by_server(&mut peer)
    };
    assert!(send_raw(&[b"\xc1\xc1 random bytes"]), "garbage");
    // A request (MessagePack {0: 7}) for an id never exposed, then more talk.
    assert!(
        send_raw(&[&[0x81, 0x00, 0x07], b"more"]),
        "a parked request"
    );
    let mut big = raw_upgrade(address, "/data");
    let mut small = vec![0x82, 0x83, 0, 0, 0, 0];
    small.extend_from_slice(&[0x81, 0x00, 0x09]);
    big.write_all(&small).unwrap();
    big.write_all(&binary_frame_header(64 << 20)).unwrap();
    assert!(closed_by_server(&mut big), "a large request");

    rt.block_on(async {
        let data = burn_backend::TensorData::new(vec![1.0f32, 2.0, 3.0], [3]);
        service.expose_data(data.clone(), 1, 42u64.into()).await;
        let downloader = Service::new(stop.clone());
        let url = format!("ws://{address}").parse::<Address>().unwrap();
        let got = tokio::time::timeout(TIMEOUT, downloader.download_tensor(url, 42u64.into()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, data);
    });
    stop.cancel();
    assert_eq!(
        SERVER_PANICS.load(Ordering::SeqCst),
        0,
        "a handler panicked"
    );
}
