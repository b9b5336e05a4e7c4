//! thrum writes MXNet's params files itself (exporting must not load libmxnet, which fixes its
//! settings when it loads): the bytes must be what MXNet's own `MXNDArraySave` writes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

#[test]
fn params_bytes_equal_mxnet_ndarray_save() {
    thrum_testkit::require_engine!("mxnet");
    let graph = thrum_zoo::find("resnet18").unwrap().build(3);
    let (_, params) = thrum_zoo::mxnet::symbol_json(&graph).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mxnet.params");
    thrum_mxnet::save_params_with_mxnet(&file, &params).unwrap();
    assert_eq!(std::fs::read(&file).unwrap(), thrum_mxnet::encode_params(&params).unwrap());
}
