//! The norm kernels: typed entry list and launchers.
