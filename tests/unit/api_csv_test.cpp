// CSV cells of the exports: RFC 4180 quoting, and text a spreadsheet would
// run as a formula neutralised with a leading single quote (OWASP).
#include <doctest/doctest.h>

#include "api/csv.hpp"

using ctquota::api::csv_cell;
using ctquota::api::csv_text_cell;

TEST_CASE("csv cells: formulas neutralised, quoting as RFC 4180") {
    struct Row {
        const char* text;
        const char* cell;
    };
    const Row rows[] = {
        {"cust-42", "cust-42"},
        {"=HYPERLINK(\"http://x\")", "\"'=HYPERLINK(\"\"http://x\"\")\""},
        {"=1+2", "'=1+2"},
        {"+1", "'+1"},
        {"-2", "'-2"},
        {"@SUM(A1)", "'@SUM(A1)"},
        {"\tx", "'\tx"},
        {"\rx", "\"'\rx\""},
        {"a=b", "a=b"},
        {"'already", "'already"},
        {"a,b", "\"a,b\""},
        {"say \"hi\"", "\"say \"\"hi\"\"\""},
        {"", ""},
    };
    for (const auto& r : rows) {
        CAPTURE(r.text);
        CHECK(csv_text_cell(r.text) == r.cell);
    }
}

TEST_CASE("csv cells of JSON values: numbers as they are, null empty") {
    CHECK(csv_cell(nlohmann::ordered_json(-5)) == "-5");
    CHECK(csv_cell(nlohmann::ordered_json(123456789012345ull)) == "123456789012345");
    CHECK(csv_cell(nlohmann::ordered_json()) == "");
    CHECK(csv_cell(nlohmann::ordered_json("-x")) == "'-x");
}
