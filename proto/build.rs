//! Compiles `proto/flavio/v1/*.proto` with a vendored `protoc`, so no system
//! protobuf compiler is needed to build FlavioDB.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/flavio/v1/flavio.proto",
        "proto/flavio/v1/cluster.proto",
    ];
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_with_config(config, &protos, &["proto"])?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}
