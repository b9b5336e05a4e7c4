//! The engine table: registration, lookup by name and alias, format detection. An integration
//! test because registering (a link-section static) is not allowed in `thrum-core` itself,
//! which forbids unsafe code.
#![allow(clippy::unwrap_used)] // tests fail by panicking

use std::path::Path;
use std::sync::Arc;

use thrum_core::{
    Engine, EngineInfo, ErrorKind, ModelFormat, ModelSource, NotCompiled, Options, Registry,
};

static FAKE_FORMAT: ModelFormat = ModelFormat {
    id: "fake",
    name: "Fake",
    suffixes: &["-fake.bin", ".fk"],
    directory_marker: Some("fake.marker"),
};

fn fake_engine() -> Arc<dyn Engine> {
    Arc::new(NotCompiled::new(&FAKE))
}

thrum_core::register_engine!(
    FAKE = EngineInfo {
        name: "fake",
        title: "Fake engine",
        aliases: &["phony"],
        formats: &[ModelFormat::ONNX, FAKE_FORMAT],
        feature: "fake",
        build_note: " (needs nothing)",
        options: &[],
        process_keys: &[],
        packages: &[],
        order: 0,
        engine: fake_engine,
    }
);

#[test]
fn not_compiled_engine_names_the_feature() {
    let registry = Registry::linked();
    let err =
        registry.load("Phony", &ModelSource::path("m.onnx"), &Options::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "engine `fake` is not compiled in: rebuild with --features fake (needs nothing)"
    );
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(!registry.get("fake").unwrap().check().available);
}

#[test]
fn unknown_engine_lists_known_ones() {
    let err = Registry::linked().get("tensorflow").err().map(|e| e.to_string());
    assert_eq!(err.as_deref(), Some("unknown engine `tensorflow`; known engines: fake"));
}

#[test]
fn formats_are_detected_from_registered_suffixes() {
    assert_eq!(ModelFormat::detect(Path::new("/x/m.ONNX")), Some(ModelFormat::ONNX));
    assert_eq!(ModelFormat::detect(Path::new("m-fake.bin")), Some(FAKE_FORMAT));
    assert_eq!(ModelFormat::detect(Path::new("m.json")), None);
    assert_eq!(ModelFormat::detect(Path::new(".onnx")), None, "a suffix alone is no name");
    assert_eq!(ModelFormat::by_id("FAKE").unwrap(), FAKE_FORMAT);
    assert!(ModelFormat::by_id("nope").unwrap_err().to_string().contains("onnx, fake"));
}

#[test]
fn source_name_strips_the_longest_format_suffix() {
    assert_eq!(ModelSource::path("/x/resnet50.onnx").name(), "resnet50");
    assert_eq!(ModelSource::path("m-fake.bin").name(), "m");
    assert_eq!(ModelSource::path("plain").name(), "plain");
}
