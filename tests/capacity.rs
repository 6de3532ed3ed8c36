//! The warm pool, the cap on live sandboxes with its queue, early expiry of
//! idle sandboxes, and the limit on new sessions per address.

mod common;

use common::{cleanup, engine, server_config, within, Browser, Got, TestServer};
use serde_json::json;
use std::time::Duration;

async fn pool_containers(sb: &replbox::sandbox::Sandboxes) -> Vec<String> {
    sb.list()
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.name.contains("-pool-"))
        .map(|c| c.id)
        .collect()
}

async fn wait_pool(sb: &replbox::sandbox::Sandboxes, n: usize) -> Vec<String> {
    for _ in 0..200 {
        let ids = pool_containers(sb).await;
        if ids.len() >= n {
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the pool did not reach {n} containers");
}

/// Polls `probe` every 100 ms until it gives a value (60 s at most).
async fn wait_for<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_browser_claims_a_warm_container_and_restarts_do_not_leak_it() {
    within(120, async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = server_config(dir.path());
        config.warm_pool = 2;
        let sb = engine(config.sandbox.clone()).await;
        let server = TestServer::start(config.clone()).await;
        let warm = wait_pool(&sb, 2).await;

        let browser = Browser::new();
        browser.visit(&server).await;
        let mut ws = browser.socket(&server, "").await;
        let (host, _) = ws
            .run(json!({"command": "cat /etc/hostname; echo mine > f.txt"}))
            .await;
        let host = host.trim().to_string();
        assert!(
            warm.iter().any(|id| id.starts_with(&host)),
            "{host} is one of {warm:?}"
        );
        // The claimed container is renamed to its session in the background:
        // out of the pool's names, under the server's prefix.
        let prefix = format!("{}-", config.sandbox.name_prefix);
        let renamed = wait_for("the claimed container's rename", || async {
            sb.list()
                .await
                .unwrap()
                .into_iter()
                .find(|c| c.id.starts_with(&host))
                .map(|c| c.name)
                .filter(|n| !n.contains("-pool-"))
        })
        .await;
        assert!(
            renamed.starts_with(&prefix) && !renamed[prefix.len()..].starts_with("ws-"),
            "{renamed}"
        );
        // The pool refills.
        let refilled = wait_pool(&sb, 2).await;
        assert!(!refilled.iter().any(|id| id.starts_with(&host)));

        // A restart removes the unclaimed ones, keeps the claimed one.
        drop(ws);
        server.stop().await;
        let server = TestServer::start(config).await;
        reqwest::get(server.url("/healthz")).await.unwrap();
        let after = wait_pool(&sb, 2).await;
        for id in &refilled {
            assert!(
                !after.contains(id),
                "an unclaimed container survived the restart"
            );
        }
        let mut ws = browser.socket(&server, "").await;
        let (out, _) = ws.run(json!({"command": "cat /etc/hostname f.txt"})).await;
        assert_eq!(
            out,
            format!("{host}\nmine\n"),
            "the same sandbox, not a second claim"
        );
        server.stop().await;
        cleanup(&sb).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_cap_browsers_queue_and_nobody_loses_work() {
    within(120, async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = server_config(dir.path());
        config.max_sandboxes = 2;
        config.evict_grace_secs = 8;
        let sb = engine(config.sandbox.clone()).await;
        let server = TestServer::start(config).await;

        let mut tabs = Vec::new();
        for name in ["a", "b"] {
            let browser = Browser::new();
            browser.visit(&server).await;
            let mut ws = browser.socket(&server, "").await;
            ws.run(json!({"command": format!("echo {name}-work > work.txt")}))
                .await;
            tabs.push((browser, ws));
        }
        // The API is told to come back later.
        let (headers, v) = server.refused_run().await;
        assert!(headers.contains_key("retry-after"));
        assert_eq!(v["error"]["code"], "capacity_full");

        // A third browser waits in line, then gets the longest-idle sandbox's
        // place once that one is past its grace period.
        let c = Browser::new();
        c.visit(&server).await;
        let mut cws = c.socket(&server, "").await;
        let queued = cws.until("queued").await;
        assert_eq!(queued["position"], 1);
        loop {
            let v = cws.json().await;
            if v["type"] == "status" && v["status"] == "ready" {
                break;
            }
        }
        // One of a and b (the longer idle) was expired early; its socket heard.
        let (b, mut bws) = tabs.pop().unwrap();
        let (a, mut aws) = tabs.pop().unwrap();
        async fn closed(ws: &mut common::Ws) -> Option<u16> {
            loop {
                if let Got::Closed(code) = ws.recv().await {
                    return code;
                }
            }
        }
        let (gone, gone_name, _kept) = tokio::select! {
            code = closed(&mut aws) => { assert_eq!(code, Some(4000)); (a, "a", b) }
            code = closed(&mut bws) => { assert_eq!(code, Some(4000)); (b, "b", a) }
        };
        assert!(sb.list().await.unwrap().len() <= 2);
        let (out, _) = cws.run(json!({"command": "echo c runs"})).await;
        assert_eq!(out, "c runs\n");

        // It comes back and waits its turn; the other, idle longest now,
        // makes room; its work is all there.
        let mut ws = gone.socket(&server, "").await;
        let (out, _) = ws.run(json!({"command": "cat work.txt"})).await;
        assert_eq!(out, format!("{gone_name}-work\n"));
        assert!(sb.list().await.unwrap().len() <= 2);
        server.stop().await;
        cleanup(&sb).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn new_sessions_per_address_are_limited() {
    within(60, async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = server_config(dir.path());
        config.new_sessions_per_minute = 3;
        let sb = engine(config.sandbox.clone()).await;
        let server = TestServer::start(config).await;
        let known = Browser::new();
        known.visit(&server).await;
        // X-Forwarded-For from a client that is not a trusted proxy is
        // ignored: it cannot dodge the limit by naming other addresses.
        let mut codes = Vec::new();
        for i in 0..4 {
            codes.push(new_browser_from(&server, &format!("203.0.113.{i}")).await);
        }
        assert_eq!(
            codes,
            [
                "200",
                "200",
                "429 too_many_sessions",
                "429 too_many_sessions"
            ]
        );
        // A browser that has its session is not limited.
        known.visit(&server).await;
        server.stop().await;
        cleanup(&sb).await;
    })
    .await
}

/// A new browser's first visit with that X-Forwarded-For: the status.
async fn new_browser_from(server: &TestServer, forwarded_for: &str) -> String {
    let r = Browser::new()
        .client
        .get(server.url("/"))
        .header("x-forwarded-for", forwarded_for)
        .send()
        .await
        .unwrap();
    // "200" for a page, else the status and the refusal's JSON code.
    if r.status() == 200 {
        return "200".into();
    }
    let (status, code) = common::refusal(r).await;
    format!("{status} {code}")
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_a_trusted_proxy_each_client_has_its_own_limit() {
    within(60, async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = server_config(dir.path());
        config.new_sessions_per_minute = 2;
        // The test's requests come from 127.0.0.1, as from an nginx in front.
        config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        let sb = engine(config.sandbox.clone()).await;
        let server = TestServer::start(config).await;
        let mut codes = Vec::new();
        for _ in 0..3 {
            codes.push(new_browser_from(&server, "198.51.100.1, 203.0.113.1").await);
        }
        assert_eq!(
            codes,
            ["200", "200", "429 too_many_sessions"],
            "one student over the limit"
        );
        // A classmate behind the same proxy is not held back by it, and
        // the left-most entry (the client's own claim) is not believed.
        assert_eq!(
            new_browser_from(&server, "203.0.113.1, 203.0.113.2").await,
            "200"
        );
        assert_eq!(new_browser_from(&server, "203.0.113.2").await, "200");
        assert_eq!(
            new_browser_from(&server, "203.0.113.2").await,
            "429 too_many_sessions"
        );
        server.stop().await;
        cleanup(&sb).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_returning_student_starts_cold_and_leaves_the_pool_alone() {
    within(180, async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = server_config(dir.path());
        config.warm_pool = 2;
        config.idle_ttl_secs = 3;
        let sb = engine(config.sandbox.clone()).await;
        let server = TestServer::start(config).await;
        wait_pool(&sb, 2).await;

        let browser = Browser::new();
        browser.visit(&server).await;
        let mut ws = browser.socket(&server, "").await;
        let (first, _) = ws
            .run(json!({"command": "cat /etc/hostname; echo mine > f.txt"}))
            .await;
        let first = first.trim().to_string();
        // Idle past the TTL: the sandbox expires, its socket is told.
        loop {
            match ws.recv().await {
                Got::Closed(code) => {
                    assert_eq!(code, Some(4000));
                    break;
                }
                Got::Json(v) if v["type"] != "error" => continue,
                other => panic!("while waiting for the expiry: {other:?}"),
            }
        }
        let pool = wait_pool(&sb, 2).await;
        assert!(!pool.iter().any(|id| id.starts_with(&first)));

        // Back: a new container on the old workspace (it exists, so no warm
        // container with a fresh one can serve), and the pool is untouched.
        let mut ws = browser.socket(&server, "").await;
        let (out, _) = ws.run(json!({"command": "cat /etc/hostname f.txt"})).await;
        let (host, files) = out.split_once('\n').unwrap();
        assert_eq!(files, "mine\n");
        assert_ne!(host, first, "a new container");
        assert!(
            !pool.iter().any(|id| id.starts_with(host)),
            "{host} is a warm container: {pool:?}"
        );
        let mut after = pool_containers(&sb).await;
        let mut before = pool.clone();
        after.sort();
        before.sort();
        assert_eq!(
            after, before,
            "the warm containers are still there, unclaimed"
        );
        server.stop().await;
        cleanup(&sb).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ipv6_client_counts_as_its_64() {
    within(60, async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = server_config(dir.path());
        config.new_sessions_per_minute = 2;
        // Loopback has one IPv6 address: the clients are named by a trusted
        // proxy in front, as behind the school's nginx.
        config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        let sb = engine(config.sandbox.clone()).await;
        let server = TestServer::start(config).await;
        let mut codes = Vec::new();
        for client in [
            "2001:db8:1:2::1",
            "2001:db8:1:2::2",
            "2001:db8:1:2:ffff:ffff:ffff:ffff",
        ] {
            codes.push(new_browser_from(&server, client).await);
        }
        assert_eq!(
            codes,
            ["200", "200", "429 too_many_sessions"],
            "three addresses of one /64 are one client"
        );
        assert_eq!(
            new_browser_from(&server, "2001:db8:1:3::1").await,
            "200",
            "the next /64 is another"
        );
        server.stop().await;
        cleanup(&sb).await;
    })
    .await
}

/// Files in `dir` with this extension: (name, inode).
fn files_with(dir: &std::path::Path, ext: &str) -> Vec<(String, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == ext))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().ino(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn workspace_images_are_formatted_ahead_of_need() {
    within(180, async {
        let dir = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let mut config = server_config(dir.path());
        config.sandbox.workspace_root = root.path().to_path_buf();
        config.sandbox.workspace_quota_mb = 64;
        let sb = engine(config.sandbox.clone()).await;
        assert_eq!(
            sb.quota_mb(),
            Some(64),
            "workspace quotas are off: they need root and e2fsprogs (the server's log says why)"
        );
        let server = TestServer::start(config).await;
        // Before anyone asks: formatted images wait in spare/.
        let spare = root.path().join("spare");
        let ready = wait_for("three formatted spares", || async {
            let ready = files_with(&spare, "ready");
            (ready.len() >= 3 && files_with(&spare, "making").is_empty()).then_some(ready)
        })
        .await;
        assert!(
            files_with(root.path(), "img").is_empty(),
            "no workspace yet"
        );

        // A new student's workspace is one of them, renamed: not formatted then.
        let browser = Browser::new();
        browser.visit(&server).await;
        let mut ws = browser.socket(&server, "").await;
        let (out, _) = ws
            .run(json!({"command": "df -BM --output=size /workspace | tail -1"}))
            .await;
        let size: u64 = out.trim().trim_end_matches('M').parse().unwrap();
        // 64 MiB less ext4's own (its 4 MiB journal, inode tables).
        assert!(
            (48..=64).contains(&size),
            "the workspace is a {size} MiB filesystem"
        );
        let images = files_with(root.path(), "img");
        assert_eq!(images.len(), 1, "{images:?}");
        assert!(
            ready.iter().any(|(_, ino)| *ino == images[0].1),
            "the workspace image {images:?} is none of the spares {ready:?}"
        );
        // And the spares are made up again.
        wait_for("the spares made up", || async {
            (files_with(&spare, "ready").len() >= 3).then_some(())
        })
        .await;
        server.stop().await;
        cleanup(&sb).await;
    })
    .await
}

/// The server binary as its own process, under `wrapper` (a command and
/// its arguments put before it) with `env`: the child, the server and its
/// log (stderr), gathered as it comes.
fn spawn_logged(
    config: &replbox::config::Config,
    wrapper: &[&str],
    env: &[(&str, &str)],
) -> (
    std::process::Child,
    TestServer,
    std::sync::Arc<std::sync::Mutex<String>>,
) {
    use std::io::{BufRead, Read};
    let bin = env!("CARGO_BIN_EXE_replbox");
    let mut cmd = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = std::process::Command::new(first);
            c.args(rest).arg(bin);
            c
        }
        None => std::process::Command::new(bin),
    };
    cmd.env("REPLBOX_ADDR", "127.0.0.1:0")
        .env("REPLBOX_DATA_DIR", &config.data_dir)
        .env("REPLBOX_NAME_PREFIX", &config.sandbox.name_prefix)
        .env("REPLBOX_AGENT_PATH", &config.sandbox.agent_path)
        .env("REPLBOX_WARM_POOL", "0")
        .env("REPLBOX_API_TOKENS", "test-token")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut stderr = child.stderr.take().unwrap();
    let sink = log.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.contains("serving on http://127.0.0.1:"),
        "{line}{}",
        log.lock().unwrap()
    );
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .unwrap()
        .parse()
        .unwrap();
    (child, TestServer::external(addr, config.clone()), log)
}

/// A way to start the server without quotas: its name, the command put
/// before the server, its environment, and the warning it logs.
type Fallback<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);

/// Without root, or without e2fsprogs, workspaces are plain volumes (no
/// size limit) and the log says so; the student's work goes on.
#[tokio::test(flavor = "multi_thread")]
async fn without_root_or_e2fsprogs_workspaces_are_plain_volumes_and_the_log_says_so() {
    within(180, async {
        // The docker group's id, so that `nobody` can reach the engine.
        let group = std::fs::read_to_string("/etc/group").unwrap();
        let docker_gid = group
            .lines()
            .find_map(|l| l.strip_prefix("docker:x:"))
            .and_then(|rest| rest.split(':').next())
            .expect("a docker group")
            .to_string();
        let regid = format!("--regid={docker_gid}");
        let groups = format!("--groups={docker_gid}");
        let cases: [Fallback; 2] = [
            (
                "not root",
                vec!["setpriv", "--reuid=65534", &regid, &groups],
                vec![],
                "workspace quotas need root; workspaces are plain volumes without a size limit",
            ),
            (
                "no mkfs.ext4 on the PATH",
                vec![],
                vec![("PATH", "/usr/bin")],
                "workspace quotas off: cannot loop-mount an image here",
            ),
        ];
        for (case, wrapper, env, said) in cases {
            let dir = tempfile::tempdir().unwrap();
            // `nobody` keeps its data (store, token key) there.
            std::process::Command::new("chown")
                .args(["65534", &dir.path().to_string_lossy()])
                .status()
                .unwrap();
            let config = server_config(dir.path());
            let sb = engine(config.sandbox.clone()).await;
            let mut env = env;
            env.push(("REPLBOX_WORKSPACE_QUOTA_MB", "16"));
            let (mut child, server, log) = spawn_logged(&config, &wrapper, &env);
            let line = wait_for("the log line on quotas", || async {
                log.lock()
                    .unwrap()
                    .lines()
                    .find(|l| l.contains("workspace quotas"))
                    .map(str::to_string)
            })
            .await;
            assert!(line.contains("WARN") && line.contains(said), "{case}: {line}");
            // The student's sandbox works, with no 16 MiB limit.
            let browser = Browser::new();
            browser.visit(&server).await;
            let mut ws = browser.socket(&server, "").await;
            let (out, exit) = ws
                .run(json!({"command": "head -c 33554432 /dev/zero > big.bin && stat -c %s big.bin"}))
                .await;
            assert_eq!((out.as_str(), &exit["code"]), ("33554432\n", &json!(0)), "{case}: {exit}");
            assert!(
                sb.list_volumes().await.unwrap().len() == 1 && files_with(&config.sandbox.workspace_root, "img").iter().all(|(n, _)| !n.starts_with(&config.sandbox.name_prefix)),
                "{case}: a plain volume, no image"
            );
            common::signal(&child, 15);
            child.wait().unwrap();
            cleanup(&sb).await;
        }
    })
    .await
}

/// One-shot runs answer before their container is removed; until the
/// engine has removed it, it still counts against the cap. A burst of runs
/// from several clients, against a cap of 2 with a warm pool, never has
/// more of this server's containers in the engine than the cap (counted by
/// label through the engine's API while the burst runs).
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_one_shot_runs_never_exceeds_the_cap_in_the_engine() {
    const CAP: usize = 2;
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config(dir.path());
    config.max_sandboxes = CAP;
    config.warm_pool = 1;
    let sb = engine(config.sandbox.clone()).await;
    let server = TestServer::start(config).await;
    within(240, async {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        // The engine's own count, sampled as fast as it answers.
        let sampler = {
            let (sb, done) = (sb.clone(), done.clone());
            tokio::spawn(async move {
                let (mut most, mut samples) = (0, 0u32);
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let n = sb.list().await.unwrap().len();
                    most = most.max(n);
                    samples += 1;
                }
                (most, samples)
            })
        };
        let mut clients = Vec::new();
        for client in 0..4 {
            let url = server.url("/api/v1/run");
            clients.push(tokio::spawn(async move {
                let http = reqwest::Client::new();
                let (mut ran, mut refused) = (0, 0);
                while ran < 4 {
                    let r = http
                        .post(&url)
                        .bearer_auth("test-token")
                        .json(&json!({"language": "python", "code": format!("print({client})")}))
                        .send()
                        .await
                        .unwrap();
                    let status = r.status().as_u16();
                    let v: serde_json::Value = r.json().await.unwrap();
                    match status {
                        200 => {
                            assert_eq!(v["stdout"], format!("{client}\n"), "{v}");
                            ran += 1;
                        }
                        503 => {
                            assert_eq!(v["error"]["code"], "capacity_full", "{v}");
                            refused += 1;
                            // Told to come back later: the client retries as
                            // soon as a run of another client may have ended.
                            tokio::task::yield_now().await;
                        }
                        other => panic!("a one-shot run answered {other}: {v}"),
                    }
                }
                refused
            }));
        }
        let mut refused = 0;
        for c in clients {
            refused += c.await.unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let (most, samples) = sampler.await.unwrap();
        eprintln!("16 runs, {refused} refused, at most {most} containers in {samples} samples");
        assert!(samples > 10, "the engine was sampled {samples} times");
        assert!(
            most <= CAP,
            "{most} of this server's containers were in the engine at once; the cap is {CAP}"
        );
    })
    .await;
    server.stop().await;
    cleanup(&sb).await;
}
