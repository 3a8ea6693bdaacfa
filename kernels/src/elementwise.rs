//! The elementwise kernels: typed entry list and launchers.
