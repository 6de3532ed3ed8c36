//! One visitor cannot exhaust the server, the engine or the host: each test
//! tries one way (wrong codes and passwords, half-sent requests, other
//! sites' forms, a flood of Checks or sockets, a client that never reads,
//! workspaces left mounted) and asserts what that visitor (and everyone
//! else) sees. One test runs the floods together against a server process
//! of its own and checks its peak memory against the documented ceiling.

mod common;

use common::{cleanup, engine, server_config, within, Browser, TestServer};
use futures::{SinkExt, StreamExt};
use replbox::config::Config;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The documented ceiling on the server process's peak resident memory
/// (README, "One visitor cannot exhaust..."), checked on a server of its
/// own through the attacks of `the_server_process_stays_under_its_memory_ceiling`.
const RSS_CEILING_MB: u64 = 512;

/// A server process of a test, stopped (SIGTERM) whatever happens to the
/// test.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg(self.0.to_string())
            .status();
    }
}

/// A field of a process's /proc status, in MiB.
fn status_mb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}

/// A server with classes: the example exercises, a teacher "Ms Hopper"
/// (password "compilers-rule"), the proxy at 127.0.0.1 trusted so that
/// `X-Forwarded-For` can stand for other clients.
async fn class_server(dir: &tempfile::TempDir, tweak: impl FnOnce(&mut Config)) -> TestServer {
    let mut config = server_config(dir.path());
    config.exercises_dir =
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/exercises"));
    config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    tweak(&mut config);
    let store = replbox::sessions::Store::open(dir.path()).await.unwrap();
    replbox::classroom::Classroom::new(store.db().clone())
        .add_teacher("Ms Hopper", "compilers-rule")
        .await
        .unwrap();
    TestServer::start(config).await
}

/// A browser posting JSON as the page does (same origin), from `client`.
async fn post_from(
    b: &Browser,
    server: &TestServer,
    client: &str,
    path: &str,
    body: Value,
) -> reqwest::Response {
    b.client
        .post(server.url(path))
        .header("x-forwarded-for", client)
        .header("origin", format!("http://{}", server.addr))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn signed_in_teacher(server: &TestServer) -> Browser {
    let t = Browser::new();
    t.visit(server).await;
    let r = post_from(
        &t,
        server,
        "10.9.9.9",
        "/teacher/login",
        json!({"name": "Ms Hopper", "password": "compilers-rule"}),
    )
    .await;
    assert_eq!(r.status(), 204);
    t
}

/// A new browser that joined the class with `code` as `name`.
async fn joined_student(server: &TestServer, code: &str, name: &str) -> Browser {
    let b = Browser::new();
    b.visit(server).await;
    let r = post_from(
        &b,
        server,
        "198.51.100.1",
        "/class/join",
        json!({"code": code, "name": name}),
    )
    .await;
    assert_eq!(r.status(), 200, "{name} joins");
    b
}

async fn new_class(teacher: &Browser, server: &TestServer) -> (String, String) {
    let class: Value = post_from(
        teacher,
        server,
        "10.9.9.9",
        "/teacher/classes",
        json!({"name": "8C"}),
    )
    .await
    .json()
    .await
    .unwrap();
    (
        class["id"].as_str().unwrap().to_string(),
        class["code"].as_str().unwrap().to_string(),
    )
}

fn assert_limited(r: &reqwest::Response) {
    assert_eq!(r.status(), 429);
    let secs: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&secs), "Retry-After: {secs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_class_codes_are_limited_per_client_and_codes_are_long() {
    within(60, async {
        let dir = tempfile::tempdir().unwrap();
        let server = class_server(&dir, |c| c.attempts_per_minute = 3).await;
        let teacher = signed_in_teacher(&server).await;
        let (_, code) = new_class(&teacher, &server).await;
        assert_eq!(code.len(), replbox::classroom::CLASS_CODE_LEN);
        assert!(code.len() >= 12, "{code}");

        let guesser = Browser::new();
        guesser.visit(&server).await;
        for _ in 0..3 {
            let r = post_from(
                &guesser,
                &server,
                "203.0.113.7",
                "/class/join",
                json!({"code": "AAAAAAAAAAAA", "name": "Mallory"}),
            )
            .await;
            assert_eq!(common::refusal(r).await, (404, "no_such_class".into()));
        }
        // The fourth guess, even a right one, is refused for a while.
        let r = post_from(
            &guesser,
            &server,
            "203.0.113.7",
            "/class/join",
            json!({"code": code, "name": "Mallory"}),
        )
        .await;
        assert_limited(&r);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "too_many_attempts");

        // The page's form says so too, with the same status.
        let r = guesser
            .client
            .post(server.url("/exercises/join"))
            .header("x-forwarded-for", "203.0.113.7")
            .header("origin", format!("http://{}", server.addr))
            .form(&[("code", "BBBBBBBBBBBB"), ("name", "Mallory")])
            .send()
            .await
            .unwrap();
        assert_limited(&r);
        assert!(r
            .text()
            .await
            .unwrap()
            .contains("Too many wrong class codes"));

        // A classmate at another address joins at once; right codes cost
        // nothing, so a whole class behind one address joins too.
        for (i, name) in ["Ada", "Grace", "Alan", "Edsger", "Barbara"]
            .iter()
            .enumerate()
        {
            let s = Browser::new();
            s.visit(&server).await;
            let r = post_from(
                &s,
                &server,
                "198.51.100.20",
                "/class/join",
                json!({"code": code.to_lowercase(), "name": name}),
            )
            .await;
            assert_eq!(r.status(), 200, "student {i}");
        }
        server.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_passwords_are_limited_per_client_and_per_teacher_and_do_not_stall_the_server() {
    within(120, async {
        let dir = tempfile::tempdir().unwrap();
        let server = class_server(&dir, |c| {
            c.attempts_per_minute = 3;
            c.password_hashers = 1;
        })
        .await;
        let b = Browser::new();
        b.visit(&server).await;
        let wrong = json!({"name": "Ms Hopper", "password": "guess"});
        for _ in 0..3 {
            let r = post_from(&b, &server, "203.0.113.8", "/teacher/login", wrong.clone()).await;
            assert_eq!(r.status(), 401);
        }
        let r = post_from(&b, &server, "203.0.113.8", "/teacher/login", wrong.clone()).await;
        assert_limited(&r);

        // A guesser spread over many addresses meets the limit per teacher,
        // three times the limit per client (3 wrong ones above already, 6
        // more from two other addresses): even the right password waits.
        // One address alone never gets there: its own limit stops it first.
        // (Hashing takes a while in a debug build, so the debt drains as
        // it grows: the guesser goes on from new addresses until refused.)
        let mut refused = false;
        'guessing: for i in 20..40 {
            for _ in 0..3 {
                let addr = format!("203.0.113.{i}");
                let r = post_from(&b, &server, &addr, "/teacher/login", wrong.clone()).await;
                if r.status() == 429 {
                    refused = true;
                    break 'guessing;
                }
                assert_eq!(r.status(), 401);
            }
        }
        assert!(refused, "the limit per teacher was never met");
        let r = post_from(
            &b,
            &server,
            "203.0.113.99",
            "/teacher/login",
            json!({"name": "ms hopper ", "password": "compilers-rule"}),
        )
        .await;
        assert_limited(&r);
        // Another teacher's name is not affected (a wrong name is 401).
        let r = post_from(
            &b,
            &server,
            "203.0.113.99",
            "/teacher/login",
            json!({"name": "Mr Knuth", "password": "x"}),
        )
        .await;
        assert_eq!(r.status(), 401);

        // A flood of sign-ins from many addresses: hashing runs on blocking
        // threads, one at a time here, and /healthz answers meanwhile.
        let mut flood = Vec::new();
        for i in 0..40 {
            let (client, url) = (b.client.clone(), server.url("/teacher/login"));
            let origin = format!("http://{}", server.addr);
            flood.push(tokio::spawn(async move {
                client
                    .post(url)
                    .header("x-forwarded-for", format!("192.0.2.{i}"))
                    .header("origin", origin)
                    .json(&json!({"name": format!("nobody {i}"), "password": "guess"}))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            }));
        }
        for _ in 0..5 {
            let health =
                tokio::time::timeout(Duration::from_secs(2), reqwest::get(server.url("/healthz")))
                    .await
                    .expect("/healthz answers during a sign-in flood")
                    .unwrap();
            assert_eq!(health.status(), 200);
        }
        for f in flood {
            let status = f.await.unwrap().unwrap();
            assert!([401, 503].contains(&status), "{status}");
        }
        server.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn half_sent_requests_and_idle_connections_are_closed() {
    within(60, async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = server_config(dir.path());
        config.header_read_timeout_secs = 1;
        config.idle_timeout_secs = 2;
        config.body_timeout_secs = 2;
        let server = TestServer::start(config).await;

        // Half a request line, then nothing.
        let mut half = Vec::new();
        for _ in 0..20 {
            let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
            tcp.write_all(b"GET /healthz HT").await.unwrap();
            half.push(tcp);
        }
        for mut tcp in half {
            let mut buf = [0u8; 512];
            // Closed (maybe after a 408): the read ends within the timeout.
            let read = tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => continue,
                    }
                }
            })
            .await;
            assert!(read.is_ok(), "a half-sent request kept its connection");
        }

        // A kept-alive connection that sends no next request.
        let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        assert!(
            String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&got)
        );
        assert!(closed.is_ok(), "an idle connection stayed open");

        // A body that stops half-way: the request fails when its time is
        // up, and the connection is closed.
        let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(
            b"POST /api/v1/run HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-token\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"lang",
        )
        .await
        .unwrap();
        let mut got = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "a stalled body kept its connection");
        let got = String::from_utf8_lossy(&got);
        assert!(got.starts_with("HTTP/1.1 400"), "{got}");
        assert!(got.contains("body_incomplete"), "{got}");

        // The server still answers.
        let health = reqwest::get(server.url("/healthz")).await.unwrap();
        assert_eq!(health.status(), 200);
        server.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn other_sites_cannot_post_and_a_post_never_replaces_a_session() {
    within(60, async {
        let dir = tempfile::tempdir().unwrap();
        let server = class_server(&dir, |_| {}).await;
        let teacher = signed_in_teacher(&server).await;
        let (_, code) = new_class(&teacher, &server).await;
        let student = Browser::new();
        student.visit(&server).await;
        let cookie = student.cookie(&server).unwrap();

        // Another site's form, posted with the student's cookie.
        let r = student
            .client
            .post(server.url("/exercises/join"))
            .header("origin", "https://evil.example")
            .header("sec-fetch-site", "cross-site")
            .form(&[("code", code.as_str()), ("name", "Ada")])
            .send()
            .await
            .unwrap();
        assert!(r.headers().get("set-cookie").is_none());
        assert_eq!(common::refusal(r).await, (403, "cross_site".into()));
        // A browser without Sec-Fetch-Site: its Origin decides.
        let r = student
            .client
            .post(server.url("/class/join"))
            .header("origin", "https://evil.example")
            .json(&json!({"code": code, "name": "Ada"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "cross_site");
        // A JSON endpoint does not read text/plain (what a form can send).
        let r = student
            .client
            .post(server.url("/class/join"))
            .header("content-type", "text/plain")
            .body(json!({"code": code, "name": "Ada"}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(common::refusal(r).await, (415, "not_json".into()));
        // A form posted without the cookie (SameSite keeps it from another
        // site's form) is refused and sets no new cookie.
        let r = reqwest::Client::new()
            .post(server.url("/exercises/join"))
            .form(&[("code", code.as_str()), ("name", "Ada")])
            .send()
            .await
            .unwrap();
        assert!(r.headers().get("set-cookie").is_none());
        assert_eq!(common::refusal(r).await, (403, "no_session".into()));
        // Nothing of that joined anyone; the student's cookie is the same.
        assert_eq!(student.cookie(&server).unwrap(), cookie);
        let me = student
            .client
            .get(server.url("/class/me"))
            .send()
            .await
            .unwrap();
        assert_eq!(common::refusal(me).await, (403, "not_joined".into()));

        // The page itself (same origin) joins, and sees its recovery code
        // once.
        let r = student
            .client
            .post(server.url("/exercises/join"))
            .header("origin", format!("http://{}", server.addr))
            .header("sec-fetch-site", "same-origin")
            .form(&[("code", code.as_str()), ("name", "Ada")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let page = r.text().await.unwrap();
        assert!(page.contains("Your recovery code is"), "{page}");
        let again = student
            .client
            .get(server.url("/exercises"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!again.contains("Your recovery code is"));
        server.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_student_gets_back_in_with_a_recovery_code_and_the_teacher_renames_and_removes() {
    within(60, async {
        let dir = tempfile::tempdir().unwrap();
        let server = class_server(&dir, |c| c.attempts_per_minute = 3).await;
        let teacher = signed_in_teacher(&server).await;
        let (class_id, code) = new_class(&teacher, &server).await;

        let laptop = Browser::new();
        laptop.visit(&server).await;
        let joined: Value = post_from(
            &laptop,
            &server,
            "198.51.100.1",
            "/class/join",
            json!({"code": code, "name": "Ada"}),
        )
        .await
        .json()
        .await
        .unwrap();
        let recovery = joined["recoveryCode"].as_str().unwrap().to_string();
        let student_id = joined["id"].as_str().unwrap().to_string();
        // Joining again from the same browser shows no code again.
        let again: Value = post_from(
            &laptop,
            &server,
            "198.51.100.1",
            "/class/join",
            json!({"code": code, "name": "Ada"}),
        )
        .await
        .json()
        .await
        .unwrap();
        assert!(again["recoveryCode"].is_null());
        assert_eq!(again["id"], student_id);

        // Another browser: wrong codes are limited, the right one is Ada.
        let phone = Browser::new();
        phone.visit(&server).await;
        for _ in 0..2 {
            let r = post_from(
                &phone,
                &server,
                "198.51.100.2",
                "/class/recover",
                json!({"code": "AAAA-BBBB-CCCC-DDDD"}),
            )
            .await;
            assert_eq!(r.status(), 404);
        }
        let r = post_from(
            &phone,
            &server,
            "198.51.100.2",
            "/class/recover",
            json!({"code": recovery.to_lowercase().replace('-', " ")}),
        )
        .await;
        assert_eq!(r.status(), 200);
        let me: Value = phone
            .client
            .get(server.url("/class/me"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(me["student"]["id"], student_id);
        assert_eq!(me["student"]["displayName"], "Ada");

        // The teacher renames Ada, then removes her.
        let r = teacher
            .client
            .put(server.url(&format!(
                "/teacher/classes/{class_id}/students/{student_id}"
            )))
            .header("origin", format!("http://{}", server.addr))
            .json(&json!({"name": "Ada L."}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let me: Value = laptop
            .client
            .get(server.url("/class/me"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(me["student"]["displayName"], "Ada L.");
        // A student cannot rename anyone.
        let r = laptop
            .client
            .put(server.url(&format!(
                "/teacher/classes/{class_id}/students/{student_id}"
            )))
            .json(&json!({"name": "Queen"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let r = teacher
            .client
            .delete(server.url(&format!(
                "/teacher/classes/{class_id}/students/{student_id}"
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        for b in [&laptop, &phone] {
            let r = b.client.get(server.url("/class/me")).send().await.unwrap();
            assert_eq!(r.status(), 403);
        }
        // The name is free again.
        let r = post_from(
            &laptop,
            &server,
            "198.51.100.1",
            "/class/join",
            json!({"code": code, "name": "Ada"}),
        )
        .await;
        assert_eq!(r.status(), 200);

        // A new code for the class: the old one (a removed student kept
        // it, say) lets nobody in; the new one does; Ada stays in.
        let r = post_from(
            &teacher,
            &server,
            "10.9.9.9",
            &format!("/teacher/classes/{class_id}/code"),
            json!({}),
        )
        .await;
        assert_eq!(r.status(), 200);
        let fresh: Value = r.json().await.unwrap();
        let fresh = fresh["code"].as_str().unwrap().to_string();
        assert_eq!(fresh.len(), replbox::classroom::CLASS_CODE_LEN);
        assert_ne!(fresh, code);
        let stranger = Browser::new();
        stranger.visit(&server).await;
        let r = post_from(
            &stranger,
            &server,
            "198.51.100.9",
            "/class/join",
            json!({"code": code, "name": "Mallory"}),
        )
        .await;
        assert_eq!(
            common::refusal(r).await,
            (404, "no_such_class".into()),
            "the old code"
        );
        joined_student(&server, &fresh, "Grace").await;
        let r = laptop
            .client
            .get(server.url("/class/me"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "Ada stays in the class");
        // The same from the teacher's page: its form, then the class list.
        let r = teacher
            .client
            .post(server.url(&format!("/teacher/classes/{class_id}/new-code")))
            .header("origin", format!("http://{}", server.addr))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        let classes: Value = teacher
            .client
            .get(server.url("/teacher/classes"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let newest = classes["classes"][0]["code"].as_str().unwrap();
        assert!(newest != fresh && newest.len() == fresh.len(), "{classes}");
        server.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn checks_go_one_at_a_time_within_a_rate_and_the_sandbox_cap() {
    within(300, async {
        let dir = tempfile::tempdir().unwrap();
        let server = class_server(&dir, |c| {
            c.checks_per_minute = 2;
            c.max_sandboxes = 3;
        })
        .await;
        let sb = engine(server.config.sandbox.clone()).await;
        let teacher = signed_in_teacher(&server).await;
        let (_, code) = new_class(&teacher, &server).await;
        let ada = joined_student(&server, &code, "Ada").await;

        // Twelve Checks at once: one is graded, the others hear 429.
        let mut all = Vec::new();
        for _ in 0..12 {
            let client = ada.client.clone();
            let url = server.url("/class/exercises/python-hello/check");
            let origin = format!("http://{}", server.addr);
            all.push(tokio::spawn(async move {
                let r = client
                    .post(url)
                    .header("origin", origin)
                    .json(&json!({}))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let retry = r.headers().get("retry-after").is_some();
                let v: Value = r.json().await.unwrap();
                (status, retry, v)
            }));
        }
        let mut graded = 0;
        for task in all {
            let (status, retry, v) = task.await.unwrap();
            match status {
                200 => graded += 1,
                429 => {
                    assert!(retry, "{v}");
                    assert_eq!(v["error"]["code"], "check_in_progress", "{v}");
                }
                other => panic!("{other}: {v}"),
            }
        }
        assert_eq!(graded, 1, "one Check at a time per student");

        let check = || {
            post_from(
                &ada,
                &server,
                "198.51.100.1",
                "/class/exercises/python-hello/check",
                json!({}),
            )
        };
        // The second of the minute is graded; the third is refused.
        assert_eq!(check().await.status(), 200);
        let r = check().await;
        assert_limited(&r);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "too_many_checks");
        server.stop().await;
        cleanup(&sb).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_check_needs_room_for_two_containers_in_the_cap() {
    within(180, async {
        let dir = tempfile::tempdir().unwrap();
        // The student's workspace takes one of two: a Check's two more do
        // not fit, and nothing idle may be expired to make room.
        let server = class_server(&dir, |c| c.max_sandboxes = 2).await;
        let sb = engine(server.config.sandbox.clone()).await;
        let teacher = signed_in_teacher(&server).await;
        let (_, code) = new_class(&teacher, &server).await;
        let ada = joined_student(&server, &code, "Ada").await;
        let r = post_from(
            &ada,
            &server,
            "198.51.100.1",
            "/class/exercises/python-hello/check",
            json!({}),
        )
        .await;
        assert_eq!(r.status(), 503);
        assert!(r.headers().get("retry-after").is_some());
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "capacity_full");
        // No grading container was started past the cap.
        let live = sb.list().await.unwrap();
        assert!(live.len() <= 2, "{} containers", live.len());
        server.stop().await;
        cleanup(&sb).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_holds_a_bounded_number_of_sockets() {
    within(120, async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = server_config(dir.path());
        config.sockets_per_session = 2;
        let sb = engine(config.sandbox.clone()).await;
        let server = TestServer::start(config).await;
        let b = Browser::new();
        b.visit(&server).await;
        let first = b.socket(&server, "").await;
        let second = b.socket(&server, "").await;
        // The third is refused at the handshake.
        let handshake = || async {
            use tokio_tungstenite::tungstenite::client::IntoClientRequest;
            let mut req = server.ws_url("/ws").into_client_request().unwrap();
            req.headers_mut()
                .insert("cookie", b.cookie(&server).unwrap().parse().unwrap());
            req.headers_mut()
                .insert("origin", format!("http://{}", server.addr).parse().unwrap());
            tokio_tungstenite::connect_async(req).await
        };
        match handshake().await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 429);
                assert!(resp.headers().get("retry-after").is_some());
                let body =
                    String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).to_string();
                assert!(body.contains("too_many_sockets"), "{body}");
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a third socket opened"),
        }
        // Closing one frees its place.
        drop(first);
        let mut third = None;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if let Ok(ws) = handshake().await {
                third = Some(ws);
                break;
            }
        }
        assert!(
            third.is_some(),
            "the closed socket's place was not given back"
        );
        drop(second);
        server.stop().await;
        cleanup(&sb).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_socket_that_never_reads_is_bounded_then_closed() {
    within(180, async {
        let dir = tempfile::tempdir().unwrap();
        let config = server_config(dir.path());
        let sb = engine(config.sandbox.clone()).await;
        // A server process of its own, so its memory is measured apart from
        // the other tests of this binary.
        let (child, server) = common::spawn_server(
            &config,
            &[
                ("REPLBOX_SOCKET_QUEUE_BYTES", "262144"),
                ("REPLBOX_SOCKET_SEND_TIMEOUT_SECS", "3"),
                ("REPLBOX_WARM_POOL", "0"),
            ],
        );
        let pid = child.id();
        let _stop = KillOnDrop(pid);
        let b = Browser::new();
        b.visit(&server).await;
        let mut ws = b.socket(&server, "").await;
        // A 700 KB file, written and read back once.
        let big = "x".repeat(700 * 1024);
        ws.send(json!({"type": "file.write", "path": "big.txt", "data": big, "ref": 0}))
            .await;
        loop {
            let v = ws.json().await;
            if v["ref"] == 0 {
                assert_eq!(v["type"], "file", "{v}");
                break;
            }
        }
        let before = status_mb(pid, "VmRSS:");
        // 3,000 reads of it, never reading a reply: the server stops taking
        // frames once its queue and its requests in flight are full.
        let mut sent = 0;
        for i in 1..=3000 {
            let frame = json!({"type": "file.read", "path": "big.txt", "ref": i}).to_string();
            let send = ws
                .ws
                .send(tokio_tungstenite::tungstenite::Message::Text(frame.into()));
            match tokio::time::timeout(Duration::from_secs(5), send).await {
                Ok(Ok(())) => sent += 1,
                _ => break,
            }
        }
        eprintln!("{sent} reads sent before the server stopped taking them");
        // Reading nothing for longer than the send timeout gets the client
        // hung up on (seen in the server's side of the connection, without
        // reading); the server's peak while it held the socket is bounded.
        common::wait_server_closed(common::ws_tcp(&ws), 60, "a socket that reads nothing").await;
        let grown = status_mb(pid, "VmHWM:").saturating_sub(before);
        // What it reads now ends.
        let ended = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(Ok(_)) = ws.ws.next().await {}
        })
        .await;
        assert!(
            ended.is_ok(),
            "the socket of a client that reads nothing stayed open"
        );
        // Unbounded, 3,000 replies of 700 KB would be 2 GB; bounded, the
        // queue, 8 replies and the buffers: the server's process grows by
        // far less than 128 MiB.
        assert!(grown < 128, "the server grew by {grown} MiB");

        // The same browser works afterwards.
        let mut ws = b.socket(&server, "").await;
        let (out, _) = ws.run(json!({"command": "wc -c < big.txt"})).await;
        assert_eq!(out.trim(), (700 * 1024).to_string());
        server.stop().await;
        cleanup(&sb).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_workspace_releases_its_mount_and_comes_back() {
    within(180, async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = server_config(dir.path());
        config.idle_ttl_secs = 2;
        let sb = engine(config.sandbox.clone()).await;
        assert!(
            sb.quota_mb().is_some(),
            "workspace quotas are off here (they need root and e2fsprogs; the log says why): nothing to unmount"
        );
        let server = TestServer::start(config).await;
        let b = Browser::new();
        b.visit(&server).await;
        let mut ws = b.socket(&server, "").await;
        let (_, exit) = ws.run(json!({"command": "echo kept > f.txt"})).await;
        assert_eq!(exit["code"], 0, "{exit}");
        let volume = sb.list_volumes().await.unwrap()[0].name.clone();
        let mount = sb.workspace_dir(&volume).unwrap();
        let image = mount.with_extension("img");
        assert!(replbox::sandbox::quota::is_mounted(&mount));
        ws.until("expired").await;

        // Mount and loop device are gone; the image (the files) stays.
        let mut released = false;
        for _ in 0..50 {
            if !replbox::sandbox::quota::is_mounted(&mount) {
                released = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(released, "the expired workspace is still mounted");
        let loops = std::process::Command::new("losetup")
            .arg("-j")
            .arg(&image)
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&loops.stdout).trim().is_empty(),
            "a loop device still holds {}: {}",
            image.display(),
            String::from_utf8_lossy(&loops.stdout)
        );
        assert!(image.exists());

        // The next visit mounts it again, with the files.
        let mut ws = b.socket(&server, "").await;
        let (out, _) = ws.run(json!({"command": "cat f.txt"})).await;
        assert_eq!(out, "kept\n");
        server.stop().await;
        cleanup(&sb).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_id_made_again_during_its_removal_never_gets_the_old_files() {
    within(180, async {
        let dir = tempfile::tempdir().unwrap();
        let config = server_config(dir.path());
        let sb = engine(config.sandbox.clone()).await;
        let server = TestServer::start(config).await;
        for round in 0..3 {
            let r = server
                .api(reqwest::Method::POST, "/api/v1/sandboxes")
                .json(&json!({"taskId": "again"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "round {round}");
            let r = server
                .api(
                    reqwest::Method::PUT,
                    "/api/v1/sandboxes/again/files/secret.txt",
                )
                .body("old")
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
            let delete = server
                .api(reqwest::Method::DELETE, "/api/v1/sandboxes/again")
                .send();
            let create = async {
                tokio::time::sleep(Duration::from_millis(20 * round)).await;
                server
                    .api(reqwest::Method::POST, "/api/v1/sandboxes")
                    .json(&json!({"taskId": "again"}))
                    .send()
                    .await
                    .unwrap()
            };
            let (deleted, created) = tokio::join!(delete, create);
            assert!(deleted.unwrap().status().is_success());
            match created.status().as_u16() {
                // Made after the removal: a fresh workspace.
                201 => {
                    let r = server
                        .api(
                            reqwest::Method::GET,
                            "/api/v1/sandboxes/again/files/secret.txt",
                        )
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(
                        common::refusal(r).await,
                        (404, "not_found".into()),
                        "round {round}: the old file came back"
                    );
                    // The sandbox is there (a 404 for a missing one would
                    // also read "no secret.txt") and its workspace is empty.
                    let status = server
                        .api(reqwest::Method::GET, "/api/v1/sandboxes/again")
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(
                        status.status(),
                        200,
                        "round {round}: the new sandbox is missing"
                    );
                    let list: Value = server
                        .api(reqwest::Method::GET, "/api/v1/sandboxes/again/files")
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    assert_eq!(
                        list["entries"],
                        json!([]),
                        "round {round}: the old files came back"
                    );
                }
                // Refused while the old one goes (or before its removal
                // began).
                409 => {
                    let v: Value = created.json().await.unwrap();
                    let code = v["error"]["code"].as_str().unwrap().to_string();
                    assert!(
                        ["being_removed", "already_exists"].contains(&code.as_str()),
                        "{v}"
                    );
                }
                other => panic!("round {round}: {other}"),
            }
            // Leave nothing for the next round.
            loop {
                let r = server
                    .api(reqwest::Method::DELETE, "/api/v1/sandboxes/again")
                    .send()
                    .await
                    .unwrap();
                if r.status() == 404 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        server.stop().await;
        cleanup(&sb).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_cookie_sessions_are_purged() {
    within(60, async {
        let dir = tempfile::tempdir().unwrap();
        let config = server_config(dir.path());
        // A first start makes the store's tables.
        let server = TestServer::start(config.clone()).await;
        let b = Browser::new();
        b.visit(&server).await;
        server.stop().await;
        let store = replbox::sessions::Store::open(dir.path()).await.unwrap();
        sqlx::query("UPDATE tower_sessions SET expiry_date = 0")
            .execute(store.db().sqlite().unwrap())
            .await
            .unwrap();
        let count = || async {
            let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM tower_sessions")
                .fetch_one(store.db().sqlite().unwrap())
                .await
                .unwrap();
            n
        };
        assert!(count().await >= 1);
        let server = TestServer::start(config).await;
        let mut purged = false;
        for _ in 0..100 {
            if count().await == 0 {
                purged = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(purged, "expired sessions stayed in the store");
        server.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_budget_refuses_new_workspaces_with_a_clear_error() {
    within(120, async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = server_config(dir.path());
        config.sandbox.disk_budget_mb = 1;
        let sb = engine(config.sandbox.clone()).await;
        assert!(
            sb.quota_mb().is_some(),
            "workspace quotas are off here (they need root and e2fsprogs; the log says why): no disk budget to reach"
        );
        let root = config.sandbox.workspace_root.clone();
        let server = TestServer::start(config).await;
        // The formatted spares alone take more than 1 MiB (once made).
        let used = || {
            use std::os::unix::fs::MetadataExt;
            [root.clone(), root.join("spare")]
                .iter()
                .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.blocks() * 512)
                .sum::<u64>()
        };
        for _ in 0..300 {
            if used() > 2 << 20 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let r = server
            .api(reqwest::Method::POST, "/api/v1/run")
            .json(&json!({"language": "python", "code": "print(1)"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 507);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "disk_full", "{v}");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("disk budget"));
        server.stop().await;
        cleanup(&sb).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn stored_check_files_are_bounded_and_old_ones_pruned() {
    within(300, async {
        let dir = tempfile::tempdir().unwrap();
        let server = class_server(&dir, |c| c.checks_per_minute = 100).await;
        let sb = engine(server.config.sandbox.clone()).await;
        let teacher = signed_in_teacher(&server).await;
        let (_, code) = new_class(&teacher, &server).await;
        let ada = joined_student(&server, &code, "Ada").await;
        // A 3 MiB file beside the program: graded, not all kept.
        let mut ws = ada.socket(&server, "?exercise=python-hello").await;
        let (_, exit) = ws
            .run(json!({"command": "head -c 3145728 /dev/zero | tr '\\0' a > big.txt"}))
            .await;
        assert_eq!(exit["code"], 0, "{exit}");
        let mut ids = Vec::new();
        for _ in 0..replbox::classroom::CHECK_FILES_KEPT + 1 {
            let r: Value = post_from(
                &ada,
                &server,
                "198.51.100.1",
                "/class/exercises/python-hello/check",
                json!({}),
            )
            .await
            .json()
            .await
            .unwrap();
            ids.push(r["checkId"].as_str().expect("a check id").to_string());
        }
        let files = |id: String| {
            let teacher = &teacher;
            let server = &server;
            async move {
                let v: Value = teacher
                    .client
                    .get(server.url(&format!("/teacher/checks/{id}")))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                v
            }
        };
        // The newest keeps its program, and a note instead of the big file.
        let newest = files(ids.last().unwrap().clone()).await;
        assert!(newest["files"]["main.py"].as_str().unwrap().contains("def"));
        let big = newest["files"]["big.txt"].as_str().unwrap();
        assert!(
            big.len() < 1024 && big.contains("not kept"),
            "{}",
            big.len()
        );
        // The oldest keeps its score and report, no files.
        let oldest = files(ids[0].clone()).await;
        assert_eq!(oldest["files"], json!({}));
        assert!(oldest["report"]["tests"].is_array());
        drop(ws);
        server.stop().await;
        cleanup(&sb).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_its_response_is_disconnected() {
    within(120, async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = server_config(dir.path());
        config.idle_timeout_secs = 2;
        let sb = engine(config.sandbox.clone()).await;
        let server = TestServer::start(config).await;
        let b = Browser::new();
        b.visit(&server).await;
        let mut ws = b.socket(&server, "").await;
        // 21 MiB that do not compress (7 MiB files: a read is at most
        // 8 MiB): more than the socket buffers hold.
        let (_, exit) = ws
            .run(json!({"command": "for i in 1 2 3; do head -c 7340032 /dev/urandom > noise$i.bin; done"}))
            .await;
        assert_eq!(exit["code"], 0, "{exit}");
        let cookie = b.cookie(&server).unwrap();
        let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(
            format!("GET /workspace.zip HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        // Read the head only, then nothing for longer than the idle timeout.
        let mut head = vec![0u8; 1024];
        let n = tcp.read(&mut head).await.unwrap();
        let head = String::from_utf8_lossy(&head[..n]).to_string();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(|v| v.trim().parse().unwrap())
            })
            .expect("a content length");
        // The server gives up on it (the idle timeout), which the
        // server's side of the connection shows without reading: the rest
        // never comes.
        common::wait_server_closed(&tcp, 30, "a response nobody reads").await;
        let mut got = n;
        let mut buf = vec![0u8; 64 * 1024];
        let ended = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(k) => got += k,
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "the connection stayed open");
        assert!(got < length, "all {length} bytes came");
        // The browser downloads it when it reads.
        let zip = b
            .client
            .get(server.url("/workspace.zip"))
            .send()
            .await
            .unwrap();
        assert_eq!(zip.bytes().await.unwrap().len(), length);
        server.stop().await;
        cleanup(&sb).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_display_name_cannot_become_a_formula_in_the_csv() {
    within(60, async {
        let dir = tempfile::tempdir().unwrap();
        let server = class_server(&dir, |_| {}).await;
        let teacher = signed_in_teacher(&server).await;
        let (class_id, code) = new_class(&teacher, &server).await;
        let names = [
            "=HYPERLINK(\"http://evil.example\",\"click\")",
            "+1+1",
            "@SUM(A1)",
            "-2",
        ];
        for name in names {
            let s = Browser::new();
            s.visit(&server).await;
            let r = post_from(
                &s,
                &server,
                "198.51.100.1",
                "/class/join",
                json!({"code": code, "name": name}),
            )
            .await;
            assert_eq!(r.status(), 200, "{name}");
        }
        let csv = teacher
            .client
            .get(server.url(&format!(
                "/teacher/classes/{class_id}/exercises/python-hello/csv"
            )))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for line in csv.lines().skip(1) {
            let first = line.trim_start_matches('"');
            assert!(
                !first.starts_with(['=', '+', '-', '@']),
                "a cell a spreadsheet would run: {line}"
            );
        }
        assert!(
            csv.contains("\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"click\"\")\""),
            "{csv}"
        );
        assert!(csv.contains("'+1+1,"), "{csv}");
        server.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_does_not_ask_the_engine_on_every_request() {
    within(60, async {
        // A stand-in engine on a unix socket that answers every request
        // with 200 and counts the pings.
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("engine.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let pings = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = pings.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    while let Ok(n) = conn.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        let text = String::from_utf8_lossy(&buf[..n]);
                        let requests = text.matches("/_ping").count();
                        counted.fetch_add(requests, std::sync::atomic::Ordering::SeqCst);
                        for _ in 0..text.matches("HTTP/1.1\r\n").count().max(1) {
                            let _ = conn
                                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nOK")
                                .await;
                        }
                    }
                });
            }
        });
        let mut config = server_config(&dir.path().join("data"));
        config.sandbox.docker_socket = socket.display().to_string();
        let server = TestServer::start(config).await;
        let before = pings.load(std::sync::atomic::Ordering::SeqCst);
        let mut all = Vec::new();
        for _ in 0..50 {
            let url = server.url("/healthz");
            all.push(tokio::spawn(async move { reqwest::get(url).await.unwrap().status() }));
        }
        for r in all {
            assert_eq!(r.await.unwrap(), 200);
        }
        let asked = pings.load(std::sync::atomic::Ordering::SeqCst) - before;
        assert!((1..=10).contains(&asked), "50 /healthz asked the engine {asked} times");
        server.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn one_client_holds_a_bounded_number_of_connections() {
    // The cap per client, then the cap on the whole server.
    for (per_client, max_connections) in [(4, 1000), (1000, 4)] {
        one_cap_of_four(per_client, max_connections).await;
    }
}

async fn one_cap_of_four(per_client: usize, max_connections: usize) {
    within(60, async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = server_config(dir.path());
        config.connections_per_client = per_client;
        config.max_connections = max_connections;
        let server = TestServer::start(config).await;
        let mut held = Vec::new();
        for _ in 0..4 {
            let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
            tcp.write_all(b"GET /healthz HT").await.unwrap();
            held.push(tcp);
        }
        let ask = || async {
            let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
            let _ = tcp
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await;
            let mut got = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut got)).await;
            String::from_utf8_lossy(&got).to_string()
        };
        // The fifth is closed unanswered: the read ends at EOF, with no
        // byte, well inside the timeout (a hang would also read nothing).
        let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let _ = tcp
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut got))
            .await
            .expect("the fifth connection hung instead of being closed");
        assert!(
            matches!(read, Ok(0))
                || read
                    .as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "{read:?}"
        );
        assert_eq!(String::from_utf8_lossy(&got), "");
        // One fewer held: a request is answered again.
        held.pop();
        let mut answered = false;
        for _ in 0..50 {
            if ask().await.starts_with("HTTP/1.1 200") {
                answered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(answered, "a freed place was not given back");
        drop(held);
        server.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_process_stays_under_its_memory_ceiling() {
    within(240, async {
        let dir = tempfile::tempdir().unwrap();
        let config = server_config(dir.path());
        let sb = engine(config.sandbox.clone()).await;
        let (mut child, server) = common::spawn_server(
            &config,
            &[
                ("REPLBOX_HEADER_READ_TIMEOUT_SECS", "2"),
                ("REPLBOX_SOCKET_SEND_TIMEOUT_SECS", "3"),
                ("REPLBOX_NEW_SESSIONS_PER_MINUTE", "10000"),
                ("REPLBOX_WARM_POOL", "0"),
            ],
        );
        let pid = child.id();
        let _stop = KillOnDrop(pid);

        // 300 connections that send half a request line.
        let mut half = Vec::new();
        for _ in 0..300 {
            if let Ok(mut tcp) = tokio::net::TcpStream::connect(server.addr).await {
                let _ = tcp.write_all(b"POST /teacher/login HT").await;
                half.push(tcp);
            }
        }
        // 40 sign-ins at once, 300 wrong class codes.
        let b = Browser::new();
        b.visit(&server).await;
        let mut flood = Vec::new();
        for i in 0..40 {
            let (client, url) = (b.client.clone(), server.url("/teacher/login"));
            flood.push(tokio::spawn(async move {
                let _ = client
                    .post(url)
                    .json(&json!({"name": format!("t{i}"), "password": "guess"}))
                    .send()
                    .await;
            }));
        }
        for _ in 0..300 {
            let _ = b
                .client
                .post(server.url("/class/join"))
                .json(&json!({"code": "AAAAAAAAAAAA", "name": "Mallory"}))
                .send()
                .await;
        }
        for f in flood {
            let _ = f.await;
        }
        // Two sockets that ask for a 700 KB file 3,000 times each and never
        // read the answers.
        let mut ws = b.socket(&server, "").await;
        let big = "y".repeat(700 * 1024);
        ws.send(json!({"type": "file.write", "path": "big.txt", "data": big, "ref": 0}))
            .await;
        loop {
            if ws.json().await["ref"] == 0 {
                break;
            }
        }
        let mut mute = vec![ws, b.socket(&server, "").await];
        for ws in mute.iter_mut() {
            for i in 1..=3000 {
                let frame = json!({"type": "file.read", "path": "big.txt", "ref": i}).to_string();
                let send = ws
                    .ws
                    .send(tokio_tungstenite::tungstenite::Message::Text(frame.into()));
                if !matches!(
                    tokio::time::timeout(Duration::from_secs(2), send).await,
                    Ok(Ok(()))
                ) {
                    break;
                }
            }
        }
        // Until the server hangs up on both (the send timeout): its peak
        // then covers all they made it hold.
        for ws in &mute {
            common::wait_server_closed(common::ws_tcp(ws), 60, "a socket that reads nothing").await;
        }
        // The server still answers, and its peak stayed under the ceiling.
        let health = reqwest::get(server.url("/healthz")).await.unwrap();
        assert_eq!(health.status(), 200);
        let peak = status_mb(pid, "VmHWM:");
        eprintln!("the server's peak resident memory: {peak} MiB");
        assert!(peak > 0, "no /proc status for the server");
        assert!(
            peak < RSS_CEILING_MB,
            "the server's peak resident memory was {peak} MiB, above the documented {RSS_CEILING_MB} MiB"
        );
        drop((half, mute));
        common::signal(&child, 15);
        let _ = tokio::task::spawn_blocking(move || child.wait()).await;
        cleanup(&sb).await;
    })
    .await
}

/// A client that goes away mid-Check drops its request, not the Check: the
/// grading containers are removed all the same, and the student's turn
/// comes back.
#[tokio::test(flavor = "multi_thread")]
async fn a_check_whose_client_goes_away_leaves_no_container() {
    within(240, async {
        let dir = tempfile::tempdir().unwrap();
        let server = class_server(&dir, |c| c.checks_per_minute = 100).await;
        let sb = engine(server.config.sandbox.clone()).await;
        let teacher = signed_in_teacher(&server).await;
        let (_, code) = new_class(&teacher, &server).await;
        let ada = joined_student(&server, &code, "Ada").await;
        let grading = |c: &replbox::sandbox::ManagedContainer| {
            c.session.starts_with("g-") || c.session.starts_with("gr-")
        };
        let request = {
            let (client, url, origin) = (
                ada.client.clone(),
                server.url("/class/exercises/python-hello/check"),
                format!("http://{}", server.addr),
            );
            tokio::spawn(async move {
                let _ = client
                    .post(url)
                    .header("x-forwarded-for", "198.51.100.1")
                    .header("origin", origin)
                    .json(&json!({}))
                    .send()
                    .await;
            })
        };
        // Gone once its grading containers exist.
        while !sb.list().await.unwrap().iter().any(grading) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        request.abort();
        while sb.list().await.unwrap().iter().any(grading) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The turn comes back once the task has stored the report too.
        let mut r = None;
        for _ in 0..100 {
            let got = post_from(
                &ada,
                &server,
                "198.51.100.1",
                "/class/exercises/python-hello/check",
                json!({}),
            )
            .await;
            if got.status() != 429 {
                r = Some(got);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let r = r.expect("the student's turn never came back");
        assert_eq!(r.status(), 200, "the student's Check after");
        assert!(!sb.list().await.unwrap().iter().any(grading));
        server.stop().await;
        cleanup(&sb).await;
    })
    .await
}

/// A class made when codes had 6 characters gets a code of full length at
/// the next start; the old code no longer lets anyone in.
#[tokio::test(flavor = "multi_thread")]
async fn short_class_codes_from_before_are_lengthened_at_start() {
    within(60, async {
        let dir = tempfile::tempdir().unwrap();
        let server = class_server(&dir, |_| {}).await;
        let teacher = signed_in_teacher(&server).await;
        let (class, _) = new_class(&teacher, &server).await;
        let config = server.config.clone();
        server.stop().await;
        // As an older server left it.
        let url = format!("sqlite://{}", dir.path().join("replbox.db").display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query("UPDATE classes SET code = 'ABCDEF' WHERE id = ?")
            .bind(&class)
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;

        let server = TestServer::start(config).await;
        let teacher = signed_in_teacher(&server).await;
        let classes: Value = teacher
            .client
            .get(server.url("/teacher/classes"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let code = classes["classes"][0]["code"].as_str().unwrap().to_string();
        assert_eq!(code.len(), replbox::classroom::CLASS_CODE_LEN, "{classes}");
        let ada = Browser::new();
        ada.visit(&server).await;
        let r = post_from(
            &ada,
            &server,
            "198.51.100.1",
            "/class/join",
            json!({"code": "ABCDEF", "name": "Ada"}),
        )
        .await;
        assert_eq!(
            common::refusal(r).await,
            (404, "no_such_class".into()),
            "the old code"
        );
        joined_student(&server, &code, "Ada").await;
        server.stop().await;
    })
    .await
}
