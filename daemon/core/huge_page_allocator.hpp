#pragma once
// HugePageAllocator: an allocator for the few large flat tables of the ledger
// (sized for nf_conntrack_max up front and probed at random, once a DESTROY).
// On 4 KiB pages such a table of ~100 MB is tens of thousands of pages: nearly
// every probe misses the TLB as well as the cache, and under a hypervisor the
// page walk itself is several more misses. Blocks of at least kMinBytes are
// mapped 2 MiB-aligned and marked MADV_HUGEPAGE, which transparent huge pages
// honour in their default "madvise" mode; smaller blocks come from the heap.
// Where huge pages are off or unavailable the advice is a no-op and the block
// is an ordinary anonymous mapping. Memory only: no file, no I/O.

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <new>

namespace ctquota::core {

namespace huge_pages {
inline constexpr std::size_t kPage = std::size_t{2} << 20;
inline constexpr std::size_t kMinBytes = kPage * 2;

inline std::size_t rounded(std::size_t bytes) {
    return (bytes + kPage - 1) / kPage * kPage;
}

// A 2 MiB-aligned anonymous mapping of `bytes` (a multiple of kPage), advised
// to use huge pages; null when the system has no memory to map.
inline void* map(std::size_t bytes) {
    void* raw =
        ::mmap(nullptr, bytes + kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) {
        return nullptr;
    }
    const auto start = reinterpret_cast<std::uintptr_t>(raw);
    const std::uintptr_t aligned = (start + kPage - 1) / kPage * kPage;
    if (aligned > start) {
        ::munmap(raw, aligned - start);
    }
    if (const std::uintptr_t tail = start + kPage - aligned; tail > 0) {
        ::munmap(reinterpret_cast<void*>(aligned + bytes), tail);
    }
    void* block = reinterpret_cast<void*>(aligned);
    ::madvise(block, bytes, MADV_HUGEPAGE);
    return block;
}

inline void unmap(void* block, std::size_t bytes) {
    ::munmap(block, bytes);
}
}  // namespace huge_pages

template <class T>
struct HugePageAllocator {
    using value_type = T;

    HugePageAllocator() noexcept = default;
    template <class U>
    HugePageAllocator(const HugePageAllocator<U>& /*other*/) noexcept {}  // NOLINT: rebinding

    T* allocate(std::size_t n) {
        const std::size_t bytes = n * sizeof(T);
        if (bytes < huge_pages::kMinBytes) {
            return static_cast<T*>(::operator new (bytes, std::align_val_t{alignof(T)}));
        }
        void* block = huge_pages::map(huge_pages::rounded(bytes));
        if (block == nullptr) {
            throw std::bad_alloc();
        }
        return static_cast<T*>(block);
    }

    void deallocate(T* p, std::size_t n) noexcept {
        const std::size_t bytes = n * sizeof(T);
        if (bytes < huge_pages::kMinBytes) {
            ::operator delete (p, std::align_val_t{alignof(T)});
            return;
        }
        huge_pages::unmap(p, huge_pages::rounded(bytes));
    }

    template <class U>
    bool operator==(const HugePageAllocator<U>& /*other*/) const noexcept {
        return true;
    }
};

}  // namespace ctquota::core
