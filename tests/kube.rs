//! The Kubernetes backend against the real test cluster of `make kube`
//! (`make test-kube`; not part of `make test`). scripts/test-kube.sh sets
//! REPLBOX_BACKEND=kubernetes, the agent image, the pull policy and the
//! storage class; a missing cluster fails with how to start it.

mod common;

use common::{job, server_config, within, Browser, Got, TestServer};
use replbox::sandbox::{CreateSpec, JobEvent, Pods, SandboxHandle};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// This test's own name prefix, the cluster's quota for a workspace, and
/// everything else from the environment test-kube.sh sets.
fn kube_config() -> replbox::config::SandboxConfig {
    let config = replbox::config::SandboxConfig {
        name_prefix: format!("rbk-{:08x}", rand::random::<u32>()),
        workspace_quota_mb: 64,
        memory_mb: 256,
        tmp_mb: 64,
        ..replbox::config::SandboxConfig::default()
    };
    assert_eq!(
        config.backend,
        replbox::config::BackendKind::Kubernetes,
        "run these with `make test-kube` (REPLBOX_BACKEND=kubernetes and the test cluster)"
    );
    config
}

async fn cluster(config: &replbox::config::SandboxConfig) -> Pods {
    let pods = Pods::new(config.clone());
    if let Err(e) = pods.ping().await {
        panic!(
            "no Kubernetes cluster answers ({e}): run `make kube` (KUBECONFIG={:?})",
            std::env::var("KUBECONFIG").ok()
        );
    }
    pods
}

/// Removes this test's pods and claims.
async fn cleanup(pods: &Pods) {
    for p in pods.list().await.unwrap_or_default() {
        let _ = pods.remove(&p.id).await;
    }
    for v in pods.list_volumes().await.unwrap_or_default() {
        let _ = pods.remove_volume(&v.name).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sandbox_is_a_locked_down_pod_with_a_kept_workspace_claim() {
    within(400, async {
        let config = kube_config();
        let pods = cluster(&config).await;
        let spec = CreateSpec {
            session: "alice".into(),
            ..Default::default()
        };
        let t = Instant::now();
        let h = pods.create(&spec).await.expect("create a sandbox pod");
        println!(
            "pod cold start (claim, pod, attach, hello): {} ms",
            t.elapsed().as_millis()
        );
        let id = h.container_id().to_string();
        assert_eq!(id, pods.container_name("alice"));

        // The pod as the apiserver holds it.
        let pod = serde_json::to_value(pods.pod(&id).await.unwrap()).unwrap();
        let spec_v = &pod["spec"];
        assert_eq!(spec_v["automountServiceAccountToken"], false);
        assert_eq!(spec_v["enableServiceLinks"], false);
        assert!(
            spec_v["hostNetwork"] != true && spec_v["hostPID"] != true && spec_v["hostIPC"] != true
        );
        let c = &spec_v["containers"][0];
        assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(c["resources"]["limits"]["memory"], "256Mi");

        // ... and as the agent's jobs see it.
        let checks = [
            (
                "tr '\\0' '\\n' < /proc/1/cmdline | head -n1",
                "/opt/replbox/agent\n",
            ),
            ("id -u", "1000\n"),
            ("grep CapEff /proc/1/status", "CapEff:\t0000000000000000\n"),
            ("grep NoNewPrivs /proc/self/status", "NoNewPrivs:\t1\n"),
            ("grep '^Seccomp:' /proc/self/status", "Seccomp:\t2\n"),
            (
                "touch /usr/x 2>/dev/null && echo written || echo refused",
                "refused\n",
            ),
            (
                "touch /opt/replbox/x 2>/dev/null && echo written || echo refused",
                "refused\n",
            ),
            (
                "test -e /var/run/secrets/kubernetes.io && echo token || echo none",
                "none\n",
            ),
            ("echo t > /tmp/t && cat /tmp/t", "t\n"),
        ];
        for (line, want) in checks {
            let (out, err, _) = job(&h, line).await;
            assert_eq!(out, want, "{line}: {err}");
        }

        // Files go through the agent, and stay on the claim.
        h.write_file("notes/kept.txt".into(), b"precious".to_vec())
            .await
            .expect("write a file");
        assert_eq!(
            h.read_file("notes/kept.txt".into()).await.unwrap(),
            b"precious"
        );

        // An archive (the grader's hidden files) goes in with its modes.
        let mut tar = tar::Builder::new(Vec::new());
        let script = b"#!/bin/sh\necho hidden harness\n";
        let mut header = tar::Header::new_gnu();
        header.set_size(script.len() as u64);
        header.set_mode(0o555);
        header.set_cksum();
        tar.append_data(&mut header, "bin/run-me", &script[..])
            .unwrap();
        let tar = tar.into_inner().unwrap();
        replbox::sandbox::Backend::upload_tar(&pods, &id, "/workspace", tar)
            .await
            .expect("upload a tar");
        let (out, err, _) = job(&h, "bin/run-me; stat -c %a bin/run-me").await;
        assert_eq!(out, "hidden harness\n555\n", "{err}");

        // The quota is the volume's size: writing past it fails, and the
        // sandbox goes on.
        let (out, err, code) = job(
            &h,
            "head -c 100M /dev/zero > /workspace/big; echo $?; rm -f /workspace/big",
        )
        .await;
        assert_eq!((out.as_str(), code), ("1\n", Some(0)), "{err}");
        assert!(err.contains("No space left on device"), "{err}");
        let claim = pods
            .claim(&pods.volume_name("alice"))
            .await
            .unwrap()
            .expect("the claim");
        let claim = serde_json::to_value(claim).unwrap();
        assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "64Mi");

        // The reaper's view: the pod, its owner, running.
        let listed = pods.list().await.unwrap();
        assert!(
            listed
                .iter()
                .any(|p| p.id == id && p.session == "alice" && p.running),
            "{listed:?}"
        );

        // Removed (as at expiry): the pod goes, the claim stays, and the
        // student's next sandbox finds the files.
        drop(h);
        pods.remove(&id).await.unwrap();
        assert!(!pods.is_running(&id).await.unwrap());
        assert!(pods
            .list_volumes()
            .await
            .unwrap()
            .iter()
            .any(|v| v.name == pods.volume_name("alice")));
        let back = pods.create(&spec).await.expect("the student comes back");
        assert_eq!(
            back.read_file("notes/kept.txt".into()).await.unwrap(),
            b"precious"
        );

        // A re-attach (a server restart) reaches the same agent.
        drop(back);
        let again = pods.attach(&id).await.expect("re-attach");
        assert_eq!(job(&again, "cat notes/kept.txt").await.0, "precious");
        drop(again);

        cleanup(&pods).await;
        assert!(pods.list().await.unwrap().is_empty());
        // Deleting a claim is the end of its files.
        let deadline = Instant::now() + Duration::from_secs(60);
        while pods
            .claim(&pods.volume_name("alice"))
            .await
            .unwrap()
            .is_some()
        {
            assert!(Instant::now() < deadline, "the claim is not deleted");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
}

/// The run round trip and a stream, on the Kubernetes backend (the attach
/// stream) and on the Docker backend (its default transport), by the same
/// code in the same run: the figures of docs/kubernetes.md.
#[tokio::test(flavor = "multi_thread")]
async fn runs_and_streams_beside_the_docker_backend() {
    within(300, async {
        let config = kube_config();
        let pods = cluster(&config).await;
        let docker = common::engine(common::sandbox_config()).await;
        let spec = CreateSpec {
            session: "speed".into(),
            ..Default::default()
        };
        let t = Instant::now();
        let on_kube = pods.create(&spec).await.expect("create a pod");
        let kube_cold = t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        let on_docker = docker.create(&spec).await.expect("create a container");
        let docker_cold = t.elapsed().as_secs_f64() * 1000.0;
        let (kube_rtt, docker_rtt) = (round_trip(&on_kube).await, round_trip(&on_docker).await);
        let (kube_mb_s, docker_mb_s) = (stream(&on_kube).await, stream(&on_docker).await);
        println!(
            "kubernetes vs docker: cold start {kube_cold:.0} vs {docker_cold:.0} ms; run round trip median {kube_rtt:.2} vs {docker_rtt:.2} ms; stream {kube_mb_s:.0} vs {docker_mb_s:.0} MB/s"
        );
        drop((on_kube, on_docker));
        cleanup(&pods).await;
        common::cleanup(&docker).await;
    })
    .await
}

async fn round_trip(h: &SandboxHandle) -> f64 {
    let mut rtt = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let (_, _, code) = job(h, "true").await;
        assert_eq!(code, Some(0));
        rtt.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    rtt.sort_by(|a, b| a.partial_cmp(b).unwrap());
    rtt[rtt.len() / 2]
}

/// 64 MiB from a job, every byte counted: MB/s.
async fn stream(h: &SandboxHandle) -> f64 {
    let t = Instant::now();
    let mut job = h
        .spawn(replbox_protocol::JobSpec::shell(
            "head -c 67108864 /dev/zero",
        ))
        .await
        .unwrap();
    let mut bytes = 0usize;
    loop {
        match job.next().await.expect("the stream's end") {
            JobEvent::Output { data, .. } => bytes += data.len(),
            JobEvent::Exit(e) => {
                assert_eq!(e.code, Some(0));
                break;
            }
            _ => {}
        }
    }
    assert_eq!(bytes, 64 << 20, "every byte of the stream arrives");
    64.0 * 1.048576 / t.elapsed().as_secs_f64()
}

/// An attack: its name, the exec request, what the answer must show.
type Attack = (&'static str, Value, fn(&Value) -> bool);

async fn exec(server: &TestServer, task: &str, body: Value) -> Value {
    let r = server
        .api(
            reqwest::Method::POST,
            &format!("/api/v1/sandboxes/{task}/exec"),
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "exec {body}: {v}");
    v
}

/// The whole server on the Kubernetes backend: the REST API's sandboxes
/// are pods; hostile code (fork bomb, memory bomb, output flood, `kill -9
/// 1`) hurts only its own pod; an idle sandbox expires, its pod goes and
/// its files come back with the next run; a restarted server finds its
/// pods.
#[tokio::test(flavor = "multi_thread")]
async fn the_server_runs_its_sandboxes_as_pods() {
    within(600, async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = server_config(dir.path());
        config.sandbox = kube_config();
        config.idle_ttl_secs = 4;
        config.warm_pool = 1;
        let pods = cluster(&config.sandbox).await;
        let server = TestServer::start(config.clone()).await;
        let r = server
            .api(reqwest::Method::POST, "/api/v1/sandboxes")
            .json(&json!({"taskId": "victim"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{:?}", r.text().await);
        let r = exec(&server, "victim", json!({"command": "echo precious > keep.txt; echo ok"})).await;
        assert_eq!(r["stdout"], "ok\n", "{r}");
        let r = server
            .api(reqwest::Method::POST, "/api/v1/sandboxes")
            .json(&json!({"taskId": "bystander"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);

        let attacks: [Attack; 4] = [
            (
                "fork bomb",
                json!({"command": "bomb() { bomb | bomb & }; bomb; sleep 2; exit 1", "timeoutMs": 5000}),
                |r| r["exitCode"] == 1,
            ),
            (
                "memory bomb",
                json!({"command": "python3 -c 'b = bytearray(2 * 1024**3)'"}),
                |r| r["reason"] == "killed: out of memory",
            ),
            (
                "output flood",
                json!({"argv": ["yes"]}),
                |r| r["truncated"] == true && r["reason"] == "stopped: too much output",
            ),
            (
                "kill -9 1",
                json!({"command": "kill -9 1; kill -TERM 1; sleep 0.2; echo survived"}),
                |r| r["stdout"] == "survived\n",
            ),
        ];
        for (name, body, check) in attacks {
            eprintln!("kube: {name}");
            let r = exec(&server, "victim", body).await;
            assert!(check(&r), "{name}: {}", r.to_string().chars().take(400).collect::<String>());
            let r = exec(&server, "victim", json!({"command": "cat keep.txt"})).await;
            assert_eq!(r["stdout"], "precious\n", "the victim after {name}: {r}");
            let r = exec(&server, "bystander", json!({"command": "echo fine"})).await;
            assert_eq!(r["stdout"], "fine\n", "the bystander after {name}: {r}");
        }

        // A student's tab: files written, then idle past the TTL: its pod
        // goes, its claim stays, and the next visit finds the files.
        eprintln!("kube: a browser session's expiry");
        let browser = Browser::new();
        browser.visit(&server).await;
        let mut ws = browser.socket(&server, "").await;
        let (out, _) = ws.run(json!({"command": "echo kept > f.txt; echo ok"})).await;
        assert_eq!(out, "ok\n");
        // It took the warm pod, and the pool makes another.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let list = pods.list().await.unwrap();
            let pool: Vec<_> = list.iter().filter(|p| p.id.contains("-pool-")).collect();
            if pool.len() == 2 && pool.iter().all(|p| p.running) {
                assert!(pool.iter().any(|p| p.name != p.id), "the claimed warm pod answers to its student's name: {list:?}");
                break;
            }
            assert!(Instant::now() < deadline, "the warm pool: {list:?}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let mut expired = false;
        loop {
            match ws.recv().await {
                Got::Json(v) if v["type"] == "expired" => expired = true,
                Got::Closed(_) => break,
                _ => {}
            }
        }
        assert!(expired, "the tab is told its sandbox expired");
        let claims = pods.list_volumes().await.unwrap().len();
        assert_eq!(claims, 4, "every workspace claim is kept (2 tasks, the tab's, the pool's)");
        // The pod goes after the tab is told (a second's grace, then gone).
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let list = pods.list().await.unwrap();
            if list.iter().filter(|p| p.running).count() == 3 {
                break;
            }
            assert!(Instant::now() < deadline, "the expired pod is not gone: {list:?}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let mut ws = browser.socket(&server, "").await;
        let hello = ws.until("hello").await;
        assert_eq!(hello["status"], "expired");
        let (out, _) = ws.run(json!({"command": "cat f.txt"})).await;
        assert_eq!(out, "kept\n", "the files after expiry");
        drop(ws);

        // A restarted server finds its pods and claims and removes nothing
        // that a sandbox owns: the same pods answer.
        // (The tab's and the bystander's idle sandboxes may expire meanwhile:
        // the victim's pod, used just before, is the one to follow.)
        let victim = |list: Vec<replbox::sandbox::ManagedContainer>| -> Vec<String> {
            list.into_iter()
                .filter(|p| p.running && p.id.ends_with("-victim"))
                .map(|p| p.id)
                .collect()
        };
        let before = victim(pods.list().await.unwrap());
        assert_eq!(before.len(), 1, "the victim's pod runs");
        server.stop().await;
        let server = TestServer::start(config.clone()).await;
        let r = exec(&server, "victim", json!({"command": "cat keep.txt"})).await;
        assert_eq!(r["stdout"], "precious\n", "after a restart: {r}");
        assert_eq!(victim(pods.list().await.unwrap()), before, "the restarted server re-attached to the same pod");
        server.stop().await;
        cleanup(&pods).await;
    })
    .await
}
