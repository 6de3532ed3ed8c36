//! gVisor beside runc, in the same run: when the engine lists the runtime
//! `runsc` (scripts/ensure-runsc.sh registers it), a server whose every
//! sandbox runs under it gives the cold start, the run round trip and a
//! notebook cell, each beside the runc figure measured earlier in the run.
//! Without runsc the keys are absent (not a failure).

use super::*;

/// The keys this phase adds, printed in the table when present.
pub const KEYS: &[&str] = &[
    "runsc_cold_start_ms",
    "runsc_vs_runc_cold_start_ratio",
    "runsc_run_roundtrip_p50_ms",
    "runsc_vs_runc_run_roundtrip_ratio",
    "runsc_cell_p50_ms",
    "runsc_vs_runc_cell_ratio",
];

async fn registered(docker: &bollard::Docker) -> bool {
    docker
        .info()
        .await
        .ok()
        .and_then(|i| i.runtimes)
        .is_some_and(|r| r.contains_key("runsc"))
}

/// `ours` over the runc figure `key` measured earlier in the run.
fn ratio(out: &serde_json::Map<String, Value>, ours: f64, key: &str) -> Value {
    let runc = out.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN);
    json!(((ours / runc) * 100.0).round() / 100.0)
}

pub async fn phase(
    prefix: &str,
    docker: &bollard::Docker,
    out: &mut serde_json::Map<String, Value>,
    failures: &mut Vec<String>,
) {
    if !registered(docker).await {
        eprintln!("bench: runsc is not registered with the engine: no gVisor figures (scripts/ensure-runsc.sh)");
        return;
    }
    let prefix = format!("{prefix}g");
    // gVisor's gofer does not pass a host unix socket through a bind
    // mount, so its sandboxes talk over the attach stream (as an operator
    // would set): the figures are what a user gets under each runtime, the
    // transport included (runc's go over the direct socket).
    let runsc = [
        ("REPLBOX_RUNTIME", "runsc"),
        ("REPLBOX_AGENT_TRANSPORT", "attach"),
    ];

    // Cold: no pool, a new browser's first run.
    eprintln!("bench: runsc: new sessions (cold)");
    let server = Server::start_with(&prefix, 0, &runsc).await;
    let mut cold = Vec::new();
    for _ in 0..STARTS {
        let t = Instant::now();
        let mut ws = browser(&server.addr, "binary").await;
        run(&mut ws, json!({"type": "run", "argv": ["true"]})).await;
        cold.push(ms(t.elapsed()));
    }
    server.stop();
    remove_all(&Sandboxes::new(sandbox_config(&prefix)).unwrap()).await;
    let cold = pct(&mut cold, 0.5);
    out.insert("runsc_cold_start_ms".into(), json!(cold));
    let r = ratio(out, cold, "session_start_cold_p50_ms");
    out.insert("runsc_vs_runc_cold_start_ratio".into(), r);

    // The run round trip of `true` through the page's socket, after the
    // same warm-up as runc's.
    eprintln!("bench: runsc: run round trip through the page's socket");
    let server = Server::start_with(&prefix, 0, &runsc).await;
    let mut ws = browser(&server.addr, "binary").await;
    let (kernel, _) = run_text(&mut ws, "uname -r").await;
    if !kernel.contains("gvisor") {
        failures.push(format!(
            "REPLBOX_RUNTIME=runsc, yet the sandbox's kernel is {:?}",
            kernel.trim()
        ));
    }
    let mut rt = Vec::new();
    for i in 0..RUNS + 10 {
        let d = run(&mut ws, json!({"type": "run", "argv": ["true"]}))
            .await
            .0;
        if i >= 10 {
            rt.push(ms(d));
        }
    }
    let rt = pct(&mut rt, 0.5);
    out.insert("runsc_run_roundtrip_p50_ms".into(), json!(rt));
    let r = ratio(out, rt, "run_roundtrip_p50_ms");
    out.insert("runsc_vs_runc_run_roundtrip_ratio".into(), r);

    // A notebook cell `1+1`, as benches/cells.py measures it for runc.
    eprintln!("bench: runsc: notebook cells through the socket");
    let (url, cookie) = socket_url(&server.addr, "json").await;
    let cells = Command::new("python3")
        .arg(root().join("benches/cells.py"))
        .args([url, cookie, (CELLS / 2).to_string()])
        .output()
        .expect("python3 (make bench installs jupyter_client and websockets)");
    let line = String::from_utf8_lossy(&cells.stdout);
    let mut expected = KEYS.to_vec();
    let said = String::from_utf8_lossy(&cells.stderr);
    match serde_json::from_str::<Value>(line.trim().lines().last().unwrap_or(""))
        .ok()
        .and_then(|v| v["cell_roundtrip_p50_ms"].as_f64())
    {
        Some(cell) => {
            out.insert("runsc_cell_p50_ms".into(), json!(cell));
            let r = ratio(out, cell, "cell_roundtrip_p50_ms");
            out.insert("runsc_vs_runc_cell_ratio".into(), r);
        }
        // gVisor gives a sandbox with network `none` no loopback at all,
        // so a kernel cannot bind its ZeroMQ ports: a known limit of the
        // runtime (README, "Running with gVisor"), said, not a failure.
        None if said.contains("no free ports for the kernel") => {
            eprintln!("bench: runsc: no notebook cells: gVisor gives a sandbox without a network no loopback for the kernel's ports");
            expected.retain(|k| !k.contains("cell"));
        }
        None => failures.push(format!(
            "the notebook cells under runsc failed: {}",
            said.trim()
        )),
    }
    drop(ws);
    server.stop();
    remove_all(&Sandboxes::new(sandbox_config(&prefix)).unwrap()).await;
    // With runsc registered, every figure of this phase must be read.
    for key in expected {
        if !out
            .get(key)
            .and_then(Value::as_f64)
            .is_some_and(f64::is_finite)
        {
            failures.push(format!("{key}: not measured under runsc"));
        }
    }
}
