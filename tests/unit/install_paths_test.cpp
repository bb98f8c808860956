// data_dir_for: an installed binary reads its installed data, a build-tree
// binary the source tree's.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>

#include "app/install_paths.hpp"

namespace fs = std::filesystem;
using ctquota::app::data_dir_for;

TEST_CASE("installed binaries read <prefix>/share/ctquota, build-tree ones the source tree") {
    const auto root = fs::temp_directory_path() / ("ctq-paths-" + std::to_string(::getpid()));
    fs::create_directories(root / "usr/sbin");
    fs::create_directories(root / "usr/share/ctquota/schema");
    const fs::path source = "/src/ctquota/schema";
    CHECK(data_dir_for(root / "usr/sbin/ctquotad", "schema", source) ==
          root / "usr/share/ctquota/schema");
    // Installed, but this part is missing: still the installed path (an error names it).
    CHECK(data_dir_for(root / "usr/sbin/ctquotad", "web", "/src/ctquota/web") ==
          root / "usr/share/ctquota/web");
    // Not installed under this prefix at all: the source tree's.
    CHECK(data_dir_for("/opt/elsewhere/sbin/ctquotad", "web", "/src/ctquota/web") ==
          "/src/ctquota/web");
    // A build tree: never an installed copy.
    CHECK(data_dir_for("/work/build/ci/daemon/app/ctquotad", "schema", source) == source);
    fs::remove_all(root);
}
