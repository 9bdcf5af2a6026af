//! Unit tests of the migration engine: file names, checksums, planning and the bundled set.

use std::path::Path;

use super::set::{FileKind, parse_file_name};
use super::*;

fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn applied(m: &Migration) -> AppliedMigration {
    AppliedMigration {
        version: m.version,
        name: m.name.clone(),
        checksum: m.checksum.clone(),
        applied_at: jiff::Timestamp::UNIX_EPOCH,
        execution_ms: 1,
    }
}

fn set3() -> MigrationSet {
    MigrationSet::from_files(files(&[
        ("1_a.up.sql", "create table a();"),
        ("1_a.down.sql", "drop table a;"),
        ("2_b.up.sql", "create table b();"),
        ("2_b.down.sql", "drop table b;"),
        ("3_c.sql", "create table c();"),
    ]))
    .unwrap()
}

#[test]
fn parses_file_names() {
    assert_eq!(
        parse_file_name("20250101000001_identity_core.up.sql").unwrap(),
        Some((20250101000001, "identity_core".into(), FileKind::Up))
    );
    assert_eq!(
        parse_file_name("7_x_y.down.sql").unwrap(),
        Some((7, "x_y".into(), FileKind::Down))
    );
    assert_eq!(
        parse_file_name("0003_simple.sql").unwrap(),
        Some((3, "simple".into(), FileKind::Up))
    );
    assert_eq!(parse_file_name("README.md").unwrap(), None);
    assert_eq!(parse_file_name("..data").unwrap(), None);
    assert_eq!(parse_file_name(".1_hidden.sql").unwrap(), None);
    for bad in [
        "x_name.sql",
        "name.up.sql",
        "1_.up.sql",
        "_a.sql",
        "0_zero.sql",
        "99999999999999999999_big.sql",
        "-1_neg.sql",
        "1_nul\0name.sql",
        "1_new\nline.sql",
        "1_sp ace.sql",
    ] {
        let e = parse_file_name(bad).unwrap_err();
        assert_eq!(e.category(), "parse", "{bad}: {e}");
    }
}

#[test]
fn from_files_builds_sorted_set() {
    let set = set3();
    assert_eq!(set.len(), 3);
    assert_eq!(set.latest_version(), Some(3));
    let v: Vec<i64> = set.migrations().iter().map(|m| m.version).collect();
    assert_eq!(v, [1, 2, 3]);
    assert_eq!(
        set.get(2).unwrap().down_sql.as_deref(),
        Some("drop table b;")
    );
    assert_eq!(set.get(3).unwrap().down_sql, None);
    assert_eq!(set.get(1).unwrap().checksum, checksum("create table a();"));
    assert_eq!(
        checksum(""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn from_files_rejects_duplicates_and_orphans() {
    let dup = MigrationSet::from_files(files(&[("1_a.up.sql", "x"), ("1_a.sql", "y")]));
    assert!(matches!(
        dup,
        Err(MigrateError::Duplicate { version: 1, .. })
    ));
    let renamed = MigrationSet::from_files(files(&[("1_a.up.sql", "x"), ("1_b.up.sql", "y")]));
    assert!(matches!(
        renamed,
        Err(MigrateError::Duplicate { version: 1, .. })
    ));
    let mismatch = MigrationSet::from_files(files(&[("1_a.up.sql", "x"), ("1_b.down.sql", "y")]));
    assert!(matches!(mismatch, Err(MigrateError::Duplicate { .. })));
    let nul = MigrationSet::from_files(files(&[("1_a.up.sql", "select 1;\0")]));
    assert!(matches!(nul, Err(MigrateError::Parse { .. })), "{nul:?}");
    let orphan = MigrationSet::from_files(files(&[("2_a.down.sql", "x")]));
    assert!(
        matches!(orphan, Err(MigrateError::Parse { .. })),
        "{orphan:?}"
    );
    let two_downs = MigrationSet::from_files(files(&[
        ("1_a.up.sql", "x"),
        ("1_a.down.sql", "y"),
        ("01_a.down.sql", "z"),
    ]));
    assert!(matches!(two_downs, Err(MigrateError::Duplicate { .. })));
    let ignored = MigrationSet::from_files(files(&[("notes.txt", "x"), ("..data", "")])).unwrap();
    assert!(ignored.is_empty());
}

#[test]
fn merge_rules() {
    let base = set3();
    let extra = MigrationSet::from_files(files(&[
        ("3_c.sql", "create table c();"),
        ("3_c.down.sql", "drop table c;"),
        ("4_d.sql", "create table d();"),
    ]))
    .unwrap();
    let merged = base.clone().merge(extra).unwrap();
    assert_eq!(merged.latest_version(), Some(4));
    assert_eq!(
        merged.get(3).unwrap().down_sql.as_deref(),
        Some("drop table c;")
    );
    let conflicting =
        MigrationSet::from_files(files(&[("2_b.sql", "create table b2();")])).unwrap();
    let e = base.clone().merge(conflicting).unwrap_err();
    assert!(
        matches!(e, MigrateError::Duplicate { version: 2, .. }),
        "{e}"
    );
    let other_down = MigrationSet::from_files(files(&[
        ("2_b.up.sql", "create table b();"),
        ("2_b.down.sql", "drop table b cascade;"),
    ]))
    .unwrap();
    assert!(base.clone().merge(other_down).is_err());
    assert_eq!(base.clone().merge(base.clone()).unwrap(), base);
}

#[test]
fn plan_up_down_and_noop() {
    let set = set3();
    let p = plan(&set, &[], None).unwrap();
    assert_eq!(p.from, None);
    assert_eq!(p.to, Some(3));
    let steps: Vec<(i64, Direction)> = p.steps.iter().map(|s| (s.version, s.direction)).collect();
    assert_eq!(
        steps,
        [(1, Direction::Up), (2, Direction::Up), (3, Direction::Up)]
    );

    let all: Vec<AppliedMigration> = set.migrations().iter().map(applied).collect();
    let p = plan(&set, &all, None).unwrap();
    assert!(p.is_empty());
    assert_eq!((p.from, p.to), (Some(3), Some(3)));

    // 3 has no down
    let e = plan(&set, &all, Some(1)).unwrap_err();
    assert!(matches!(e, MigrateError::MissingDown { version: 3 }), "{e}");

    let two = &all[..2];
    let p = plan(&set, two, Some(0)).unwrap();
    let steps: Vec<(i64, Direction)> = p.steps.iter().map(|s| (s.version, s.direction)).collect();
    assert_eq!(steps, [(2, Direction::Down), (1, Direction::Down)]);
    assert_eq!((p.from, p.to), (Some(2), None));

    let p = plan(&set, &all[..1], Some(2)).unwrap();
    assert_eq!(p.steps.len(), 1);
    assert_eq!((p.from, p.to), (Some(1), Some(2)));
}

#[test]
fn plan_detects_drift_unknown_and_out_of_order() {
    let set = set3();
    let mut drifted = applied(set.get(1).unwrap());
    drifted.checksum = checksum("something else");
    let e = plan(&set, &[drifted], None).unwrap_err();
    assert!(
        matches!(e, MigrateError::ChecksumDrift { version: 1, .. }),
        "{e}"
    );
    assert_eq!(e.category(), "checksum_drift");

    let mut unknown = applied(set.get(1).unwrap());
    unknown.version = 9;
    let e = plan(&set, &[applied(set.get(1).unwrap()), unknown], None).unwrap_err();
    assert!(
        matches!(e, MigrateError::UnknownApplied { version: 9 }),
        "{e}"
    );

    // 1 and 3 applied, 2 pending
    let gap = [applied(set.get(1).unwrap()), applied(set.get(3).unwrap())];
    let e = plan(&set, &gap, None).unwrap_err();
    assert!(
        matches!(
            e,
            MigrateError::OutOfOrder {
                version: 2,
                latest_applied: 3
            }
        ),
        "{e}"
    );
    // an empty set cannot explain any history
    let e = plan(&MigrationSet::default(), &gap, None).unwrap_err();
    assert_eq!(e.category(), "unknown_applied");
    assert!(
        plan(&MigrationSet::default(), &[], None)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn identifiers() {
    // The rules of `naming::Ident::existing` (one identifier type): keywords are valid names
    // (always quoted), `public` too (an existing schema), `$` is not.
    for ok in ["t", "_x", "tenant_0001", "user", "public", &"a".repeat(63)] {
        assert!(validate_identifier(ok).is_ok(), "{ok}");
    }
    assert_eq!(quote_identifier("user").unwrap(), "\"user\"");
    for bad in [
        "a$b",
        "",
        "A",
        "1a",
        "a-b",
        "a b",
        "a\"b",
        "é",
        &"a".repeat(64),
        "$a",
    ] {
        assert_eq!(
            validate_identifier(bad).unwrap_err().category(),
            "invalid_identifier",
            "{bad}"
        );
    }
    assert_eq!(quote_identifier("abc").unwrap(), "\"abc\"");
}

#[test]
fn bundled_matches_the_directory() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    let loaded = MigrationSet::load_dir(&dir).unwrap();
    let bundled = MigrationSet::bundled();
    assert_eq!(bundled, loaded);
    // the baseline data model: seven layered migrations, all reversible
    let baseline: Vec<i64> = (1..=7).map(|i| 20250101000000 + i).collect();
    let versions: Vec<i64> = bundled.migrations().iter().map(|m| m.version).collect();
    assert_eq!(versions[..7], baseline[..]);
    assert!(bundled.migrations().iter().all(|m| m.down_sql.is_some()));
}

#[test]
fn error_messages() {
    let e = MigrateError::Sql {
        version: 3,
        message: "relation \"x\" already exists".into(),
        source: None,
    };
    assert_eq!(
        e.to_string(),
        "migration 3 failed: relation \"x\" already exists"
    );
    assert_eq!(e.category(), "sql");
    assert!(!e.is_transient());
    // Only the connection, the lock and leadership are worth a retry: a broken history table
    // (the tenant's own doing) is not.
    let db = MigrateError::Database {
        operation: "reading the migration history",
        message: "relation does not exist".into(),
        source: None,
    };
    assert!(!db.is_transient());
    assert!(MigrateError::Fenced(crate::fence::Fenced).is_transient());
    assert!(
        MigrateError::Unavailable {
            operation: "x".into(),
            message: "y".into(),
            source: None,
        }
        .is_transient()
    );
}
