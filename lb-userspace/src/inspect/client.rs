//! `lb inspect`: GETs one `/inspect/*` endpoint of the agent's admin
//! listener and prints it, as a table or as the JSON it came as.

use std::fmt::Write as _;
use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;

use super::model::{ConntrackReport, DiagnosticsReport, RoutesReport, ServicesReport};
use crate::cli::{InspectArgs, InspectOutput, InspectWhat};

/// Runs `lb inspect`.
pub fn inspect(args: &InspectArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let out = runtime.block_on(answer(args))?;
    print!("{out}");
    Ok(())
}

/// What `lb inspect` prints.
pub async fn answer(args: &InspectArgs) -> Result<String> {
    let body = get(args.admin_addr, &endpoint(&args.what)).await?;
    if args.output == InspectOutput::Json {
        // Pretty, with a final newline; the fields as the agent sent them.
        let value: serde_json::Value = serde_json::from_slice(&body).context("the agent's answer is not JSON")?;
        return Ok(serde_json::to_string_pretty(&value)? + "\n");
    }
    Ok(match &args.what {
        InspectWhat::Services => render::services(&parse::<ServicesReport>(&body)?),
        InspectWhat::Backends { service } => render::backends(&parse::<ServicesReport>(&body)?, service)?,
        InspectWhat::Conntrack { .. } => render::conntrack(&parse::<ConntrackReport>(&body)?),
        InspectWhat::Routes => render::routes(&parse::<RoutesReport>(&body)?),
        InspectWhat::Diagnostics => render::diagnostics(&parse::<DiagnosticsReport>(&body)?),
    })
}

/// The admin path of `what`.
fn endpoint(what: &InspectWhat) -> String {
    match what {
        InspectWhat::Services | InspectWhat::Backends { .. } => "/inspect/services".into(),
        InspectWhat::Conntrack { service, limit } => {
            let mut path = format!("/inspect/conntrack?limit={limit}");
            if let Some(service) = service {
                let _ = write!(
                    path,
                    "&service={}",
                    form_urlencoded::byte_serialize(service.as_bytes()).collect::<String>()
                );
            }
            path
        }
        InspectWhat::Routes => "/inspect/routes".into(),
        InspectWhat::Diagnostics => "/inspect/diagnostics".into(),
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).context("the agent's answer has an unexpected shape (another lb version?)")
}

async fn get(addr: SocketAddr, path: &str) -> Result<Bytes> {
    let timeout = std::time::Duration::from_secs(30);
    let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
        .await
        .with_context(|| format!("connecting to the agent's admin listener {addr}: timed out"))?
        .with_context(|| {
            format!("connecting to the agent's admin listener {addr} (is `lb run` running? --admin-addr)")
        })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = Request::get(path).header(hyper::header::HOST, addr.to_string()).body(Empty::<Bytes>::new())?;
    let response =
        tokio::time::timeout(timeout, sender.send_request(request)).await.context("the agent did not answer")??;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!("{addr}{path}: {status}: {}", String::from_utf8_lossy(&body).trim());
    }
    Ok(body)
}

mod render;
