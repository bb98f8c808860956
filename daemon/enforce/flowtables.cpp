#include "enforce/flowtables.hpp"

#include <sstream>

namespace ctquota::enforce {
namespace {

std::vector<std::string> words(std::string_view line) {
    std::vector<std::string> out;
    std::string w;
    for (const char c : line) {
        if (c == ' ' || c == '\t' || c == ',' || c == '{' || c == '}' || c == ';' || c == '=') {
            if (!w.empty()) {
                out.push_back(std::move(w));
                w.clear();
            }
            continue;
        }
        w += c;
    }
    if (!w.empty()) {
        out.push_back(std::move(w));
    }
    return out;
}

std::string unquoted(std::string s) {
    if (s.size() >= 2 && s.front() == '"' && s.back() == '"') {
        return s.substr(1, s.size() - 2);
    }
    return s;
}

// One line inside a flowtable block.
void apply_line(Flowtable& ft, const std::vector<std::string>& w) {
    if (w[0] == "counter") {
        ft.counter = true;
    } else if (w[0] == "flags") {
        for (std::size_t i = 1; i < w.size(); ++i) {
            ft.offload = ft.offload || w[i] == "offload";
        }
    } else if (w[0] == "devices") {
        for (std::size_t i = 1; i < w.size(); ++i) {
            ft.devices.push_back(unquoted(w[i]));
        }
    }
}

}  // namespace

std::vector<Flowtable> parse_flowtables(std::string_view text) {
    std::vector<Flowtable> out;
    std::string family;
    std::string table;
    bool inside = false;
    std::istringstream in{std::string(text)};
    for (std::string line; std::getline(in, line);) {
        const auto w = words(line);
        if (line.find('}') != std::string::npos && w.empty()) {
            inside = false;  // the end of a block (a flowtable's or a table's)
            continue;
        }
        if (w.empty()) {
            continue;
        }
        if (w[0] == "table" && w.size() >= 3) {
            family = w[1];
            table = w[2];
            inside = false;
        } else if (w[0] == "flowtable" && w.size() >= 2) {
            out.push_back(Flowtable{family, table, w[1], {}, false, false});
            inside = true;
        } else if (inside) {
            apply_line(out.back(), w);
        }
    }
    return out;
}

std::string describe(const Flowtable& ft) {
    std::string devices;
    for (const auto& d : ft.devices) {
        devices += (devices.empty() ? "" : ", ") + d;
    }
    return "flowtable " + ft.name + " in table " + ft.family + " " + ft.table + " (devices " +
           (devices.empty() ? "none" : devices) + (ft.offload ? ", hardware offload" : "") +
           "): offloaded flows bypass blocks, throttles and kernel quotas" +
           (ft.counter ? "; conntrack still counts them (counter flag)"
                       : "; conntrack does NOT count them (no counter flag): their bytes are "
                         "never billed");
}

}  // namespace ctquota::enforce
