use super::*;

fn load(text: &str) -> Result<Catalog, CatalogError> {
    Catalog::from_sources(&[("cat.toml".to_string(), text.to_string())])
}

fn problems(text: &str) -> Vec<String> {
    match load(text) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems(),
    }
}

const GOOD: &str = r#"
[catalogue]
name = "demo"
version = "1"

[terms]
pin = ["pin", "pin code"]

[[symptom]]
id = "pin-locked"
title = "PIN locked"
keywords = ["pin locked", "regist*"]
together = [{ all = ["@pin", ["locked", "blocked"]] }]
checks = ["Ask how many attempts"]
fix = "Reset the key"
"#;

#[test]
fn good_catalogue_loads() {
    let c = load(GOOD).unwrap();
    assert_eq!(c.name, "demo");
    assert_eq!(c.symptoms.len(), 1);
    let s = &c.symptoms[0];
    assert_eq!(s.tags, vec!["pin-locked"]);
    assert_eq!(s.line, 9);
    assert!(s.keywords[1].phrase.prefix);
    assert_eq!(s.together[0].groups[0].len(), 2);
    assert_eq!(s.together[0].groups[0][0].origin, "@pin");
    assert!(c.digest.starts_with("sha256:"));
}

#[test]
fn the_builtin_catalogue_is_valid() {
    let c = Catalog::builtin();
    assert!(c.symptoms.len() >= 10);
}

#[test]
fn syntax_error_names_the_line() {
    let p = problems("[catalogue]\nname = \"x\"\nversion = \n");
    assert_eq!(p.len(), 1);
    assert!(p[0].starts_with("cat.toml:3: "), "{p:?}");
}

#[test]
fn every_problem_is_reported_with_its_line() {
    let text = r#"[catalogue]
name = "demo"
version = "1"

[[symptom]]
id = "Bad_Id"
title = "x"
keywords = ["pin locked", "  ", "a*b"]
patterns = ['(unclosed']
checks = []
fix = "y"
reply = "{title} {nope}"

[[symptom]]
id = "second"
title = "y"
keywords = ["@missing"]
together = [{ all = ["one"] }]
checks = ["c"]
fix = "z"
overrides = ["ghost"]
"#;
    let p = problems(text);
    let joined = p.join("\n");
    assert!(
        joined.contains("cat.toml:6: symptom `Bad_Id`: field `id`: `Bad_Id` is not kebab-case"),
        "{joined}"
    );
    assert!(
        joined.contains("cat.toml:8: symptom `Bad_Id`: field `keywords`: `  `: phrase is empty"),
        "{joined}"
    );
    assert!(
        joined.contains("`a*b`: `*` may only end a phrase"),
        "{joined}"
    );
    assert!(
        joined.contains("cat.toml:9: symptom `Bad_Id`: field `patterns`: `(unclosed`"),
        "{joined}"
    );
    assert!(
        joined.contains("cat.toml:10: symptom `Bad_Id`: field `checks`"),
        "{joined}"
    );
    assert!(
        joined
            .contains("cat.toml:12: symptom `Bad_Id`: field `reply`: unknown placeholder `{nope}`"),
        "{joined}"
    );
    assert!(
        joined.contains(
            "cat.toml:17: symptom `second`: field `keywords`: `@missing` names no term set"
        ),
        "{joined}"
    );
    assert!(
        joined.contains("cat.toml:18: symptom `second`: field `together[0]`: `all` has 1 group(s)"),
        "{joined}"
    );
    assert!(p.len() >= 8, "{joined}");
}

#[test]
fn unknown_field_is_named_with_its_line() {
    let text = "[catalogue]\nname = \"d\"\nversion = \"1\"\n\n[[symptom]]\nid = \"a\"\ntitle = \"t\"\nkeywrods = [\"x\"]\nchecks = [\"c\"]\nfix = \"f\"\n";
    let p = problems(text);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("cat.toml:8: symptom `a`: unknown field `keywrods`"),
        "{p:?}"
    );
}

#[test]
fn missing_field_is_reported() {
    let text = "[catalogue]\nname = \"d\"\nversion = \"1\"\n\n[[symptom]]\nid = \"a\"\ntitle = \"t\"\nkeywords = [\"x\"]\nfix = \"f\"\n";
    let p = problems(text);
    assert!(p[0].contains("missing field `checks`"), "{p:?}");
    assert!(p[0].starts_with("cat.toml:5:"), "{p:?}");
}

#[test]
fn duplicate_ids_across_files() {
    let r = Catalog::from_sources(&[
        ("a.toml".to_string(), GOOD.to_string()),
        ("b.toml".to_string(), GOOD.replace("demo", "other")),
    ]);
    let p = r.unwrap_err().problems();
    assert_eq!(p.len(), 1);
    assert!(
        p[0].starts_with(
            "b.toml:9: symptom `pin-locked`: field `id`: duplicate id, first defined at a.toml:9"
        ),
        "{p:?}"
    );
}

#[test]
fn regex_over_the_size_limit_is_refused() {
    let text = GOOD.replace(
        "checks = [",
        "patterns = ['(\\w{1,200}){1,200}x']\nchecks = [",
    );
    let p = problems(&text);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("compiles to more than the limit"), "{p:?}");
}

#[test]
fn symptom_without_evidence_is_refused() {
    let text = "[catalogue]\nname = \"d\"\nversion = \"1\"\n[[symptom]]\nid = \"a\"\ntitle = \"t\"\nchecks = [\"c\"]\nfix = \"f\"\n";
    let p = problems(text);
    assert!(p[0].contains("has no evidence"), "{p:?}");
}

#[test]
fn load_dir_reports_missing_and_empty_dirs() {
    let d = tempfile::tempdir().unwrap();
    assert!(matches!(
        Catalog::load_dir(d.path()),
        Err(CatalogError::Empty(_))
    ));
    assert!(matches!(
        Catalog::load_dir(&d.path().join("nope")),
        Err(CatalogError::Io { .. })
    ));
    std::fs::write(d.path().join("x.toml"), GOOD).unwrap();
    assert_eq!(Catalog::load_dir(d.path()).unwrap().symptoms.len(), 1);
}

#[test]
fn shorthand_is_checked_and_phrases_must_use_the_long_form() {
    let with = |table: &str| {
        GOOD.replace(
            "[terms]",
            &format!("[settings.shorthand]\n{table}\n\n[terms]"),
        )
    };
    let c = load(&with("pn = \"pin\"")).unwrap();
    assert_eq!(c.shorthand, vec![("pn".to_string(), "pin".to_string())]);
    // A key of two words, and a key standing for nothing: refused with their line.
    let p = problems(&with("\"two words\" = \"pin\"\nx = \"\""));
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p[0].starts_with("cat.toml:7: [settings.shorthand]: `two words`: expected one word"),
        "{p:?}"
    );
    assert!(
        p[1].contains("`x`: expected the words it stands for"),
        "{p:?}"
    );
    // A phrase that writes the short form could never match.
    let p = problems(&with("code = \"pin code\""));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].contains("phrase `pin code` uses `code`, which [settings.shorthand] reads as `pin code`: write `pin pin code`"),
        "{p:?}"
    );
}

#[test]
fn term_labels_name_their_sets_and_unknown_sets_are_refused() {
    let with = |table: &str| {
        GOOD.replace(
            "[[symptom]]",
            &format!("[term_labels]\n{table}\n\n[[symptom]]"),
        )
    };
    let c = load(&with("pin = \"a PIN\"")).unwrap();
    assert_eq!(c.term_labels.get("@pin").map(String::as_str), Some("a PIN"));
    let p = problems(&with("pn = \"a PIN\"\npin = \" \""));
    assert_eq!(p.len(), 2, "{p:?}");
    // Each problem points at its line of the table, not at the set.
    assert!(
        p.iter()
            .any(|p| p.starts_with("cat.toml:10: [term_labels]: `pn`")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|p| p.starts_with("cat.toml:11: [term_labels]: `pin`")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|p| p
                .contains("[term_labels]: `pn` names no term set; expected one of [terms]: @pin")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|p| p.contains("[term_labels]: `pin`: expected a few words")),
        "{p:?}"
    );
}
