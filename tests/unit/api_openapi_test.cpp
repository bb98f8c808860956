// The OpenAPI document (daemon/api/openapi.json, compiled in) against the
// router: it parses, is OpenAPI 3.1, lists exactly the routes served (both
// directions), declares every path parameter, and every $ref resolves.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "api/openapi_document.hpp"
#include "api/routes.hpp"

using namespace ctquota;
using namespace ctquota::api;

namespace {

using Operation = std::pair<std::string, std::string>;  // method (upper case), path

const std::set<std::string> kMethods = {"get",   "put",  "post",    "delete",
                                        "patch", "head", "options", "trace"};

std::string upper(std::string s) {
    for (auto& c : s) {
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    return s;
}

std::set<Operation> served_operations() {
    DatabasePool pool("postgresql:///never-connected", 1);  // connections open on first use
    core::ManualClock clock(core::TimePoint{});
    metrics::Metrics metrics;
    const core::BindingRules rules;
    Services services{pool, clock, metrics, rules};
    const auto router = make_router(services);
    std::set<Operation> out;
    for (const auto& route : router.routes()) {
        out.emplace(route.method, route.pattern);
    }
    return out;
}

std::set<Operation> documented_operations(const nlohmann::json& doc) {
    std::set<Operation> out;
    for (const auto& [path, item] : doc.at("paths").items()) {
        for (const auto& [key, op] : item.items()) {
            if (kMethods.contains(key)) {
                out.emplace(upper(key), path);
            }
        }
    }
    return out;
}

// Every {name} of `path` is a path parameter of the path item or the operation.
bool declares_path_params(const nlohmann::json& doc, const std::string& path,
                          const nlohmann::json& op) {
    std::set<std::string> declared;
    for (const auto* list : {&doc.at("paths").at(path), &op}) {
        for (const auto& p : list->value("parameters", nlohmann::json::array())) {
            const auto& param =
                p.contains("$ref")
                    ? doc.at(nlohmann::json::json_pointer(p["$ref"].get<std::string>().substr(1)))
                    : p;
            if (param.at("in") == "path") {
                declared.insert(param.at("name").get<std::string>());
            }
        }
    }
    for (auto open = path.find('{'); open != std::string::npos; open = path.find('{', open + 1)) {
        const auto name = path.substr(open + 1, path.find('}', open) - open - 1);
        if (!declared.contains(name)) {
            return false;
        }
    }
    return true;
}

void collect_refs(const nlohmann::json& j, std::vector<std::string>& out) {
    if (j.is_object()) {
        for (const auto& [key, value] : j.items()) {
            if (key == "$ref" && value.is_string()) {
                out.push_back(value.get<std::string>());
            } else {
                collect_refs(value, out);
            }
        }
    } else if (j.is_array()) {
        for (const auto& value : j) {
            collect_refs(value, out);
        }
    }
}

}  // namespace

TEST_CASE("the OpenAPI document is OpenAPI 3.1 and lists exactly the routes served") {
    const auto doc = nlohmann::json::parse(openapi_document());
    REQUIRE(doc.at("openapi").is_string());
    CHECK(doc["openapi"].get<std::string>().starts_with("3.1."));
    CHECK(doc.at("info").contains("title"));
    CHECK(doc.at("info").contains("version"));

    const auto served = served_operations();
    const auto documented = documented_operations(doc);
    for (const auto& [method, path] : served) {
        CAPTURE(method);
        CAPTURE(path);
        CHECK_MESSAGE(documented.contains({method, path}), "served but not documented");
    }
    for (const auto& [method, path] : documented) {
        CAPTURE(method);
        CAPTURE(path);
        CHECK_MESSAGE(served.contains({method, path}), "documented but not served");
    }
}

TEST_CASE("the OpenAPI document: path parameters declared, errors as problem+json, refs resolve") {
    const auto doc = nlohmann::json::parse(openapi_document());
    for (const auto& [path, item] : doc.at("paths").items()) {
        for (const auto& [method, op] : item.items()) {
            if (!kMethods.contains(method)) {
                continue;
            }
            CAPTURE(method);
            CAPTURE(path);
            CHECK(declares_path_params(doc, path, op));
            REQUIRE(op.contains("responses"));
            CHECK(op.contains("operationId"));
        }
    }
    for (const auto& [name, response] : doc.at("components").at("responses").items()) {
        CAPTURE(name);
        CHECK(response.at("content").contains("application/problem+json"));
    }
    std::vector<std::string> refs;
    collect_refs(doc, refs);
    CHECK(refs.size() > 20);
    for (const auto& ref : refs) {
        CAPTURE(ref);
        REQUIRE(ref.starts_with("#/"));
        CHECK(doc.contains(nlohmann::json::json_pointer(ref.substr(1))));
    }
}
