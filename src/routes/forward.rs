//! Several replicas behind one load balancer: a request about a sandbox
//! that another live replica holds (its lease, `sessions/lease.rs`) is
//! forwarded to that replica's advertised address, HTTP and WebSocket
//! alike, so every tab of a browser and every call of a task reach the one
//! replica that has the agent connection, the jobs and their replay
//! buffers. A sandbox nobody holds (or whose holder stopped renewing) is
//! taken here.
//!
//! Hand-written over hyper's client (one connection per forwarded request,
//! upgrades spliced byte for byte) rather than a proxy crate's: it is one
//! hop between our own replicas on loopback or a private network.

use super::{browser_session, token_auth, AppState};
use crate::error::AppError;
use crate::services::tasks::{owner_of, valid_task_id};
use crate::sessions::Holder;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use tower_sessions::Session as BrowserSession;
use tracing::{debug, warn};

/// Set on a forwarded request (the forwarding replica's id): its receiver
/// never forwards it again, whoever holds the sandbox by then.
pub const FORWARDED_BY: &str = "x-replbox-forwarded-by";

/// The browser's routes (inside the cookie-session layer): the sandbox is
/// the one the cookie's owner key names, if it has one yet.
pub async fn browser(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let owner = match req.extensions().get::<BrowserSession>() {
        Some(session) => browser_session::known_owner(session).await,
        None => None,
    };
    route(state, owner, req, next).await
}

/// The REST API's sandbox routes (`/api/v1/sandboxes/{taskId}/...`): the
/// sandbox is the caller's token's task (a bad token is refused where it
/// is served).
pub async fn api(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let task = req
        .uri()
        .path()
        .strip_prefix("/api/v1/sandboxes/")
        .and_then(|rest| rest.split('/').next())
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    let tenant = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|given| token_auth::tenant_of(&state, given));
    let owner = match (task, tenant) {
        (Some(task), Some(tenant)) => {
            // As the route decodes it (a taskId is plain, but be exact).
            let task = percent_decode(&task);
            // A bad taskId is refused where it is served (no lease asked).
            valid_task_id(&task).ok().map(|()| owner_of(&tenant, &task))
        }
        _ => None,
    };
    route(state, owner, req, next).await
}

async fn route(state: AppState, owner: Option<String>, req: Request, next: Next) -> Response {
    let Some(owner) = owner else {
        return next.run(req).await;
    };
    match state.services.registry.hold(&owner).await {
        Ok(Holder::Here) => next.run(req).await,
        Ok(Holder::Elsewhere { addr, until_ms }) => {
            if req.headers().contains_key(FORWARDED_BY) {
                // It moved again while in flight (or a client set the
                // header): never a second hop, never a take-over.
                return AppError::sandbox_moving(until_ms).into_response();
            }
            debug!(%owner, %addr, "forwarding to the replica that holds the sandbox");
            let stream = match connect(&addr).await {
                Ok(stream) => stream,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    // Nothing listens there: the holder is gone.
                    return match registry_take(&state, &owner, &addr, until_ms).await {
                        Ok(true) => next.run(req).await,
                        Ok(false) => AppError::sandbox_moving(until_ms).into_response(),
                        Err(e) => e.into_response(),
                    };
                }
                Err(e) => {
                    warn!(%owner, %addr, error = %e, "cannot reach the replica that holds the sandbox");
                    return AppError::sandbox_moving(until_ms).into_response();
                }
            };
            match forward(&state, stream, req).await {
                Ok(resp) => resp,
                Err(e) => {
                    warn!(%owner, %addr, error = %e, "forwarding to the replica that holds the sandbox failed");
                    AppError::sandbox_moving(until_ms).into_response()
                }
            }
        }
        Err(e) => AppError::from(e).into_response(),
    }
}

/// Headers that belong to one hop (RFC 9110 7.6.1); `connection` and
/// `upgrade` are kept for an upgrade, which needs them end to end.
fn hop_by_hop(name: &HeaderName, upgrade: bool) -> bool {
    let n = name.as_str();
    matches!(
        n,
        "keep-alive" | "proxy-connection" | "te" | "trailer" | "transfer-encoding"
    ) || (!upgrade && matches!(n, "connection" | "upgrade"))
}

async fn registry_take(
    state: &AppState,
    owner: &str,
    addr: &str,
    until_ms: i64,
) -> Result<bool, AppError> {
    Ok(state
        .services
        .registry
        .take_from_gone(owner, addr, until_ms)
        .await?)
}

/// A connection to the holder, within 5 s.
async fn connect(addr: &str) -> std::io::Result<tokio::net::TcpStream> {
    let stream = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn forward(
    state: &AppState,
    stream: tokio::net::TcpStream,
    mut req: Request,
) -> Result<Response, Box<dyn std::error::Error + Send + Sync>> {
    let upgrade = req.headers().contains_key(header::UPGRADE);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    state.sockets.spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            debug!(error = %e, "a forwarded connection ended");
        }
    });

    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let mut out = axum::http::Request::builder()
        .method(parts.method)
        .uri(path)
        .body(body)?;
    for (name, value) in parts.headers.iter() {
        if !hop_by_hop(name, upgrade) && name.as_str() != "x-forwarded-for" {
            out.headers_mut().append(name, value.clone());
        }
    }
    // The client as we saw it, after what trusted proxies before us said.
    let mut chain: Vec<String> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    if let Some(ip) = peer {
        chain.push(ip.to_string());
    }
    if !chain.is_empty() {
        out.headers_mut()
            .insert("x-forwarded-for", HeaderValue::from_str(&chain.join(", "))?);
    }
    let id = state.config.replica_id.as_deref().unwrap_or_default();
    out.headers_mut()
        .insert(FORWARDED_BY, HeaderValue::from_str(id)?);

    let mut resp = sender.send_request(out).await?;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client) = client_upgrade {
            let upstream = hyper::upgrade::on(&mut resp);
            state.sockets.spawn(async move {
                match tokio::try_join!(client, upstream) {
                    Ok((client, upstream)) => {
                        let mut client = TokioIo::new(client);
                        let mut upstream = TokioIo::new(upstream);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                    Err(e) => debug!(error = %e, "a forwarded upgrade failed"),
                }
            });
        }
    }
    let (mut parts, body) = resp.into_parts();
    let upgraded = parts.status == StatusCode::SWITCHING_PROTOCOLS;
    let names: Vec<HeaderName> = parts.headers.keys().cloned().collect();
    for name in names {
        if hop_by_hop(&name, upgraded) {
            parts.headers.remove(&name);
        }
    }
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// `%XX` escapes decoded (a taskId in a path).
fn percent_decode(s: &str) -> String {
    form_urlencoded::parse(format!("t={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}
