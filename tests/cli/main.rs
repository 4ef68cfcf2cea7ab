//! Integration tests: the real `runner` binary, one module per command area.

mod data;
