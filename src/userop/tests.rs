//! Unit tests of the userop module.
