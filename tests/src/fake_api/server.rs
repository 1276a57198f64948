//! Accept loops: one task per listener, one per connection; all stop on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::Shared;
use super::http::handle;

/// Resolves once the server is shut down.
async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|down| *down).await;
}

/// Spawns the accept loop of `listener` on the current runtime. Connections
/// are tasks of the loop's [`JoinSet`], so they end with it.
pub(crate) fn spawn(shared: Arc<Shared>, listener: TcpListener) -> std::io::Result<SocketAddr> {
    let addr = listener.local_addr()?;
    let stop = stopped(shared.shutdown.subscribe());
    tokio::spawn(async move {
        tokio::pin!(stop);
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                () = &mut stop => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let (conn_shared, stop) = (shared.clone(), stopped(shared.shutdown.subscribe()));
                        conns.spawn(async move {
                            let svc = service_fn(move |req| handle(conn_shared.clone(), req));
                            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
                            tokio::select! {
                                _ = conn => {}
                                () = stop => {}
                            }
                        });
                    }
                    // Out of file descriptors and the like: try again shortly.
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                },
            }
            while conns.try_join_next().is_some() {}
        }
        conns.abort_all();
    });
    Ok(addr)
}
