//! Tests of `materialize`.
