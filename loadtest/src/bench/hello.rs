//! A hello-world HTTP server on the gateway's runtime (monoio, one
//! executor per thread, a `SO_REUSEPORT` listener each): it reads request
//! heads and answers each with a fixed empty-events body. Nothing a real
//! server could skip is left out of Squall's path by comparison, and
//! nothing more is done here: it is the ceiling of request handling on a
//! machine, against which Squall's re-poll rate is compared.

use anyhow::{Context, Result};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{ListenerOpts, TcpListener, TcpStream};
use std::net::SocketAddr;

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 42\r\n\r\n{\"result\":\"success\",\"msg\":\"\",\"events\":[]}";

/// Serves on `addr` with `threads` threads until killed.
pub fn serve(addr: SocketAddr, threads: usize, io_uring: bool) -> Result<()> {
    let handles: Vec<_> = (0..threads.max(1))
        .map(|_| {
            std::thread::spawn(move || -> Result<()> {
                let main = async move {
                    let opts = ListenerOpts::default().reuse_port(true).backlog(4096);
                    let listener = TcpListener::bind_with_config(addr, &opts).context("binding")?;
                    loop {
                        let (stream, _) = listener.accept().await?;
                        let _ = stream.set_nodelay(true);
                        monoio::spawn(connection(stream));
                    }
                };
                if io_uring {
                    monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build()?.block_on(main)
                } else {
                    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().enable_timer().build()?.block_on(main)
                }
            })
        })
        .collect();
    println!("hello-world server listening on http://{addr}");
    for h in handles {
        h.join().map_err(|_| anyhow::anyhow!("a server thread panicked"))??;
    }
    Ok(())
}

async fn connection(mut stream: TcpStream) {
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk: Vec<u8> = Vec::with_capacity(4096);
    loop {
        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            pending.drain(..end + 4);
            let (res, _) = stream.write_all(RESPONSE).await;
            if res.is_err() {
                return;
            }
        }
        if pending.len() > 64 * 1024 {
            return;
        }
        let (res, back) = stream.read(chunk).await;
        chunk = back;
        match res {
            Ok(0) | Err(_) => return,
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
        }
    }
}
