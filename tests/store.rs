//! The store on both backends: every test here runs once on SQLite (a file
//! in a temporary data dir) and once on PostgreSQL (a database of its own
//! on the cluster `make postgres` runs, dropped at the end). The same
//! calls, the same answers: sandboxes' records, teachers, classes,
//! students, checks, the cookie sessions, and migrations run twice.

mod common;

use common::{within, PgDatabase};
use replbox::classroom::{Assigned, Classroom, ClassroomError, CHECK_FILES_KEPT};
use replbox::db::Db;
use replbox::exercises::grade::Report;
use replbox::on_db;
use replbox::sessions::{SandboxRow, Store};
use std::collections::BTreeMap;

/// Where a test's store lives: a temporary data dir (SQLite), or a
/// database of its own (PostgreSQL, dropped at the end) and a data dir
/// that must stay empty.
enum Place {
    Sqlite(tempfile::TempDir),
    Postgres(PgDatabase, tempfile::TempDir),
}

impl Place {
    async fn new(postgres: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        match postgres {
            false => Place::Sqlite(dir),
            true => Place::Postgres(PgDatabase::new().await, dir),
        }
    }

    /// The store, as a server opens it from its configuration.
    async fn open(&self) -> Db {
        let db = match self {
            Place::Sqlite(dir) => Db::open(dir.path(), None).await.unwrap(),
            Place::Postgres(pg, dir) => {
                let db = Db::open(dir.path(), Some(&pg.url)).await.unwrap();
                assert!(
                    std::fs::read_dir(dir.path()).unwrap().next().is_none(),
                    "no SQLite file when the store is PostgreSQL"
                );
                db
            }
        };
        let expected = match self {
            Place::Sqlite(_) => "sqlite",
            Place::Postgres(..) => "postgres",
        };
        assert_eq!(db.backend(), expected);
        db
    }
}

/// `sqlite::name` and `postgres::name`, each running `name(db, place)`.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    super::within(60, async {
                        let place = super::Place::new(false).await;
                        let db = place.open().await;
                        super::$name(db.clone(), &place).await;
                        db.close().await;
                    })
                    .await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    super::within(60, async {
                        let place = super::Place::new(true).await;
                        let db = place.open().await;
                        super::$name(db.clone(), &place).await;
                        db.close().await;
                    })
                    .await
                }
            )*
        }
    };
}

on_both!(
    sandbox_records,
    migrations_run_once,
    teachers_and_classes,
    students_join_recover_and_leave,
    checks_keep_the_newest_files_and_rank_students,
    cookie_sessions,
);

fn row(owner: &str) -> SandboxRow {
    SandboxRow {
        owner: owner.into(),
        kind: "api".into(),
        token_hash: Some("f00d".into()),
        container_id: None,
        created_at: 1_700_000_000,
        container_at: 1_700_000_000,
        last_active: 1_700_000_000,
        idle_ttl_secs: 600,
        image: Some("replbox-sandbox:latest".into()),
        env: r#"[["A","1"]]"#.into(),
        expired_at: None,
        workspace_volume: None,
    }
}

async fn sandbox_records(db: Db, _: &Place) {
    let store = Store::new(db);
    assert!(store.all().await.unwrap().is_empty());
    store.upsert(&row("t-a")).await.unwrap();
    store.upsert(&row("b")).await.unwrap();

    // An upsert changes the clock and the container, never the owner's
    // kind, token, image or environment.
    let mut changed = row("t-a");
    changed.kind = "browser".into();
    changed.token_hash = None;
    changed.container_id = Some("c1".into());
    changed.container_at = 1_700_000_100;
    changed.last_active = 1_700_000_200;
    changed.expired_at = Some(1_700_000_300);
    changed.workspace_volume = Some("vol-a".into());
    changed.env = "[]".into();
    store.upsert(&changed).await.unwrap();
    let mut all = store.all().await.unwrap();
    all.sort_by(|a, b| a.owner.cmp(&b.owner));
    assert_eq!(all.len(), 2);
    let a = &all[1];
    assert_eq!(a.owner, "t-a");
    assert_eq!(a.kind, "api");
    assert_eq!(a.token_hash.as_deref(), Some("f00d"));
    assert_eq!(a.env, r#"[["A","1"]]"#);
    assert_eq!(a.container_id.as_deref(), Some("c1"));
    assert_eq!(
        (a.container_at, a.last_active, a.expired_at),
        (1_700_000_100, 1_700_000_200, Some(1_700_000_300))
    );
    assert_eq!(a.workspace_volume.as_deref(), Some("vol-a"));
    assert_eq!(all[0], row("b"));

    // A rename keeps a recorded volume, and records one where none was.
    store.rename_owner("t-a", "t-ns-a", "other").await.unwrap();
    store.rename_owner("b", "t-ns-b", "vol-b").await.unwrap();
    let mut all = store.all().await.unwrap();
    all.sort_by(|a, b| a.owner.cmp(&b.owner));
    let owners: Vec<_> = all.iter().map(|r| r.owner.as_str()).collect();
    assert_eq!(owners, ["t-ns-a", "t-ns-b"]);
    assert_eq!(all[0].workspace_volume.as_deref(), Some("vol-a"));
    assert_eq!(all[1].workspace_volume.as_deref(), Some("vol-b"));
    // Onto an owner that exists: refused, both rows as they were.
    assert!(store.rename_owner("t-ns-a", "t-ns-b", "x").await.is_err());
    assert_eq!(store.all().await.unwrap().len(), 2);

    store.delete("t-ns-a").await.unwrap();
    store.delete("nobody").await.unwrap();
    let all = store.all().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].owner, "t-ns-b");
}

/// Opening a store that exists runs no migration twice and keeps its rows
/// (a restart; two servers on one PostgreSQL).
async fn migrations_run_once(db: Db, place: &Place) {
    Store::new(db.clone()).upsert(&row("kept")).await.unwrap();
    // Two servers starting at once: each migrates, one at a time.
    let (a, again) = tokio::join!(place.open(), place.open());
    a.close().await;
    let rows = Store::new(again.clone()).all().await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].owner, "kept");
    let applied: Vec<(i64,)> = on_db!(&again, p => {
        sqlx::query_as("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(p)
            .await
            .unwrap()
    });
    let versions: Vec<i64> = applied.into_iter().map(|(v,)| v).collect();
    assert_eq!(versions, (1..=versions.len() as i64).collect::<Vec<_>>());
    assert!(versions.len() >= 6);
    again.close().await;
}

async fn teachers_and_classes(db: Db, _: &Place) {
    let classroom = Classroom::new(db.clone());
    let hopper = classroom
        .add_teacher("Ms Hopper", "compilers-rule")
        .await
        .unwrap();
    assert!(matches!(
        classroom
            .add_teacher(" Ms Hopper ", "another-password")
            .await,
        Err(ClassroomError::TeacherExists(_))
    ));
    assert_eq!(
        classroom
            .login("Ms Hopper", "compilers-rule")
            .await
            .unwrap(),
        hopper
    );
    assert!(matches!(
        classroom.login("Ms Hopper", "wrong-password").await,
        Err(ClassroomError::BadLogin)
    ));
    assert!(matches!(
        classroom.login("Nobody", "compilers-rule").await,
        Err(ClassroomError::BadLogin)
    ));

    let a = classroom.create_class(&hopper, " 7B ").await.unwrap();
    let b = classroom.create_class(&hopper, "8C").await.unwrap();
    assert_eq!(a.name, "7B");
    assert_ne!(a.code, b.code);
    let names: Vec<_> = classroom
        .classes_of(&hopper)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"7B".to_string()) && names.contains(&"8C".to_string()));
    assert_eq!(classroom.class(&a.id).await.unwrap().unwrap().code, a.code);
    assert!(classroom.class("nope").await.unwrap().is_none());

    // Every exercise until the teacher chooses; a repeated one is one.
    assert!(matches!(
        classroom.assigned(&a.id).await.unwrap(),
        Assigned::All
    ));
    classroom
        .assign(&a.id, &["x".into(), "y".into(), "x".into()])
        .await
        .unwrap();
    match classroom.assigned(&a.id).await.unwrap() {
        Assigned::Only(set) => assert_eq!(set.into_iter().collect::<Vec<_>>(), ["x", "y"]),
        Assigned::All => panic!("the teacher chose"),
    }
    classroom.assign(&a.id, &[]).await.unwrap();
    assert!(!classroom.assigned(&a.id).await.unwrap().sees("x"));

    // A new code; an old short one is lengthened at start-up.
    let code = classroom.new_class_code(&a.id).await.unwrap();
    assert_ne!(code, a.code);
    on_db!(&db, p => {
        sqlx::query("UPDATE classes SET code = 'ABCDEF' WHERE id = $1")
            .bind(&b.id)
            .execute(p)
            .await
            .map(|_| ())
    })
    .unwrap();
    assert_eq!(classroom.lengthen_short_codes().await.unwrap(), 1);
    let b_now = classroom.class(&b.id).await.unwrap().unwrap();
    assert_eq!(b_now.code.len(), replbox::classroom::CLASS_CODE_LEN);
    assert_eq!(classroom.lengthen_short_codes().await.unwrap(), 0);
}

async fn students_join_recover_and_leave(db: Db, _: &Place) {
    let classroom = Classroom::new(db);
    let t = classroom
        .add_teacher("Mr Turing", "enigma-1234")
        .await
        .unwrap();
    let class = classroom.create_class(&t, "9A").await.unwrap();
    assert!(matches!(
        classroom.join("NOPENOPENOPE", "Ada", "owner-ada").await,
        Err(ClassroomError::NoSuchClass)
    ));
    let ada = classroom
        .join(&class.code.to_lowercase(), "Ada", "owner-ada")
        .await
        .unwrap();
    let recovery = ada.recovery_code.clone().expect("shown once");
    // The same browser again: the same student, no new code.
    let again = classroom
        .join(&class.code, "Someone else", "owner-ada")
        .await
        .unwrap();
    assert_eq!(again.student.id, ada.student.id);
    assert!(again.recovery_code.is_none());
    assert!(matches!(
        classroom.join(&class.code, "Ada", "owner-other").await,
        Err(ClassroomError::NameTaken(_))
    ));
    let bob = classroom
        .join(&class.code, "Bob", "owner-bob")
        .await
        .unwrap();

    // Recovery on another browser; refused on a browser that joined.
    assert_eq!(
        classroom.recover(&recovery, "owner-new").await.unwrap().id,
        ada.student.id
    );
    assert!(matches!(
        classroom.recover(&recovery, "owner-bob").await,
        Err(ClassroomError::AlreadyJoined)
    ));
    assert!(matches!(
        classroom.recover("wrong", "owner-new").await,
        Err(ClassroomError::BadRecoveryCode)
    ));

    // The teacher renames (not onto a name in use) and removes.
    assert_eq!(
        classroom
            .rename_student(&class.id, &ada.student.id, "Ada L.")
            .await
            .unwrap()
            .display_name,
        "Ada L."
    );
    assert!(matches!(
        classroom
            .rename_student(&class.id, &bob.student.id, "Ada L.")
            .await,
        Err(ClassroomError::NameTaken(_))
    ));
    assert!(matches!(
        classroom
            .rename_student("other", &bob.student.id, "B")
            .await,
        Err(ClassroomError::NoSuchStudent)
    ));
    let report = Report {
        score: 1,
        max_score: 2,
        tests: vec![],
    };
    classroom
        .record_check(&bob.student.id, "x", &report, &BTreeMap::new())
        .await
        .unwrap();
    let removed = classroom
        .remove_student(&class.id, &bob.student.id)
        .await
        .unwrap();
    assert_eq!(removed.owner, "owner-bob");
    assert!(classroom
        .student_by_owner("owner-bob")
        .await
        .unwrap()
        .is_none());
    assert!(classroom
        .progress(&bob.student.id)
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        classroom.remove_student(&class.id, &bob.student.id).await,
        Err(ClassroomError::NoSuchStudent)
    ));
    // The name is free again.
    classroom
        .join(&class.code, "Bob", "owner-bob-2")
        .await
        .unwrap();
}

async fn checks_keep_the_newest_files_and_rank_students(db: Db, _: &Place) {
    let classroom = Classroom::new(db);
    let t = classroom
        .add_teacher("Ms Noether", "rings-and-ideals")
        .await
        .unwrap();
    let class = classroom.create_class(&t, "10D").await.unwrap();
    let emmy = classroom
        .join(&class.code, "Emmy", "o-emmy")
        .await
        .unwrap()
        .student;
    let carl = classroom
        .join(&class.code, "Carl", "o-carl")
        .await
        .unwrap()
        .student;
    let _dora = classroom
        .join(&class.code, "Dora", "o-dora")
        .await
        .unwrap()
        .student;

    // More checks than keep their files, all within a second or two: the
    // newest keep theirs, in the order they were made.
    let mut ids = Vec::new();
    for i in 0..CHECK_FILES_KEPT + 3 {
        let files = BTreeMap::from([("main.py".to_string(), format!("v{i}").into_bytes())]);
        let report = Report {
            score: i as u32 % 3,
            max_score: 2,
            tests: vec![],
        };
        ids.push(
            classroom
                .record_check(&emmy.id, "hello", &report, &files)
                .await
                .unwrap(),
        );
    }
    for (i, id) in ids.iter().enumerate() {
        let check = classroom.check(id).await.unwrap().unwrap();
        let files = check.files_text();
        if i < 3 {
            assert!(files.is_empty(), "check {i} keeps no files: {files:?}");
        } else {
            assert_eq!(files["main.py"], format!("v{i}"), "check {i}");
        }
    }
    let report = Report {
        score: 1,
        max_score: 2,
        tests: vec![],
    };
    classroom
        .record_check(&carl.id, "hello", &report, &BTreeMap::new())
        .await
        .unwrap();
    classroom
        .record_check(&carl.id, "other", &report, &BTreeMap::new())
        .await
        .unwrap();

    let progress = classroom.progress(&emmy.id).await.unwrap();
    assert_eq!(progress["hello"], (2, (CHECK_FILES_KEPT + 3) as i64));
    let progress = classroom.progress(&carl.id).await.unwrap();
    assert_eq!(progress.len(), 2);

    // Best score first, those with no check last; the last check linked.
    let rows = classroom.standings(&class.id, "hello").await.unwrap();
    let order: Vec<_> = rows.iter().map(|r| r.display_name.as_str()).collect();
    assert_eq!(order, ["Emmy", "Carl", "Dora"]);
    assert_eq!(rows[0].best_score, Some(2));
    assert_eq!(rows[0].max_score, Some(2));
    assert_eq!(rows[0].attempts, (CHECK_FILES_KEPT + 3) as i64);
    assert_eq!(rows[0].last_check_id.as_ref(), ids.last());
    assert_eq!(rows[1].attempts, 1);
    assert_eq!(rows[2].best_score, None);
    assert_eq!(rows[2].attempts, 0);
    assert_eq!(rows[2].last_check_id, None);
    let csv = replbox::classroom::standings_csv(&rows);
    assert!(csv.starts_with("student,best_score"));
    assert!(csv.contains("\nDora,,,0,\n"), "{csv}");

    let (check, who) = classroom
        .check_with_student(ids.last().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(who.id, emmy.id);
    assert_eq!(check.exercise, "hello");
    assert!(classroom
        .check_with_student("nope")
        .await
        .unwrap()
        .is_none());
}

async fn cookie_sessions(db: Db, _: &Place) {
    use tower_sessions::session::{Id, Record};
    use tower_sessions::session_store::{ExpiredDeletion, SessionStore};
    let store = db.cookie_store().await.unwrap();
    // Twice: a second server on the same database.
    let _ = db.cookie_store().await.unwrap();
    let now = time::OffsetDateTime::now_utc();
    let mut live = Record {
        id: Id::default(),
        data: Default::default(),
        expiry_date: now + time::Duration::days(1),
    };
    live.data
        .insert("owner".into(), serde_json::json!("browser-1"));
    store.create(&mut live).await.unwrap();
    let mut old = Record {
        id: Id::default(),
        data: Default::default(),
        expiry_date: now - time::Duration::days(1),
    };
    store.create(&mut old).await.unwrap();
    let loaded = store.load(&live.id).await.unwrap().unwrap();
    assert_eq!(loaded.data["owner"], "browser-1");
    assert!(store.load(&old.id).await.unwrap().is_none(), "expired");

    live.data.insert("student".into(), serde_json::json!(7));
    store.save(&live).await.unwrap();
    assert_eq!(
        store.load(&live.id).await.unwrap().unwrap().data["student"],
        7
    );

    store.delete_expired().await.unwrap();
    let rows: (i64,) = on_db!(&db, p => {
        let table = match db.backend() {
            "postgres" => "tower_sessions.session",
            _ => "tower_sessions",
        };
        sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(p)
            .await
            .unwrap()
    });
    assert_eq!(rows.0, 1, "the expired one purged");
    store.delete(&live.id).await.unwrap();
    assert!(store.load(&live.id).await.unwrap().is_none());
}
