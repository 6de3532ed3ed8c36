//! A fake engine for the unit tests of the layers above `sandbox/`: each
//! sandbox is an in-process task that speaks the agent's protocol over a
//! pipe (the hello, files kept in memory, jobs that print their command
//! and exit 0), so the registry and the services run without Docker. The
//! integration tests keep the real engine.

use super::handle::AgentOutput;
use super::{Backend, CreateSpec, ManagedContainer, ManagedVolume, SandboxError, SandboxHandle};
use bollard::container::LogOutput;
use bytes::BytesMut;
use futures::future::BoxFuture;
use futures::FutureExt;
use replbox_protocol::codec::encode_frame;
use replbox_protocol::{
    ExitStatus, FileError, FileOp, FileReply, FrameCodec, FromAgent, Stream, ToAgent,
    PROTOCOL_VERSION,
};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_util::codec::Decoder;

type Files = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

#[derive(Default)]
struct State {
    next: u64,
    containers: BTreeMap<String, ManagedContainer>,
    /// Workspace volume -> its files (they outlive a container).
    volumes: BTreeMap<String, Files>,
    /// Container id -> its volume.
    mounts: BTreeMap<String, String>,
    created: usize,
    removed: usize,
}

/// Sandboxes as tasks; counts what was made and removed.
#[derive(Default)]
pub struct FakeBackend {
    state: Mutex<State>,
}

impl FakeBackend {
    /// Sandboxes made so far.
    pub fn created(&self) -> usize {
        self.state.lock().unwrap().created
    }

    /// Sandboxes removed so far.
    pub fn removed(&self) -> usize {
        self.state.lock().unwrap().removed
    }

    /// Containers that exist now.
    pub fn live(&self) -> usize {
        self.state.lock().unwrap().containers.len()
    }

    fn connect(&self, id: &str) -> BoxFuture<'static, Result<SandboxHandle, SandboxError>> {
        let files = {
            let state = self.state.lock().unwrap();
            state
                .mounts
                .get(id)
                .and_then(|v| state.volumes.get(v))
                .cloned()
        };
        let id = id.to_string();
        async move {
            let files = files.ok_or(SandboxError::NotFound)?;
            let (server_out, agent_in) = tokio::io::duplex(64 * 1024);
            let (agent_out, server_in) = tokio::io::duplex(64 * 1024);
            tokio::spawn(agent(agent_in, agent_out, files));
            SandboxHandle::connect(id, output(server_in), Box::pin(server_out), None).await
        }
        .boxed()
    }
}

/// The agent's stdout as the engine's attach stream gives it.
fn output(from_agent: DuplexStream) -> AgentOutput {
    Box::pin(futures::stream::unfold(from_agent, |mut r| async move {
        let mut buf = vec![0u8; 16 * 1024];
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((
                    Ok(LogOutput::StdOut {
                        message: buf.into(),
                    }),
                    r,
                ))
            }
        }
    }))
}

/// The fake agent: answers until the server's side of the pipe closes.
async fn agent(mut from_server: DuplexStream, mut to_server: DuplexStream, files: Files) {
    let mut codec = FrameCodec::<ToAgent>::new();
    let mut buf = BytesMut::new();
    loop {
        while let Ok(Some(frame)) = codec.decode(&mut buf) {
            let Ok(frame) = frame else { continue };
            let mut out = BytesMut::new();
            for reply in answer(frame, &files) {
                if encode_frame(&reply, &mut out).is_err() {
                    return;
                }
            }
            if to_server.write_all(&out).await.is_err() {
                return;
            }
        }
        match from_server.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn answer(frame: ToAgent, files: &Files) -> Vec<FromAgent> {
    match frame {
        ToAgent::Hello { nonce, .. } => vec![FromAgent::Hello {
            version: PROTOCOL_VERSION,
            nonce,
            agent: "fake".into(),
        }],
        ToAgent::Spawn { id, spec } => vec![
            FromAgent::Started { id, pid: 2 },
            FromAgent::Output {
                id,
                stream: Stream::Stdout,
                data: format!("{:?}\n", spec.command).into_bytes(),
            },
            FromAgent::Exit {
                id,
                exit: ExitStatus {
                    code: Some(0),
                    signal: None,
                    wall_ms: 0,
                    cpu_ms: 0,
                    peak_rss_kb: 0,
                    timed_out: false,
                    truncated: false,
                    output_bytes: 0,
                    oom_killed: false,
                    pids_limited: false,
                    workspace_full: false,
                },
            },
        ],
        ToAgent::File { req, op } => {
            let mut files = files.lock().unwrap();
            let result = match op {
                FileOp::Write { path, data, .. } => {
                    files.insert(path, data);
                    Ok(FileReply::Written {
                        version: "1".into(),
                    })
                }
                FileOp::Read { path } => match files.get(&path) {
                    Some(data) => Ok(FileReply::Data {
                        data: data.clone(),
                        version: "1".into(),
                    }),
                    None => Err(FileError::NotFound(path)),
                },
                FileOp::List { .. } => Ok(FileReply::Listing(Vec::new())),
                _ => Ok(FileReply::Done),
            };
            vec![FromAgent::File { req, result }]
        }
        ToAgent::ListJobs => vec![FromAgent::Jobs {
            running: Vec::new(),
        }],
        _ => Vec::new(),
    }
}

impl Backend for FakeBackend {
    fn ping(&self) -> BoxFuture<'_, Result<(), SandboxError>> {
        async { Ok(()) }.boxed()
    }

    fn create<'a>(
        &'a self,
        spec: &'a CreateSpec,
    ) -> BoxFuture<'a, Result<SandboxHandle, SandboxError>> {
        let id = {
            let mut state = self.state.lock().unwrap();
            state.next += 1;
            state.created += 1;
            let id = format!("fake{:08}", state.next);
            let name = spec
                .name
                .clone()
                .unwrap_or_else(|| self.container_name(&spec.session));
            let volume = spec
                .volume
                .clone()
                .unwrap_or_else(|| self.volume_name(&spec.session));
            state.volumes.entry(volume.clone()).or_default();
            state.mounts.insert(id.clone(), volume);
            state.containers.insert(
                id.clone(),
                ManagedContainer {
                    id: id.clone(),
                    name,
                    session: spec.session.clone(),
                    expires_at: spec.expires_at,
                    running: true,
                    deployment: None,
                },
            );
            id
        };
        self.connect(&id)
    }

    fn attach<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<SandboxHandle, SandboxError>> {
        self.connect(id)
    }

    fn is_running<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, SandboxError>> {
        let running = self.state.lock().unwrap().containers.contains_key(id);
        async move { Ok(running) }.boxed()
    }

    fn rename<'a>(&'a self, id: &'a str, name: &'a str) -> BoxFuture<'a, Result<(), SandboxError>> {
        let found = match self.state.lock().unwrap().containers.get_mut(id) {
            Some(c) => {
                c.name = name.to_string();
                Ok(())
            }
            None => Err(SandboxError::NotFound),
        };
        async move { found }.boxed()
    }

    fn upload_tar<'a>(
        &'a self,
        _id: &'a str,
        _path: &'a str,
        _tar: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), SandboxError>> {
        async { Ok(()) }.boxed()
    }

    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), SandboxError>> {
        let mut state = self.state.lock().unwrap();
        if state.containers.remove(id).is_some() {
            state.removed += 1;
        }
        state.mounts.remove(id);
        async { Ok(()) }.boxed()
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<ManagedContainer>, SandboxError>> {
        let list = self
            .state
            .lock()
            .unwrap()
            .containers
            .values()
            .cloned()
            .collect();
        async move { Ok(list) }.boxed()
    }

    fn list_volumes(&self) -> BoxFuture<'_, Result<Vec<ManagedVolume>, SandboxError>> {
        let list = self
            .state
            .lock()
            .unwrap()
            .volumes
            .keys()
            .map(|name| ManagedVolume {
                name: name.clone(),
                session: name.trim_start_matches("fake-ws-").to_string(),
                deployment: None,
            })
            .collect();
        async move { Ok(list) }.boxed()
    }

    fn remove_volume<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), SandboxError>> {
        self.state.lock().unwrap().volumes.remove(name);
        async { Ok(()) }.boxed()
    }

    fn release_workspace<'a>(&'a self, _name: &'a str) -> BoxFuture<'a, ()> {
        async {}.boxed()
    }

    fn remove_orphan_workspaces<'a>(&'a self, _keep: &'a HashSet<String>) -> BoxFuture<'a, ()> {
        async {}.boxed()
    }

    fn deployment(&self) -> Option<&str> {
        None
    }

    fn container_name(&self, owner: &str) -> String {
        format!("fake-{owner}")
    }

    fn volume_name(&self, owner: &str) -> String {
        format!("fake-ws-{owner}")
    }
}
