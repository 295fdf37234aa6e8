//! `triage schema` against the loader: the schema names exactly the fields the loader accepts,
//! every catalogue in the repository passes it, and invalid catalogues fail it wherever a
//! schema can tell.

use std::path::{Path, PathBuf};

use regex::Regex;
use serde_json::Value;
use triage::catalog::Catalog;
use triage::workbench::schema::catalogue_schema;

/// The keywords the validator below understands; the schema may use no other.
const KEYWORDS: &[&str] = &[
    "$schema",
    "$id",
    "title",
    "description",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "minLength",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "anyOf",
    "oneOf",
    "propertyNames",
];

/// A small draft-07 validator for the keywords above; returns the failures as `path: why`.
fn validate(schema: &Value, v: &Value, path: &str, errs: &mut Vec<String>) {
    let s = schema.as_object().expect("a schema is an object");
    if let Some(t) = s.get("type").and_then(Value::as_str) {
        let ok = match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "boolean" => v.is_boolean(),
            "number" => v.is_number(),
            "integer" => v.is_i64() || v.is_u64(),
            other => panic!("type {other} not handled"),
        };
        if !ok {
            errs.push(format!("{path}: expected {t}, got {v}"));
            return;
        }
    }
    if let Some(o) = v.as_object() {
        let props = s.get("properties").and_then(Value::as_object);
        for r in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !o.contains_key(r.as_str().unwrap()) {
                errs.push(format!("{path}: missing {r}"));
            }
        }
        for (k, val) in o {
            let p = format!("{path}/{k}");
            if let Some(names) = s.get("propertyNames") {
                validate(names, &Value::String(k.clone()), &p, errs);
            }
            match props.and_then(|m| m.get(k)) {
                Some(sub) => validate(sub, val, &p, errs),
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => errs.push(format!("{p}: not allowed")),
                    Some(Value::Bool(true)) | None => {}
                    Some(sub) => validate(sub, val, &p, errs),
                },
            }
        }
    }
    if let Some(a) = v.as_array() {
        if let Some(n) = s.get("minItems").and_then(Value::as_u64) {
            if (a.len() as u64) < n {
                errs.push(format!("{path}: fewer than {n} items"));
            }
        }
        if let Some(items) = s.get("items") {
            for (i, x) in a.iter().enumerate() {
                validate(items, x, &format!("{path}/{i}"), errs);
            }
        }
    }
    if let Some(st) = v.as_str() {
        if let Some(n) = s.get("minLength").and_then(Value::as_u64) {
            if (st.chars().count() as u64) < n {
                errs.push(format!("{path}: shorter than {n}"));
            }
        }
        if let Some(p) = s.get("pattern").and_then(Value::as_str) {
            if !Regex::new(p).unwrap().is_match(st) {
                errs.push(format!("{path}: {st:?} does not match {p}"));
            }
        }
    }
    if let Some(x) = v.as_f64() {
        let bound = |k: &str| s.get(k).and_then(Value::as_f64);
        if bound("minimum").is_some_and(|b| x < b)
            || bound("maximum").is_some_and(|b| x > b)
            || bound("exclusiveMinimum").is_some_and(|b| x <= b)
            || bound("exclusiveMaximum").is_some_and(|b| x >= b)
        {
            errs.push(format!("{path}: {x} out of range"));
        }
    }
    if let Some(any) = s.get("anyOf").and_then(Value::as_array) {
        if !any.iter().any(|sub| {
            let mut e = Vec::new();
            validate(sub, v, path, &mut e);
            e.is_empty()
        }) {
            errs.push(format!("{path}: matches none of anyOf"));
        }
    }
    if let Some(one) = s.get("oneOf").and_then(Value::as_array) {
        let n = one
            .iter()
            .filter(|sub| {
                let mut e = Vec::new();
                validate(sub, v, path, &mut e);
                e.is_empty()
            })
            .count();
        if n != 1 {
            errs.push(format!("{path}: matches {n} of oneOf, expected 1"));
        }
    }
}

fn schema_errors(toml_text: &str) -> Vec<String> {
    let doc: toml::Value = toml::from_str(toml_text).expect("test catalogues are TOML");
    let json = serde_json::to_value(doc).unwrap();
    let mut errs = Vec::new();
    validate(&catalogue_schema(), &json, "", &mut errs);
    errs
}

fn loader_problems(toml_text: &str) -> Vec<String> {
    match Catalog::from_sources(&[("t.toml".into(), toml_text.into())]) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems(),
    }
}

/// Every keyword the schema uses is one the validator checks (or an annotation).
fn keywords_used(v: &Value, out: &mut Vec<String>) {
    if let Some(o) = v.as_object() {
        for (k, sub) in o {
            out.push(k.clone());
            match k.as_str() {
                "properties" => {
                    for p in sub.as_object().unwrap().values() {
                        keywords_used(p, out);
                    }
                }
                "items" | "additionalProperties" | "propertyNames" => keywords_used(sub, out),
                "anyOf" | "oneOf" => {
                    for s in sub.as_array().unwrap() {
                        keywords_used(s, out);
                    }
                }
                _ => {}
            }
        }
    }
}

#[test]
fn the_schema_uses_only_keywords_the_test_validates() {
    let mut used = Vec::new();
    keywords_used(&catalogue_schema(), &mut used);
    for k in used {
        assert!(
            KEYWORDS.contains(&k.as_str()),
            "keyword {k} is not validated here"
        );
    }
}

const MINIMAL: &str = "[catalogue]\nname = \"d\"\nversion = \"1\"\n\n[settings]\n\n[[symptom]]\nid = \"a\"\ntitle = \"t\"\nkeywords = [\"x\"]\ntogether = [{ all = [\"p\", \"q\"] }]\nchecks = [\"c\"]\nfix = \"f\"\n";

/// The fields the loader accepts in one table, as its "unknown field" message lists them.
fn loader_fields(text: &str) -> Vec<String> {
    let p = loader_problems(text).join("\n");
    let re = Regex::new(r"expected one of ((?:`[a-z_]+`(?:, )?)+)").unwrap();
    let caps = re
        .captures(&p)
        .unwrap_or_else(|| panic!("no field list in {p}"));
    let mut f: Vec<String> = Regex::new(r"`([a-z_]+)`")
        .unwrap()
        .captures_iter(&caps[1])
        .map(|c| c[1].to_string())
        .collect();
    f.sort();
    f
}

fn schema_fields(pointer: &str) -> Vec<String> {
    let s = catalogue_schema();
    let mut f: Vec<String> = s
        .pointer(pointer)
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("{pointer}"))
        .keys()
        .cloned()
        .collect();
    f.sort();
    f
}

#[test]
fn the_schema_names_exactly_the_fields_the_loader_accepts() {
    assert!(loader_problems(MINIMAL).is_empty());
    let cases = [
        (
            MINIMAL.replace("[settings]\n", "[settings]\n\n[zz_unknown]\n"),
            "/properties",
        ),
        (
            MINIMAL.replace("version = \"1\"\n", "version = \"1\"\nzz_unknown = 1\n"),
            "/properties/catalogue/properties",
        ),
        (
            MINIMAL.replace("[settings]\n", "[settings]\nzz_unknown = 1\n"),
            "/properties/settings/properties",
        ),
        (
            MINIMAL.replace("fix = \"f\"\n", "fix = \"f\"\nzz_unknown = 1\n"),
            "/properties/symptom/items/properties",
        ),
        (
            MINIMAL.replace("\"q\"] }", "\"q\"], zz_unknown = 1 }"),
            "/properties/symptom/items/properties/together/items/properties",
        ),
    ];
    for (text, pointer) in cases {
        assert_eq!(
            loader_fields(&text),
            schema_fields(pointer),
            "fields at {pointer}"
        );
        assert!(
            !schema_errors(&text).is_empty(),
            "the schema lets an unknown field through at {pointer}"
        );
    }
    // Required fields agree too: the loader refuses a symptom without each.
    for field in ["id", "title", "checks", "fix"] {
        let text: String = MINIMAL
            .lines()
            .filter(|l| !l.starts_with(&format!("{field} =")))
            .map(|l| format!("{l}\n"))
            .collect();
        let p = loader_problems(&text).join("\n");
        assert!(p.contains(&format!("missing field `{field}`")), "{p}");
        assert!(!schema_errors(&text).is_empty(), "{field} not required");
    }
}

/// Every catalogue file of the repository: patterns/, the test data (the fuzz targets take
/// their catalogue seeds from these two), the fuzz seeds.
fn repository_catalogues() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    let mut dirs = vec![
        root.join("patterns"),
        root.join("fuzz/seeds"),
        root.join("tests/data"),
    ];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "toml") {
                let text = std::fs::read_to_string(&p).unwrap();
                if text.lines().any(|l| l.trim() == "[catalogue]") {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_catalogue_in_the_repository_passes_the_schema() {
    let files = repository_catalogues();
    assert!(files.len() >= 2, "{files:?}");
    assert!(files.iter().any(|f| f.ends_with("patterns/passkeys.toml")));
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            loader_problems(&text).is_empty(),
            "{} is invalid",
            f.display()
        );
        let errs = schema_errors(&text);
        assert!(errs.is_empty(), "{}: {errs:#?}", f.display());
    }
}

/// Invalid catalogues (those of the loader's own tests and more): the loader refuses every
/// one; the schema refuses those whose fault is in the shape (`true`), and lets through those
/// only the loader can judge (`false`).
const INVALID: &[(&str, bool, &str)] = &[
    ("id = \"Bad_Id\"", true, "id not kebab-case"),
    ("id = \"\"", true, "empty id"),
    ("title = \"  \"", true, "blank title"),
    ("keywords = [\"  \"]", true, "blank phrase"),
    ("keywrods = [\"x\"]", true, "misspelt field"),
    ("checks = []", true, "no checks"),
    ("checks = \"c\"", true, "checks not a list"),
    ("fix = \"\"", true, "empty fix"),
    ("tags = []", true, "no tags"),
    ("tags = [\"two words\"]", true, "tag with a space"),
    ("threshold = 0", true, "zero threshold"),
    ("threshold = \"1\"", true, "threshold as text"),
    (
        "together = [{ all = [\"one\"] }]",
        true,
        "together with one group",
    ),
    (
        "together = [{ all = [\"a\", \"b\"], within = 5 }]",
        true,
        "within too small",
    ),
    (
        "together = [{ all = [\"a\", \"b\"], weight = -1 }]",
        true,
        "negative weight",
    ),
    ("together = [{ all = [\"a\", []] }]", true, "empty group"),
    ("public_reply = \"yes\"", true, "public_reply not a boolean"),
    (
        "SETTINGS relative_threshold = 1.5",
        true,
        "relative threshold over 1",
    ),
    ("SETTINGS ignore = \"x\"", true, "ignore not a list"),
    ("TERMS Bad = [\"x\"]", true, "set name in capitals"),
    ("TERMS pin = [\"@other\"]", true, "set referring to a set"),
    ("TERMS pin = []", true, "empty set"),
    ("NOEVIDENCE", true, "a symptom without evidence"),
    (
        "patterns = ['(unclosed']",
        false,
        "regex that does not compile",
    ),
    ("keywords = [\"@missing\"]", false, "unknown @set"),
    ("keywords = [\"a*b\"]", false, "star inside a phrase"),
    ("overrides = [\"ghost\"]", false, "overrides an unknown id"),
    ("reply = \"{title} {nope}\"", false, "unknown placeholder"),
];

#[test]
fn invalid_catalogues_fail_the_loader_and_the_schema_where_it_can_tell() {
    let base = "[catalogue]\nname = \"d\"\nversion = \"1\"\n\n[settings]\n\n[terms]\n\n[[symptom]]\nid = \"a\"\ntitle = \"t\"\nkeywords = [\"x\"]\nchecks = [\"c\"]\nfix = \"f\"\n";
    for (edit, schema_can_tell, what) in INVALID {
        let text = if let Some(s) = edit.strip_prefix("SETTINGS ") {
            base.replace("[settings]\n", &format!("[settings]\n{s}\n"))
        } else if let Some(t) = edit.strip_prefix("TERMS ") {
            base.replace("[terms]\n", &format!("[terms]\n{t}\n"))
        } else if *edit == "NOEVIDENCE" {
            base.replace("keywords = [\"x\"]\n", "")
        } else {
            let key = edit.split(" =").next().unwrap();
            let kept: String = base
                .lines()
                .filter(|l| !l.starts_with(&format!("{key} =")))
                .map(|l| format!("{l}\n"))
                .collect();
            format!("{kept}{edit}\n")
        };
        assert!(
            !loader_problems(&text).is_empty(),
            "{what}: the loader accepts\n{text}"
        );
        let errs = schema_errors(&text);
        assert_eq!(
            !errs.is_empty(),
            *schema_can_tell,
            "{what}: schema errors {errs:?} for\n{text}"
        );
    }
}

#[test]
fn triage_schema_prints_the_schema() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_triage"))
        .arg("schema")
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, catalogue_schema());
    assert_eq!(
        printed["$schema"],
        "http://json-schema.org/draft-07/schema#"
    );
}

#[test]
fn the_committed_schema_for_editors_is_up_to_date() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/catalogue.schema.json");
    let committed: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        committed,
        catalogue_schema(),
        "run `triage schema > docs/catalogue.schema.json`"
    );
}
