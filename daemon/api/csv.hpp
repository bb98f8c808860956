#pragma once
// CSV cells for the exports (RFC 4180 quoting). A text cell that starts with
// = + - @, a tab or a carriage return is prefixed with a single quote
// (OWASP "CSV injection"): a spreadsheet opening the export would otherwise
// run it as a formula, and subscriber ids are chosen by whoever creates them.
// JSON answers carry the values unchanged. Pure.

#include <nlohmann/json.hpp>
#include <string>

namespace ctquota::api {

// One text cell, neutralised and quoted where needed.
std::string csv_text_cell(const std::string& text);
// A JSON value as a cell: null empty, numbers as JSON writes them, text as above.
std::string csv_cell(const nlohmann::ordered_json& value);

}  // namespace ctquota::api
