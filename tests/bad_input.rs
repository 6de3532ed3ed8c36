//! Bad input, live: thousands of random and malformed frames on the page's
//! socket and requests on the API; and sizes: huge stdin, huge files, a
//! 10,000-file listing, names with newlines and bytes that are not UTF-8.

mod common;

use common::{cleanup, engine, json_of, server_config, within, Browser, TestServer};
use futures::{SinkExt, StreamExt};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

fn random_string(rng: &mut impl Rng, max: usize) -> String {
    let n = rng.random_range(0..max);
    (0..n)
        .map(|_| match rng.random_range(0..10) {
            0 => char::from_u32(rng.random_range(0..0x10FFFF)).unwrap_or('?'),
            1 => ['{', '}', '[', ']', '"', '\\', ':', ','][rng.random_range(0..8)],
            _ => rng.random_range(b' '..b'~') as char,
        })
        .collect()
}

fn random_json(rng: &mut impl Rng, depth: u32) -> Value {
    match rng.random_range(0..if depth > 3 { 5 } else { 8 }) {
        0 => Value::Null,
        1 => json!(rng.random::<bool>()),
        2 => json!(rng.random::<i64>()),
        3 => json!(rng.random::<f64>() * 1e300),
        4 => json!(random_string(rng, 40)),
        5 => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| random_json(rng, depth + 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.random_range(0..5))
                .map(|_| (random_string(rng, 10), random_json(rng, depth + 1)))
                .collect(),
        ),
    }
}

const TYPES: &[&str] = &[
    "run",
    "shell",
    "stdin",
    "eof",
    "resize",
    "signal",
    "replay",
    "restore",
    "file.list",
    "file.read",
    "file.write",
    "file.mkdir",
    "file.rename",
    "file.delete",
    "ping",
    "nope",
];
const FIELDS: &[&str] = &[
    "job",
    "data",
    "path",
    "from",
    "to",
    "rows",
    "cols",
    "signal",
    "after",
    "encoding",
    "ref",
    "argv",
    "cwd",
    "env",
    "timeoutMs",
    "language",
    "entry",
    "files",
    "stdin",
    "pty",
    "new",
];

/// A frame that is almost right: a known type with random fields.
fn plausible_frame(rng: &mut impl Rng) -> Value {
    let mut obj = serde_json::Map::new();
    obj.insert(
        "type".into(),
        json!(TYPES[rng.random_range(0..TYPES.len())]),
    );
    for _ in 0..rng.random_range(0..4) {
        let key = FIELDS[rng.random_range(0..FIELDS.len())];
        let value = match key {
            // Keep what could run harmless and quick.
            "argv" | "language" | "entry" | "files" | "pty" | "env" | "cwd" => continue,
            "path" | "from" | "to" => json!(
                [
                    "../x",
                    "/etc/passwd",
                    "a/b",
                    "",
                    ".",
                    "x\u{0}y",
                    "..",
                    "ok.txt"
                ][rng.random_range(0..8)]
            ),
            _ => random_json(rng, 2),
        };
        obj.insert(key.into(), value);
    }
    if obj["type"] == "run" {
        obj.insert("command".into(), json!("true"));
    }
    Value::Object(obj)
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_bad_frames_and_requests_hurt_nothing() {
    within(300, async {
        let dir = tempfile::tempdir().unwrap();
        let config = server_config(dir.path());
        let sb = engine(config.sandbox.clone()).await;
        let server = TestServer::start(config).await;
        let browser = Browser::new();
        browser.visit(&server).await;
        let ws = browser.socket(&server, "").await;
        let (mut sink, mut stream) = ws.ws.split();
        // Read everything the server says, until the final pong.
        let reader = tokio::spawn(async move {
            let mut errors = 0usize;
            while let Some(Ok(msg)) = stream.next().await {
                if let Message::Text(t) = msg {
                    let v: Value = serde_json::from_str(&t).expect("the server sends JSON");
                    if v["type"] == "error" {
                        errors += 1;
                        assert!(v["code"].is_string() && v["message"].is_string());
                    }
                    if v["type"] == "pong" && v["ref"] == "final" {
                        return errors;
                    }
                }
            }
            panic!("the socket closed under bad frames");
        });
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        for i in 0..10_000 {
            let msg = match i % 4 {
                0 => Message::Text(random_string(&mut rng, 200).into()),
                1 => Message::Text(random_json(&mut rng, 0).to_string().into()),
                2 => Message::Text(plausible_frame(&mut rng).to_string().into()),
                _ => Message::Binary(
                    (0..rng.random_range(0..64))
                        .map(|_| rng.random::<u8>())
                        .collect::<Vec<u8>>()
                        .into(),
                ),
            };
            sink.send(msg).await.expect("the socket stays open");
        }
        sink.send(Message::Text(
            json!({"type": "ping", "ref": "final"}).to_string().into(),
        ))
        .await
        .unwrap();
        let errors = reader.await.unwrap();
        assert!(errors > 1000, "bad frames get error frames ({errors})");

        // The API: random methods, paths and bodies; never a 5xx.
        let client = reqwest::Client::new();
        let paths = [
            "/api/v1/sandboxes",
            "/api/v1/sandboxes/x",
            "/api/v1/sandboxes/x/exec",
            "/api/v1/sandboxes/x/files/a",
            "/api/v1/sandboxes/%2e%2e/files/%2e%2e%2fetc",
            "/api/v1/run",
            "/api/v1/sandboxes/x/ws",
            "/api/v1/nope",
        ];
        let methods = [
            reqwest::Method::GET,
            reqwest::Method::POST,
            reqwest::Method::PUT,
            reqwest::Method::DELETE,
        ];
        for i in 0..2_000 {
            let path = paths[rng.random_range(0..paths.len())];
            let method = methods[rng.random_range(0..methods.len())].clone();
            let body = if i % 2 == 0 {
                random_json(&mut rng, 0).to_string()
            } else {
                random_string(&mut rng, 100)
            };
            let mut req = client
                .request(method.clone(), server.url(path))
                .body(body.clone());
            if i % 5 != 0 {
                req = req.bearer_auth("test-token");
            }
            let r = req.send().await.unwrap();
            assert!(
                r.status().as_u16() < 500,
                "{method} {path} {body:?}: {}",
                r.status()
            );
        }
        let health = reqwest::get(server.url("/healthz")).await.unwrap();
        assert_eq!(health.status(), 200, "the server is healthy afterwards");
        let mut ws = browser.socket(&server, "").await;
        let (out, exit) = ws.run(json!({"command": "echo alive"})).await;
        assert_eq!(out, "alive\n", "{exit}");
        server.stop().await;
        cleanup(&sb).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn sizes_either_work_or_get_a_clear_error() {
    within(180, async {
        let dir = tempfile::tempdir().unwrap();
        let config = server_config(dir.path());
        let sb = engine(config.sandbox.clone()).await;
        let server = TestServer::start(config).await;
        let r = server.api(reqwest::Method::POST, "/api/v1/sandboxes").json(&json!({"taskId": "big"})).send().await.unwrap();
        assert_eq!(r.status(), 201);

        // A 1 MB name or value the server refuses is quoted back by its
        // start only: an image, a field's name, a field's value.
        let huge = "é".repeat(1 << 19);
        for (body, code, start) in [
            (json!({"taskId": "other", "imageId": huge}), "image_not_allowed", "The image \""),
            (json!({ huge.clone(): 1 }), "bad_json", "The request body is not valid: unknown field `"),
            (json!({"command": "true", "timeoutMs": huge}), "bad_json", "The request body is not valid: invalid type: string \""),
        ] {
            let path = if body["taskId"].is_null() { "/api/v1/sandboxes/big/exec" } else { "/api/v1/sandboxes" };
            let r = server.api(reqwest::Method::POST, path).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 400, "{code}");
            let v: Value = r.json().await.unwrap();
            let message = v["error"]["message"].as_str().unwrap();
            assert_eq!(v["error"]["code"], code, "{}", &message[..message.len().min(400)]);
            assert!(message.starts_with(start), "{code}: {}", &message[..message.len().min(400)]);
            assert!(message.contains(&format!("{}…", "é".repeat(30))), "{code}: {}", &message[..message.len().min(400)]);
            assert!(message.chars().count() < 400, "{code}: the message is {} characters", message.chars().count());
        }

        // Huge stdin.
        let stdin = "x".repeat(8 * 1024 * 1024);
        let r: Value = json_of(server.api(reqwest::Method::POST, "/api/v1/sandboxes/big/exec")
            .json(&json!({"command": "wc -c", "stdin": stdin}))).await;
        assert_eq!(r["stdout"].as_str().unwrap().trim(), "8388608", "{}", r["stderr"]);

        // Huge files: 8 MiB works, 9 MiB is refused clearly, 100 MiB too.
        let r = server.api(reqwest::Method::PUT, "/api/v1/sandboxes/big/files/eight.bin")
            .body(vec![7u8; 8 * 1024 * 1024])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let back = server.api(reqwest::Method::GET, "/api/v1/sandboxes/big/files/eight.bin").send().await.unwrap();
        assert_eq!(back.bytes().await.unwrap().len(), 8 * 1024 * 1024);
        // 9 MiB is past a file's limit; 100 MiB past the API's body cap.
        for (size, code) in [(9 * 1024 * 1024, "file_too_large"), (100 * 1024 * 1024, "body_too_large")] {
            let r = server.api(reqwest::Method::PUT, "/api/v1/sandboxes/big/files/nine.bin")
                .body(vec![7u8; size])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 413, "{size}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], code, "{size}: {v}");
        }

        // 10,000 files in one listing; names with a newline and a non-UTF-8 byte.
        let r: Value = json_of(server.api(reqwest::Method::POST, "/api/v1/sandboxes/big/exec")
            .json(&json!({"argv": ["bash", "-c", "mkdir many && cd many && seq 10000 | xargs touch && touch $'new\\nline' $'bad\\xffname'"]}))).await;
        assert_eq!(r["exitCode"], 0, "{r}");
        let list: Value = json_of(server.api(reqwest::Method::GET, "/api/v1/sandboxes/big/files/many")).await;
        let entries = list["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 10_002);
        assert!(entries.iter().any(|e| e["name"] == "new\nline"));
        assert!(entries.iter().any(|e| e["name"] == "bad\u{FFFD}name"));
        let r = server.api(reqwest::Method::GET, "/api/v1/sandboxes/big/files/many/new%0Aline").send().await.unwrap();
        assert_eq!(r.status(), 200);
        let r = server.api(reqwest::Method::GET, "/api/v1/sandboxes/big/files/many/bad%EF%BF%BDname").send().await.unwrap();
        assert_eq!(r.status(), 404, "a lossy name is a clear not-found");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "not_found");

        // The page's socket: a listing of 10,000 files fits in a frame.
        let browser = Browser::new();
        browser.visit(&server).await;
        let mut ws = browser.socket(&server, "").await;
        ws.run(json!({"command": "mkdir many && cd many && seq 10000 | xargs touch"})).await;
        ws.send(json!({"type": "file.list", "path": "many", "ref": 1})).await;
        let f = ws.until("file").await;
        assert_eq!(f["entries"].as_array().unwrap().len(), 10_000);
        server.stop().await;
        cleanup(&sb).await;
    })
    .await
}
