//! The relayed clients of a kernel: ZeroMQ sockets per client session, so
//! each Jupyter client's requests and replies keep their own identity.

use super::rand_u128;
use crate::Outbox;
use jupyter_protocol::{
    ConnectionInfo, Header, JupyterMessage, JupyterMessageContent, UnknownMessage,
};
use replbox_protocol::{FromAgent, JobId};
use std::collections::HashMap;
use tokio::sync::mpsc;

/// Client sessions (relayed clients) a kernel keeps sockets for; the
/// oldest is closed past this.
const MAX_CLIENT_SESSIONS: usize = 16;

/// One relayed client's sockets: a task per channel owns its socket,
/// sends what is queued and forwards what the kernel answers; the tasks end
/// with the kernel (or the session's eviction).
struct ClientConns {
    shell: mpsc::Sender<JupyterMessage>,
    stdin: mpsc::Sender<JupyterMessage>,
    control: mpsc::Sender<JupyterMessage>,
    _tasks: tokio::task::JoinSet<()>,
}

/// Sockets per client session (a Jupyter client's `header.session`), made
/// on its first message: shell and stdin share the session's identity, so
/// the kernel's input requests reach that client, and its replies carry
/// the client's own session.
pub(super) struct ClientSessions {
    info: ConnectionInfo,
    id: JobId,
    out: Outbox,
    conns: HashMap<String, ClientConns>,
    order: Vec<String>,
}

impl ClientSessions {
    pub(super) fn new(info: ConnectionInfo, id: JobId, out: Outbox) -> Self {
        Self {
            info,
            id,
            out,
            conns: HashMap::new(),
            order: Vec::new(),
        }
    }

    pub(super) async fn send(&mut self, channel: &str, message: &str) -> Result<(), String> {
        let message = parse_client_message(message)?;
        let session = message.header.session.clone();
        if !self.conns.contains_key(&session) {
            let conns = self.open(&session).await?;
            if self.order.len() >= MAX_CLIENT_SESSIONS {
                let oldest = self.order.remove(0);
                self.conns.remove(&oldest);
            }
            self.order.push(session.clone());
            self.conns.insert(session.clone(), conns);
        }
        let conns = self.conns.get(&session).expect("just made");
        let tx = match channel {
            "shell" => &conns.shell,
            "stdin" => &conns.stdin,
            "control" => &conns.control,
            other => return Err(format!("there is no channel {other:?} to send on")),
        };
        tx.send(message)
            .await
            .map_err(|_| "the kernel's socket closed".to_string())
    }

    async fn open(&self, session: &str) -> Result<ClientConns, String> {
        let info = &self.info;
        let identity = jupyter_zmq_client::peer_identity_for_session(session)
            .or_else(|_| {
                jupyter_zmq_client::peer_identity_for_session(&format!("s{:x}", rand_u128()))
            })
            .map_err(|e| e.to_string())?;
        let shell = jupyter_zmq_client::create_client_shell_connection_with_identity(
            info,
            session,
            identity.clone(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let stdin = jupyter_zmq_client::create_client_stdin_connection_with_identity(
            info, session, identity,
        )
        .await
        .map_err(|e| e.to_string())?;
        let control = jupyter_zmq_client::create_client_control_connection(info, session)
            .await
            .map_err(|e| e.to_string())?;
        let mut tasks = tokio::task::JoinSet::new();
        // A task per socket: queued messages out, the kernel's in. (A macro:
        // the socket types are the zeromq crate's, not named here.)
        macro_rules! relay {
            ($channel:literal, $conn:expr) => {{
                let mut conn = $conn;
                let (tx, mut rx) = mpsc::channel::<JupyterMessage>(64);
                let (out, id) = (self.out.clone(), self.id);
                tasks.spawn(async move {
                    loop {
                        tokio::select! {
                            m = rx.recv() => match m {
                                Some(m) => if conn.send(m).await.is_err() { break },
                                None => break,
                            },
                            m = conn.read() => match m {
                                Ok(msg) => {
                                    let message = serde_json::to_string(&msg).unwrap_or_default();
                                    let frame = FromAgent::KernelMessage { id, channel: $channel.to_string(), message };
                                    if out.send(frame).await.is_err() { break }
                                }
                                Err(_) => break,
                            },
                        }
                    }
                });
                tx
            }};
        }
        let shell = relay!("shell", shell);
        let stdin = relay!("stdin", stdin);
        let control = relay!("control", control);
        Ok(ClientConns {
            shell,
            stdin,
            control,
            _tasks: tasks,
        })
    }
}

/// A client's message as JSON, its content kept verbatim (whatever its
/// type), its header as the client wrote it.
fn parse_client_message(text: &str) -> Result<JupyterMessage, String> {
    let mut wire: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not a Jupyter message: {e}"))?;
    let mut take = |k: &str| {
        wire.get_mut(k)
            .map(serde_json::Value::take)
            .unwrap_or_default()
    };
    let header: Header = serde_json::from_value(take("header"))
        .map_err(|e| format!("not a Jupyter message header: {e}"))?;
    let (parent_header, metadata, content) =
        (take("parent_header"), take("metadata"), take("content"));
    let parent_header = match parent_header {
        serde_json::Value::Object(m) if m.is_empty() => None,
        serde_json::Value::Null => None,
        v => serde_json::from_value::<Header>(v).ok(),
    };
    let metadata = match metadata {
        serde_json::Value::Null => serde_json::json!({}),
        v => v,
    };
    let content = match content {
        serde_json::Value::Null => serde_json::json!({}),
        v @ serde_json::Value::Object(_) => v,
        _ => return Err("a message's content must be an object".into()),
    };
    Ok(JupyterMessage {
        zmq_identities: Vec::new(),
        content: JupyterMessageContent::UnknownMessage(UnknownMessage {
            msg_type: header.msg_type.clone(),
            content,
        }),
        header,
        parent_header,
        metadata,
        buffers: Vec::new(),
        channel: None,
    })
}
