//! Jupyter kernels inside the sandbox. A kernel is started from its
//! kernelspec as an ordinary job (so its death is that job's exit), with a
//! connection file on 127.0.0.1 of the container's own network namespace;
//! the agent is its client over ZeroMQ (jupyter-zmq-client) and forwards
//! every message to the server as JSON.

use crate::jobs::{self, JobTable};
use crate::Outbox;
use jupyter_protocol::{
    CompleteRequest, ConnectionInfo, ExecuteRequest, Header, InspectRequest, JupyterMessage,
    JupyterMessageContent, KernelInfoRequest, ShutdownRequest, UnknownMessage,
};
use replbox_protocol::{FromAgent, JobId, JobSpec, KernelRequest};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Running kernels' request queues, by job id.
#[derive(Default, Clone)]
pub struct Kernels {
    inner: Arc<Mutex<HashMap<JobId, mpsc::Sender<KernelRequest>>>>,
}

const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Client sessions (relayed clients) a kernel keeps sockets for; the
/// oldest is closed past this.
const MAX_CLIENT_SESSIONS: usize = 16;

impl Kernels {
    pub async fn request(&self, table: &JobTable, id: JobId, request: KernelRequest, out: &Outbox) {
        if request == KernelRequest::Interrupt {
            table.signal(id, libc::SIGINT);
            return;
        }
        let tx = self.inner.lock().unwrap().get(&id).cloned();
        match tx {
            Some(tx) => {
                let _ = tx.send(request).await;
            }
            None => {
                let _ = out
                    .send(FromAgent::Error {
                        message: format!("kernel {id} is not running"),
                    })
                    .await;
            }
        }
    }

    pub fn start(
        &self,
        table: Arc<JobTable>,
        id: JobId,
        name: String,
        cwd: String,
        workspace: PathBuf,
        out: Outbox,
    ) {
        let kernels = self.clone();
        tokio::spawn(async move {
            if let Err(message) = kernels.run(table, id, &name, cwd, workspace, &out).await {
                let _ = out.send(FromAgent::SpawnFailed { id, message }).await;
            }
            kernels.inner.lock().unwrap().remove(&id);
        });
    }

    async fn run(
        &self,
        table: Arc<JobTable>,
        id: JobId,
        name: &str,
        cwd: String,
        workspace: PathBuf,
        out: &Outbox,
    ) -> Result<(), String> {
        let spec = jupyter_zmq_client::find_kernelspec(name)
            .await
            .map_err(|_| format!("there is no kernel {name:?} in this image"))?;
        let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        let ports = jupyter_zmq_client::peek_ports(ip, 5)
            .await
            .map_err(|e| format!("no free ports for the kernel: {e}"))?;
        let info = ConnectionInfo {
            ip: ip.to_string(),
            transport: jupyter_protocol::connection_info::Transport::TCP,
            shell_port: ports[0],
            iopub_port: ports[1],
            stdin_port: ports[2],
            control_port: ports[3],
            hb_port: ports[4],
            key: format!("{:032x}", rand_u128()),
            signature_scheme: "hmac-sha256".into(),
            kernel_name: Some(name.to_string()),
        };
        let file = PathBuf::from(format!("/tmp/replbox-kernel-{id}.json"));
        std::fs::write(&file, serde_json::to_vec(&info).map_err(|e| e.to_string())?)
            .map_err(|e| format!("cannot write the connection file: {e}"))?;
        let argv: Vec<String> = spec
            .kernelspec
            .argv
            .iter()
            .map(|a| a.replace("{connection_file}", &file.to_string_lossy()))
            .collect();
        let mut job = JobSpec::argv(argv);
        job.cwd = cwd;
        job.env
            .insert("JPY_PARENT_PID".into(), std::process::id().to_string());
        jobs::spawn(table.clone(), id, job, workspace, out.clone());

        let session = format!("replbox-{id}");
        let identity =
            jupyter_zmq_client::peer_identity_for_session(&session).map_err(|e| e.to_string())?;
        let mut iopub = jupyter_zmq_client::create_client_iopub_connection(&info, "", &session)
            .await
            .map_err(|e| e.to_string())?;
        let mut shell = jupyter_zmq_client::create_client_shell_connection_with_identity(
            &info, &session, identity,
        )
        .await
        .map_err(|e| e.to_string())?;
        let mut control = jupyter_zmq_client::create_client_control_connection(&info, &session)
            .await
            .map_err(|e| e.to_string())?;

        // Ready when it answers kernel_info (asked again until it does).
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        let language = loop {
            if tokio::time::Instant::now() > deadline || !table.running().contains(&id) {
                return Err("the kernel did not start".into());
            }
            let _ = shell
                .send(JupyterMessage::new(KernelInfoRequest {}, None))
                .await;
            match tokio::time::timeout(Duration::from_secs(2), shell.read()).await {
                Ok(Ok(reply)) => {
                    if let JupyterMessageContent::KernelInfoReply(r) = &reply.content {
                        break r.language_info.name.clone();
                    }
                }
                _ => continue,
            }
        };
        let (tx, mut rx) = mpsc::channel::<KernelRequest>(64);
        self.inner.lock().unwrap().insert(id, tx);
        let _ = out.send(FromAgent::KernelReady { id, language }).await;

        let forward = |channel: &str, msg: JupyterMessage| FromAgent::KernelMessage {
            id,
            channel: channel.to_string(),
            message: serde_json::to_string(&msg).unwrap_or_default(),
        };
        let mut clients = ClientSessions::new(info.clone(), id, out.clone());
        loop {
            // Requests first; then iopub before shell, so a reply rarely
            // overtakes the outputs the kernel sent before it (clients must
            // still wait for both: the channels are not ordered).
            tokio::select! {
                biased;
                r = rx.recv() => {
                    let Some(r) = r else { break };
                    let sent = match r {
                        KernelRequest::Execute { msg_id, code } => {
                            shell.send(with_id(JupyterMessage::new(ExecuteRequest::new(code), None), msg_id)).await
                        }
                        KernelRequest::Complete { msg_id, code, cursor_pos } => {
                            shell.send(with_id(JupyterMessage::new(CompleteRequest { code, cursor_pos: cursor_pos as usize }, None), msg_id)).await
                        }
                        KernelRequest::Inspect { msg_id, code, cursor_pos } => {
                            // ipykernel needs the level (0 is `x?`); null makes it raise.
                            let req = InspectRequest { code, cursor_pos: cursor_pos as usize, detail_level: Some(0) };
                            shell.send(with_id(JupyterMessage::new(req, None), msg_id)).await
                        }
                        KernelRequest::Shutdown => {
                            let _ = control.send(JupyterMessage::new(ShutdownRequest { restart: false }, None)).await;
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            table.signal(id, libc::SIGKILL);
                            break;
                        }
                        KernelRequest::Interrupt => Ok(()),
                        KernelRequest::Message { channel, message } => {
                            // A client's bad message is its own problem, not the kernel's end.
                            if let Err(e) = clients.send(&channel, &message).await {
                                let _ = out.send(FromAgent::Error { message: format!("kernel {id}: {e}") }).await;
                            }
                            Ok(())
                        }
                    };
                    if sent.is_err() {
                        break;
                    }
                }
                m = iopub.read() => match m {
                    Ok(m) => { let _ = out.send(forward("iopub", m)).await; }
                    Err(_) => break,
                },
                m = shell.read() => match m {
                    Ok(m) => { let _ = out.send(forward("shell", m)).await; }
                    Err(_) => break,
                },
                m = control.read() => match m {
                    Ok(m) => { let _ = out.send(forward("control", m)).await; }
                    Err(_) => break,
                },
            }
        }
        let _ = std::fs::remove_file(&file);
        Ok(())
    }
}

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
struct ClientSessions {
    info: ConnectionInfo,
    id: JobId,
    out: Outbox,
    conns: HashMap<String, ClientConns>,
    order: Vec<String>,
}

impl ClientSessions {
    fn new(info: ConnectionInfo, id: JobId, out: Outbox) -> Self {
        Self {
            info,
            id,
            out,
            conns: HashMap::new(),
            order: Vec::new(),
        }
    }

    async fn send(&mut self, channel: &str, message: &str) -> Result<(), String> {
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

/// The kernelspecs the image has (Jupyter's usual search path).
pub async fn specs() -> Vec<replbox_protocol::KernelSpecInfo> {
    let mut specs: Vec<_> = jupyter_zmq_client::list_kernelspecs()
        .await
        .into_iter()
        .map(|k| replbox_protocol::KernelSpecInfo {
            name: k.kernel_name,
            display_name: k.kernelspec.display_name,
            language: k.kernelspec.language,
        })
        .collect();
    specs.sort_by(|a, b| a.name.cmp(&b.name));
    specs.dedup_by(|a, b| a.name == b.name);
    specs
}

fn with_id(mut m: JupyterMessage, msg_id: String) -> JupyterMessage {
    m.header.msg_id = msg_id;
    m
}

fn rand_u128() -> u128 {
    let mut b = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    u128::from_le_bytes(b)
}
