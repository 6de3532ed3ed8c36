//! The IDE page in a real browser (Debian's Chromium driven by
//! playwright-core, tests/browser/ide.mjs) against the real app.

mod common;

use common::{cleanup, engine, server_config, within, TestServer};
use std::path::PathBuf;

/// One browser scenario at a time: four Chromiums, servers and sandboxes
/// at once on two cores make every timeout a lottery.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs a playwright script (tests/browser/*.mjs) with its arguments; true
/// when it ended with its `ok` line. Its output is printed for the log.
async fn run_script(script: &str, args: &[std::ffi::OsString]) -> bool {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new("node")
        .arg(root.join("tests/browser").join(script))
        .args(args)
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    out.status.success() && stdout.contains("\nok")
}

async fn scenario(name: &str, idle_ttl_secs: u64) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("static/node_modules/playwright-core").exists()
            && root.join("static/dist/ide.js").exists(),
        "the front end is not built: run `make frontend` (make test does)"
    );
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "Chromium is missing: run `make browser` (make test does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config(dir.path());
    config.idle_ttl_secs = idle_ttl_secs;
    let sb = engine(config.sandbox.clone()).await;
    let server = TestServer::start(config).await;
    let artifacts = root.join("test-artifacts");
    let ok = run_script(
        "ide.mjs",
        &[server.url("/").into(), name.into(), artifacts.into()],
    )
    .await;
    server.stop().await;
    cleanup(&sb).await;
    assert!(ok, "browser scenario {name} failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_student_uses_the_ide() {
    within(600, scenario("main", 1800)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_workspace_comes_back_with_one_click() {
    within(600, scenario("expiry", 5)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_class_in_the_browser() {
    within(600, async {
        let _turn = ONE_AT_A_TIME.lock().await;
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let dir = tempfile::tempdir().unwrap();
        let mut config = server_config(dir.path());
        config.exercises_dir = Some(root.join("examples/exercises"));
        let sb = engine(config.sandbox.clone()).await;
        let added = std::process::Command::new(env!("CARGO_BIN_EXE_replbox"))
            .args(["teacher", "add", "Grace"])
            .env("REPLBOX_DATA_DIR", dir.path())
            .env("REPLBOX_TEACHER_PASSWORD", "compiler-1952")
            .output()
            .unwrap();
        assert!(added.status.success());
        let server = TestServer::start(config).await;
        let ok = run_script(
            "classroom.mjs",
            &[
                server.url("/").into(),
                "Grace".into(),
                "compiler-1952".into(),
                root.join("test-artifacts").into(),
            ],
        )
        .await;
        server.stop().await;
        cleanup(&sb).await;
        assert!(ok, "browser scenario classroom failed");
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notebook_in_the_browser() {
    within(600, async {
        let _turn = ONE_AT_A_TIME.lock().await;
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let dir = tempfile::tempdir().unwrap();
        let config = server_config(dir.path());
        let sb = engine(config.sandbox.clone()).await;
        let server = TestServer::start(config).await;
        let artifacts = root.join("test-artifacts");
        let ok = run_script(
            "notebook.mjs",
            &[
                server.url("/").into(),
                root.join("tests/fixtures/made-by-jupyter.ipynb").into(),
                artifacts.clone().into(),
            ],
        )
        .await;
        server.stop().await;
        cleanup(&sb).await;
        assert!(ok, "browser scenario notebook failed");

        // What the page saved is a valid nbformat 4 notebook with its outputs.
        let zip = std::fs::read(artifacts.join("notebook-workspace.zip")).unwrap();
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
        let mut saved = String::new();
        std::io::Read::read_to_string(&mut archive.by_name("analysis.ipynb").unwrap(), &mut saved).unwrap();
        let path = dir.path().join("analysis.ipynb");
        std::fs::write(&path, &saved).unwrap();
        let check = std::process::Command::new("python3")
            .args(["-c", "import sys, nbformat; nb = nbformat.read(sys.argv[1], 4); nbformat.validate(nb); print(sum(len(c.get('outputs', [])) for c in nb.cells))"])
            .arg(&path)
            .output()
            .expect("python3 with nbformat (make test installs it)");
        assert!(check.status.success(), "nbformat: {}", String::from_utf8_lossy(&check.stderr));
        let outputs: usize = String::from_utf8_lossy(&check.stdout).trim().parse().unwrap();
        assert!(outputs >= 5, "outputs saved: {outputs}");
    })
    .await
}
