//! Protocol upgrades (WebSocket and others) over HTTP/1.1: the request is
//! forwarded with `Connection: upgrade` and its `Upgrade` header; when the
//! upstream answers `101`, both connections are taken over from hyper and
//! spliced byte for byte in their own task. Route table swaps never touch
//! a splice (it holds no table); only the end of the proxy's shutdown
//! grace stops them.

use http::header::UPGRADE;
use http::{HeaderValue, Request, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, watch};

use crate::hop;

/// The `Upgrade` value when `request` asks for an upgrade: HTTP/1.1 with
/// `Connection: upgrade` and an `Upgrade` header. (HTTP/2 has no such
/// upgrade: its connection-specific headers are stripped.)
pub(crate) fn requested<B>(request: &Request<B>) -> Option<HeaderValue> {
    if request.version() != Version::HTTP_11 || !hop::connection_has(request.headers(), "upgrade") {
        return None;
    }
    request.headers().get(UPGRADE).cloned()
}

/// Keeps the proxy's drain waiting while a splice runs, and stops it.
#[derive(Clone, Debug)]
pub(crate) struct SpliceControl {
    /// Dropped when the splice ends: the proxy waits until all are gone.
    pub alive: mpsc::Sender<()>,
    /// Becomes `true` when the shutdown grace is over.
    pub stop: watch::Receiver<bool>,
}

/// Splices the client and upstream connections once both upgrades
/// complete (the client's after our `101` is written).
pub(crate) fn splice(client: OnUpgrade, upstream: OnUpgrade, control: SpliceControl, peer: std::net::SocketAddr) {
    tokio::spawn(async move {
        let SpliceControl { alive, mut stop } = control;
        let work = async {
            let (client, upstream) = match tokio::try_join!(client, upstream) {
                Ok(both) => both,
                Err(error) => {
                    tracing::debug!(%peer, %error, "upgrade failed");
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            let mut upstream = TokioIo::new(upstream);
            match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                Ok((up, down)) => tracing::debug!(%peer, up, down, "upgraded connection closed"),
                Err(error) => tracing::debug!(%peer, %error, "upgraded connection failed"),
            }
        };
        tokio::select! {
            () = work => {}
            _ = stop.wait_for(|stop| *stop) => tracing::debug!(%peer, "upgraded connection stopped by shutdown"),
        }
        drop(alive);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_detection() {
        let request = Request::builder()
            .header("connection", "keep-alive, Upgrade")
            .header("upgrade", "websocket")
            .body(())
            .unwrap();
        assert_eq!(requested(&request).unwrap(), "websocket");
        let no_connection = Request::builder().header("upgrade", "websocket").body(()).unwrap();
        assert!(requested(&no_connection).is_none());
        let h2 = Request::builder()
            .version(Version::HTTP_2)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(())
            .unwrap();
        assert!(requested(&h2).is_none());
    }
}
