//! The sandbox core against a real Docker engine: the agent, its jobs, its
//! files, and container lifecycle.

mod common;

use common::{cleanup, engine, sandbox_config, within};
use replbox::sandbox::{CreateSpec, JobEvent, SandboxError, SandboxHandle, Sandboxes};
use replbox_protocol::{FileError, FileOp, FileReply, JobSpec, PtySize, Stream};

async fn sandbox(name: &str) -> (Sandboxes, SandboxHandle) {
    let sandboxes = engine(sandbox_config()).await;
    let handle = sandboxes
        .create(&CreateSpec {
            session: name.to_string(),
            expires_at: chrono::Utc::now().timestamp() + 600,
            ..Default::default()
        })
        .await
        .expect("create sandbox");
    (sandboxes, handle)
}

async fn run(h: &SandboxHandle, line: &str) -> (String, String, replbox_protocol::ExitStatus) {
    let out = h
        .spawn(JobSpec::shell(line))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(out.spawn_error, None);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.exit.unwrap(),
    )
}

async fn write(h: &SandboxHandle, path: &str, data: &str) {
    h.write_file(path.into(), data.as_bytes().to_vec())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn hello_world_in_every_language() {
    within(180, async {
        let (sb, h) = sandbox("langs").await;
        write(&h, "main.py", "print('hello from python')\n").await;
        write(&h, "main.js", "console.log('hello from node')\n").await;
        write(&h, "main.sh", "echo \"hello from bash $BASH_VERSINFO\"\n").await;
        write(
            &h,
            "main.go",
            "package main\nimport \"fmt\"\nfunc main() { fmt.Println(\"hello from go\") }\n",
        )
        .await;
        let cases = [
            ("python3 main.py", "hello from python\n"),
            ("node main.js", "hello from node\n"),
            ("bash main.sh", "hello from bash 5\n"),
            ("go run main.go", "hello from go\n"),
        ];
        for (line, want) in cases {
            let (out, err, exit) = run(&h, line).await;
            assert_eq!(out, want, "{line}: stderr {err}");
            assert_eq!(exit.code, Some(0));
        }
        cleanup(&sb).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn stdin_reaches_python_input_and_streams_stay_apart() {
    within(60, async {
        let (sb, h) = sandbox("stdin").await;
        let mut job = h
            .spawn(JobSpec::argv([
                "python3",
                "-c",
                "import sys\nname = input('name? ')\nprint('hello', name)\nprint('oops', file=sys.stderr)",
            ]))
            .await
            .unwrap();
        assert!(matches!(job.next().await, Some(JobEvent::Started { .. })));
        job.control.stdin("Ada\n").await.unwrap();
        let out = job.collect().await.unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "name? hello Ada\n");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
        assert_eq!(out.exit.unwrap().code, Some(0));
        cleanup(&sb).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn output_chunks_never_split_a_character() {
    within(60, async {
        let (sb, h) = sandbox("utf8").await;
        // Three-byte characters written in pieces that split them.
        let mut job = h
            .spawn(JobSpec::argv([
                "python3",
                "-c",
                "import sys, time\nb = ('€' * 50000).encode()\nfor i in range(0, len(b), 7001):\n    sys.stdout.buffer.write(b[i:i+7001]); sys.stdout.flush(); time.sleep(0.005)",
            ]))
            .await
            .unwrap();
        let mut total = 0;
        let mut chunks = 0;
        while let Some(ev) = job.next().await {
            match ev {
                JobEvent::Output { data, .. } => {
                    assert!(std::str::from_utf8(&data).is_ok(), "chunk {chunks} splits a character");
                    total += data.len();
                    chunks += 1;
                }
                JobEvent::Exit(_) => break,
                _ => {}
            }
        }
        assert_eq!(total, 150_000);
        assert!(chunks > 1);
        cleanup(&sb).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn pty_is_a_terminal_and_follows_resize() {
    within(60, async {
        let (sb, h) = sandbox("pty").await;
        let mut spec = JobSpec::shell("tty; stty size; read _; stty size");
        spec.pty = Some(PtySize { rows: 24, cols: 80 });
        let mut job = h.spawn(spec).await.unwrap();
        let mut seen = String::new();
        while !seen.contains("24 80") {
            match job.next().await.unwrap() {
                JobEvent::Output { stream, data } => {
                    assert_eq!(stream, Stream::Pty);
                    seen.push_str(&String::from_utf8_lossy(&data));
                }
                JobEvent::Started { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(seen.contains("/dev/pts/"), "tty said: {seen}");
        job.control.resize(40, 120).await.unwrap();
        job.control.stdin("\n").await.unwrap();
        let out = job.collect().await.unwrap();
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("40 120"),
            "after resize: {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
        cleanup(&sb).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn signals_time_limits_and_output_caps() {
    within(60, async {
        let (sb, h) = sandbox("limits").await;
        // A signal to the group ends the shell and its child.
        let mut job = h
            .spawn(JobSpec::shell("sleep 1000 & sleep 1000 & echo ready; wait"))
            .await
            .unwrap();
        assert!(matches!(job.next().await, Some(JobEvent::Started { .. })));
        // Both children run once the shell has said so.
        match job.next().await {
            Some(JobEvent::Output { data, .. }) => assert_eq!(&data[..], b"ready\n"),
            other => panic!("{other:?}"),
        }
        let (ps, _, _) = run(&h, "ps -eo comm | grep -c '^sleep$' || true").await;
        assert_eq!(ps.trim(), "2", "both children run before the signal");
        job.control.signal(15).await.unwrap();
        let exit = job.collect().await.unwrap().exit.unwrap();
        assert_eq!(exit.signal, Some(15));
        let (ps, _, _) = run(&h, "ps -eo comm | grep -c '^sleep$' || true").await;
        assert_eq!(ps.trim(), "0", "no sleep survives its group");

        // A wall-time limit.
        let mut spec = JobSpec::shell("while true; do :; done");
        spec.timeout_ms = Some(500);
        let exit = h
            .spawn(spec)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap()
            .exit
            .unwrap();
        assert!(exit.timed_out);
        assert_eq!(exit.signal, Some(9));
        // The limit holds to within 250 ms (the agent shares the container's
        // CPU quota with the loop it stops).
        assert!(exit.wall_ms >= 500 && exit.wall_ms < 750, "{exit:?}");
        assert!(exit.cpu_ms > 100, "cpu time is reported: {exit:?}");

        // An output cap.
        let mut spec = JobSpec::argv(["yes"]);
        spec.output_limit = Some(100_000);
        let out = h.spawn(spec).await.unwrap().collect().await.unwrap();
        let exit = out.exit.unwrap();
        assert!(exit.truncated);
        assert_eq!(out.stdout.len(), 100_000);
        assert_eq!(exit.output_bytes, 100_000);

        // Exit codes, rusage, and a program that does not exist.
        let (_, _, exit) = run(&h, "python3 -c 'x = bytearray(50_000_000); exit(3)'").await;
        assert_eq!(exit.code, Some(3));
        assert!(exit.peak_rss_kb > 40_000, "{exit:?}");
        let out = h
            .spawn(JobSpec::argv(["no-such-program"]))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(
            out.spawn_error.as_deref(),
            Some("no-such-program: command not found")
        );
        cleanup(&sb).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn files_round_trip_and_escapes_are_refused() {
    within(60, async {
        let (sb, h) = sandbox("files").await;
        write(&h, "dir/notes.txt", "héllo\n").await;
        let got = h.read_file("dir/notes.txt".into()).await.unwrap();
        assert_eq!(got, "héllo\n".as_bytes());
        // A write based on a version the file no longer has is refused,
        // and what is on disk stays.
        let FileReply::Data { version, .. } = h
            .file(FileOp::Read {
                path: "dir/notes.txt".into(),
            })
            .await
            .unwrap()
        else {
            panic!("not data")
        };
        let conditional = |data: &str, v: &str| FileOp::Write {
            path: "dir/notes.txt".into(),
            data: data.as_bytes().to_vec(),
            parents: false,
            if_version: Some(v.to_string()),
        };
        let FileReply::Written { version: newer } =
            h.file(conditional("tab 1", &version)).await.unwrap()
        else {
            panic!("not written")
        };
        assert_ne!(newer, version);
        let err = h.file(conditional("tab 2", &version)).await.unwrap_err();
        assert!(
            matches!(&err, SandboxError::File(FileError::Changed(_))),
            "{err:?}"
        );
        assert_eq!(h.read_file("dir/notes.txt".into()).await.unwrap(), b"tab 1");
        h.file(FileOp::Rename {
            from: "dir/notes.txt".into(),
            to: "n.txt".into(),
        })
        .await
        .unwrap();
        let FileReply::Listing(list) = h.file(FileOp::List { path: "".into() }).await.unwrap()
        else {
            panic!("not a listing")
        };
        assert!(list.iter().any(|e| e.name == "n.txt"));
        run(&h, "ln -s / rootlink").await;
        for path in [
            "../etc/passwd",
            "/etc/passwd",
            "rootlink/etc/passwd",
            "rootlink",
        ] {
            let err = h
                .file(FileOp::Read { path: path.into() })
                .await
                .unwrap_err();
            assert!(
                matches!(err, SandboxError::File(FileError::OutsideWorkspace(_))),
                "{path}: {err:?}"
            );
            assert!(err.to_string().contains("leaves /workspace"), "{err}");
        }
        h.file(FileOp::Delete {
            path: "n.txt".into(),
        })
        .await
        .unwrap();
        let err = h
            .file(FileOp::Read {
                path: "n.txt".into(),
            })
            .await
            .unwrap_err();
        assert!(matches!(err, SandboxError::File(FileError::NotFound(_))));
        cleanup(&sb).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sandbox_is_locked_down() {
    within(60, async {
        let config = sandbox_config();
        let (sb, h) = sandbox("locked").await;
        let (uid, _, _) = run(&h, "id -u").await;
        assert_eq!(uid.trim(), "1000");
        // The interfaces the kernel lists (gVisor has no /sys/class/net).
        let (ifaces, _, _) = run(&h, "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '").await;
        // runc: loopback alone; gVisor, with the network disabled: none.
        let only = if common::gvisor() { "" } else { "lo" };
        assert_eq!(ifaces.trim(), only);
        let (_, err, exit) = run(&h, "touch /usr/x").await;
        assert_ne!(exit.code, Some(0));
        // gVisor checks the user's permission before the mount's: the same
        // refusal, another word (the mount is read-only all the same).
        assert!(
            err.contains("Read-only file system")
                || (common::gvisor() && err.contains("Permission denied")),
            "{err}"
        );
        let (root, _, _) = run(&h, "grep ' / ' /proc/mounts").await;
        assert!(root.split_whitespace().nth(3).is_some_and(|o| o.split(',').any(|f| f == "ro")), "{root}");
        let (caps, _, _) = run(&h, "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status").await;
        assert_eq!(caps.lines().count(), 5, "five capability sets: {caps:?}");
        for line in caps.lines() {
            assert!(line.ends_with("0000000000000000"), "capability held: {line}");
        }
        let (nnp, _, _) = run(&h, "grep NoNewPrivs /proc/self/status").await;
        assert_eq!(nnp, "NoNewPrivs:\t1\n");
        let (oom, _, _) = run(&h, "cat /proc/self/oom_score_adj").await;
        assert_eq!(oom.trim(), "1000");
        let limits = sb.applied_limits(h.container_id()).await.unwrap();
        assert_eq!(limits.memory, config.memory_mb * 1024 * 1024);
        assert_eq!(limits.memory_swap, limits.memory, "no extra swap");
        // gVisor: the host's limit holds its kernel's threads, 4 times the
        // limit the processes inside meet (RLIMIT_NPROC, below).
        let host_pids = if common::gvisor() {
            config.pids_limit * replbox::sandbox::GVISOR_HOST_PIDS_FACTOR
        } else {
            config.pids_limit
        };
        assert_eq!(limits.pids_limit, host_pids);
        assert_eq!(limits.network_mode, "none");
        assert!(limits.readonly_root);
        assert_eq!(limits.cap_drop, ["ALL"]);
        // Our own seccomp profile (docker/seccomp.json), in filter mode.
        assert!(
            limits
                .security_opt
                .iter()
                .any(|o| o.starts_with("seccomp={") && o.contains("SCMP_ARCH_X86_64")),
            "{:?}",
            limits.security_opt.iter().map(|o| &o[..o.len().min(40)]).collect::<Vec<_>>()
        );
        // runsc ignores the profile (with --oci-seccomp it would apply it,
        // but then no thread starts): gVisor's kernel, which serves every
        // system call itself, is the barrier (README, "Running with gVisor").
        let (seccomp, _, _) = run(&h, "grep Seccomp: /proc/self/status").await;
        let filtered = if common::gvisor() { "0" } else { "2" };
        assert_eq!(seccomp.split_whitespace().last(), Some(filtered), "{seccomp}");
        // Seen from inside too (cgroup v2 or v1).
        let (pids_max, _, _) =
            run(&h, "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max").await;
        // gVisor applies the pids limit to its own host threads, not to the
        // processes inside it, which see none; there the same number is
        // RLIMIT_NPROC, which its kernel counts per sandbox (tests/hostile.rs).
        let pids = if common::gvisor() { "max".to_string() } else { config.pids_limit.to_string() };
        assert_eq!(pids_max.trim(), pids);
        if common::gvisor() {
            let (nproc, _, _) = run(&h, "grep 'Max processes' /proc/self/limits").await;
            let nproc: Vec<&str> = nproc.split_whitespace().collect();
            let limit = config.pids_limit.to_string();
            assert_eq!(nproc.get(2..4), Some(&[limit.as_str(), limit.as_str()][..]), "{nproc:?}");
        }
        let (mem_max, _, _) = run(
            &h,
            "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
        )
        .await;
        assert_eq!(mem_max.trim(), (config.memory_mb * 1024 * 1024).to_string());
        let (nofile, _, _) = run(&h, "ulimit -n").await;
        assert_eq!(nofile.trim(), config.nofile.to_string());
        cleanup(&sb).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn workspace_outlives_container_and_reattach_works() {
    within(90, async {
        let (sb, h) = sandbox("persist").await;
        write(&h, "keep.txt", "still here").await;
        let id = h.container_id().to_string();

        // Drop the handle; a new one re-attaches to the running container.
        let mut job = h.spawn(JobSpec::shell("sleep 30")).await.unwrap();
        assert!(matches!(job.next().await, Some(JobEvent::Started { .. })));
        drop(job);
        drop(h);
        let h = sb.attach(&id).await.expect("re-attach");
        assert_eq!(h.running_jobs().await.unwrap().len(), 1);
        let (out, _, _) = run(&h, "echo again").await;
        assert_eq!(out, "again\n");

        // Remove the container; a new one for the session has the files.
        sb.remove(&id).await.unwrap();
        assert!(!sb.is_running(&id).await.unwrap());
        let h = sb
            .create(&CreateSpec {
                session: "persist".into(),
                expires_at: 0,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_ne!(h.container_id(), id);
        let (out, _, _) = run(&h, "cat keep.txt").await;
        assert_eq!(out, "still here");
        cleanup(&sb).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_survives_signals_from_its_jobs() {
    within(60, async {
        let (sb, h) = if common::gvisor() {
            // gVisor does not shield PID 1 from its own namespace's signals
            // (Linux drops those it has no handler for, SIGKILL too): a
            // job's `kill -9 1` ends its own sandbox, and only that one.
            let (sb, h) = sandbox("pid1").await;
            let (other_sb, other) = sandbox("bystander").await;
            // Its start may be answered or not before PID 1 is gone.
            if let Ok(job) = h.spawn(JobSpec::shell("kill -9 1")).await {
                let _ = job.collect().await;
            }
            h.closed().await;
            while sb.is_running(h.container_id()).await.unwrap() {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            let (out, _, _) = run(&other, "echo alive").await;
            assert_eq!(out, "alive\n", "another sandbox is untouched");
            drop(other);
            cleanup(&other_sb).await;
            cleanup(&sb).await;
            sandbox("pid1-again").await
        } else {
            let (sb, h) = sandbox("pid1").await;
            let (_, _, _) = run(
                &h,
                "kill -9 1; kill -TERM 1; kill -INT 1; kill -HUP 1; true",
            )
            .await;
            let (out, _, _) = run(&h, "echo alive; cat /proc/1/comm").await;
            assert_eq!(out, "alive\nagent\n");
            (sb, h)
        };
        // Orphans are reaped: no zombies are left. Each `sleep` leaves the
        // job's process group (setsid), so it outlives the job and is
        // re-parented to PID 1; the job ends once all five are running.
        run(
            &h,
            "for i in 1 2 3 4 5; do (setsid sleep 2 &); done; \
             while [ \"$(ps -eo comm= | grep -cx sleep)\" -lt 5 ]; do :; done",
        )
        .await;
        // First the orphans are seen, PID 1's children...
        let (seen, _, _) = run(&h, "ps -eo ppid=,comm= | grep -c '^ *1 sleep$' || true").await;
        assert_eq!(seen, "5\n", "the orphans were not seen alive");
        // ...then, each ended, reaped: no entry at all is left (a zombie
        // keeps its `sleep` line until PID 1 reaps it).
        let t = std::time::Instant::now();
        loop {
            let (left, _, _) = run(&h, "ps -eo stat=,comm= | grep ' sleep$' || true").await;
            if left.is_empty() {
                break;
            }
            assert!(
                t.elapsed() < std::time::Duration::from_secs(10),
                "orphans not reaped: {left}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        // And no process at all is left a zombie.
        let (zombies, _, _) = run(&h, "ps -eo stat=,pid=,comm= | grep '^Z' || true").await;
        assert_eq!(zombies, "", "zombies left");
        cleanup(&sb).await;
    })
    .await
}

/// The agent (PID 1 of a sandbox, uid 1000 inside) runs as another uid on
/// the host when the engine remaps user namespaces, and the workspace's
/// files are that uid's. `make test` starts the engine remapped
/// (scripts/ensure-docker.sh); an engine that does not remap fails here.
#[tokio::test(flavor = "multi_thread")]
async fn the_sandbox_user_is_not_a_host_user() {
    within(90, async {
        let sb = engine(sandbox_config()).await;
        let h = sb
            .create(&CreateSpec {
                session: "remap".into(),
                expires_at: chrono::Utc::now().timestamp() + 600,
                ..Default::default()
            })
            .await
            .expect("create sandbox");
        let info = sb
            .docker()
            .unwrap()
            .inspect_container(h.container_id(), None)
            .await
            .unwrap();
        let pid = info.state.and_then(|s| s.pid).expect("the agent's pid");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let uids: Vec<u32> = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .unwrap()
            .split_whitespace()
            .map(|u| u.parse().unwrap())
            .collect();
        let (host_uid, host_gid) = sb.host_ids().await.unwrap();
        cleanup(&sb).await;
        assert!(
            uids.iter().all(|&u| u != 1000),
            "the sandbox's uid 1000 is uid 1000 on the host ({uids:?}): the engine at {} does \
             not remap user namespaces. Start it with --userns-remap=default (`make docker` does, \
             through scripts/ensure-docker.sh; an engine it did not start must be restarted by \
             hand), then `make image`.",
            sb.config().docker_socket
        );
        // runc: the agent itself, as the sandbox user's remapped uid;
        // gVisor: its sandbox process, as the remapped root (the sandbox
        // user exists only inside gVisor's kernel).
        let user = sb
            .config()
            .user
            .split(':')
            .next()
            .unwrap()
            .parse::<u32>()
            .unwrap();
        let expected = if common::gvisor() {
            host_uid - user
        } else {
            host_uid
        };
        assert!(
            uids.iter().all(|&u| u == expected),
            "{uids:?} vs {expected}"
        );
        assert_ne!(host_gid, 1000);
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn workspace_files_belong_to_the_remapped_user() {
    within(90, async {
        let sb = engine(sandbox_config()).await;
        assert!(
            sb.quota_mb().is_some(),
            "workspace quotas are off here (they need root and e2fsprogs; the log says why)"
        );
        let h = sb
            .create(&CreateSpec {
                session: "owner".into(),
                expires_at: chrono::Utc::now().timestamp() + 600,
                ..Default::default()
            })
            .await
            .expect("create sandbox");
        let out = h
            .spawn(JobSpec::shell(
                "mkdir -p d && echo x > d/f && stat -c %u:%g d/f",
            ))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "1000:1000\n");
        let (uid, gid) = sb.host_ids().await.unwrap();
        let dir = sb.config().workspace_root.join(sb.volume_name("owner"));
        use std::os::unix::fs::MetadataExt;
        for p in [dir.clone(), dir.join("d"), dir.join("d/f")] {
            let m = std::fs::metadata(&p).unwrap();
            assert_eq!((m.uid(), m.gid()), (uid, gid), "{}", p.display());
        }
        cleanup(&sb).await;
    })
    .await
}

/// `REPLBOX_AGENT_TRANSPORT=attach` (a remote engine, a runtime that cannot
/// pass a unix socket through a bind mount): the agent talks over the
/// container's attached stdio, with no socket directory, and jobs, files
/// and re-attaching work as on the default socket.
#[tokio::test(flavor = "multi_thread")]
async fn the_attach_transport_works_without_a_socket() {
    within(90, async {
        let sb = engine(replbox::config::SandboxConfig {
            agent_transport: replbox::config::AgentTransport::Attach,
            ..sandbox_config()
        })
        .await;
        let h = sb
            .create(&CreateSpec {
                session: "attach".into(),
                ..Default::default()
            })
            .await
            .expect("create sandbox");
        let (out, _, exit) = run(
            &h,
            "test -e /opt/replbox/direct && echo socket || echo attach; head -c 3000000 /dev/zero | wc -c",
        )
        .await;
        assert_eq!((out.as_str(), exit.code), ("attach\n3000000\n", Some(0)));
        write(&h, "a.txt", "over stdio").await;
        let id = h.container_id().to_string();
        drop(h);
        let h = sb.attach(&id).await.expect("re-attach");
        assert_eq!(h.read_file("a.txt".into()).await.unwrap(), b"over stdio");
        cleanup(&sb).await;
    })
    .await
}

/// The default socket transport: the container sees its socket directory
/// (read-only, the socket gone after the hand-over), a large output arrives
/// whole, and after a re-attach (a new hand-over, a new secret) the agent
/// answers again; removing the container removes its directory.
#[tokio::test(flavor = "multi_thread")]
async fn the_socket_transport_hands_over_again_after_a_reattach() {
    within(90, async {
        let config = sandbox_config();
        let sockets = config.runtime_dir.join("sockets");
        let sb = engine(config.clone()).await;
        let h = sb
            .create(&CreateSpec {
                session: "socket".into(),
                ..Default::default()
            })
            .await
            .expect("create sandbox");
        let (out, _, exit) = run(
            &h,
            "ls -A /opt/replbox/direct; head -c 3000000 /dev/zero | wc -c",
        )
        .await;
        assert_eq!((out.as_str(), exit.code), ("3000000\n", Some(0)));
        let ours = |prefix: &str| {
            std::fs::read_dir(&sockets)
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .count()
        };
        assert_eq!(ours(&config.name_prefix), 1, "one socket directory");
        let id = h.container_id().to_string();
        let mut job = h.spawn(JobSpec::shell("sleep 30")).await.unwrap();
        assert!(matches!(job.next().await, Some(JobEvent::Started { .. })));
        drop(job);
        drop(h);
        let h = sb.attach(&id).await.expect("re-attach");
        assert_eq!(h.running_jobs().await.unwrap().len(), 1);
        let (out, _, _) = run(&h, "echo again").await;
        assert_eq!(out, "again\n");
        sb.remove(&id).await.unwrap();
        assert_eq!(ours(&config.name_prefix), 0, "its directory went with it");
        cleanup(&sb).await;
    })
    .await
}
