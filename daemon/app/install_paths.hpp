#pragma once
// Where the daemon's read-only data lives when the config does not say:
// installed (<prefix>/sbin/ctquotad -> <prefix>/share/ctquota/<what>, as the
// Debian package lays it out: /usr/share/ctquota/{schema,web,policies}) or,
// for a binary run from its build tree, the source tree it was built from.
// The choice follows the running binary (/proc/self/exe), so a development
// build never reads an installed copy and an installed one never reads the
// build machine's source tree.

#include <filesystem>
#include <string_view>

namespace ctquota::app {

// `what`: "schema" or "web". `source_dir`: the source tree's copy.
std::filesystem::path data_dir(std::string_view what, const std::filesystem::path& source_dir);

// The same decision for an explicit executable path (tests).
std::filesystem::path data_dir_for(const std::filesystem::path& executable, std::string_view what,
                                   const std::filesystem::path& source_dir);

}  // namespace ctquota::app
