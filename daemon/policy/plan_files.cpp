#include "policy/plan_files.hpp"

#include <toml++/toml.h>
#include <algorithm>
#include <fstream>
#include <sstream>
#include <vector>

#include "core/plan_json.hpp"

namespace ctquota::policy {
namespace {

using nlohmann::json;

constexpr std::uintmax_t kMaxPlanFileBytes = 1u << 20;

// Where each JSON path came from in the file, to turn a PlanError (JSON
// spelling) back into file:line:key (TOML spelling).
struct Translation {
    std::string source;
    std::map<std::string, std::uint32_t> lines;  // JSON path -> line
};

std::uint32_t line_of(const toml::node& node) {
    return node.source().begin.line;
}

[[noreturn]] void fail(const Translation& tr, const toml::node& node, const std::string& key,
                       const std::string& message) {
    throw PlanFileError(tr.source, line_of(node), key, message);
}

// The TOML spelling of a JSON path: only three keys are renamed.
std::string toml_key(std::string key) {
    const std::pair<std::string_view, std::string_view> kRenames[] = {{".down_bps", ".down"},
                                                                      {".up_bps", ".up"}};
    if (key == "quota_bytes") {
        return "quota";
    }
    for (const auto& [from, to] : kRenames) {
        if (key.ends_with(from)) {
            key.replace(key.size() - from.size(), from.size(), to);
        }
    }
    return key;
}

// `10` (a plain number) or a string in units; `what` names the expectation.
json quantity(const Translation& tr, const toml::node& node, const std::string& key,
              std::optional<std::uint64_t> (*parse)(std::string_view), const std::string& what) {
    if (node.is_integer() && node.as_integer()->get() >= 0) {
        return static_cast<std::uint64_t>(node.as_integer()->get());
    }
    if (node.is_string()) {
        if (auto v = parse(node.as_string()->get())) {
            return *v;
        }
    }
    fail(tr, node, key, "expected " + what);
}

json convert(Translation& tr, const toml::node& node, const std::string& path);

std::string child(const std::string& path, std::string_view key) {
    std::string out = path;
    if (!out.empty()) {
        out += '.';
    }
    out += key;
    return out;
}

json convert_table(Translation& tr, const toml::table& table, const std::string& path,
                   bool is_tier) {
    json out = json::object();
    for (const auto& [k, value] : table) {
        const std::string key{k.str()};
        const std::string full = child(path, key);
        if ((path.empty() && key == "quota_bytes") ||
            (is_tier && (key == "down_bps" || key == "up_bps"))) {
            fail(tr, value, full,
                 "unknown key (plan files write quota = \"100 GB\", down/up = \"2 Mbit/s\")");
        }
        if (path.empty() && key == "quota") {
            tr.lines["quota_bytes"] = line_of(value);
            if (value.is_string() && value.as_string()->get() == "unlimited") {
                out["quota_bytes"] = nullptr;
                continue;
            }
            out["quota_bytes"] = quantity(tr, value, full, core::parse_byte_quantity,
                                          "a size like \"100 GB\", \"1.5 TiB\" or \"unlimited\"");
            continue;
        }
        if (is_tier && (key == "down" || key == "up")) {
            const auto json_key = key + "_bps";
            tr.lines[child(path, json_key)] = line_of(value);
            out[json_key] = quantity(tr, value, full, core::parse_bit_rate,
                                     "a rate like \"2 Mbit/s\" or \"500 kbit/s\"");
            continue;
        }
        out[key] = convert(tr, value, full);
    }
    return out;
}

json convert(Translation& tr, const toml::node& node, const std::string& path) {
    tr.lines[path] = line_of(node);
    if (const auto* table = node.as_table()) {
        return convert_table(tr, *table, path, false);
    }
    if (const auto* array = node.as_array()) {
        json out = json::array();
        for (std::size_t i = 0; i < array->size(); ++i) {
            const auto element = path + "[" + std::to_string(i) + "]";
            const auto& item = *array->get(i);
            if (path == "tiers" && item.is_table()) {
                tr.lines[element] = line_of(item);
                out.push_back(convert_table(tr, *item.as_table(), element, true));
            } else {
                out.push_back(convert(tr, item, element));
            }
        }
        return out;
    }
    if (const auto* s = node.as_string()) {
        return s->get();
    }
    if (const auto* i = node.as_integer()) {
        return i->get();
    }
    if (const auto* f = node.as_floating_point()) {
        return f->get();
    }
    if (const auto* b = node.as_boolean()) {
        return b->get();
    }
    if (const auto* t = node.as_time()) {  // time = 01:00:00 written unquoted
        std::ostringstream out;
        out << t->get();
        auto text = out.str();
        if (text.ends_with(":00") && text.size() == 8) {
            text.resize(5);
        }
        return text;
    }
    fail(tr, node, path, "unexpected date: plan files use no dates");
}

std::uint32_t line_for(const Translation& tr, std::string key) {
    // The path itself, else its nearest ancestor that the file spelled out.
    while (!key.empty()) {
        if (auto it = tr.lines.find(key); it != tr.lines.end()) {
            return it->second;
        }
        const auto cut = key.find_last_of(".[");
        key.resize(cut == std::string::npos ? 0 : cut);
    }
    return 1;
}

std::string read_file(const std::filesystem::path& file) {
    std::error_code ec;
    const auto size = std::filesystem::file_size(file, ec);
    if (ec) {
        throw PlanFileError(file.string(), 0, "", "cannot read: " + ec.message());
    }
    if (size > kMaxPlanFileBytes) {
        throw PlanFileError(file.string(), 0, "", "larger than 1 MiB; not a plan file");
    }
    std::ifstream in(file, std::ios::binary);
    std::stringstream buf;
    buf << in.rdbuf();
    if (!in) {
        throw PlanFileError(file.string(), 0, "", "cannot read the file");
    }
    return buf.str();
}

std::string describe(const std::string& file, std::uint32_t line, const std::string& key,
                     const std::string& message) {
    std::string out = file;
    if (line > 0) {
        out += ":" + std::to_string(line);
    }
    out += ": ";
    if (!key.empty()) {
        out += key + ": ";
    }
    return out + message;
}

}  // namespace

PlanFileError::PlanFileError(std::string file_, std::uint32_t line_, std::string key_,
                             std::string message_)
    : std::runtime_error(describe(file_, line_, key_, message_)),
      file(std::move(file_)),
      line(line_),
      key(std::move(key_)),
      message(std::move(message_)) {}

const core::Plan* PlanSet::find(std::string_view name) const {
    const auto it = entries.find(name);
    return it == entries.end() ? nullptr : &it->second.plan;
}

const std::filesystem::path* PlanSet::source_file(std::string_view name) const {
    const auto it = entries.find(name);
    return it == entries.end() ? nullptr : &it->second.file;
}

core::Plan parse_plan_file(std::string_view text, const std::string& source) {
    toml::table root;
    try {
        root = toml::parse(text, source);
    } catch (const toml::parse_error& e) {
        throw PlanFileError(source, e.source().begin.line, "", std::string(e.description()));
    }
    Translation tr{source, {}};
    const auto definition = convert_table(tr, root, "", false);
    const auto name = std::filesystem::path(source).stem().string();
    try {
        return core::plan_from_json(definition, name);
    } catch (const core::PlanError& e) {
        auto message = e.message;
        if (e.key == "name") {
            message += " (a plan's name is its file name without .toml)";
        }
        throw PlanFileError(source, line_for(tr, e.key), toml_key(e.key), message);
    }
}

PlanSet load_plan_dir(const std::filesystem::path& dir) {
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) {
        throw PlanFileError(dir.string(), 0, "", "not a directory of plan files");
    }
    std::vector<std::filesystem::path> files;
    try {
        for (const auto& entry : std::filesystem::directory_iterator(dir)) {
            const auto file_name = entry.path().filename().string();
            if (entry.path().extension() == ".toml" && !file_name.starts_with('.') &&
                entry.is_regular_file()) {
                files.push_back(entry.path());
            }
        }
    } catch (const std::filesystem::filesystem_error& e) {
        throw PlanFileError(dir.string(), 0, "", std::string("cannot list: ") + e.what());
    }
    std::sort(files.begin(), files.end());
    PlanSet set;
    for (const auto& file : files) {
        auto plan = parse_plan_file(read_file(file), file.string());
        auto name = plan.name;
        set.entries.emplace(std::move(name), PlanSet::Entry{std::move(plan), file});
    }
    return set;
}

}  // namespace ctquota::policy
