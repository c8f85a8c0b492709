//! # degroup-sdk
//!
//! The plugin contract of degroup (a WIT package in `sdk/wit`, `degroup:plugin@0.1.0`) and the
//! Rust guest SDK that hides `wit-bindgen` behind a small API. This crate is a placeholder until
//! the plugin issue lands; it builds so that the workspace layout is final.
