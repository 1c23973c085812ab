//! The process's allocator (glibc's malloc): how the server asks it to give freed memory back
//! to the system. Elsewhere, the index's large arrays ask for huge pages themselves
//! (`index::huge_pages`). Both are hints: on other platforms they do nothing.

/// Fixes glibc's mmap threshold at 1 MiB, so every large allocation (the index's tables, a
/// decoded image) gets pages of its own and gives them back when freed. By default glibc raises
/// the threshold to the size of each large block freed (up to 32 MiB), after which the index's
/// rebuilt tables come from the heap and the old ones stay in it: the soak saw resident memory
/// climb by a step at every tail fold. Measured by `bench/soak` (bench/README.md). Call it
/// before any thread starts.
pub fn return_large_blocks_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator tuning; called before other threads start.
        let applied = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20) };
        if applied == 0 {
            tracing::warn!("could not set the allocator's mmap threshold; freed memory may be kept");
        }
    }
}

/// Gives the free pages inside the heap back to the system. A bulk load leaves many small
/// blocks freed (the store's pages, messages): after a 10M-row import the server held 106 MiB
/// more than the same store freshly opened (987 against 881 MiB), until this. It walks the
/// heap, so it belongs after a load rather than on every call.
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns unused memory; it is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}
