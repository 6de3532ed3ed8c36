//! The API as a newcomer calls it: absolute paths inside /workspace mean
//! what they say (REST and the page's socket), and an image of one's own
//! with no /workspace and no user 1000 still gets a workspace the sandbox
//! user can write.

mod common;

use common::{cleanup, engine, json_of, server_config, within, Browser, TestServer};
use reqwest::Method;
use serde_json::{json, Value};
use std::process::{Command, Stdio};

/// Creates a sandbox and waits until it is ready.
async fn ready(server: &TestServer, body: Value) -> String {
    let r = server
        .api(Method::POST, "/api/v1/sandboxes")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let created: Value = r.json().await.unwrap();
    let task = created["taskId"].as_str().unwrap().to_string();
    let status: Value =
        json_of(server.api(Method::GET, &format!("/api/v1/sandboxes/{task}?wait=60"))).await;
    assert_eq!(status["status"], "ready", "{status}");
    task
}

async fn exec(server: &TestServer, task: &str, body: Value) -> (u16, Value) {
    let r = server
        .api(Method::POST, &format!("/api/v1/sandboxes/{task}/exec"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn absolute_paths_inside_the_workspace_mean_what_they_say() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(server_config(data.path())).await;
    within(120, async {
        let task = ready(&server, json!({})).await;
        let base = format!("/api/v1/sandboxes/{task}");

        // `cwd` as a newcomer writes it.
        let (status, r) = exec(&server, &task, json!({"command": "pwd", "cwd": "/workspace"})).await;
        assert_eq!(status, 200, "{r}");
        assert_eq!(r["stdout"], "/workspace\n");

        // A file written by its absolute path (the URL path's own `/`
        // encoded, or doubled) is the relative path's file.
        for (url, text) in [
            (format!("{base}/files/%2Fworkspace%2Fsrc%2Fmain.py"), "print(1)\n"),
            (format!("{base}/files//workspace/src/util.py"), "X = 2\n"),
        ] {
            let r = server.api(Method::PUT, &url).body(text).send().await.unwrap();
            assert_eq!(r.status(), 204, "PUT {url}: {}", r.text().await.unwrap());
        }
        let r = server
            .api(Method::GET, &format!("{base}/files/src/main.py"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), "print(1)\n");
        let r = server
            .api(Method::GET, &format!("{base}/files/%2Fworkspace%2Fsrc%2Futil.py"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "X = 2\n");
        let (status, r) = exec(
            &server,
            &task,
            json!({"argv": ["python3", "-c", "import util; print(util.X)"], "cwd": "/workspace/src"}),
        )
        .await;
        assert_eq!(status, 200, "{r}");
        assert_eq!(r["stdout"], "2\n", "{r}");
        let listing: Value =
            json_of(server.api(Method::GET, &format!("{base}/files/%2Fworkspace"))).await;
        assert!(
            listing["entries"].as_array().unwrap().iter().any(|e| e["name"] == "src"),
            "{listing}"
        );

        // Outside stays outside, with the same error as before.
        for cwd in ["/etc", "/workspace/../etc", "/workspaces", "/"] {
            let (status, r) = exec(&server, &task, json!({"command": "pwd", "cwd": cwd})).await;
            assert_eq!(status, 400, "cwd {cwd}: {r}");
            assert_eq!(r["error"]["code"], "path_outside_workspace", "cwd {cwd}: {r}");
        }
        for path in ["%2Fetc%2Fpasswd", "%2Fworkspace%2F..%2Fetc%2Fpasswd", "/etc/passwd"] {
            let r: Value =
                json_of(server.api(Method::GET, &format!("{base}/files/{path}"))).await;
            assert_eq!(r["error"]["code"], "path_outside_workspace", "{path}: {r}");
        }
    })
    .await;
    cleanup(&server.sandboxes().await).await;
    server.stop().await;
}

#[tokio::test]
async fn absolute_paths_on_the_pages_socket() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(server_config(data.path())).await;
    within(120, async {
        let browser = Browser::new();
        browser.visit(&server).await;
        let mut ws = browser.socket(&server, "").await;
        ws.send(json!({"type": "file.write", "path": "/workspace/dir/a.txt", "data": "hello", "ref": "w"}))
            .await;
        let v = ws.until("file").await;
        assert_eq!(v["ref"], "w", "{v}");
        let (out, exit) = ws
            .run(json!({"command": "cat a.txt; pwd", "cwd": "/workspace/dir"}))
            .await;
        assert_eq!(out, "hello/workspace/dir\n", "{exit}");
        ws.send(json!({"type": "file.read", "path": "/etc/passwd", "ref": "r"}))
            .await;
        let v = ws.until("error").await;
        assert_eq!(v["code"], "path_outside_workspace", "{v}");
    })
    .await;
    cleanup(&server.sandboxes().await).await;
    server.stop().await;
}

/// An image with nothing but a shell and its libraries from the host: no
/// /workspace, no /etc/passwd, no user 1000 (as a `docker import` of a
/// stock root filesystem would be). Tagged by a hash of its content, so it
/// is built once.
fn bare_image() -> String {
    let sh = std::fs::canonicalize("/bin/sh").expect("/bin/sh on the host");
    let ldd = Command::new("ldd").arg(&sh).output().expect("ldd");
    let mut files = vec![sh.clone()];
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or
        // `/lib64/ld-linux-x86-64.so.2 (0x...)`.
        if let Some(path) = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(std::path::PathBuf::from)
        {
            files.push(path);
        }
    }
    let mut hasher = sha2::Sha256::new();
    use sha2::Digest;
    for f in &files {
        hasher.update(f.as_os_str().as_encoded_bytes());
        hasher.update(std::fs::read(f).unwrap());
    }
    let tag = format!(
        "replbox-test-bare:{}",
        &hex::encode(hasher.finalize())[..16]
    );
    let have = Command::new("docker")
        .args(["image", "inspect", &tag])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    if have.success() {
        return tag;
    }
    let root = tempfile::tempdir().unwrap();
    for f in &files {
        let dest = root.path().join(f.strip_prefix("/").unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(f, &dest).unwrap();
    }
    std::fs::create_dir_all(root.path().join("bin")).unwrap();
    if sh != std::path::Path::new("/bin/sh") {
        std::fs::copy(&sh, root.path().join("bin/sh")).unwrap();
    }
    let tar = Command::new("tar")
        .args(["-C", root.path().to_str().unwrap(), "-c", "."])
        .output()
        .expect("tar");
    assert!(tar.status.success());
    let mut import = Command::new("docker")
        .args(["import", "-", &tag])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    import.stdin.take().unwrap().write_all(&tar.stdout).unwrap();
    assert!(import.wait().unwrap().success(), "docker import {tag}");
    tag
}

/// Write, exec, read in a sandbox of the bare image.
async fn own_image_flow(quota_mb: u64) {
    let image = bare_image();
    let data = tempfile::tempdir().unwrap();
    let mut config = server_config(data.path());
    config.sandbox.allowed_images = vec![image.clone()];
    config.sandbox.workspace_quota_mb = quota_mb;
    let server = TestServer::start(config).await;
    let sandboxes = engine(server.config.sandbox.clone()).await;
    within(120, async {
        // An image the server does not offer is still refused.
        let r: Value = json_of(
            server
                .api(Method::POST, "/api/v1/sandboxes")
                .json(&json!({"imageId": "busybox:latest"})),
        )
        .await;
        assert_eq!(r["error"]["code"], "image_not_allowed", "{r}");

        let task = ready(&server, json!({"imageId": image})).await;
        let base = format!("/api/v1/sandboxes/{task}");
        let r = server
            .api(Method::PUT, &format!("{base}/files/in/a.txt"))
            .body("from the API\n")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "write: {}", r.text().await.unwrap());
        let (status, r) = exec(
            &server,
            &task,
            json!({"command": "read line < in/a.txt; echo \"$line, and from a program\" > b.txt && echo done", "cwd": "/workspace"}),
        )
        .await;
        assert_eq!(status, 200, "{r}");
        assert_eq!(r["stdout"], "done\n", "{r}");
        assert_eq!(r["exitCode"], 0, "{r}");
        let r = server
            .api(Method::GET, &format!("{base}/files/b.txt"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.text().await.unwrap(),
            "from the API, and from a program\n"
        );
    })
    .await;
    cleanup(&sandboxes).await;
    server.stop().await;
}

#[tokio::test]
async fn an_own_image_without_workspace_or_user_works_on_a_plain_volume() {
    own_image_flow(0).await;
}

#[tokio::test]
async fn an_own_image_without_workspace_or_user_works_with_quotas() {
    own_image_flow(1024).await;
}

/// The bare image made hostile: its environment and entrypoint name a
/// root-owned directory (`/victim`) as the workspace, hoping the claim of
/// the workspace gives that away to the sandbox user.
fn hostile_image() -> String {
    let bare = bare_image();
    let tag = format!("replbox-test-hostile:{}", bare.rsplit(':').next().unwrap());
    let ctx = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(ctx.path().join("victim")).unwrap();
    std::fs::write(ctx.path().join("victim/keep"), "root's\n").unwrap();
    let docker = |args: &[&str]| {
        let out = Command::new("docker").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let made = docker(&["create", &bare, "/bin/sh"]);
    let victim = format!("{}/victim", ctx.path().display());
    docker(&["cp", &victim, &format!("{made}:/victim")]);
    docker(&[
        "commit",
        "--change",
        "ENV REPLBOX_WORKSPACE=/victim",
        "--change",
        r#"ENTRYPOINT ["/bin/sh", "-c", "exit 3"]"#,
        &made,
        &tag,
    ]);
    docker(&["rm", "-f", &made]);
    tag
}

/// Who owns `path` inside a running container's root filesystem, seen
/// from the host (the engine's merged directory).
fn owner_in(container: &str, path: &str) -> u32 {
    use std::os::unix::fs::MetadataExt;
    let out = Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{.GraphDriver.Data.MergedDir}}",
            container,
        ])
        .output()
        .unwrap();
    let merged = String::from_utf8_lossy(&out.stdout).trim().to_string();
    std::fs::symlink_metadata(format!("{merged}{path}"))
        .unwrap_or_else(|e| panic!("{merged}{path}: {e}"))
        .uid()
}

#[tokio::test]
async fn an_image_cannot_turn_the_workspace_claim_against_another_directory() {
    let image = hostile_image();
    let data = tempfile::tempdir().unwrap();
    let mut config = server_config(data.path());
    config.sandbox.allowed_images = vec![image.clone()];
    let server = TestServer::start(config).await;
    let sandboxes = engine(server.config.sandbox.clone()).await;
    within(120, async {
        // The caller may not name the agent's workspace either.
        let r: Value = json_of(
            server
                .api(Method::POST, "/api/v1/sandboxes")
                .json(&json!({"imageId": image, "envVars": {"REPLBOX_WORKSPACE": "/victim"}})),
        )
        .await;
        assert_eq!(r["error"]["code"], "bad_env", "{r}");

        let task = ready(&server, json!({"imageId": image})).await;
        let base = format!("/api/v1/sandboxes/{task}");
        let r = server
            .api(Method::PUT, &format!("{base}/files/mine.txt"))
            .body("the sandbox user's\n")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "write: {}", r.text().await.unwrap());
        let (status, r) = exec(
            &server,
            &task,
            json!({"command": "pwd; read l < mine.txt; echo \"$l\""}),
        )
        .await;
        assert_eq!(status, 200, "{r}");
        assert_eq!(r["stdout"], "/workspace\nthe sandbox user's\n", "{r}");
        // /victim is still the container's root's, as /bin is; only the
        // workspace changed hands (and no helper is left behind).
        let containers = sandboxes.list().await.unwrap();
        assert_eq!(containers.len(), 1, "{containers:?}");
        let id = &containers[0].id;
        assert_eq!(owner_in(id, "/victim"), owner_in(id, "/bin"));
        assert_eq!(owner_in(id, "/victim/keep"), owner_in(id, "/bin"));
    })
    .await;
    cleanup(&sandboxes).await;
    server.stop().await;
}

#[tokio::test]
async fn the_frameworks_own_rejections_are_our_json_errors() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(server_config(data.path())).await;
    within(60, async {
        let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
            (
                server.api(Method::GET, "/api/v1/sandboxes/x?wait=null"),
                400,
                "bad_query",
            ),
            (
                server.api(Method::GET, "/api/v1/sandboxes/x?wait=121"),
                400,
                "bad_wait",
            ),
            (
                server.api(Method::GET, "/api/v1/sandboxes/x/ws?output=nope"),
                400,
                "bad_query",
            ),
            (
                server.api(Method::PATCH, "/api/v1/run"),
                405,
                "method_not_allowed",
            ),
            (server.api(Method::GET, "/api/v1/nope"), 404, "not_found"),
            (
                server.api(Method::GET, "/api/v2/sandboxes"),
                404,
                "not_found",
            ),
            (
                server
                    .api(Method::POST, "/api/v1/run")
                    .header("content-type", "text/plain")
                    .body("{}"),
                415,
                "not_json",
            ),
            (
                server
                    .api(Method::POST, "/api/v1/run")
                    .header("content-type", "application/json")
                    .body("{\"language\":"),
                400,
                "bad_json",
            ),
            (
                server
                    .api(Method::POST, "/api/v1/run")
                    .json(&json!({"language": "python", "code": "print(1)", "timeoutMs": 0})),
                400,
                "bad_timeout",
            ),
            (
                server
                    .api(Method::POST, "/api/v1/sandboxes")
                    .json(&json!({"envVars": {"A": "x\u{0}y"}})),
                400,
                "bad_env",
            ),
        ];
        for (req, status, code) in cases {
            let r = req.send().await.unwrap();
            let (got, headers) = (r.status().as_u16(), r.headers().clone());
            let body = r.text().await.unwrap();
            assert_eq!(got, status, "{body}");
            assert_eq!(headers["content-type"], "application/json", "{body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["error"]["code"], code, "{body}");
            assert!(
                v["error"]["message"].as_str().unwrap().ends_with('.'),
                "{body}"
            );
            if status == 405 {
                assert_eq!(headers["allow"], "POST");
            }
        }
        // The document links a created sandbox to every operation taking
        // its taskId, and names this server's languages.
        let doc: Value = json_of(server.api(Method::GET, "/api/v1/openapi.json")).await;
        let links = &doc["paths"]["/api/v1/sandboxes"]["post"]["responses"]["201"]["links"];
        for (path, ops) in doc["paths"].as_object().unwrap() {
            if !path.contains("{taskId}") {
                continue;
            }
            for op in ops.as_object().unwrap().values() {
                let id = op["operationId"].as_str().unwrap();
                assert_eq!(links[id]["operationId"], id, "no link to {id}");
                assert_eq!(links[id]["parameters"]["taskId"], "$response.body#/taskId");
            }
        }
        assert_eq!(
            doc["components"]["schemas"]["Run"]["properties"]["language"]["enum"],
            json!(["bash", "go", "javascript", "python"])
        );
        // A create with no body at all is the same as `{}`, as documented.
        let r = server
            .api(Method::POST, "/api/v1/sandboxes")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    })
    .await;
    cleanup(&server.sandboxes().await).await;
    server.stop().await;
}
