//! Unit tests of the agent connection (`handle/mod.rs`), no engine.

use super::*;
use bytes::BytesMut;
use replbox_protocol::{codec::encode_frame, FrameCodec, FromAgent};
use tokio::io::AsyncReadExt;
use tokio_util::codec::Decoder;

/// A fake agent that answers the hello with another protocol version.
#[tokio::test]
async fn a_mismatched_agent_is_a_clear_error() {
    let (server_side, mut agent_side) = tokio::io::duplex(1 << 16);
    let (out_tx, out_rx) =
        mpsc::channel::<Result<bollard::container::LogOutput, bollard::errors::Error>>(4);
    tokio::spawn(async move {
        let mut buf = BytesMut::new();
        let mut codec = FrameCodec::<ToAgent>::new();
        loop {
            let mut chunk = [0u8; 1024];
            let n = agent_side.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
            if let Some(Ok(ToAgent::Hello { nonce, .. })) = codec.decode(&mut buf).unwrap() {
                let mut reply = BytesMut::new();
                encode_frame(
                    &FromAgent::Hello {
                        version: PROTOCOL_VERSION + 1,
                        nonce,
                        agent: "future".into(),
                    },
                    &mut reply,
                )
                .unwrap();
                let _ = out_tx
                    .send(Ok(bollard::container::LogOutput::StdOut {
                        message: reply.freeze(),
                    }))
                    .await;
                std::future::pending::<()>().await;
            }
        }
    });
    let output: AgentOutput = Box::pin(tokio_stream_from(out_rx));
    let err = SandboxHandle::connect("fake".into(), output, Box::pin(server_side), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, SandboxError::AgentVersion { agent, .. } if agent == PROTOCOL_VERSION + 1),
        "{err:?}"
    );
    assert!(err.to_string().contains("protocol"));
}

fn tokio_stream_from<T: Send + 'static>(mut rx: mpsc::Receiver<T>) -> impl Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
