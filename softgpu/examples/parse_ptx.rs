//! Parses PTX files and prints their functions: `cargo run -p kiln-softgpu --example parse_ptx -- FILE…`.
fn main() {
    for path in std::env::args().skip(1) {
        let src = std::fs::read_to_string(&path).expect("read");
        match kiln_softgpu::ptx::parse_module(&src) {
            Ok(m) => println!("{path}: {} functions, {} variables", m.functions.len(), m.variables.len()),
            Err(e) => println!("{path}: {e}"),
        }
    }
}
