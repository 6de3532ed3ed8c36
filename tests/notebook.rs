//! Kernels over the page's socket: state across cells, rich output, an
//! interrupt, a restart that clears state, a kernel killed by running out
//! of memory and started again.

mod common;

use common::{cleanup, engine, server_config, within, Browser, TestServer, Ws};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

async fn start_kernel(ws: &mut Ws) -> u64 {
    ws.send(json!({"type": "kernel.start", "ref": "k"})).await;
    let started = ws.until("started").await;
    assert_eq!(started["kind"], "kernel");
    let kernel = started["job"].as_u64().unwrap();
    let ready = ws.until("kernel.ready").await;
    assert_eq!(ready["kernel"], kernel);
    assert_eq!(ready["language"], "python");
    kernel
}

/// Runs a cell; returns the mime bundles of its results, its stream text,
/// and its reply's status.
async fn cell(
    ws: &mut Ws,
    kernel: u64,
    id: &str,
    code: &str,
) -> (Vec<BTreeMap<String, Value>>, String, String) {
    ws.send(json!({"type": "kernel.execute", "kernel": kernel, "msgId": id, "code": code}))
        .await;
    let (mut results, mut stream) = (Vec::new(), String::new());
    // Done when the reply (shell) and the idle status (iopub, after the last
    // output) have both come: the channels are not ordered.
    let (mut reply, mut idle) = (None::<String>, false);
    while reply.is_none() || !idle {
        let v = ws.json().await;
        if v["type"] == "exit" && v["job"] == kernel {
            panic!("kernel died: {v}");
        }
        if v["type"] != "kernel.message" || v["parentMsgId"] != id {
            continue;
        }
        let c = &v["content"];
        match v["msgType"].as_str().unwrap() {
            "execute_result" | "display_data" => {
                results.push(serde_json::from_value(c["data"].clone()).unwrap());
            }
            "error" => {
                results.push(BTreeMap::from([("error".to_string(), c["ename"].clone())]));
            }
            "stream" => stream.push_str(c["text"].as_str().unwrap_or("")),
            "execute_reply" => reply = Some(c["status"].as_str().unwrap_or("").to_string()),
            "status" => idle |= c["execution_state"] == "idle",
            _ => {}
        }
    }
    (results, stream, reply.unwrap())
}

/// The content of the kernel's `msg_type` reply to request `id`.
async fn reply_to(ws: &mut Ws, id: &str, msg_type: &str) -> Value {
    loop {
        let v = ws.json().await;
        if v["type"] == "kernel.message" && v["parentMsgId"] == id && v["msgType"] == msg_type {
            return v["content"].clone();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn notebook_cells_run_in_a_kernel_over_the_socket() {
    within(240, async {
        let dir = tempfile::tempdir().unwrap();
        let config = server_config(dir.path());
        let sb = engine(config.sandbox.clone()).await;
        let server = TestServer::start(config).await;
        let browser = Browser::new();
        browser.visit(&server).await;
        let mut ws = browser.socket(&server, "").await;
        ws.until("hello").await;
        ws.send(json!({"type": "kernel.specs", "ref": "s"})).await;
        let specs = ws.until("kernel.specs").await;
        let python = specs["specs"].as_array().unwrap().iter().find(|s| s["name"] == "python3").cloned();
        assert_eq!(python.map(|p| p["language"].clone()), Some(json!("python")), "{specs}");
        let k = start_kernel(&mut ws).await;

        let (r, _, status) = cell(&mut ws, k, "a", "x = 41").await;
        assert!(r.is_empty() && status == "ok");
        let (r, _, _) = cell(&mut ws, k, "b", "x + 1").await;
        assert_eq!(r[0]["text/plain"], "42");

        let (r, _, _) = cell(&mut ws, k, "c", "import pandas as pd; pd.DataFrame({'a': [1, 2]})").await;
        assert!(r[0]["text/html"].as_str().unwrap().contains("<table"), "{r:?}");
        let (r, _, _) = cell(
            &mut ws,
            k,
            "d",
            "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.show()",
        )
        .await;
        assert!(r.iter().any(|b| b.contains_key("image/png")), "{r:?}");
        let (_, out, _) = cell(&mut ws, k, "e", "print('streamed')").await;
        assert_eq!(out, "streamed\n");

        // Completion (the page's Tab) and inspection of a name.
        ws.send(json!({"type": "kernel.complete", "kernel": k, "msgId": "c1", "code": "pd.DataFr", "cursorPos": 9}))
            .await;
        let done = reply_to(&mut ws, "c1", "complete_reply").await;
        let matches: Vec<&str> = done["matches"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert!(matches.iter().any(|m| m.ends_with("DataFrame")), "{done}");
        ws.send(json!({"type": "kernel.inspect", "kernel": k, "msgId": "i1", "code": "len(x)", "cursorPos": 2}))
            .await;
        let found = reply_to(&mut ws, "i1", "inspect_reply").await;
        assert_eq!(found["found"], true, "{found}");
        assert!(found["data"]["text/plain"].as_str().unwrap().contains("Return the number of items"), "{found}");

        // An interrupt ends a busy loop within a second; the kernel lives on.
        // Its stdout and stderr come as they are written, each by its name,
        // before the cell ends (this one never ends by itself).
        ws.send(json!({"type": "kernel.execute", "kernel": k, "msgId": "f",
            "code": "import sys\nprint('to stdout', flush=True)\nprint('to stderr', file=sys.stderr, flush=True)\nwhile True: pass"}))
            .await;
        let mut streams = Vec::new();
        while streams.len() < 2 {
            let v = ws.json().await;
            if v["type"] == "kernel.message" && v["parentMsgId"] == "f" {
                match v["msgType"].as_str().unwrap() {
                    "stream" => streams.push((
                        v["content"]["name"].as_str().unwrap().to_string(),
                        v["content"]["text"].as_str().unwrap().to_string(),
                    )),
                    "execute_input" | "status" => {}
                    other => panic!("{other} before the interrupt: {v}"),
                }
            }
        }
        assert_eq!(
            streams,
            [("stdout".to_string(), "to stdout\n".to_string()), ("stderr".to_string(), "to stderr\n".to_string())]
        );
        let t = Instant::now();
        ws.send(json!({"type": "kernel.interrupt", "kernel": k})).await;
        loop {
            let v = ws.json().await;
            if v["type"] == "kernel.message" && v["msgType"] == "execute_reply" && v["parentMsgId"] == "f" {
                assert_eq!(v["content"]["status"], "error");
                break;
            }
        }
        assert!(t.elapsed() < Duration::from_secs(1), "interrupt took {:?}", t.elapsed());
        let (r, _, _) = cell(&mut ws, k, "g", "x").await;
        assert_eq!(r[0]["text/plain"], "41");

        // A restart (shutdown, start) clears the state.
        ws.send(json!({"type": "kernel.shutdown", "kernel": k})).await;
        loop {
            let v = ws.json().await;
            if v["type"] == "exit" && v["job"] == k {
                break;
            }
        }
        let k = start_kernel(&mut ws).await;
        let (r, _, status) = cell(&mut ws, k, "h", "x").await;
        assert_eq!((r[0]["error"].as_str(), status.as_str()), (Some("NameError"), "error"));

        // Past the memory limit the kernel dies, and says so; a new one works.
        ws.send(json!({"type": "kernel.execute", "kernel": k, "msgId": "i", "code": "b = bytearray(2 * 1024**3)"})).await;
        let dead = loop {
            let v = ws.json().await;
            if v["type"] == "exit" && v["job"] == k {
                break v;
            }
        };
        assert_eq!(dead["reason"], "killed: out of memory", "{dead}");
        let k = start_kernel(&mut ws).await;
        let (r, _, _) = cell(&mut ws, k, "j", "1 + 1").await;
        assert_eq!(r[0]["text/plain"], "2");
        server.stop().await;
        cleanup(&sb).await;
    })
    .await
}
