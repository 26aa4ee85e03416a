//! Compiles `proto/uwire/v1/*.proto` with prost, using protox (pure Rust) so no
//! system `protoc` is needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/uwire/v1/uwire.proto"];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    let mut cfg = prost_build::Config::new();
    // Every `bytes` field decodes as a zero-copy slice of the frame payload.
    cfg.bytes(["."]);
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    cfg.out_dir(&out);
    cfg.compile_fds(fds)?;
    Ok(())
}
