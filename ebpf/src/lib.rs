#![no_std]
// This library is empty on purpose: userspace/build.rs depends on this crate so that cargo
// rebuilds the embedded object when anything here changes (the aya-template pattern).
