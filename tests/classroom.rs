//! Classes through the API: a teacher account made by the CLI, a class and
//! its code, a student who joins, runs the starter, checks, fixes, checks
//! again; the teacher's standings and CSV; who may see what; a restart.

mod common;

use common::{cleanup, engine, server_config, within, Browser, TestServer};
use serde_json::{json, Value};
use std::path::PathBuf;

const FIXED: &str = "def greet(name):\n    return \"Hello, \" + name + \"!\"\n\n\nif __name__ == \"__main__\":\n    print(greet(input(\"What is your name? \")))\n";

async fn post(b: &Browser, server: &TestServer, path: &str, body: Value) -> reqwest::Response {
    b.client
        .post(server.url(path))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn get(b: &Browser, server: &TestServer, path: &str) -> reqwest::Response {
    b.client.get(server.url(path)).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_class_from_joining_to_the_teachers_csv() {
    within(240, async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = server_config(dir.path());
        config.exercises_dir =
            Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/exercises"));
        let sb = engine(config.sandbox.clone()).await;

        // The CLI makes the teacher's account.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_replbox"))
            .args(["teacher", "add", "Ms Lovelace"])
            .env("REPLBOX_DATA_DIR", dir.path())
            .env("REPLBOX_TEACHER_PASSWORD", "analytical-engine")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        let out = std::process::Command::new(env!("CARGO_BIN_EXE_replbox"))
            .args(["teacher", "add", "Mr Babbage"])
            .env("REPLBOX_DATA_DIR", dir.path())
            .env("REPLBOX_TEACHER_PASSWORD", "difference-engine")
            .output()
            .unwrap();
        assert!(out.status.success());

        let server = TestServer::start(config.clone()).await;
        let teacher = Browser::new();
        teacher.visit(&server).await;
        let r = post(
            &teacher,
            &server,
            "/teacher/login",
            json!({"name": "Ms Lovelace", "password": "wrong-password"}),
        )
        .await;
        assert_eq!(common::refusal(r).await, (401, "bad_login".into()));
        let r = post(
            &teacher,
            &server,
            "/teacher/login",
            json!({"name": "Ms Lovelace", "password": "analytical-engine"}),
        )
        .await;
        assert_eq!(r.status(), 204);
        let class: Value = post(&teacher, &server, "/teacher/classes", json!({"name": "7B"}))
            .await
            .json()
            .await
            .unwrap();
        let code = class["code"].as_str().unwrap().to_string();
        let class_id = class["id"].as_str().unwrap().to_string();

        // A student joins and sees the exercises.
        let ada = Browser::new();
        ada.visit(&server).await;
        let r = post(
            &ada,
            &server,
            "/class/join",
            json!({"code": "NOPE00", "name": "Ada"}),
        )
        .await;
        assert_eq!(common::refusal(r).await, (404, "no_such_class".into()));
        let r = post(
            &ada,
            &server,
            "/class/join",
            json!({"code": code.to_lowercase(), "name": "Ada"}),
        )
        .await;
        assert_eq!(r.status(), 200);
        let me: Value = get(&ada, &server, "/class/me").await.json().await.unwrap();
        assert_eq!(me["class"], "7B");
        assert_eq!(me["exercises"].as_array().unwrap().len(), 4);

        // The exercise's own workspace starts with the starter files.
        let mut ws = ada.socket(&server, "?exercise=python-hello").await;
        let (out, _) = ws
            .run(json!({"language": "python", "entry": "main.py", "stdin": "Ada\n"}))
            .await;
        assert_eq!(out, "What is your name? Hello, Ada\n");

        let check: Value = post(
            &ada,
            &server,
            "/class/exercises/python-hello/check",
            json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(check["report"]["score"], 0, "{check}");
        let failed = &check["report"]["tests"][0];
        assert_eq!(failed["passed"], false);
        assert_eq!(failed["expected"], "What is your name? Hello, Ada!");

        ws.send(json!({"type": "file.write", "path": "main.py", "data": FIXED, "ref": 1}))
            .await;
        ws.until("file").await;
        let check: Value = post(
            &ada,
            &server,
            "/class/exercises/python-hello/check",
            json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(check["report"]["score"], 10, "{check}");

        // Another student has a workspace of their own.
        let bob = Browser::new();
        bob.visit(&server).await;
        assert_eq!(
            post(
                &bob,
                &server,
                "/class/join",
                json!({"code": code, "name": "Ada"})
            )
            .await
            .status(),
            409
        );
        assert_eq!(
            post(
                &bob,
                &server,
                "/class/join",
                json!({"code": code, "name": "Bob"})
            )
            .await
            .status(),
            200
        );
        let mut bws = bob.socket(&server, "?exercise=python-hello").await;
        let (out, _) = bws
            .run(json!({"command": "grep -c '!' main.py || true"}))
            .await;
        assert_eq!(out.trim(), "0", "Bob has the starter, not Ada's fix");

        // The teacher's standings, and the CSV of the same rows.
        let path = format!("/teacher/classes/{class_id}/exercises/python-hello");
        let rows: Value = get(&teacher, &server, &path).await.json().await.unwrap();
        let first = &rows["rows"][0];
        assert_eq!(
            (
                first["displayName"].as_str(),
                first["bestScore"].as_i64(),
                first["attempts"].as_i64()
            ),
            (Some("Ada"), Some(10), Some(2))
        );
        assert_eq!(rows["rows"][1]["displayName"], "Bob");
        assert_eq!(rows["rows"][1]["attempts"], 0);
        let csv = get(&teacher, &server, &format!("{path}/csv"))
            .await
            .text()
            .await
            .unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "student,best_score,max_score,attempts,last_check");
        assert!(lines[1].starts_with("Ada,10,10,2,20"), "{csv}");
        assert!(lines[2].starts_with("Bob,,,0,"), "{csv}");
        let check_id = first["lastCheckId"].as_str().unwrap().to_string();
        let files: Value = get(&teacher, &server, &format!("/teacher/checks/{check_id}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(files["files"]["main.py"], FIXED);

        // Students reach no teacher route and no one else's checks.
        for p in [
            "/teacher/classes",
            &path,
            &format!("/teacher/checks/{check_id}"),
        ] {
            assert_eq!(get(&ada, &server, p).await.status(), 401, "{p}");
        }

        // Another teacher sees nothing of this class: it is not in their
        // list, and each route that names it, its students or its checks
        // answers as for a class that does not exist, and changes nothing.
        let babbage = Browser::new();
        babbage.visit(&server).await;
        let r = post(
            &babbage,
            &server,
            "/teacher/login",
            json!({"name": "Mr Babbage", "password": "difference-engine"}),
        )
        .await;
        assert_eq!(r.status(), 204);
        let theirs: Value = get(&babbage, &server, "/teacher/classes")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(theirs["classes"], json!([]), "{theirs}");
        let ada_id = first["studentId"].as_str().unwrap().to_string();
        let class_base = format!("/teacher/classes/{class_id}");
        let reads = [
            path.clone(),
            format!("{path}/csv"),
            format!("/teacher/checks/{check_id}"),
            format!("{class_base}/python-hello"),
            format!("/teacher/check/{check_id}"),
        ];
        for p in &reads {
            let r = get(&babbage, &server, p).await;
            let status = r.status();
            let body = r.text().await.unwrap();
            assert!(
                !body.contains("Ada") && !body.contains(FIXED),
                "{p}: {body}"
            );
            let e: Value = serde_json::from_str(&body)
                .unwrap_or_else(|err| panic!("{p}: not a JSON error ({err}): {body}"));
            assert_eq!(
                (status.as_u16(), &e["error"]["code"]),
                (404, &json!("not_found")),
                "{p}: {body}"
            );
        }
        let writes = [
            babbage
                .client
                .put(server.url(&format!("{class_base}/exercises")))
                .json(&json!({"exercises": ["bash-count"]})),
            babbage
                .client
                .post(server.url(&format!("{class_base}/code")))
                .json(&json!({})),
            babbage
                .client
                .put(server.url(&format!("{class_base}/students/{ada_id}")))
                .json(&json!({"name": "Mallory"})),
            babbage
                .client
                .delete(server.url(&format!("{class_base}/students/{ada_id}"))),
            // The teacher page's HTML forms, posted as that page would.
            babbage
                .client
                .post(server.url(&format!("{class_base}/choose")))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("exercise=bash-count"),
            babbage
                .client
                .post(server.url(&format!("{class_base}/new-code")))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(""),
        ];
        for w in writes {
            let r = w
                .header("origin", format!("http://{}", server.addr))
                .send()
                .await
                .unwrap();
            let url = r.url().to_string();
            let status = r.status();
            let e: Value = r.json().await.unwrap();
            assert_eq!(
                (status.as_u16(), &e["error"]["code"]),
                (404, &json!("not_found")),
                "{url}: {e}"
            );
        }
        // All as it was: Ada, her score, the code, the exercises.
        let rows: Value = get(&teacher, &server, &path).await.json().await.unwrap();
        assert_eq!(rows["rows"][0]["displayName"], "Ada");
        assert_eq!(rows["rows"][0]["bestScore"], 10);
        let me: Value = get(&ada, &server, "/class/me").await.json().await.unwrap();
        assert_eq!(me["exercises"].as_array().unwrap().len(), 4);
        let classes: Value = get(&teacher, &server, "/teacher/classes")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(classes["classes"][0]["code"], code.as_str(), "{classes}");

        // A restart keeps classes, students and results.
        drop((ws, bws));
        server.stop().await;
        let server = TestServer::start(config).await;
        let rows: Value = get(&teacher, &server, &path).await.json().await.unwrap();
        assert_eq!(rows["rows"][0]["bestScore"], 10);
        let me: Value = get(&ada, &server, "/class/me").await.json().await.unwrap();
        let ex = me["exercises"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == "python-hello")
            .unwrap()
            .clone();
        assert_eq!(
            (ex["best"].as_i64(), ex["attempts"].as_i64()),
            (Some(10), Some(2))
        );

        // The teacher gives the class two exercises: the others are gone
        // from the student's list and refused by name, on every route.
        let choose = |ids: Value| {
            teacher
                .client
                .put(server.url(&format!("/teacher/classes/{class_id}/exercises")))
                .json(&json!({ "exercises": ids }))
                .send()
        };
        let r = choose(json!(["python-hello", "no-such-exercise"]))
            .await
            .unwrap();
        assert_eq!(common::refusal(r).await, (400, "unknown_exercise".into()));
        let r = choose(json!(["python-hello", "bash-count"])).await.unwrap();
        assert_eq!(r.status(), 204);
        let me: Value = get(&ada, &server, "/class/me").await.json().await.unwrap();
        let ids: Vec<&str> = me["exercises"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["id"].as_str())
            .collect();
        assert_eq!(ids, ["bash-count", "python-hello"]);
        let html = get(&ada, &server, "/exercises").await.text().await.unwrap();
        assert!(
            html.contains("Say hello") && !html.contains("FizzBuzz"),
            "{html}"
        );
        for p in ["/class/exercises/go-fizzbuzz", "/exercises/go-fizzbuzz"] {
            let r = get(&ada, &server, p).await;
            assert_eq!(r.status(), 404, "{p}");
            let e: Value = r.json().await.unwrap();
            assert_eq!(e["error"]["code"], "not_assigned", "{p}");
        }
        let r = post(
            &ada,
            &server,
            "/class/exercises/go-fizzbuzz/check",
            json!({}),
        )
        .await;
        assert_eq!(r.status(), 404);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], "not_assigned", "Check");
        let refused = ada
            .client
            .get(server.url("/ws?exercise=go-fizzbuzz"))
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 404, "an unassigned exercise's workspace");
        let e: Value = refused.json().await.unwrap();
        assert_eq!(e["error"]["code"], "not_assigned", "the socket");
        let classes: Value = get(&teacher, &server, "/teacher/classes")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            classes["classes"][0]["exercises"],
            json!(["bash-count", "python-hello"])
        );
        // The teacher's page keeps the ticks; its form (a repeated key)
        // sets the choice too.
        let page = get(&teacher, &server, "/teacher")
            .await
            .text()
            .await
            .unwrap();
        assert!(page.contains(r#"value="python-hello" checked"#), "{page}");
        assert!(page.contains(r#"value="go-fizzbuzz">"#), "{page}");
        let r = teacher
            .client
            .post(server.url(&format!("/teacher/classes/{class_id}/choose")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("exercise=go-fizzbuzz&exercise=javascript-sum")
            .send()
            .await
            .unwrap();
        // Back on the teacher's page (the redirect followed).
        assert_eq!((r.status().as_u16(), r.url().path()), (200, "/teacher"));
        let me: Value = get(&ada, &server, "/class/me").await.json().await.unwrap();
        assert_eq!(me["exercises"].as_array().unwrap().len(), 2);
        assert_eq!(me["exercises"][0]["id"], "go-fizzbuzz");
        server.stop().await;
        cleanup(&sb).await;
    })
    .await
}
