#include "api/csv.hpp"

#include <string_view>

namespace ctquota::api {
namespace {

constexpr std::string_view kFormulaStarts = "=+-@\t\r";

}  // namespace

std::string csv_text_cell(const std::string& text) {
    const bool formula =
        !text.empty() && kFormulaStarts.find(text.front()) != std::string_view::npos;
    const std::string cell = formula ? "'" + text : text;
    if (cell.find_first_of(",\"\r\n") == std::string::npos) {
        return cell;
    }
    std::string out = "\"";
    for (const char c : cell) {
        out += c == '"' ? std::string("\"\"") : std::string(1, c);
    }
    return out + "\"";
}

std::string csv_cell(const nlohmann::ordered_json& value) {
    if (value.is_null()) {
        return "";
    }
    return value.is_string() ? csv_text_cell(value.get<std::string>()) : value.dump();
}

}  // namespace ctquota::api
