//! The attention kernels: typed entry list and launchers.
