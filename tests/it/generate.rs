//! Tests of `generate`.
