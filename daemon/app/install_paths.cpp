#include "app/install_paths.hpp"

#include <system_error>

namespace ctquota::app {

std::filesystem::path data_dir_for(const std::filesystem::path& executable, std::string_view what,
                                   const std::filesystem::path& source_dir) {
    const auto bin = executable.parent_path();
    if (bin.filename() == "sbin" || bin.filename() == "bin") {
        // Installed (the package's /usr/share/ctquota exists): its paths, even
        // for a part that is missing, so an error names the installed path.
        const auto installed = bin.parent_path() / "share" / "ctquota";
        std::error_code ec;
        if (std::filesystem::is_directory(installed, ec)) {
            return installed / what;
        }
    }
    return source_dir;
}

std::filesystem::path data_dir(std::string_view what, const std::filesystem::path& source_dir) {
    std::error_code ec;
    const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    return ec ? source_dir : data_dir_for(self, what, source_dir);
}

}  // namespace ctquota::app
