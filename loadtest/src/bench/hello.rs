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

/// The body Squall sends for a `dont_block` poll of an empty queue.
const BODY: &str = r#"{"result":"success","msg":"","events":[]}"#;

fn response() -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{BODY}", BODY.len())
        .into_bytes()
}

thread_local! {
    /// The one response, made once per thread.
    static RESPONSE: &'static [u8] = Box::leak(response().into_boxed_slice());
}

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
    let response: &'static [u8] = RESPONSE.with(|r| *r);
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk: Vec<u8> = Vec::with_capacity(4096);
    loop {
        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            pending.drain(..end + 4);
            let (res, _) = stream.write_all(response).await;
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
