//! The runtime's command-line front ends, `alexnet-bench` and `alexnet-classify`
//! (`src/bin/`), kept out of the library so that an embedder's build carries none of
//! their dependencies.

pub mod accuracy;
pub mod machine;
