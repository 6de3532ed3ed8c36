//! Jupyter kernels inside the sandbox. A kernel is started from its
//! kernelspec as an ordinary job (so its death is that job's exit), with a
//! connection file on 127.0.0.1 of the container's own network namespace;
//! the agent is its client over ZeroMQ (jupyter-zmq-client) and forwards
//! every message to the server as JSON.

use crate::jobs::{self, JobTable};
use crate::Outbox;
use jupyter_protocol::{
    CompleteRequest, ConnectionInfo, ExecuteRequest, Header, InspectRequest, JupyterMessage,
    JupyterMessageContent, KernelInfoRequest, ShutdownRequest, StreamContent,
};
use replbox_protocol::{FromAgent, JobId, JobSpec, KernelRequest};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

mod clients;

use clients::ClientSessions;

/// Running kernels' request queues, by job id.
#[derive(Default, Clone)]
pub struct Kernels {
    inner: Arc<Mutex<HashMap<JobId, mpsc::Sender<KernelRequest>>>>,
}

const READY_TIMEOUT: Duration = Duration::from_secs(60);

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

pub(crate) fn rand_u128() -> u128 {
    let mut b = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    u128::from_le_bytes(b)
}

/// What is sent instead of a frame larger than the protocol's limit (say a
/// kernel's display_data of a huge image, or a request's answer): an error
/// for that one message, request or job, so the sandbox keeps answering.
/// For a kernel message: on iopub, a stream on stderr with the same parent
/// (the cell shows why); on another channel, a reply of the same type with
/// status `error`, so a client waiting for it is not left waiting.
pub fn too_large(frame: FromAgent, size: usize) -> FromAgent {
    let limit = replbox_protocol::MAX_FRAME_LEN;
    let why = format!(
        "replbox: a message of {size} bytes is larger than a sandbox may send ({limit} bytes); it was dropped"
    );
    match frame {
        FromAgent::KernelMessage {
            id,
            channel,
            message,
        } => {
            #[derive(serde::Deserialize)]
            struct Head {
                header: Option<Header>,
                parent_header: Option<serde_json::Value>,
            }
            // The content is skipped, not kept.
            let head = serde_json::from_str::<Head>(&message).ok();
            let (header, parent) = head
                .map(|h| (h.header, h.parent_header))
                .unwrap_or_default();
            // Small by construction, so this frame always fits: a parent
            // header or ids past these sizes (user code can make them so)
            // are left out.
            let parent = parent
                .filter(|p| p.is_object() && p.to_string().len() <= 64 * 1024)
                .unwrap_or_else(|| serde_json::json!({}));
            let mut reply = JupyterMessage::new(StreamContent::stderr(&format!("[{why}]\n")), None);
            if let Some(h) = &header {
                if h.session.len() <= 1024 && h.username.len() <= 1024 {
                    reply.header.session = h.session.clone();
                    reply.header.username = h.username.clone();
                }
            }
            let mut wire = serde_json::to_value(&reply).unwrap_or_default();
            wire["parent_header"] = parent;
            if channel != "iopub" {
                if let Some(h) = header.filter(|h| h.msg_type.len() <= 256) {
                    wire["header"]["msg_type"] = h.msg_type.into();
                }
                wire["content"] = serde_json::json!({
                    "status": "error", "ename": "MessageTooLarge", "evalue": why, "traceback": [],
                });
            }
            FromAgent::KernelMessage {
                id,
                channel,
                message: wire.to_string(),
            }
        }
        FromAgent::File { req, .. } => FromAgent::File {
            req,
            result: Err(replbox_protocol::FileError::TooLarge {
                limit: limit as u64,
            }),
        },
        FromAgent::KernelSpecs { req, .. } => FromAgent::KernelSpecs {
            req,
            specs: Vec::new(),
        },
        _ => FromAgent::Error { message: why },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversized_kernel_message_becomes_an_error_for_its_cell() {
        let message = serde_json::json!({
            "header": {"msg_id": "m", "username": "u", "session": "k", "date": "2026-01-01T00:00:00Z", "msg_type": "display_data", "version": "5.3"},
            "parent_header": {"msg_id": "p", "username": "u", "session": "client", "date": "2026-01-01T00:00:00Z", "msg_type": "execute_request", "version": "5.3"},
            "metadata": {}, "content": {"data": {"image/png": "AAAA"}},
        })
        .to_string();
        let frame = FromAgent::KernelMessage {
            id: 3,
            channel: "iopub".into(),
            message,
        };
        let FromAgent::KernelMessage {
            id,
            channel,
            message,
        } = too_large(frame, 20 << 20)
        else {
            panic!("a kernel message stays one")
        };
        assert_eq!((id, channel.as_str()), (3, "iopub"));
        let m: serde_json::Value = serde_json::from_str(&message).unwrap();
        assert_eq!(m["header"]["msg_type"], "stream");
        assert_eq!(m["parent_header"]["msg_id"], "p");
        assert_eq!(m["content"]["name"], "stderr");
        assert!(m["content"]["text"]
            .as_str()
            .unwrap()
            .contains("larger than a sandbox may send"));
        let reply = FromAgent::KernelMessage { id: 3, channel: "shell".into(), message: r#"{"header":{"msg_id":"r","username":"u","session":"k","date":"2026-01-01T00:00:00Z","msg_type":"execute_reply","version":"5.3"},"parent_header":{},"content":{}}"#.into() };
        let FromAgent::KernelMessage { message, .. } = too_large(reply, 20 << 20) else {
            panic!()
        };
        let m: serde_json::Value = serde_json::from_str(&message).unwrap();
        assert_eq!(m["header"]["msg_type"], "execute_reply");
        assert_eq!(m["content"]["status"], "error");
        let file = too_large(
            FromAgent::File {
                req: 1,
                result: Ok(replbox_protocol::FileReply::Done),
            },
            20 << 20,
        );
        assert!(matches!(
            file,
            FromAgent::File {
                req: 1,
                result: Err(replbox_protocol::FileError::TooLarge { .. })
            }
        ));
    }
}
