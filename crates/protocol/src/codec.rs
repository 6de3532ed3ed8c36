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

impl<D> FrameCodec<D> {
    /// The next whole frame's payload, untouched (finding the frame
    /// boundary again after garbage, as `decode` does).
    pub fn decode_raw(&mut self, src: &mut BytesMut) -> Option<BytesMut> {
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
                    return None;
                }
            }
            if src.len() < HEADER_LEN {
                src.reserve(HEADER_LEN - src.len());
                return None;
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
                return None;
            }
            src.advance(HEADER_LEN);
            return Some(src.split_to(len));
        }
    }
}

impl<D: DeserializeOwned> Decoder for FrameCodec<D> {
    /// A frame whose payload did not decode is an `Err` item: the stream goes on.
    type Item = Result<D, FrameError>;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        Ok(self.decode_raw(src).map(|payload| {
            postcard::from_bytes(&payload).map_err(|e| FrameError::Malformed(e.to_string()))
        }))
    }
}

/// The postcard variant index of `FromAgent::Output`.
const OUTPUT_VARIANT: u8 = 2;

fn put_varint(v: &mut Vec<u8>, mut n: u64) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            v.push(b);
            return;
        }
        v.push(b | 0x80);
    }
}

fn get_varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        n |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

fn stream_index(s: crate::Stream) -> u8 {
    match s {
        crate::Stream::Stdout => 0,
        crate::Stream::Stderr => 1,
        crate::Stream::Pty => 2,
    }
}

/// Everything of a `FromAgent::Output` frame but its data: write this, then
/// the data, and the peer reads exactly `encode_frame(&FromAgent::Output
/// { id, stream, data })` without the data ever being copied into a buffer.
pub fn output_header(id: crate::JobId, stream: crate::Stream, len: usize) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(24);
    prefix.push(OUTPUT_VARIANT);
    put_varint(&mut prefix, id);
    prefix.push(stream_index(stream));
    put_varint(&mut prefix, len as u64);
    let mut v = Vec::with_capacity(HEADER_LEN + prefix.len());
    v.extend_from_slice(&MAGIC);
    v.extend_from_slice(&((prefix.len() + len) as u32).to_be_bytes());
    v.extend_from_slice(&prefix);
    v
}

/// When `payload` is a `FromAgent::Output`, its job, stream and data, the
/// data sliced out without a copy.
pub fn split_output(
    payload: bytes::Bytes,
) -> Result<(crate::JobId, crate::Stream, bytes::Bytes), bytes::Bytes> {
    let parse = |b: &[u8]| -> Option<(u64, crate::Stream, usize, usize)> {
        if *b.first()? != OUTPUT_VARIANT {
            return None;
        }
        let mut at = 1;
        let id = get_varint(b, &mut at)?;
        let stream = match *b.get(at)? {
            0 => crate::Stream::Stdout,
            1 => crate::Stream::Stderr,
            2 => crate::Stream::Pty,
            _ => return None,
        };
        at += 1;
        let len = get_varint(b, &mut at)? as usize;
        (b.len().checked_sub(at)? == len).then_some((id, stream, at, len))
    };
    match parse(&payload) {
        Some((id, stream, at, len)) => Ok((id, stream, payload.slice(at..at + len))),
        None => Err(payload),
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

    #[test]
    fn output_header_matches_postcard() {
        for (id, len) in [(1u64, 0usize), (300, 5), (1_764_160_000_000_000, 70_000)] {
            let data = vec![b'z'; len];
            let whole = frame(&FromAgent::Output {
                id,
                stream: Stream::Stderr,
                data: data.clone(),
            });
            let mut ours = output_header(id, Stream::Stderr, len);
            ours.extend_from_slice(&data);
            assert_eq!(&whole[..], &ours[..]);
            let payload = bytes::Bytes::copy_from_slice(&whole[HEADER_LEN..]);
            let (i, s, d) = split_output(payload).unwrap();
            assert_eq!((i, s, &d[..]), (id, Stream::Stderr, &data[..]));
        }
        let other = frame(&FromAgent::Started { id: 1, pid: 2 });
        assert!(split_output(bytes::Bytes::copy_from_slice(&other[HEADER_LEN..])).is_err());
    }

    proptest! {
        #[test]
        fn split_output_never_panics(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = split_output(bytes::Bytes::from(data));
        }

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
