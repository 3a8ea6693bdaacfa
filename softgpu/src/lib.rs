//! kiln-softgpu: a software GPU.
pub mod blaslt;
pub mod device;
pub mod fault;
pub mod memory;
pub mod ptx;
