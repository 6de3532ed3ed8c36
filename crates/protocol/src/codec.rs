//! `MAGIC | u32 length | payload` frames with postcard payloads.
//!
//! A decoder that finds anything but the magic where a frame should start
//! skips forward to the next magic, so a stream joined mid-frame (a server
//! re-attaching to a running agent) finds its footing again.

use bytes::{Buf, BufMut, BytesMut};
use serde::{de::DeserializeOwned, Serialize};
use std::marker::PhantomData;
use tokio_util::codec::{Decoder, Encoder};

pub const MAGIC: [u8; 4] = [0xF0, 0x9F, 0x93, 0xA6];
const HEADER_LEN: usize = 8;
/// The largest payload either side accepts.
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("frame of {0} bytes is larger than the limit")]
    TooLarge(usize),
}

/// Decodes frames of `D`, encodes anything serialisable.
pub struct FrameCodec<D> {
    /// Bytes skipped while looking for a frame boundary (for logging).
    pub skipped: u64,
    _marker: PhantomData<fn() -> D>,
}

impl<D> Default for FrameCodec<D> {
    fn default() -> Self {
        Self {
            skipped: 0,
            _marker: PhantomData,
        }
    }
}

impl<D> FrameCodec<D> {
    pub fn new() -> Self {
        Self::default()
    }
}

/// Encodes one value as a whole frame.
pub fn encode_frame<T: Serialize>(item: &T, dst: &mut BytesMut) -> Result<(), FrameError> {
    let payload = postcard::to_stdvec(item).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if payload.len() > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(payload.len()));
    }
    dst.reserve(HEADER_LEN + payload.len());
    dst.put_slice(&MAGIC);
    dst.put_u32(payload.len() as u32);
    dst.put_slice(&payload);
    Ok(())
}

impl<D: DeserializeOwned> Decoder for FrameCodec<D> {
    /// A frame whose payload did not decode is an `Err` item: the stream goes on.
    type Item = Result<D, FrameError>;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        loop {
            // Find the magic.
            match find_magic(src) {
                Some(0) => {}
                Some(at) => {
                    self.skipped += at as u64;
                    src.advance(at);
                }
                None => {
                    // Keep the last 3 bytes: they may start a magic.
                    let keep = src.len().min(MAGIC.len() - 1);
                    let drop = src.len() - keep;
                    self.skipped += drop as u64;
                    src.advance(drop);
                    return Ok(None);
                }
            }
            if src.len() < HEADER_LEN {
                src.reserve(HEADER_LEN - src.len());
                return Ok(None);
            }
            let len = u32::from_be_bytes([src[4], src[5], src[6], src[7]]) as usize;
            if len > MAX_FRAME_LEN {
                // Not a real header: skip this magic and look again.
                self.skipped += 1;
                src.advance(1);
                continue;
            }
            if src.len() < HEADER_LEN + len {
                src.reserve(HEADER_LEN + len - src.len());
                return Ok(None);
            }
            src.advance(HEADER_LEN);
            let payload = src.split_to(len);
            return Ok(Some(
                postcard::from_bytes(&payload).map_err(|e| FrameError::Malformed(e.to_string())),
            ));
        }
    }
}

impl<D, T: Serialize> Encoder<T> for FrameCodec<D> {
    type Error = std::io::Error;

    fn encode(&mut self, item: T, dst: &mut BytesMut) -> Result<(), Self::Error> {
        encode_frame(&item, dst).map_err(std::io::Error::other)
    }
}

fn find_magic(buf: &[u8]) -> Option<usize> {
    buf.windows(MAGIC.len()).position(|w| w == MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FromAgent, Stream, ToAgent};
    use proptest::prelude::*;

    fn frame<T: Serialize>(t: &T) -> BytesMut {
        let mut b = BytesMut::new();
        encode_frame(t, &mut b).unwrap();
        b
    }

    fn decode_all(buf: &mut BytesMut) -> Vec<Result<ToAgent, FrameError>> {
        let mut codec = FrameCodec::<ToAgent>::new();
        let mut out = Vec::new();
        while let Some(item) = codec.decode(buf).unwrap() {
            out.push(item);
        }
        out
    }

    #[test]
    fn round_trip() {
        let msg = ToAgent::Stdin {
            id: 7,
            data: b"hello\n".to_vec(),
        };
        let mut buf = frame(&msg);
        let got = decode_all(&mut buf);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].as_ref().unwrap(), &msg);
    }

    #[test]
    fn resyncs_after_garbage_and_partial_frame() {
        let msg = ToAgent::Hello {
            version: 1,
            nonce: 42,
        };
        let whole = frame(&FromAgent::Output {
            id: 1,
            stream: Stream::Stdout,
            data: vec![b'x'; 100],
        });
        // The tail of a frame we joined in the middle of, then a whole one.
        let mut buf = BytesMut::from(&whole[30..]);
        buf.extend_from_slice(&frame(&msg));
        let got = decode_all(&mut buf);
        assert_eq!(got.last().unwrap().as_ref().unwrap(), &msg);
    }

    proptest! {
        #[test]
        fn decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let mut buf = BytesMut::from(&data[..]);
            let _ = decode_all(&mut buf);
        }

        #[test]
        fn decoder_finds_frame_after_any_prefix(
            prefix in proptest::collection::vec(any::<u8>(), 0..512),
            payload in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let msg = ToAgent::Stdin { id: 3, data: payload };
            let mut buf = BytesMut::from(&prefix[..]);
            buf.extend_from_slice(&frame(&msg));
            let mut codec = FrameCodec::<ToAgent>::new();
            let mut found = false;
            // Feed byte by byte, as a slow pipe would.
            let mut feed = BytesMut::new();
            for b in buf.iter() {
                feed.put_u8(*b);
                while let Some(item) = codec.decode(&mut feed).unwrap() {
                    if item.as_ref().ok() == Some(&msg) { found = true; }
                }
            }
            // A random prefix may hold a fake header that swallows the frame;
            // that is the case the agent's stall reset exists for. Only
            // prefixes without the magic must always find it.
            if find_magic(&prefix).is_none() && !prefix.ends_with(&MAGIC[..1]) && !prefix.ends_with(&MAGIC[..2]) && !prefix.ends_with(&MAGIC[..3]) {
                prop_assert!(found);
            }
        }
    }
}
