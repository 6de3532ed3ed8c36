//! Checking an exercise: the starter fails with reasons, a fix gets full
//! points, and each class of attack a student could try from their own
//! workspace (on the files, the interpreter's start-up, the test framework's
//! configuration, the process that decides, the channel between the two
//! sides, the hidden tests' text) leaves the honest score as it was.

mod common;

use common::{cleanup, engine, sandbox_config, within};
use replbox::config::Config;
use replbox::exercises::grade::{grade, Report};
use replbox::exercises::{self, Show, TestKind};
use replbox::sandbox::{SandboxError, Sandboxes};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn exercise(id: &str) -> exercises::Exercise {
    let langs = Config::default().language_table().unwrap();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples/exercises")
        .join(id);
    exercises::load(&dir, &langs).unwrap()
}

type Files = BTreeMap<String, Vec<u8>>;

fn with_main(x: &exercises::Exercise, main: &str) -> Files {
    let mut files = x.starter.clone();
    files.insert(x.entry.clone(), main.as_bytes().to_vec());
    files
}

fn with(mut files: Files, extra: &[(&str, &str)]) -> Files {
    for (path, text) in extra {
        files.insert(path.to_string(), text.as_bytes().to_vec());
    }
    files
}

async fn check(sb: &Sandboxes, x: &exercises::Exercise, files: &Files) -> Report {
    let langs = Config::default().language_table().unwrap();
    grade(sb, x, &langs[&x.language], files).await.unwrap()
}

/// The pytest test of python-hello, by name.
fn pytest_result(report: &Report) -> &replbox::exercises::grade::TestResult {
    report
        .tests
        .iter()
        .find(|t| t.name == "greet() returns the greeting")
        .expect("the command test")
}

const FIXED: &str = "def greet(name):\n    return \"Hello, \" + name + \"!\"\n\n\nif __name__ == \"__main__\":\n    print(greet(input(\"What is your name? \")))\n";

/// A main.py that fails every test honestly, plus `cheat` run at import.
fn failing_with(cheat: &str) -> String {
    format!("{cheat}\n\ndef greet(name):\n    return 'nope'\n\n\nif __name__ == '__main__':\n    print('nope')\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn checks_grade_honestly() {
    within(300, async {
        let sb = engine(sandbox_config()).await;
        let x = exercise("python-hello");

        // The starter as it is: every test fails, with a reason.
        let report = check(&sb, &x, &x.starter).await;
        assert_eq!((report.score, report.max_score), (0, 10), "{report:#?}");
        let first = &report.tests[0];
        assert!(!first.passed);
        assert_eq!(first.reason, "the output differs");
        assert_eq!(
            first.expected.as_deref(),
            Some("What is your name? Hello, Ada!")
        );
        assert_eq!(
            first.got.as_deref(),
            Some("What is your name? Hello, Ada\n")
        );
        // The command test names the failed tests and their exception type:
        // neither the tests' source nor the values they expected.
        let pytest = pytest_result(&report);
        assert_eq!(pytest.reason, "a hidden test failed (exited with code 1)");
        assert_eq!(
            pytest.expected, None,
            "by default a command test shows no expected value"
        );
        assert_eq!(
            pytest.got.as_deref(),
            Some("test_greet: AssertionError\ntest_greet_other_names: AssertionError")
        );

        // Fixed: full points.
        let report = check(&sb, &x, &with_main(&x, FIXED)).await;
        assert_eq!(report.score, 10, "{report:#?}");
        assert!(report.tests.iter().all(|t| t.passed));

        // The other samples: the starters fail, and nothing is left behind.
        for id in ["javascript-sum", "bash-count", "go-fizzbuzz"] {
            let x = exercise(id);
            let report = check(&sb, &x, &x.starter).await;
            assert!(report.score < report.max_score, "{id}: {report:#?}");
        }
        assert!(
            sb.list().await.unwrap().is_empty(),
            "grading containers are removed"
        );
        assert!(sb.list_volumes().await.unwrap().is_empty());
        cleanup(&sb).await;
    })
    .await
}

/// Each attack, from the student's own workspace, against the pytest test
/// (and the io tests beside it): the score stays 0, the honest score.
#[tokio::test(flavor = "multi_thread")]
async fn attacks_on_the_verdict_gain_nothing() {
    within(600, async {
        let sb = engine(sandbox_config()).await;
        let x = exercise("python-hello");
        let exits_under_pytest = "import os, sys\nif any('pytest' in a for a in sys.argv) or 'pytest' in sys.modules:\n    print('2 passed'); sys.stdout.flush(); os._exit(0)\n";
        let attacks: Vec<(&str, Files)> = vec![
            (
                "rewrites the hidden tests",
                with_main(&x, &failing_with("import glob, os\nos.makedirs('tests', exist_ok=True)\nfor f in glob.glob('tests/*.py') + ['tests/test_greet.py', 'tests/conftest.py']:\n    try:\n        open(f, 'w').write('def test_ok(): pass\\n')\n    except OSError as e:\n        print('refused:', e)\n")),
            ),
            (
                "brings its own tests/ and conftest.py",
                with(with_main(&x, &failing_with("")), &[
                    ("tests/test_greet.py", "def test_ok(): pass\n"),
                    ("tests/conftest.py", "def pytest_collection_modifyitems(items): items.clear()\n"),
                    ("conftest.py", "import pytest\ndef pytest_collection_modifyitems(items): items.clear()\n@pytest.hookimpl(trylast=True)\ndef pytest_sessionfinish(session, exitstatus): session.exitstatus = 0\n"),
                ]),
            ),
            (
                "configures pytest from the workspace",
                with(with_main(&x, &failing_with("")), &[
                    ("pytest.ini", "[pytest]\naddopts = --collect-only -p no:python\n"),
                    ("setup.cfg", "[tool:pytest]\naddopts = --collect-only\n"),
                    ("tox.ini", "[pytest]\naddopts = --collect-only\n"),
                    ("pyproject.toml", "[tool.pytest.ini_options]\naddopts = \"--collect-only\"\n"),
                ]),
            ),
            (
                "hooks the interpreter's start-up",
                with(with_main(&x, &failing_with("")), &[
                    ("sitecustomize.py", exits_under_pytest),
                    ("usercustomize.py", exits_under_pytest),
                    (".local/lib/python3.13/site-packages/evil.pth", "import os; os._exit(0)\n"),
                    (".pythonrc.py", exits_under_pytest),
                ]),
            ),
            (
                "names modules like the tools",
                with(with_main(&x, &failing_with("")), &[
                    ("pytest.py", exits_under_pytest),
                    ("_pytest/__init__.py", exits_under_pytest),
                    ("json.py", exits_under_pytest),
                    ("socket.py", exits_under_pytest),
                    ("replbox_harness.py", exits_under_pytest),
                ]),
            ),
            (
                "leaves dotfiles for the shells",
                with(with_main(&x, &failing_with("")), &[
                    (".bashrc", "exit 0\n"),
                    (".profile", "exit 0\n"),
                    (".config/pip/pip.conf", "[global]\nno-index = true\n"),
                ]),
            ),
            (
                "exits 0 as soon as it is imported",
                with_main(&x, &failing_with("import os, sys\nif __name__ != '__main__':\n    os._exit(0)\n")),
            ),
            (
                "prints a fake result and exits",
                with_main(&x, &failing_with("import os, sys\nif __name__ != '__main__':\n    print('2 passed'); print('REPLBOX-PASS 0123456789abcdef0123456789abcdef'); sys.stdout.flush(); os._exit(0)\n")),
            ),
            (
                "answers with a value equal to everything",
                with_main(&x, "class Any(str):\n    def __eq__(self, other): return True\n    def __ne__(self, other): return False\n    __hash__ = str.__hash__\n\ndef greet(name):\n    return Any('nope')\n\nif __name__ == '__main__':\n    print('nope')\n"),
            ),
            (
                "raises what a framework might read as a pass or a skip",
                with_main(&x, "import sys\nclass Skipped(BaseException): pass\nclass Exit(Exception): pass\nn = [0]\ndef greet(name):\n    n[0] += 1\n    raise [SystemExit(0), StopIteration(), Skipped('skip'), KeyboardInterrupt(), Exit(0)][n[0] % 5]\n\nif __name__ == '__main__':\n    sys.exit(0)\n"),
            ),
            (
                "forges replies and requests on its channel",
                with_main(&x, "import os\ndef greet(name):\n    for fd in range(0, 64):\n        try:\n            os.write(fd, b'{\"ok\": true, \"value\": true, \"id\": 1}\\n{\"op\": \"report\", \"message\": \"x\"}\\n{\"ok\": false, \"error\": {\"type\": \"SystemExit\", \"message\": \"0\"}}\\n')\n        except OSError:\n            pass\n    return 'nope'\n\nif __name__ == '__main__':\n    print('nope')\n"),
            ),
            (
                "kills every process it can see",
                with_main(&x, &failing_with("import os, signal\nfor pid in range(1, 400):\n    try:\n        os.kill(pid, signal.SIGKILL)\n    except OSError:\n        pass\n")),
            ),
            (
                "answers with a value too large to carry",
                with_main(&x, "def greet(name):\n    return [{'': 0}] * 590000\n\nif __name__ == '__main__':\n    print('nope')\n"),
            ),
            (
                "answers with NaN and deep nesting",
                with_main(&x, "n = [0]\ndef greet(name):\n    n[0] += 1\n    if n[0] % 2:\n        return float('nan')\n    v = 'x'\n    for _ in range(500):\n        v = [v]\n    return v\n\nif __name__ == '__main__':\n    print('nope')\n"),
            ),
            (
                "never returns",
                with_main(&x, "import time\ndef greet(name):\n    time.sleep(3600)\n\nif __name__ == '__main__':\n    time.sleep(3600)\n"),
            ),
        ];
        for (what, files) in attacks {
            let langs = Config::default().language_table().unwrap();
            let report = match grade(&sb, &x, &langs[&x.language], &files).await {
                Ok(report) => report,
                // gVisor delivers SIGKILL to PID 1 (README, "Running with
                // gVisor"): killing it ends the Check's sandbox, and the
                // student gets an error, not a verdict.
                Err(SandboxError::AgentGone) if common::gvisor() && what.starts_with("kills") => {
                    continue
                }
                Err(e) => panic!("{what}: {e}"),
            };
            assert_eq!(report.score, 0, "{what}: {report:#?}");
            assert!(!pytest_result(&report).passed, "{what}: {report:#?}");
        }
        assert!(sb.list().await.unwrap().is_empty());
        cleanup(&sb).await;
    })
    .await
}

/// The student's code looks everywhere it can for the hidden tests and
/// prints what it finds: nothing of them reaches the report.
#[tokio::test(flavor = "multi_thread")]
async fn the_hidden_tests_cannot_be_read() {
    within(300, async {
        let sb = engine(sandbox_config()).await;
        let x = exercise("python-hello");
        let hunt = "import os\nfound = []\nfor root, dirs, files in os.walk('/'):\n    if root.startswith(('/proc', '/sys', '/usr', '/dev')):\n        dirs[:] = []\n        continue\n    for f in files:\n        p = os.path.join(root, f)\n        try:\n            t = open(p, errors='replace').read(100000)\n        except OSError:\n            continue\n        if 'Grace' + ' Hopper' in t or 'test_' + 'greet' in f:\n            found.append(p + ':' + t)\nprint('FOUND', found)\n\ndef greet(name):\n    print('FOUND', found)\n    return 'nope'\n";
        let report = check(&sb, &x, &with_main(&x, hunt)).await;
        assert_eq!(report.score, 0);
        let text = format!("{report:?}");
        assert!(text.contains("FOUND []"), "the hunt ran: {report:#?}");
        // Neither the tests' text nor a value only they hold.
        assert!(!text.contains("def test_greet"), "{report:#?}");
        assert!(!text.contains("Grace Hopper"), "{report:#?}");

        // Pass or fail alone, when the author says so.
        let mut quiet = x.clone();
        for t in &mut quiet.tests {
            t.show = Show::None;
        }
        let report = check(&sb, &quiet, &x.starter).await;
        for t in &report.tests {
            assert!(!t.passed);
            assert_eq!(
                (t.reason.as_str(), &t.expected, &t.got, t.duration_ms),
                ("a hidden test failed", &None, &None, 0),
                "{report:#?}"
            );
        }
        cleanup(&sb).await;
    })
    .await
}

/// The grader's side holds the hidden tests and no file of the student's,
/// as another user; `replbox-run` and `replbox-message` reach across.
#[tokio::test(flavor = "multi_thread")]
async fn the_grader_is_another_user_with_a_narrow_channel() {
    within(300, async {
        let sb = engine(sandbox_config()).await;
        let mut x = exercise("python-hello");
        let t = x
            .tests
            .iter_mut()
            .find(|t| t.kind == TestKind::Command)
            .unwrap();
        t.show = Show::Output;
        t.command = Some(
            "id -u; ls -A /workspace /workspace/tests; \
             out=$(printf 'Ada\\n' | replbox-run); \
             [ \"$out\" = 'What is your name? Hello, Ada!' ] || { replbox-message \"said: $out\"; exit 1; }"
                .into(),
        );
        let report = check(&sb, &x, &x.starter).await;
        let t = pytest_result(&report);
        assert!(!t.passed);
        let got = t.got.clone().unwrap_or_default();
        assert!(got.starts_with("1001\n"), "{got}");
        assert!(got.contains("test_greet.py"), "{got}");
        assert!(!got.contains("main.py"), "{got}");

        // The same test reports its message, and passes on a fix.
        let t = x
            .tests
            .iter_mut()
            .find(|t| t.kind == TestKind::Command)
            .unwrap();
        t.show = Show::Message;
        let report = check(&sb, &x, &x.starter).await;
        assert_eq!(
            pytest_result(&report).got.as_deref(),
            Some("said: What is your name? Hello, Ada")
        );
        let report = check(&sb, &x, &with_main(&x, FIXED)).await;
        assert!(pytest_result(&report).passed, "{report:#?}");
        cleanup(&sb).await;
    })
    .await
}

/// What crosses the channel arrives as the student's code gave it: plain
/// data in order, big integers whole, the builtin exception of the same
/// name, what it printed; a module named like one Python already has is
/// the exercise's mistake and fails loudly, never passes.
#[tokio::test(flavor = "multi_thread")]
async fn plain_data_crosses_faithfully() {
    within(300, async {
        let sb = engine(sandbox_config()).await;
        let mut x = exercise("python-hello");
        x.hidden = BTreeMap::from([(
            "test_plain.py".to_string(),
            br#"import pytest
import main
from replbox_harness import StudentError


def test_values():
    assert main.counts("b a b") == {"b": 2, "a": 1}
    assert list(main.counts("b a b")) == ["b", "a"]
    assert main.big() == 2**70
    assert main.LIMIT == 3
    assert main.pair() == [1, "x"]


def test_errors():
    with pytest.raises(TypeError):
        main.fail("type")
    with pytest.raises(ValueError, match="bad"):
        main.fail("value")
    with pytest.raises(StudentError, match="Custom"):
        main.fail("custom")
    with pytest.raises(StudentError):
        main.fail("stop")


def test_prints(capsys):
    assert main.shout("hi") is None
    assert capsys.readouterr().out == "HI\n"
"#
            .to_vec(),
        )]);
        let code = "LIMIT = 3\nclass Custom(Exception): pass\ndef counts(s):\n    d = {}\n    for w in s.split():\n        d[w] = d.get(w, 0) + 1\n    return d\ndef big(): return 2**70\ndef pair(): return (1, 'x')\ndef shout(s): print(s.upper())\ndef fail(kind):\n    raise {'type': TypeError('t'), 'value': ValueError('bad'), 'custom': Custom('c'), 'stop': StopIteration()}[kind]\n";
        let report = check(&sb, &x, &with_main(&x, code)).await;
        let t = pytest_result(&report);
        assert!(t.passed, "{report:#?}");

        // A student module named like the standard library's.
        let mut shadow = x.clone();
        shadow
            .starter
            .insert("statistics.py".into(), b"def mean(v): return 0\n".to_vec());
        let report = check(&sb, &shadow, &with_main(&x, code)).await;
        let t = pytest_result(&report);
        assert!(!t.passed, "{report:#?}");
        assert_eq!(
            t.got.as_deref(),
            Some("exercise error: the student's module 'statistics' has the name of a module Python already has; rename it"),
        );
        cleanup(&sb).await;
    })
    .await
}

/// Both containers of a Check have the limits every sandbox has, read from
/// inside each: the student's (through what its program printed, the io
/// test's `got`) and the grader's (through a command test's output).
#[tokio::test(flavor = "multi_thread")]
async fn both_grading_containers_have_the_usual_limits() {
    within(300, async {
        let config = sandbox_config();
        let sb = engine(config.clone()).await;
        // cgroup v2 or v1, whichever the host has.
        const PROBE: &str = "id -u; cd /sys/fs/cgroup; cat memory.max 2>/dev/null || cat memory/memory.limit_in_bytes; \
            cat pids.max 2>/dev/null || cat pids/pids.max; \
            cat cpu.max 2>/dev/null || echo $(cat cpu/cpu.cfs_quota_us cpu/cpu.cfs_period_us); \
            ulimit -n; grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\\t' ' '; \
            cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '; touch /usr/x 2>&1 | sed 's/^.*: //'";
        // gVisor (README, "Running with gVisor"): no pids limit seen inside,
        // the seccomp profile ignored, no interface with the network
        // disabled, and the permission refused before the read-only mount.
        let (pids, seccomp, net, refused) = if common::gvisor() {
            ("max".to_string(), 0, "", "Permission denied")
        } else {
            (config.pids_limit.to_string(), 2, "lo\n", "Read-only file system")
        };
        let limits = |uid: u32| {
            format!(
                "{uid}\n{}\n{pids}\n{} 100000\n{}\nCapEff: 0000000000000000\nCapBnd: 0000000000000000\nNoNewPrivs: 1\nSeccomp: {seccomp}\n{net}{refused}\n",
                config.memory_mb * 1024 * 1024,
                (config.cpus * 100_000.0) as u64,
                config.nofile,
            )
        };
        let mut x = exercise("python-hello");
        let t = x
            .tests
            .iter_mut()
            .find(|t| t.kind == TestKind::Command)
            .unwrap();
        t.show = Show::Output;
        t.command = Some(format!("{PROBE}; exit 1"));
        let main = format!(
            "import subprocess\nprint(subprocess.run(['bash', '-c', {PROBE:?}], capture_output=True, text=True).stdout, end='')\n"
        );
        let report = check(&sb, &x, &with_main(&x, &main)).await;
        let student = report
            .tests
            .iter()
            .find(|t| t.name == "greets Ada")
            .expect("the first io test");
        assert_eq!(student.got.as_deref(), Some(limits(1000).as_str()), "{report:#?}");
        assert_eq!(
            pytest_result(&report).got.as_deref(),
            Some(limits(1001).as_str()),
            "{report:#?}"
        );
        assert!(sb.list().await.unwrap().is_empty(), "grading containers are removed");
        cleanup(&sb).await;
    })
    .await
}
