//! Training data in huge pages where Linux allows it.
//!
//! A batch gathers its rows from random places in the data set (60,000 MNIST images are
//! 188 MB as f32): on 4 KiB pages nearly every row costs a TLB miss, and in a virtual
//! machine a miss walks two page tables. Asking for transparent huge pages (2 MiB) for the
//! data's buffer before it is written makes the gather cheaper. Linux's default THP mode
//! (`madvise`) grants them only to regions that ask; elsewhere this does nothing.

/// Asks for huge pages for the buffer of `v` (best before it is written: the pages it
/// touches next come as huge pages); a hint, never an error.
pub fn advise<T>(v: &mut Vec<T>) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = v.as_mut_ptr() as usize;
        let end = start + v.capacity() * std::mem::size_of::<T>();
        // The whole huge pages inside the buffer.
        let (first, last) = (start.div_ceil(HUGE) * HUGE, end / HUGE * HUGE);
        if last > first {
            // SAFETY: madvise only changes how the kernel backs this range, which lies
            // inside `v`'s allocation; MADV_HUGEPAGE keeps the contents.
            unsafe { libc::madvise(first as *mut libc::c_void, last - first, libc::MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = v;
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// The `VmFlags` of the mapping that holds `address`, from /proc/self/smaps.
    fn flags_at(address: usize) -> Option<String> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for line in smaps.lines() {
            let range = line.split_whitespace().next().unwrap_or_default();
            if let Some((a, b)) = range.split_once('-')
                && let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            {
                inside = (a..b).contains(&address);
            } else if inside && let Some(flags) = line.strip_prefix("VmFlags:") {
                return Some(flags.trim().to_string());
            }
        }
        None
    }

    #[test]
    fn a_large_buffer_is_marked_for_huge_pages() {
        if !std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists() {
            return; // a kernel without transparent huge pages
        }
        // 64 MiB: above glibc's largest mmap threshold, so a mapping of its own.
        let mut v: Vec<f32> = Vec::with_capacity(16 << 20);
        let middle = v.as_ptr() as usize + (32 << 20);
        let before = flags_at(middle).expect("the buffer is mapped");
        assert!(!before.split(' ').any(|f| f == "hg"), "{before}");
        super::advise(&mut v);
        let after = flags_at(middle).expect("the buffer is mapped");
        assert!(after.split(' ').any(|f| f == "hg"), "MADV_HUGEPAGE shows as `hg`: {after}");
        // Small buffers (no whole huge page inside) are left alone.
        let mut small: Vec<f32> = Vec::with_capacity(1000);
        super::advise(&mut small);
    }
}
