//! Whatever `thrum zoo export` writes loads back, with every engine that reads its format, from
//! the path the user gave: the format's usual name or any other (with `--format`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use common::thrum;

#[test]
fn every_export_format_loads_back_from_the_name_given() {
    let work = tempfile::tempdir().unwrap();
    let registry = thrum::registry();
    let mut tested = Vec::new();
    for format in thrum::zoo::export_formats() {
        let readers: Vec<_> =
            registry.engines().filter(|e| e.info().formats.contains(&format)).collect();
        for name in [format!("mlp{}", format.suffixes[0]), format!("mlp-as-{}", format.id)] {
            let path = work.path().join(&name);
            for engine in &readers {
                if !thrum_testkit::engine_under_test(engine.name(), "roundtrip") {
                    continue;
                }
                if !path.exists() {
                    thrum()
                        .args(["zoo", "export", "mlp", "--format", format.id, "-o"])
                        .arg(&path)
                        .assert()
                        .success();
                }
                let out = thrum()
                    .args(["predict", "--json", "-e", engine.name(), "-p"])
                    .arg(&path)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{} exported as `{name}` does not load on {}: {}",
                    format.name,
                    engine.name(),
                    String::from_utf8_lossy(&out.stderr)
                );
                let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                assert_eq!(summary["outputs"][0]["shape"], serde_json::json!([1, 10]), "{summary}");
                tested.push(format!("{name} on {}", engine.name()));
            }
        }
    }
    eprintln!("round-tripped: {}", tested.join(", "));
    assert!(tested.iter().any(|t| t.ends_with("on tract")), "{tested:?}");
}

#[test]
fn engines_under_test_are_reported_and_required_ones_enforced() {
    for engine in thrum::registry().engines() {
        let here = thrum_testkit::engine_under_test(engine.name(), "the engine tests");
        eprintln!("engine {}: {}", engine.name(), if here { "tested" } else { "NOT TESTED" });
    }
}
