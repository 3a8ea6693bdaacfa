//! kiln-softgpu: a software GPU.
pub mod blaslt;
pub mod device;
pub mod driver;
pub mod exec;
pub mod fault;
pub mod isa;
pub mod memory;
pub mod program;
pub mod ptx;
pub mod testing;
