//! Following jobs: a socket forwards output of the jobs it follows (started
//! while it watched, or asked for by a replay), replays what it missed from
//! the job's buffer, and says `gap` when the buffer no longer holds it.

use super::*;

impl Conn {
    pub(super) async fn output(
        &mut self,
        job: JobId,
        seq: u64,
        stream: replbox_protocol::Stream,
        data: &[u8],
    ) {
        let msg = match self.mode {
            OutputMode::Binary => Message::Binary(encode_output(job, seq, stream, data).into()),
            OutputMode::Json => frame_message(&ServerFrame::Output {
                job,
                seq,
                stream,
                data: String::from_utf8_lossy(data).into_owned(),
            }),
        };
        let _ = self.out.send(msg).await;
        let last = self.seen.entry(job).or_insert(0);
        *last = (*last).max(seq);
    }

    pub(super) async fn end(&mut self, record: &JobRecord) {
        if !self.ended.insert(record.id) {
            return;
        }
        let replay = record.replay(u64::MAX);
        match (replay.exit, replay.failed) {
            (Some(exit), _) => {
                self.send(ServerFrame::Exit(ExitFrame::new(record.id, &exit)))
                    .await
            }
            (None, Some(message)) => {
                self.send(ServerFrame::Failed {
                    job: record.id,
                    reference: record.reference.clone(),
                    message,
                })
                .await
            }
            _ => {}
        }
    }

    /// Forwards one session event; true when the socket should close.
    pub(super) async fn event(&mut self, ev: SessionEvent) -> bool {
        match ev {
            SessionEvent::Started { job, kind, pid } => {
                let reference = self.sandbox.job(job).and_then(|j| j.reference.clone());
                self.seen.entry(job).or_insert(0);
                self.send(ServerFrame::Started {
                    job,
                    reference,
                    kind,
                    pid,
                })
                .await;
            }
            SessionEvent::Output {
                job,
                seq,
                stream,
                data,
            } => {
                // Only jobs this socket follows: started while it watched,
                // or asked for by a replay.
                match on_output(self.seen.get(&job).copied(), seq) {
                    OnOutput::Skip => {}
                    OnOutput::CatchUp(last) => self.replay(job, last).await,
                    OnOutput::Send => self.output(job, seq, stream, &data).await,
                }
            }
            SessionEvent::Exit { job, .. } | SessionEvent::Failed { job, .. } => {
                if let Some(record) = self.sandbox.job(job) {
                    if let Some(&last) = self.seen.get(&job) {
                        if last < record.last_seq() {
                            self.replay(job, last).await;
                        }
                    }
                    self.end(&record).await;
                }
            }
            SessionEvent::Expiry { expires_at } => {
                self.send(ServerFrame::Expiry {
                    expires_at: rfc3339(expires_at),
                    expires_in_secs: expires_at - crate::sessions::now(),
                })
                .await
            }
            SessionEvent::Status(status) => self.send(ServerFrame::Status { status }).await,
            SessionEvent::Queued { position } => self.send(ServerFrame::Queued { position }).await,
            SessionEvent::KernelReady { job, language } => {
                self.send(ServerFrame::KernelReady {
                    kernel: job,
                    language,
                })
                .await
            }
            SessionEvent::KernelMessage {
                job,
                channel,
                message,
            } => {
                let m: serde_json::Value = serde_json::from_str(&message).unwrap_or_default();
                self.send(ServerFrame::KernelMessage {
                    kernel: job,
                    channel,
                    msg_type: m["header"]["msg_type"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    parent_msg_id: m["parent_header"]["msg_id"].as_str().map(String::from),
                    content: m["content"].clone(),
                })
                .await
            }
            SessionEvent::Expired => {
                self.send(ServerFrame::Expired {
                    message: "Your sandbox stopped after a period of inactivity. Your files are kept: reconnect and restore to continue.".into(),
                })
                .await;
                self.close(CLOSE_EXPIRED, "sandbox expired").await;
                return true;
            }
            SessionEvent::Moved => {
                // The tab reconnects (any code but 4000) and is forwarded
                // to the replica that holds the sandbox now.
                self.close(
                    CLOSE_SERVICE_RESTART,
                    "sandbox moved to another server; reconnect",
                )
                .await;
                return true;
            }
        }
        false
    }

    /// Sends what the job's buffer holds after `after` (and its end).
    pub(super) async fn replay(&mut self, job: JobId, after: u64) {
        let Some(record) = self.sandbox.job(job) else {
            self.refuse(
                ErrorCode::UnknownJob,
                format!("There is no job {job} to replay here: it ended long ago, or the server that ran it stopped (a run in flight then goes on in your sandbox, and its files are kept, but its output is lost)."),
            )
            .await;
            return;
        };
        let replay = record.replay(after);
        if let Some((from, to)) = gap(after, replay.first_seq) {
            self.send(ServerFrame::Gap { job, from, to }).await;
        }
        for chunk in &replay.chunks {
            self.output(job, chunk.seq, chunk.stream, &chunk.data).await;
        }
        self.seen.entry(job).or_insert(after);
        if !record.is_running() {
            self.end(&record).await;
        }
    }

    /// After falling behind the hub: replays every job this socket follows.
    pub(super) async fn catch_up(&mut self) {
        let followed: Vec<(JobId, u64)> = self.seen.iter().map(|(j, s)| (*j, *s)).collect();
        for (job, last) in followed {
            self.replay(job, last).await;
        }
    }
}

/// What to do with a chunk of a job's output.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum OnOutput {
    /// Not followed, or already sent (a replay got ahead of the hub).
    Skip,
    /// The next one: send it.
    Send,
    /// Chunks were missed after this one: replay from the buffer.
    CatchUp(u64),
}

/// `last`: the highest sequence number sent for the job, if followed.
pub(super) fn on_output(last: Option<u64>, seq: u64) -> OnOutput {
    match last {
        None => OnOutput::Skip,
        Some(last) if seq <= last => OnOutput::Skip,
        Some(last) if seq > last + 1 => OnOutput::CatchUp(last),
        Some(_) => OnOutput::Send,
    }
}

/// The sequence numbers (inclusive) a replay after `after` cannot give,
/// when the buffer's oldest chunk is `first_seq`.
pub(super) fn gap(after: u64, first_seq: u64) -> Option<(u64, u64)> {
    (first_seq > after + 1).then(|| (after + 1, first_seq - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_sent_once_in_order_and_a_hole_is_replayed() {
        assert_eq!(on_output(None, 1), OnOutput::Skip, "not followed");
        assert_eq!(on_output(Some(0), 1), OnOutput::Send);
        assert_eq!(on_output(Some(4), 5), OnOutput::Send);
        assert_eq!(on_output(Some(5), 5), OnOutput::Skip, "already sent");
        assert_eq!(on_output(Some(7), 3), OnOutput::Skip, "a replay got ahead");
        assert_eq!(on_output(Some(4), 9), OnOutput::CatchUp(4));
    }

    #[test]
    fn a_gap_is_what_the_buffer_no_longer_holds() {
        assert_eq!(gap(0, 1), None, "everything is there");
        assert_eq!(gap(10, 5), None, "the buffer goes back further");
        assert_eq!(gap(0, 6), Some((1, 5)));
        assert_eq!(gap(3, 9), Some((4, 8)));
    }
}
