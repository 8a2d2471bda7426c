//! Kernel decoding.
