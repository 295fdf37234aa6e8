//! The files in deploy/ parse, agree with each other and with the worker, and the alert rules
//! pass their unit tests with the real `promtool` (Debian's `prometheus` package, which
//! `scripts/test` installs when it is missing).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
#[cfg(feature = "test-prometheus")]
use support::tool;
use triage::config::Settings;
use triage::metrics::FAMILIES;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn deploy(rel: &str) -> PathBuf {
    root().join("deploy").join(rel)
}

/// Every document of a YAML file, as JSON values.
fn yaml(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| {
            serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: invalid YAML: {e}", path.display()))
        })
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn one(path: &Path) -> Value {
    let mut docs = yaml(path);
    assert_eq!(docs.len(), 1, "{}: one document expected", path.display());
    docs.remove(0)
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn every_yaml_and_json_file_in_deploy_parses() {
    let mut files = Vec::new();
    files_under(&root().join("deploy"), &mut files);
    let mut seen = 0;
    for f in &files {
        match f.extension().and_then(|x| x.to_str()) {
            Some("yml" | "yaml") => {
                assert!(!yaml(f).is_empty(), "{}: empty", f.display());
                seen += 1;
            }
            Some("json") => {
                let text = std::fs::read_to_string(f).unwrap();
                serde_json::from_str::<Value>(&text)
                    .unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", f.display()));
                seen += 1;
            }
            _ => {}
        }
    }
    assert!(
        seen >= 11,
        "only {seen} YAML/JSON files found under deploy/"
    );
}

/// Alert and record names defined in alerts.yml, with their expressions.
fn rules() -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let doc = one(&deploy("prometheus/alerts.yml"));
    let (mut alerts, mut records) = (BTreeMap::new(), BTreeMap::new());
    for g in doc["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            let expr = r["expr"].as_str().unwrap().to_string();
            if let Some(a) = r["alert"].as_str() {
                alerts.insert(a.to_string(), expr);
            } else {
                records.insert(r["record"].as_str().unwrap().to_string(), expr);
            }
        }
    }
    (alerts, records)
}

#[cfg(feature = "test-prometheus")]
#[test]
fn alert_rules_pass_promtool_and_every_rule_has_tests() {
    let promtool = tool("promtool");
    let dir = deploy("prometheus");
    for args in [
        &["check", "config", "prometheus.yml"][..],
        &["check", "rules", "alerts.yml"],
        &["test", "rules", "alerts.test.yml"],
    ] {
        let (ok, out) = run(Command::new(&promtool).args(args).current_dir(&dir));
        assert!(ok, "promtool {}:\n{out}", args.join(" "));
    }

    // Each alert fires in some test and stays quiet in another; each record's value is checked.
    let (alerts, records) = rules();
    let tests = one(&dir.join("alerts.test.yml"));
    let (mut fires, mut quiet, mut exprs) = (BTreeSet::new(), BTreeSet::new(), String::new());
    for t in tests["tests"].as_array().unwrap() {
        for a in t["alert_rule_test"].as_array().into_iter().flatten() {
            let name = a["alertname"].as_str().unwrap().to_string();
            let firing = a["exp_alerts"].as_array().is_some_and(|x| !x.is_empty());
            if firing { &mut fires } else { &mut quiet }.insert(name);
        }
        for e in t["promql_expr_test"].as_array().into_iter().flatten() {
            exprs.push_str(e["expr"].as_str().unwrap());
            exprs.push('\n');
        }
    }
    for a in alerts.keys() {
        assert!(fires.contains(a), "no test makes {a} fire");
        assert!(quiet.contains(a), "no test shows {a} staying quiet");
    }
    for r in records.keys() {
        assert!(
            exprs.contains(r.as_str()),
            "no test checks recording rule {r}"
        );
    }
    let expected: BTreeSet<&str> = [
        "TriageWorkerDown",
        "TriageAbsent",
        "TriageConsumerLagGrowing",
        "TriageDeadLettersRising",
        "TriageSinkFailing",
        "TriageSinkCircuitOpen",
        "TriageUnmatchedShareRising",
        "TriageSymptomSpike",
    ]
    .into();
    assert_eq!(
        alerts.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        expected
    );
}

/// The `triage_…` metric names in a PromQL expression (not recording-rule names, which hold
/// colons).
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = expr.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut i = 0;
    while i < b.len() {
        if ident(b[i]) {
            let start = i;
            while i < b.len() && ident(b[i]) {
                i += 1;
            }
            let word = &expr[start..i];
            if word.starts_with("triage_") && !word.contains(':') {
                out.push(word.to_string());
            }
        } else {
            i += 1;
        }
    }
    out
}

fn known_metric(name: &str) -> bool {
    FAMILIES.contains(&name)
        || ["_bucket", "_sum", "_count"].iter().any(|s| {
            name.strip_suffix(s)
                .is_some_and(|f| f.ends_with("_seconds") && FAMILIES.contains(&f))
        })
}

/// Every query of the dashboard: (panel title, expression).
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(deploy("grafana/triage-dashboard.json")).unwrap();
    let d: Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((
                p["title"].as_str().unwrap().to_string(),
                t["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

#[test]
fn dashboard_and_rules_use_only_metrics_the_worker_exports() {
    let (alerts, records) = rules();
    let mut exprs: Vec<(String, String)> = alerts.into_iter().chain(records.clone()).collect();
    exprs.extend(dashboard_queries());
    let mut used = BTreeSet::new();
    for (what, e) in &exprs {
        for m in metric_names(e) {
            assert!(
                known_metric(&m),
                "{what} uses {m}, which triage does not export"
            );
            used.insert(m);
        }
        // Recording rules used by an alert exist.
        for word in e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
            if word.contains(':') && word.contains("triage") {
                assert!(records.contains_key(word), "{what} uses undefined {word}");
            }
        }
    }
    assert!(used.len() >= 10, "{used:?}");

    // The panels the operators asked for are there, with what they need.
    let text = std::fs::read_to_string(deploy("grafana/triage-dashboard.json")).unwrap();
    let d: Value = serde_json::from_str(&text).unwrap();
    let panels = d["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate panel id");
        assert!(p["gridPos"]["w"].as_u64().unwrap() > 0);
        if p["type"] != "row" {
            assert!(
                !p["targets"].as_array().unwrap().is_empty(),
                "{} has no query",
                p["title"]
            );
        }
    }
    let panel = |title: &str| {
        panels
            .iter()
            .find(|p| p["title"] == title)
            .unwrap_or_else(|| panic!("no panel {title:?}"))
    };
    let volume = panel("Symptom volume");
    assert_eq!(volume["type"], "timeseries");
    assert_eq!(
        volume["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"],
        "normal"
    );
    assert!(volume["targets"][0]["expr"]
        .as_str()
        .unwrap()
        .contains("sum by (symptom) (rate(triage_tickets_classified_total"));
    assert!(panel("Top symptoms")["targets"][0]["expr"]
        .as_str()
        .unwrap()
        .starts_with("topk("));
    for title in [
        "Unmatched share",
        "Sink outcomes",
        "Sink latency",
        "Consumer lag",
        "Dead letters by reason",
    ] {
        panel(title);
    }
}

/// The worker configuration held by the ConfigMap.
fn configmap_toml() -> String {
    let cm = one(&deploy("k8s/configmap.yaml"));
    assert_eq!(cm["kind"], "ConfigMap");
    cm["data"]["triage.toml"].as_str().unwrap().to_string()
}

fn secret_keys() -> BTreeSet<String> {
    let s = one(&deploy("k8s/secret.yaml"));
    assert_eq!(s["metadata"]["name"], "triage-secrets");
    s["stringData"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

#[test]
fn the_kubernetes_manifests_agree_with_each_other_and_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("triage.toml");
    std::fs::write(&cfg, configmap_toml()).unwrap();
    // The secrets the Deployment injects, with stand-in values.
    let d = one(&deploy("k8s/deployment.yaml"));
    let pod = &d["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let mut env = Vec::new();
    let secrets = secret_keys();
    for e in c["env"].as_array().unwrap() {
        let r = &e["valueFrom"]["secretKeyRef"];
        assert_eq!(r["name"], "triage-secrets");
        let key = r["key"].as_str().unwrap();
        assert!(secrets.contains(key), "secret key {key} not in secret.yaml");
        env.push((
            e["name"].as_str().unwrap().to_string(),
            "stand-in".to_string(),
        ));
    }
    // The ConfigMap's config is one the worker accepts (secrets resolve, properties valid).
    let (ok, out) = run(Command::new(env!("CARGO_BIN_EXE_triage"))
        .args(["run", "--check-config"])
        .arg(&cfg)
        .envs(env.iter().cloned()));
    assert!(ok, "the ConfigMap's triage.toml:\n{out}");
    for (k, v) in &env {
        std::env::set_var(k, v);
    }
    let s = Settings::load(&cfg).unwrap();
    let k = s.kafka.as_ref().unwrap();
    let listen = s
        .server
        .listen
        .expect("the ConfigMap must set [server] listen");
    assert!(listen.ip().is_unspecified(), "probes need all interfaces");

    // Deployment: probes, grace period, resources, mounts, user.
    assert_eq!(d["kind"], "Deployment");
    let labels = &d["spec"]["template"]["metadata"]["labels"];
    assert_eq!(
        d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
        labels["app.kubernetes.io/name"]
    );
    let port = &c["ports"][0];
    assert_eq!(
        port["containerPort"].as_u64(),
        Some(u64::from(listen.port()))
    );
    assert_eq!(port["name"], "metrics");
    for (probe, path) in [
        ("livenessProbe", "/healthz"),
        ("startupProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ] {
        assert_eq!(c[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "metrics", "{probe}");
    }
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let drain = s.worker.drain_timeout.as_secs();
    assert!(
        grace > drain + 10,
        "terminationGracePeriodSeconds {grace} must exceed the drain timeout ({drain} s) and the final flush (10 s)"
    );
    for r in ["cpu", "memory"] {
        assert!(c["resources"]["requests"][r].is_string(), "no {r} request");
    }
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let arg = |flag: &str| args[args.iter().position(|a| *a == flag).unwrap() + 1];
    let mounts: BTreeMap<&str, &str> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap(),
                m["mountPath"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        Path::new(arg("--config")).parent().unwrap(),
        Path::new(mounts["config"])
    );
    assert_eq!(arg("--patterns"), mounts["catalogue"]);
    let cm_of = |volume: &str| {
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == volume)
            .unwrap()["configMap"]["name"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(cm_of("config"), "triage-config");
    assert_eq!(cm_of("catalogue"), "triage-catalogue");
    assert!(
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m.get("subPath").is_none()),
        "a subPath mount never sees ConfigMap updates (no catalogue reload)"
    );

    // Service, ServiceMonitor and PodDisruptionBudget select these pods and this port.
    let svc = one(&deploy("k8s/service.yaml"));
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&labels[k], v, "service selector {k}");
    }
    assert_eq!(svc["spec"]["ports"][0]["name"], "metrics");
    let sm = one(&deploy("k8s/servicemonitor.yaml"));
    assert_eq!(sm["kind"], "ServiceMonitor");
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(
            &svc["metadata"]["labels"][k], v,
            "servicemonitor selector {k}"
        );
    }
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(
        svc["metadata"]["name"], "triage",
        "the alerts expect job=\"triage\""
    );
    let pdb = one(&deploy("k8s/pdb.yaml"));
    assert_eq!(pdb["kind"], "PodDisruptionBudget");
    for (k, v) in pdb["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&labels[k], v, "pdb selector {k}");
    }

    // KEDA scales this Deployment on this group's lag, never past the partition count.
    let keda = yaml(&deploy("k8s/scaledobject.yaml"));
    let so = keda.iter().find(|x| x["kind"] == "ScaledObject").unwrap();
    assert_eq!(so["spec"]["scaleTargetRef"]["name"], d["metadata"]["name"]);
    let t = &so["spec"]["triggers"][0];
    assert_eq!(t["type"], "kafka");
    assert_eq!(t["metadata"]["consumerGroup"], k.group_id.as_str());
    assert_eq!(t["metadata"]["topic"], k.input_topic.as_str());
    assert_eq!(
        t["metadata"]["bootstrapServers"],
        k.bootstrap_servers.as_str()
    );
    assert_eq!(t["metadata"]["allowIdleConsumers"], "false");
    let max = so["spec"]["maxReplicaCount"].as_u64().unwrap();
    assert!(max >= so["spec"]["minReplicaCount"].as_u64().unwrap());
    let auth = keda
        .iter()
        .find(|x| x["kind"] == "TriggerAuthentication")
        .unwrap();
    assert_eq!(auth["metadata"]["name"], t["authenticationRef"]["name"]);
    for r in auth["spec"]["secretTargetRef"].as_array().unwrap() {
        assert!(secrets.contains(r["key"].as_str().unwrap()), "{r}");
    }

    // kustomization.yaml lists every manifest but the example Secret.
    let kz = one(&deploy("k8s/kustomization.yaml"));
    let listed: BTreeSet<&str> = kz["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    let mut manifests = BTreeSet::new();
    for e in std::fs::read_dir(deploy("k8s")).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".yaml") && name != "kustomization.yaml" && name != "secret.yaml" {
            manifests.insert(name);
        }
    }
    assert_eq!(listed, manifests.iter().map(String::as_str).collect());

    // The image runs what the Deployment runs, as the same user, exposing the same port.
    let docker = std::fs::read_to_string(deploy("Dockerfile")).unwrap();
    assert!(docker.matches("\nFROM ").count() >= 2, "multi-stage");
    let cmd = docker.lines().find_map(|l| l.strip_prefix("CMD ")).unwrap();
    let cmd: Vec<String> = serde_json::from_str(cmd).unwrap();
    assert_eq!(cmd, args);
    let user = docker
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .unwrap();
    assert_eq!(
        user.split(':').next().unwrap(),
        pod["securityContext"]["runAsUser"].to_string()
    );
    assert!(docker.contains(&format!("EXPOSE {}", listen.port())));
}

#[test]
fn the_image_builds_with_a_toolchain_every_dependency_accepts() {
    let docker = std::fs::read_to_string(deploy("Dockerfile")).unwrap();
    let pinned = docker
        .lines()
        .find_map(|l| l.strip_prefix("ARG RUST_VERSION="))
        .expect("ARG RUST_VERSION in the Dockerfile");
    let version = |v: &str| -> Vec<u32> { v.split('.').map(|x| x.parse().unwrap()).collect() };
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--locked", "--format-version", "1"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    for p in meta["packages"].as_array().unwrap() {
        if let Some(need) = p["rust_version"].as_str() {
            assert!(
                version(need) <= version(pinned),
                "{} {} needs Rust {need}; the Dockerfile pins {pinned}",
                p["name"],
                p["version"]
            );
        }
    }
}

fn catalogue_configmap(dir: &Path, check: bool) -> (bool, String, String) {
    let mut cmd = Command::new(deploy("k8s/catalogue-configmap.sh"));
    if !check {
        cmd.arg("--no-check");
    }
    let out = cmd
        .arg(dir)
        .env("TRIAGE_BIN", env!("CARGO_BIN_EXE_triage"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn configmap_data(yaml_text: &str) -> BTreeMap<String, String> {
    let v: Value = serde_norway::from_str(yaml_text).unwrap();
    assert_eq!(v["kind"], "ConfigMap");
    assert_eq!(v["metadata"]["name"], "triage-catalogue");
    serde_json::from_value(v["data"].clone()).unwrap()
}

#[test]
fn the_catalogue_configmap_holds_the_checked_files_byte_for_byte() {
    let patterns = root().join("patterns");
    let (ok, out, err) = catalogue_configmap(&patterns, true);
    assert!(ok, "{err}");
    let data = configmap_data(&out);
    let mut files = 0;
    for e in std::fs::read_dir(&patterns).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let name = p.file_name().unwrap().to_str().unwrap();
            assert_eq!(data[name], std::fs::read_to_string(&p).unwrap(), "{name}");
            files += 1;
        }
    }
    assert_eq!(data.len(), files);

    // Awkward files survive the trip unchanged.
    let dir = tempfile::tempdir().unwrap();
    let awkward = [
        (
            "a.toml",
            "  indented first line\n\n\ttab\nlast line without newline",
        ),
        ("b.toml", "# trailing blank lines\nx = 1\n\n\n"),
        (
            "c.toml",
            "quote = \"it's: # not a comment\"\n  - not a list\n",
        ),
    ];
    for (name, text) in awkward {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let (ok, out, err) = catalogue_configmap(dir.path(), false);
    assert!(ok, "{err}");
    let data = configmap_data(&out);
    for (name, text) in awkward {
        assert_eq!(data[name], text, "{name}");
    }

    // An invalid catalogue is refused with its path:line: problems, and nothing is printed.
    let (ok, out, err) = catalogue_configmap(dir.path(), true);
    assert!(!ok);
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains(&format!("{}:1: ", dir.path().join("a.toml").display())),
        "{err}"
    );
}
