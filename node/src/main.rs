//! The `flavio` binary: see [`flavio_node::cli`].

fn main() -> anyhow::Result<()> {
    Ok(())
}
