use super::*;
use crate::config::Config;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/exercises")
}

#[test]
fn prompts_render_without_raw_html() {
    let html = prompt_html("# Hi\n\n<script>alert(1)</script>\n\n```python\nprint(1)\n```\n");
    assert!(html.contains("<h1>Hi</h1>"));
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("&lt;script&gt;"));
    assert!(html.contains("class=\"language-python\""), "{html}");
}

#[test]
fn the_student_modules_are_the_python_files_at_the_top() {
    let langs = Config::default().language_table().unwrap();
    let x = load(&examples().join("python-hello"), &langs).unwrap();
    assert_eq!(x.student_modules(), ["main"]);
    let js = load(&examples().join("javascript-sum"), &langs).unwrap();
    assert!(js.student_modules().is_empty());
}

#[test]
fn the_sample_exercises_load() {
    let langs = Config::default().language_table().unwrap();
    let all = load_all(&examples(), &langs).unwrap();
    let ok: Vec<_> = all.iter().filter_map(|r| r.as_ref().ok()).collect();
    let errors: Vec<_> = all.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let mut languages: Vec<_> = ok.iter().map(|x| x.language.as_str()).collect();
    languages.sort();
    assert_eq!(languages, ["bash", "go", "javascript", "python"]);
    assert!(ok.iter().all(|x| !x.prompt.is_empty() && x.points() > 0));
}

fn broken_copy(edit: impl Fn(&str) -> String) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let src = examples().join("python-hello");
    let dst = tmp.path().join("python-hello");
    for sub in ["", "starter", "tests"] {
        std::fs::create_dir_all(dst.join(sub)).unwrap();
    }
    for (from, to) in [
        ("prompt.md", "prompt.md"),
        ("starter/main.py", "starter/main.py"),
        ("tests/test_greet.py", "tests/test_greet.py"),
    ] {
        std::fs::copy(src.join(from), dst.join(to)).unwrap();
    }
    let toml = std::fs::read_to_string(src.join("exercise.toml")).unwrap();
    std::fs::write(dst.join("exercise.toml"), edit(&toml)).unwrap();
    (tmp, dst)
}

#[test]
fn a_broken_exercise_names_the_file_the_line_and_the_reason() {
    let langs = Config::default().language_table().unwrap();
    let (_t, dir) = broken_copy(|t| t.replace("language = \"python\"", "language = \"cobol\""));
    let e = load(&dir, &langs).unwrap_err();
    assert!(e.file.ends_with("exercise.toml"));
    assert!(e.reason.contains("unknown language \"cobol\""), "{e}");
    assert_eq!(e.line, Some(2));

    let (_t, dir) = broken_copy(|t| t.replacen("expected = ", "expectd = ", 1));
    let e = load(&dir, &langs).unwrap_err();
    assert!(e.reason.contains("expectd"), "{e}");
    assert!(e.line.is_some(), "{e}");

    let (_t, dir) = broken_copy(|t| t.replace("\ncommand = ", "\nnot_command = "));
    let e = load(&dir, &langs).unwrap_err();
    assert!(e.to_string().contains("exercise.toml:"), "{e}");

    let (_t, dir) = broken_copy(|t| {
        t.replace(
            "\ncommand = ",
            "\nexpect = \"REPLBOX-PASS {nonce}\"\ncommand = ",
        )
    });
    let e = load(&dir, &langs).unwrap_err();
    assert!(e.reason.contains("`expect` is gone"), "{e}");
    assert!(e.line.is_some(), "{e}");

    let (_t, dir) = broken_copy(|t| t.replace("\ncommand = ", "\nshow = \"all\"\ncommand = "));
    let e = load(&dir, &langs).unwrap_err();
    assert!(e.reason.contains("`message`, `output`, `none`"), "{e}");

    let (_t, dir) = broken_copy(|t| t.to_string());
    std::fs::remove_file(dir.join("prompt.md")).unwrap();
    let e = load(&dir, &langs).unwrap_err();
    assert!(e.file.ends_with("prompt.md"), "{e}");
}
