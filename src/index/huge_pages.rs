//! Backing the index's large arrays with huge pages.
//!
//! A search reads its tables and codes at random, hundreds of megabytes of them at 10M hashes.
//! With 4 KiB pages nearly every such read misses the TLB as well as the cache, and the page
//! walk is another cache miss. Measured on random PDQ hashes at 10M, 2 MiB pages made searches
//! about 20% faster. Linux backs memory with them by default only where a program asks
//! (`transparent_hugepage/enabled` is `madvise` on most distributions).

/// Asks the kernel to back `values`' allocation, its spare capacity included, with huge pages.
/// Call it before the memory is first written: pages already touched are only merged later,
/// in the background. A hint: nothing changes but speed, and nothing at all where the kernel
/// declines or the platform has no such thing.
pub(super) fn advise<T>(values: &Vec<T>) {
    #[cfg(target_os = "linux")]
    {
        const HUGE_PAGE: usize = 2 << 20;
        let start = values.as_ptr() as usize;
        let end = start + values.capacity() * std::mem::size_of::<T>();
        let (first, last) = (start.next_multiple_of(HUGE_PAGE), end / HUGE_PAGE * HUGE_PAGE);
        if last > first {
            // SAFETY: the range lies inside the vector's own allocation, and MADV_HUGEPAGE only
            // changes how the kernel backs it, never its contents. The result is ignored: a
            // refused hint leaves ordinary pages.
            unsafe {
                libc::madvise(first as *mut libc::c_void, last - first, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = values;
}

/// Moves `values` to a new allocation of `capacity`, backed by huge pages. Growing in place
/// would keep the pages already touched at their small size: `realloc` moves them as they are.
pub(super) fn reallocate<T: Copy>(values: &mut Vec<T>, capacity: usize) {
    let mut moved = Vec::with_capacity(capacity.max(values.len()));
    advise(&moved);
    moved.extend_from_slice(values);
    *values = moved;
}
