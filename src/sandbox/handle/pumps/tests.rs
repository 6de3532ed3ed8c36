//! Unit tests of the pumps (`pumps.rs`): the read room, no engine.

use super::*;

#[test]
fn the_read_room_grows_with_a_stream_and_shrinks_when_quiet() {
    let mut room = ReadRoom::new();
    // A stream: every read fills what it was offered.
    for _ in 0..10 {
        let spare = room.size;
        room.after_read(spare, spare);
        assert!(!room.quiet);
    }
    assert_eq!(room.size, READ_ROOM_MAX);
    // Its last frames: a small read, and the buffer may go at once.
    room.after_read(40, READ_ROOM_MAX);
    assert!(room.quiet);
    for _ in 0..10 {
        room.after_read(40, READ_ROOM_MAX);
    }
    assert_eq!(room.size, READ_ROOM_MIN);
}

#[tokio::test]
async fn a_quiet_socket_gives_its_read_buffer_back() {
    let (half, _write) = tokio::net::UnixStream::pair().unwrap().0.into_split();
    let mut room = ReadRoom::new();
    room.after_read(READ_ROOM_MAX, READ_ROOM_MAX);
    let mut source = Source::Socket(half, room);
    let mut buf = BytesMut::with_capacity(READ_ROOM_MAX);
    source.settle(&mut buf);
    assert_eq!(buf.capacity(), READ_ROOM_MAX, "a burst keeps its room");
    let Source::Socket(half, mut room) = source else {
        unreachable!()
    };
    room.after_read(40, READ_ROOM_MAX);
    let mut source = Source::Socket(half, room);
    source.settle(&mut buf);
    assert_eq!(buf.capacity(), 0, "a quiet socket holds no buffer");
    let Source::Socket(_, room) = source else {
        unreachable!()
    };
    assert_eq!(
        room.size, READ_ROOM_MIN,
        "and its next read asks for little"
    );
}
