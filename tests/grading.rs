//! Checking an exercise in a fresh container: the starter fails with
//! reasons, a fix gets full points, and code that reads or rewrites the
//! hidden tests, exits 0 early or prints a fake result gains nothing.

mod common;

use common::{cleanup, engine, sandbox_config, within};
use replbox::config::Config;
use replbox::exercises::{self, grade::grade};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn exercise(id: &str) -> exercises::Exercise {
    let langs = Config::default().language_table().unwrap();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples/exercises")
        .join(id);
    exercises::load(&dir, &langs).unwrap()
}

fn with_main(x: &exercises::Exercise, main: &str) -> BTreeMap<String, Vec<u8>> {
    let mut files = x.starter.clone();
    files.insert(x.entry.clone(), main.as_bytes().to_vec());
    files
}

const FIXED: &str = "def greet(name):\n    return \"Hello, \" + name + \"!\"\n\n\nif __name__ == \"__main__\":\n    print(greet(input(\"What is your name? \")))\n";

#[tokio::test(flavor = "multi_thread")]
async fn checks_grade_honestly() {
    within(240, async {
        let sb = engine(sandbox_config()).await;
        let langs = Config::default().language_table().unwrap();
        let x = exercise("python-hello");
        let python = &langs["python"];

        // The starter as it is: every test fails, with a reason.
        let report = grade(&sb, &x, python, &x.starter).await.unwrap();
        assert_eq!((report.score, report.max_score), (0, 10), "{report:#?}");
        let first = &report.tests[0];
        assert!(!first.passed);
        assert_eq!(first.reason, "the output differs");
        assert_eq!(first.expected.as_deref(), Some("What is your name? Hello, Ada!"));
        assert_eq!(first.got.as_deref(), Some("What is your name? Hello, Ada\n"));

        // Fixed: full points.
        let report = grade(&sb, &x, python, &with_main(&x, FIXED)).await.unwrap();
        assert_eq!(report.score, 10, "{report:#?}");
        assert!(report.tests.iter().all(|t| t.passed));

        // Hostile solutions gain nothing.
        let cheats = [
            (
                "rewrites the hidden tests",
                "import glob\nfor f in glob.glob('tests/*.py'):\n    try:\n        open(f, 'w').write('def test_ok(): pass\\n')\n    except OSError as e:\n        print('refused:', e)\ndef greet(name):\n    return 'nope'\n",
            ),
            (
                "exits 0 before the tests run",
                "import os, sys\nif 'pytest' in sys.modules:\n    os._exit(0)\ndef greet(name):\n    return 'nope'\n",
            ),
            (
                "prints a fake result",
                "import os, sys\nif 'pytest' in sys.modules:\n    print('2 passed'); print('REPLBOX-PASS 0123456789abcdef0123456789abcdef'); sys.stdout.flush(); os._exit(0)\ndef greet(name):\n    return 'nope'\n",
            ),
            (
                "reads the nonce's channel itself",
                "import os\ntry:\n    print('REPLBOX-PASS', os.read(3, 64).decode().strip())\nexcept OSError:\n    pass\nos._exit(0)\n",
            ),
        ];
        for (what, code) in cheats {
            let report = grade(&sb, &x, python, &with_main(&x, code)).await.unwrap();
            assert_eq!(report.score, 0, "{what}: {report:#?}");
        }
        // Reading the hidden tests during a check shows them, but they are
        // root's and read-only, and expectations of io tests are not there.
        let peek = "import os\nprint(sorted(os.listdir('tests')), oct(os.stat('tests/test_greet.py').st_mode & 0o777), os.stat('tests').st_uid)\n";
        let mut files = with_main(&x, peek);
        files.insert("tests/test_greet.py".into(), b"def test_mine(): pass\n".to_vec());
        let report = grade(&sb, &x, python, &files).await.unwrap();
        let got = report.tests[0].got.clone().unwrap_or_default();
        assert!(got.contains("0o444") && got.trim_end().ends_with(" 0"), "{got}");
        assert_eq!(report.score, 0);

        // The other samples: the starters fail, and nothing is left behind.
        for id in ["javascript-sum", "bash-count", "go-fizzbuzz"] {
            let x = exercise(id);
            let report = grade(&sb, &x, &langs[&x.language], &x.starter).await.unwrap();
            assert!(report.score < report.max_score, "{id}: {report:#?}");
        }
        assert!(sb.list().await.unwrap().is_empty(), "grading containers are removed");
        assert!(sb.list_volumes().await.unwrap().is_empty());
        cleanup(&sb).await;
    })
    .await
}
