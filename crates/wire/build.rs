//! Compiles the v2 gRPC service's `.proto` files with protox, a protobuf compiler written in
//! Rust: no system `protoc` is needed, so building thrum stays `cargo build`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/grpc_service.proto", "proto/model_config.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    // The descriptors themselves, for parsing Triton's config.pbtxt (protobuf text format).
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("inference.bin"), prost::Message::encode_to_vec(&descriptors))?;
    // `bytes` fields as `bytes::Bytes`: a request's tensors are shared, not copied, when a
    // client clones a prepared request (the load generator does for every call).
    let mut config = tonic_prost_build::Config::new();
    config.bytes(["."]);
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds_with_config(descriptors, config)?;
    Ok(())
}
