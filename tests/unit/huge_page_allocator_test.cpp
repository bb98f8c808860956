// HugePageAllocator: large blocks are 2 MiB-aligned anonymous mappings (zeroed,
// usable, given back whole); small ones come from the heap.

#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "core/huge_page_allocator.hpp"

using namespace ctquota;

TEST_CASE("huge page allocator: a large block is aligned to 2 MiB, zeroed and usable") {
    core::HugePageAllocator<std::uint64_t> alloc;
    const std::size_t n = (core::huge_pages::kMinBytes * 3 + 100) / sizeof(std::uint64_t);
    std::uint64_t* p = alloc.allocate(n);
    REQUIRE(p != nullptr);
    CHECK(reinterpret_cast<std::uintptr_t>(p) % core::huge_pages::kPage == 0);
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i < n; i += 512) {
        sum += p[i];
    }
    CHECK(sum == 0);
    for (std::size_t i = 0; i < n; ++i) {
        p[i] = i;
    }
    CHECK(p[n - 1] == n - 1);
    alloc.deallocate(p, n);
}

TEST_CASE("huge page allocator: small blocks and containers work as with the default one") {
    core::HugePageAllocator<int> alloc;
    int* small = alloc.allocate(10);
    small[9] = 9;
    CHECK(small[9] == 9);
    alloc.deallocate(small, 10);

    // Growing across the threshold moves the elements from the heap to a mapping and back.
    std::vector<int, core::HugePageAllocator<int>> v;
    const int big = static_cast<int>(core::huge_pages::kMinBytes / sizeof(int)) * 2;
    for (int i = 0; i < big; ++i) {
        v.push_back(i);
    }
    CHECK(v[big - 1] == big - 1);
    CHECK(v[0] == 0);
    v.resize(10);
    v.shrink_to_fit();
    CHECK(v.size() == 10);
    CHECK(v[9] == 9);
}
