//! The conv kernels: typed entry list and launchers.
