//! The allocator the `opgate` binary runs with (`src/main.rs`), so that a benchmark measures
//! the library as the binary runs it.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
