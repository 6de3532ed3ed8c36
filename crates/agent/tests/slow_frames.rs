//! The agent's frame reader against a slow sender: a large frame that
//! keeps arriving, however slowly, is read whole; one that stops arriving
//! is dropped and the next frame is understood. Runs the agent binary on
//! pipes, as the container's attached stdio would.

use bytes::BytesMut;
use replbox_protocol::codec::encode_frame;
use replbox_protocol::{FileOp, FileReply, FrameCodec, FromAgent, ToAgent, PROTOCOL_VERSION};
use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use tokio_util::codec::Decoder;

struct Agent {
    child: Child,
    stdin: ChildStdin,
    frames: mpsc::Receiver<FromAgent>,
    workspace: tempfile::TempDir,
}

impl Agent {
    fn start() -> Agent {
        let workspace = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_replbox-agent"))
            .env("REPLBOX_WORKSPACE", workspace.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let (tx, frames) = mpsc::channel();
        std::thread::spawn(move || {
            let mut codec = FrameCodec::<FromAgent>::new();
            let mut buf = BytesMut::new();
            let mut chunk = [0u8; 65536];
            while let Ok(n) = stdout.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                while let Ok(Some(Ok(frame))) = codec.decode(&mut buf) {
                    let _ = tx.send(frame);
                }
            }
        });
        Agent {
            child,
            stdin,
            frames,
            workspace,
        }
    }

    fn frame(frame: &ToAgent) -> Vec<u8> {
        let mut buf = BytesMut::new();
        encode_frame(frame, &mut buf).unwrap();
        buf.to_vec()
    }

    fn next(&self) -> FromAgent {
        self.frames
            .recv_timeout(Duration::from_secs(10))
            .expect("no frame from the agent within 10 s")
    }

    fn hello(&mut self, nonce: u64) {
        let bytes = Self::frame(&ToAgent::Hello {
            version: PROTOCOL_VERSION,
            nonce,
        });
        self.stdin.write_all(&bytes).unwrap();
        loop {
            if let FromAgent::Hello { nonce: n, .. } = self.next() {
                assert_eq!(n, nonce);
                return;
            }
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The encoded frame of request `req`: write `len` bytes to `path`.
fn write_frame(req: u64, path: &str, len: usize) -> Vec<u8> {
    Agent::frame(&ToAgent::File {
        req,
        op: FileOp::Write {
            path: path.into(),
            data: vec![42u8; len],
            parents: false,
            if_version: None,
        },
    })
}

#[test]
fn a_large_frame_that_keeps_coming_is_read_whole() {
    let mut agent = Agent::start();
    agent.hello(1);
    // 4 MiB in 16 pieces, 60 ms apart: about a second in all, far past the
    // 250 ms after which a frame that stops arriving is dropped.
    let bytes = write_frame(7, "big.bin", 4 * 1024 * 1024);
    for piece in bytes.chunks(bytes.len().div_ceil(16)) {
        agent.stdin.write_all(piece).unwrap();
        agent.stdin.flush().unwrap();
        std::thread::sleep(Duration::from_millis(60));
    }
    match agent.next() {
        FromAgent::File { req: 7, result } => {
            assert!(
                matches!(result, Ok(FileReply::Written { .. })),
                "{result:?}"
            )
        }
        other => panic!("{other:?}"),
    }
    // The file holds every byte sent, and no temporary file is left beside it.
    let data = std::fs::read(agent.workspace.path().join("big.bin")).unwrap();
    assert_eq!(data.len(), 4 * 1024 * 1024);
    assert!(data.iter().all(|&b| b == 42));
    let names: Vec<_> = std::fs::read_dir(agent.workspace.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["big.bin"]);
}

#[test]
fn a_frame_that_stops_coming_is_dropped_and_the_next_is_understood() {
    let mut agent = Agent::start();
    agent.hello(1);
    let bytes = write_frame(8, "cut.bin", 100_000);
    // Half a frame, then silence (a server killed mid-write), then a new
    // server's first frame.
    agent.stdin.write_all(&bytes[..bytes.len() / 2]).unwrap();
    agent.stdin.flush().unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let bytes = Agent::frame(&ToAgent::Hello {
        version: PROTOCOL_VERSION,
        nonce: 2,
    });
    agent.stdin.write_all(&bytes).unwrap();
    agent.stdin.flush().unwrap();
    // The very next frame is the new server's Hello: nothing came of the
    // cut frame (no reply to request 8, no error for it).
    match agent.next() {
        FromAgent::Hello { nonce, .. } => assert_eq!(nonce, 2),
        other => panic!("the next frame was not the Hello: {other:?}"),
    }
    // The cut write left nothing on disk: neither the file nor a temporary.
    let names: Vec<_> = std::fs::read_dir(agent.workspace.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.is_empty(), "left in the workspace: {names:?}");
}
