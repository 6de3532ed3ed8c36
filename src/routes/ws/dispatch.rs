//! A client frame's handling: each becomes a call to the service layer;
//! slow ones run in the background, a few at a time.

use super::*;

impl Conn {
    pub(super) async fn stdin(&self, job: JobId, data: Vec<u8>) {
        if let Err(e) = jobs::stdin(&self.sandbox, job, data).await {
            self.reply_error(e, None).await;
        }
    }

    pub(super) async fn handle(&mut self, frame: ClientFrame) {
        match frame {
            ClientFrame::Ping { reference } => self.send(ServerFrame::Pong { reference }).await,
            ClientFrame::Stdin { job, data } => self.stdin(job, data.into_bytes()).await,
            ClientFrame::Eof { job } => jobs::close_stdin(&self.sandbox, job).await,
            ClientFrame::Resize { job, rows, cols } => {
                jobs::resize(&self.sandbox, job, rows, cols).await
            }
            ClientFrame::Signal { job, signal } => {
                let Some(signal) = signal.number() else {
                    return self
                        .reply_error(
                            AppError::bad_request(
                                ErrorCode::BadSignal,
                                "Use interrupt, terminate, kill, hangup or a signal number.",
                            ),
                            None,
                        )
                        .await;
                };
                if let Err(e) = jobs::signal(&self.sandbox, job, signal).await {
                    self.reply_error(e, None).await;
                }
            }
            ClientFrame::Replay { job, after } => self.replay(job, after).await,
            ClientFrame::Restore => {
                let s = self.sandbox.clone();
                let out = self.out.clone();
                self.spawn(async move {
                    match s.ensure().await {
                        Ok(_) => s.touch().await,
                        Err(e) => {
                            let _ = out.send(error_message(e, None)).await;
                        }
                    }
                })
                .await;
            }
            ClientFrame::Run(req) => {
                let reference = req.reference.clone();
                let plan =
                    match runs::plan(&req, &self.state.services.languages, &self.state.config) {
                        Ok(p) => p,
                        Err(e) => return self.reply_error(e, reference).await,
                    };
                let s = self.sandbox.clone();
                let out = self.out.clone();
                self.spawn(async move {
                    if let Err(e) = runs::start_run(&s, plan, reference.clone()).await {
                        let _ = out.send(error_message(e, reference)).await;
                    }
                })
                .await;
            }
            ClientFrame::Shell {
                reference,
                rows,
                cols,
                new,
            } => {
                let s = self.sandbox.clone();
                let out = self.out.clone();
                let size = PtySize {
                    rows: rows.unwrap_or(24).clamp(1, 500),
                    cols: cols.unwrap_or(80).clamp(1, 1000),
                };
                self.spawn(async move {
                    match shells::open(&s, size, new, reference.clone()).await {
                        Ok(shells::Opened::Started(_)) => {}
                        Ok(shells::Opened::Reattached(shell)) => {
                            let frame = ServerFrame::Started {
                                job: shell.id,
                                reference,
                                kind: JobKind::Shell,
                                pid: 0,
                            };
                            let _ = out.send(frame_message(&frame)).await;
                        }
                        Err(e) => {
                            let _ = out.send(error_message(e, reference)).await;
                        }
                    }
                })
                .await;
            }
            ClientFrame::KernelStart { reference, name } => {
                let s = self.sandbox.clone();
                let out = self.out.clone();
                let name = name.unwrap_or_else(|| "python3".into());
                self.spawn(async move {
                    if let Err(e) = kernels::start(&s, &name, reference.clone()).await {
                        let _ = out.send(error_message(e, reference)).await;
                    }
                })
                .await;
            }
            ClientFrame::KernelSpecs { reference } => {
                let s = self.sandbox.clone();
                let out = self.out.clone();
                self.spawn(async move {
                    let msg = match kernels::specs(&s).await {
                        Ok(specs) => frame_message(&ServerFrame::KernelSpecs { reference, specs }),
                        Err(e) => error_message(e, reference),
                    };
                    let _ = out.send(msg).await;
                })
                .await;
            }
            ClientFrame::KernelExecute {
                kernel,
                msg_id,
                code,
            } => {
                self.kernel(kernel, KernelRequest::Execute { msg_id, code })
                    .await
            }
            ClientFrame::KernelComplete {
                kernel,
                msg_id,
                code,
                cursor_pos,
            } => {
                self.kernel(
                    kernel,
                    KernelRequest::Complete {
                        msg_id,
                        code,
                        cursor_pos,
                    },
                )
                .await
            }
            ClientFrame::KernelInspect {
                kernel,
                msg_id,
                code,
                cursor_pos,
            } => {
                self.kernel(
                    kernel,
                    KernelRequest::Inspect {
                        msg_id,
                        code,
                        cursor_pos,
                    },
                )
                .await
            }
            ClientFrame::KernelInterrupt { kernel } => {
                self.kernel(kernel, KernelRequest::Interrupt).await
            }
            ClientFrame::KernelShutdown { kernel } => {
                self.kernel(kernel, KernelRequest::Shutdown).await
            }
            ClientFrame::FileList { reference, path } => {
                self.file_op(reference, path.clone(), FileOp::List { path }, false)
                    .await
            }
            ClientFrame::FileRead { reference, path } => {
                self.file_op(reference, path.clone(), FileOp::Read { path }, false)
                    .await
            }
            ClientFrame::FileWrite {
                reference,
                path,
                data,
                encoding,
                if_version,
            } => {
                let bytes = match encoding {
                    Encoding::Utf8 => data.into_bytes(),
                    Encoding::Base64 => {
                        match base64::engine::general_purpose::STANDARD.decode(data) {
                            Ok(b) => b,
                            Err(_) => {
                                return self
                                    .reply_error(
                                        AppError::bad_request(
                                            ErrorCode::BadBase64,
                                            "The data is not valid base64.",
                                        ),
                                        reference,
                                    )
                                    .await
                            }
                        }
                    }
                };
                self.file_op(
                    reference,
                    path.clone(),
                    FileOp::Write {
                        path,
                        data: bytes,
                        parents: true,
                        if_version,
                    },
                    true,
                )
                .await
            }
            ClientFrame::FileMkdir { reference, path } => {
                self.file_op(reference, path.clone(), FileOp::Mkdir { path }, true)
                    .await
            }
            ClientFrame::FileRename {
                reference,
                from,
                to,
            } => {
                self.file_op(reference, to.clone(), FileOp::Rename { from, to }, true)
                    .await
            }
            ClientFrame::FileDelete { reference, path } => {
                self.file_op(reference, path.clone(), FileOp::Delete { path }, true)
                    .await
            }
        }
    }

    pub(super) async fn kernel(&self, kernel: JobId, request: KernelRequest) {
        if let Err(e) = kernels::request(&self.sandbox, kernel, request).await {
            self.reply_error(e, None).await;
        }
    }

    pub(super) async fn file_op(
        &mut self,
        reference: Option<serde_json::Value>,
        path: String,
        op: FileOp,
        writes: bool,
    ) {
        let s = self.sandbox.clone();
        let out = self.out.clone();
        self.spawn(async move {
            let frame = match files::file_op(&s, op, writes).await {
                Ok(reply) => file_frame(reference, path, reply),
                Err(e) => {
                    let e = AppError::from(e);
                    ServerFrame::Error {
                        code: e.code,
                        message: e.message,
                        reference,
                    }
                }
            };
            let _ = out.send(frame_message(&frame)).await;
        })
        .await;
    }
}

fn file_frame(reference: Option<serde_json::Value>, path: String, reply: FileReply) -> ServerFrame {
    let (data, encoding, entries, version) = match reply {
        FileReply::Data { data, version } => {
            let (text, encoding) = crate::services::files::as_text(data);
            (Some(text), Some(encoding), None, Some(version))
        }
        FileReply::Listing(list) => (None, None, Some(entries(list)), None),
        FileReply::Written { version } => (None, None, None, Some(version)),
        FileReply::Done => (None, None, None, None),
    };
    ServerFrame::File {
        reference,
        path,
        data,
        encoding,
        entries,
        version,
    }
}
