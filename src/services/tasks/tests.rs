//! Unit tests of tasks: names per token, the start-up rename.

use super::*;
use crate::sessions::{owner_display, SandboxRow};

fn row(owner: &str, kind: &str, token: Option<&str>, volume: Option<&str>) -> SandboxRow {
    SandboxRow {
        owner: owner.into(),
        kind: kind.into(),
        token_hash: token.map(Into::into),
        container_id: Some("c0ffee".into()),
        created_at: 1,
        container_at: 1,
        last_active: 1,
        idle_ttl_secs: 60,
        image: None,
        env: "[]".into(),
        expired_at: None,
        workspace_volume: volume.map(Into::into),
    }
}

#[test]
fn the_same_task_id_is_two_names_under_two_tokens() {
    let a = Tenant("0123456789abcdef01234567".into());
    let b = Tenant("fedcba9876543210fedcba98".into());
    assert_eq!(owner_of(&a, "jovyan"), "t-0123456789abcdef-jovyan");
    assert_ne!(owner_of(&a, "jovyan"), owner_of(&b, "jovyan"));
    // Naming another token's namespace is only a taskId of one's own.
    assert_ne!(
        owner_of(&b, "0123456789abcdef-jovyan"),
        owner_of(&a, "jovyan")
    );
    assert_eq!(owner_display(&owner_of(&a, "my-task.1")), "my-task.1");
    assert_eq!(owner_display("t-old-name"), "old-name");
}

#[tokio::test]
async fn old_names_move_into_their_tokens_namespace_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let fp = "0123456789abcdef01234567";
    store
        .upsert(&row("t-jovyan", "api", Some(fp), None))
        .await
        .unwrap();
    store
        .upsert(&row("t-kept", "api", Some(fp), Some("vol-of-kept")))
        .await
        .unwrap();
    store
        .upsert(&row("b-browser", "browser", None, None))
        .await
        .unwrap();
    let volume = |owner: &str| format!("rb-ws-{owner}");
    assert_eq!(namespace_old_names(&store, volume).await.unwrap(), 2);
    assert_eq!(
        namespace_old_names(&store, volume).await.unwrap(),
        0,
        "once"
    );
    let mut rows = store.all().await.unwrap();
    rows.sort_by(|a, b| a.owner.cmp(&b.owner));
    let got: Vec<(&str, Option<&str>, Option<&str>)> = rows
        .iter()
        .map(|r| {
            (
                r.owner.as_str(),
                r.workspace_volume.as_deref(),
                r.container_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("b-browser", None, Some("c0ffee")),
            (
                "t-0123456789abcdef-jovyan",
                Some("rb-ws-t-jovyan"),
                Some("c0ffee")
            ),
            (
                "t-0123456789abcdef-kept",
                Some("vol-of-kept"),
                Some("c0ffee")
            ),
        ]
    );
}
