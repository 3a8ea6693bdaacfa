//! The op interface: methods on [`crate::Tensor`] that check shapes and dispatch by device.
