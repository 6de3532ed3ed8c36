//! Two replicas of the real binary sharing one state (one deployment, one
//! store, one engine) behind Debian's HAProxy (roundrobin): a student's
//! tabs and a program's REST calls reach the replica holding the sandbox's
//! lease wherever they land; the holder is killed (SIGKILL) mid-run, and
//! the other takes the sandbox over: the next run works, the files are
//! there, the same container answers. The state is on PostgreSQL (`make
//! postgres`, a database of the test's own); `scripts/ensure-haproxy.sh`
//! (make test) installs HAProxy.

mod common;

use common::{cleanup, engine, server_config, signal, spawn_server, within, Browser, Got, Ws};
use replbox::sessions::Store;
use reqwest::Method;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// `n` distinct free ports on 127.0.0.1 (bound together, then let go for
/// the children to take).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// HAProxy in the foreground on `port`, roundrobin over `servers`.
struct Haproxy {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    fn start(port: u16, servers: &[u16]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = format!(
            "global\n  maxconn 512\n\
             defaults\n  mode http\n  option forwardfor\n  timeout connect 2s\n  timeout client 120s\n  timeout server 120s\n  timeout tunnel 1h\n  retries 3\n  option redispatch\n\
             frontend replbox\n  bind 127.0.0.1:{port}\n  default_backend replicas\n\
             backend replicas\n  balance roundrobin\n  option httpchk GET /healthz\n  default-server inter 300ms fall 1 rise 1\n"
        );
        for (i, p) in servers.iter().enumerate() {
            cfg.push_str(&format!("  server r{i} 127.0.0.1:{p} check\n"));
        }
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, cfg).unwrap();
        let check = Command::new("haproxy")
            .args(["-c", "-q", "-f"])
            .arg(&path)
            .status()
            .expect("haproxy is missing: run scripts/ensure-haproxy.sh (make test does)");
        assert!(check.success(), "haproxy refused its config");
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Haproxy { child, _dir: dir }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills a replica when the test ends, however it ends.
struct Replica(Child);

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Until `f` gives `Some`, polling every 100 ms for `secs` at most.
async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The page's socket at `addr` (HAProxy or one replica), or why not.
async fn try_socket(browser: &Browser, origin_of: &common::TestServer) -> Result<Ws, String> {
    let mut req = origin_of.ws_url("/ws").into_client_request().unwrap();
    if let Some(cookie) = browser.cookie(origin_of) {
        req.headers_mut().insert("cookie", cookie.parse().unwrap());
    }
    req.headers_mut().insert(
        "origin",
        format!("http://{}", origin_of.addr).parse().unwrap(),
    );
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(Ws { ws }),
        Err(e) => Err(e.to_string()),
    }
}

/// An API exec through `server`, retried while the sandbox moves (503
/// `sandbox_moving` with Retry-After, while a dead holder's lease lapses).
async fn exec(server: &common::TestServer, task: &str, command: &str) -> Value {
    eventually(30, "an exec through the balancer", || async {
        let r = server
            .api(Method::POST, &format!("/api/v1/sandboxes/{task}/exec"))
            .json(&json!({ "command": command }))
            .send()
            .await
            .ok()?;
        let status = r.status();
        let v: Value = r.json().await.ok()?;
        if status == 503 {
            assert_eq!(v["error"]["code"], "sandbox_moving", "{v}");
            return None;
        }
        assert_eq!(status, 200, "{v}");
        Some(v)
    })
    .await
}

/// Which replica holds `owner`'s lease, as the shared store says.
/// The address of the replica holding `owner`'s lease (its id is the
/// address and a suffix new each start).
async fn holder(store: &Store, owner: &str) -> String {
    store.lease(owner).await.unwrap().expect("a lease").addr
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_behind_haproxy_share_sandboxes_and_survive_a_kill() {
    within(240, async {
        let dir = tempfile::tempdir().unwrap();
        // Workspaces of their own (the shared root's budget counts every
        // other test's images), small ones.
        let root = tempfile::tempdir().unwrap();
        let mut config = server_config(dir.path());
        config.sandbox.workspace_root = root.path().to_path_buf();
        config.sandbox.workspace_quota_mb = 64;
        let sb = engine(config.sandbox.clone()).await;
        let root_env = root.path().display().to_string();
        // The shared state on PostgreSQL (`make postgres`), a database of
        // this test's own; the data dir (shared too) keeps the deployment
        // id and the token key.
        let pg = common::PgDatabase::new().await;
        let ports = free_ports(3);
        let (pa, pb, ph) = (ports[0], ports[1], ports[2]);
        let replica = |port: u16| {
            let addr = format!("127.0.0.1:{port}");
            let (child, server) = spawn_server(
                &config,
                &[
                    ("REPLBOX_ADDR", addr.as_str()),
                    ("REPLBOX_WARM_POOL", "0"),
                    ("REPLBOX_WORKSPACE_ROOT", root_env.as_str()),
                    ("REPLBOX_DATABASE_URL", pg.url.as_str()),
                    ("REPLBOX_WORKSPACE_QUOTA_MB", "64"),
                    ("REPLBOX_REAP_INTERVAL_MS", "200"),
                    ("REPLBOX_LEASE_SECS", "3"),
                    ("REPLBOX_LEASE_RENEW_SECS", "1"),
                    ("REPLBOX_TRUSTED_PROXIES", "127.0.0.1"),
                    ("REPLBOX_NEW_SESSIONS_PER_MINUTE", "1000"),
                ],
            );
            (Replica(child), server)
        };
        // One after the other: the second sees the first's heartbeat.
        let (a, server_a) = replica(pa);
        eventually(20, "the first replica serving", || async {
            let r = reqwest::get(server_a.url("/healthz")).await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        let (b, server_b) = replica(pb);
        let mut replicas = vec![Some(a), Some(b)];
        let _haproxy = Haproxy::start(ph, &[pa, pb]);
        let front = common::TestServer::external(
            format!("127.0.0.1:{ph}").parse().unwrap(),
            config.clone(),
        );
        eventually(20, "HAProxy serving both replicas", || async {
            let mut ok = 0;
            for _ in 0..4 {
                let r = reqwest::get(front.url("/healthz")).await.ok()?;
                ok += r.status().is_success() as u32;
            }
            (ok == 4).then_some(())
        })
        .await;
        let store = Store::new(
            replbox::db::Db::open_postgres(&pg.url)
                .await
                .expect("the test's PostgreSQL database"),
        );

        // --- A student through the balancer: a file, then two tabs of one
        // cookie on different replicas.
        let browser = Browser::new();
        browser.visit(&front).await;
        let mut tab1 = try_socket(&browser, &front).await.unwrap();
        let (host, exit) = tab1
            .run(json!({"command": "echo kept > kept.txt; cat /etc/hostname"}))
            .await;
        assert_eq!(exit["code"], 0, "{exit}");
        let rows = store.all().await.unwrap();
        let owner = rows
            .iter()
            .find(|r| r.kind == "browser")
            .expect("the browser's sandbox on record")
            .owner
            .clone();
        let held_by = holder(&store, &owner).await;
        let (holder_idx, other) = if held_by == format!("127.0.0.1:{pa}") {
            (0, &server_b)
        } else {
            assert_eq!(held_by, format!("127.0.0.1:{pb}"));
            (1, &server_a)
        };
        // The second tab straight at the replica that does not hold it:
        // forwarded, it reaches the same sandbox and the same session (each
        // tab hears the other's runs).
        let mut tab2 = try_socket(&browser, other).await.unwrap();
        let (again, _) = tab2.run(json!({"command": "cat /etc/hostname"})).await;
        assert_eq!(again, host, "both tabs reach one sandbox");
        let (_, seen) = tab1.run(json!({"command": "echo from-tab-1"})).await;
        assert_eq!(seen["code"], 0);
        let started = tab2.until("started").await;
        let (out, _) = tab2.collect(started["job"].as_u64().unwrap()).await;
        assert_eq!(
            out, "from-tab-1\n",
            "the second tab follows the first's run"
        );
        assert_eq!(
            holder(&store, &owner).await,
            held_by,
            "no take-over by a tab"
        );

        // --- A program through the balancer: every call lands on either
        // replica (roundrobin) and reaches the one sandbox.
        let r = front
            .api(Method::POST, "/api/v1/sandboxes")
            .json(&json!({"taskId": "shared"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let api_host = exec(&front, "shared", "echo data > f.txt; cat /etc/hostname").await;
        for _ in 0..4 {
            let v = exec(&front, "shared", "cat /etc/hostname").await;
            assert_eq!(v["stdout"], api_host["stdout"], "one sandbox per task");
        }
        let api_owner = store
            .all()
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.kind == "api")
            .unwrap()
            .owner;
        let api_holder = holder(&store, &api_owner).await;

        // --- The student's holder is killed mid-run.
        tab1.send(
            json!({"type": "run", "command": "echo begun; sleep 2; echo finished > late.txt"}),
        )
        .await;
        let in_flight = tab1.until("started").await["job"].as_u64().unwrap();
        let mut killed = replicas[holder_idx].take().unwrap();
        signal(&killed.0, 9);
        killed.0.wait().unwrap();
        drop(killed);
        // Its tabs' connections end (the balancer's, or the forwarded one).
        for tab in [&mut tab1, &mut tab2] {
            loop {
                if let Got::Closed(_) = tab.recv().await {
                    break;
                }
            }
        }

        // The page reconnects through the balancer: refused (503) while
        // the dead holder's lease lapses, then served by the survivor.
        let mut tab = eventually(30, "the page's socket after the kill", || async {
            try_socket(&browser, &front).await.ok()
        })
        .await;
        // The run in flight: its output is gone with its server, and the
        // page hears why when it asks for it.
        tab.send(json!({"type": "replay", "job": in_flight, "after": 0}))
            .await;
        let said = tab.until("error").await;
        assert_eq!(said["code"], "unknown_job", "{said}");
        assert!(
            said["message"]
                .as_str()
                .unwrap()
                .contains("the server that ran it stopped"),
            "{said}"
        );
        // The next run works, in the same container, with the files.
        let (now_host, exit) = tab.run(json!({"command": "cat /etc/hostname"})).await;
        assert_eq!(exit["code"], 0);
        assert_eq!(now_host, host, "the same container, re-attached");
        let (kept, _) = tab.run(json!({"command": "cat kept.txt"})).await;
        assert_eq!(kept, "kept\n");
        // The run in flight went on in the sandbox: its file appears.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (late, _) = tab
                .run(json!({"command": "cat late.txt 2>/dev/null"}))
                .await;
            if late == "finished\n" {
                break;
            }
            assert_eq!(late, "", "late.txt");
            assert!(
                Instant::now() < deadline,
                "the run in flight did not finish"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let survivor = if holder_idx == 0 { pb } else { pa };
        assert_eq!(
            holder(&store, &owner).await,
            format!("127.0.0.1:{survivor}"),
            "the survivor holds the sandbox"
        );

        // The program's sandbox answers too (whoever held it), files kept.
        let v = exec(&front, "shared", "cat f.txt; cat /etc/hostname").await;
        assert_eq!(
            v["stdout"].as_str().unwrap(),
            format!("data\n{}", api_host["stdout"].as_str().unwrap())
        );
        if api_holder == held_by {
            assert_eq!(
                holder(&store, &api_owner).await,
                format!("127.0.0.1:{survivor}")
            );
        }

        // Nothing lost, nothing doubled: the two sandboxes' containers.
        let containers = sb.list().await.unwrap();
        assert_eq!(containers.len(), 2, "{containers:?}");
        drop(tab);
        drop(replicas);
        cleanup(&sb).await;
    })
    .await;
}
