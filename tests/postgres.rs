//! The real app on PostgreSQL (`REPLBOX_DATABASE_URL`): a teacher made by
//! the CLI, a student's session, a run, a file, a class and a check; then a
//! restart on the same database that finds the sandbox, the file, the
//! student and the check again. Nothing is kept in the data dir's SQLite.

mod common;

use common::{cleanup, engine, server_config, within, Browser, PgDatabase, TestServer};
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

async fn get_json(b: &Browser, server: &TestServer, path: &str) -> Value {
    let r = b.client.get(server.url(path)).send().await.unwrap();
    assert!(r.status().is_success(), "GET {path}: {}", r.status());
    r.json().await.unwrap()
}

async fn hostname(ws: &mut common::Ws) -> String {
    let (out, _) = ws.run(json!({"command": "cat /etc/hostname"})).await;
    out.trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_student_on_postgres_and_a_restart_on_the_same_database() {
    within(300, async {
        let pg = PgDatabase::new().await;
        let dir = tempfile::tempdir().unwrap();
        let mut config = server_config(dir.path());
        config.database_url = Some(pg.url.clone());
        config.exercises_dir =
            Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/exercises"));
        let sb = engine(config.sandbox.clone()).await;

        // The CLI makes the teacher's account in the same database.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_replbox"))
            .args(["teacher", "add", "Ms Lovelace"])
            .env("REPLBOX_DATA_DIR", dir.path())
            .env("REPLBOX_DATABASE_URL", &pg.url)
            .env("REPLBOX_TEACHER_PASSWORD", "analytical-engine")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        let server = TestServer::start(config.clone()).await;

        // A student's own session: a run and a file.
        let ada = Browser::new();
        ada.visit(&server).await;
        let mut ws = ada.socket(&server, "").await;
        let (out, _) = ws
            .run(json!({"language": "python", "code": "print(6 * 7)"}))
            .await;
        assert_eq!(out, "42\n");
        ws.send(json!({"type": "file.write", "path": "notes.txt", "data": "kept in the workspace", "ref": 1}))
            .await;
        ws.until("file").await;
        let container = hostname(&mut ws).await;

        // A class, joined; the exercise checked, fixed, checked again.
        let teacher = Browser::new();
        teacher.visit(&server).await;
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
        let (code, class_id) = (
            class["code"].as_str().unwrap().to_string(),
            class["id"].as_str().unwrap().to_string(),
        );
        let r = post(
            &ada,
            &server,
            "/class/join",
            json!({"code": code, "name": "Ada"}),
        )
        .await;
        assert_eq!(r.status(), 200);
        let joined: Value = r.json().await.unwrap();
        assert!(joined["recoveryCode"].is_string(), "{joined}");
        let mut ex = ada.socket(&server, "?exercise=python-hello").await;
        let (out, _) = ex
            .run(json!({"language": "python", "entry": "main.py", "stdin": "Ada\n"}))
            .await;
        assert_eq!(out, "What is your name? Hello, Ada\n");
        let check: Value = post(&ada, &server, "/class/exercises/python-hello/check", json!({}))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(check["report"]["score"], 0, "{check}");
        ex.send(json!({"type": "file.write", "path": "main.py", "data": FIXED, "ref": 2}))
            .await;
        ex.until("file").await;
        let check: Value = post(&ada, &server, "/class/exercises/python-hello/check", json!({}))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(check["report"]["score"], 10, "{check}");
        let path = format!("/teacher/classes/{class_id}/exercises/python-hello");
        let rows = get_json(&teacher, &server, &path).await;
        assert_eq!(rows["rows"][0]["displayName"], "Ada");
        assert_eq!(rows["rows"][0]["bestScore"], 10);
        assert_eq!(rows["rows"][0]["attempts"], 2);
        let last_check = rows["rows"][0]["lastCheckId"].as_str().unwrap().to_string();

        // Everything is in PostgreSQL: no SQLite store beside the server.
        assert!(
            !dir.path().join("replbox.db").exists(),
            "a SQLite file was made although REPLBOX_DATABASE_URL is set"
        );

        // A restart on the same database: the same sandbox (not a new
        // container), the file, the cookie sessions, the class, the checks.
        drop((ws, ex));
        server.stop().await;
        let server = TestServer::start(config).await;
        let mut ws = ada.socket(&server, "").await;
        assert_eq!(hostname(&mut ws).await, container, "the same sandbox");
        let (out, _) = ws.run(json!({"command": "cat notes.txt"})).await;
        assert_eq!(out, "kept in the workspace");
        let (out, _) = ws
            .run(json!({"language": "python", "code": "print('after the restart')"}))
            .await;
        assert_eq!(out, "after the restart\n");
        let me = get_json(&ada, &server, "/class/me").await;
        assert_eq!(me["class"], "7B");
        let hello = me["exercises"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == "python-hello")
            .unwrap()
            .clone();
        assert_eq!(
            (hello["best"].as_i64(), hello["attempts"].as_i64()),
            (Some(10), Some(2))
        );
        let rows = get_json(&teacher, &server, &path).await;
        assert_eq!(rows["rows"][0]["lastCheckId"], last_check.as_str());
        let files = get_json(&teacher, &server, &format!("/teacher/checks/{last_check}")).await;
        assert_eq!(files["files"]["main.py"], FIXED);

        drop(ws);
        server.stop().await;
        cleanup(&sb).await;
    })
    .await
}
