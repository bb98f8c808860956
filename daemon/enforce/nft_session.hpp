#pragma once
// One libnftables context: JSON in, JSON out, errors captured as text.
// No `nft` process is ever spawned.

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

struct nft_ctx;

namespace ctquota::enforce {

class NftSession {
  public:
    NftSession();
    ~NftSession();
    NftSession(const NftSession&) = delete;
    NftSession& operator=(const NftSession&) = delete;

    // Runs one JSON command document as one transaction; returns the error
    // text, or an empty string on success.
    std::string run(const nlohmann::json& commands);
    std::string run(const std::string& json_text);
    // `list table inet <table>`; nullopt when the table does not exist.
    std::optional<nlohmann::json> list_table(const std::string& table);
    // `list chain inet <table> <chain>` (its rules, no set elements: cheap);
    // nullopt when the table or the chain does not exist.
    std::optional<nlohmann::json> list_chain(const std::string& table, const std::string& chain);
    // `list quota inet <table> <name>`; nullopt when it does not exist.
    std::optional<nlohmann::json> list_quota(const std::string& table, const std::string& name);

    // A command in nft's own syntax, answered in nft's text (for what the
    // JSON output leaves out); throws EnforceError when it fails.
    std::string text_command(const std::string& command);

  private:
    std::optional<nlohmann::json> list(const nlohmann::json& object, const std::string& what);

    nft_ctx* ctx_ = nullptr;
};

}  // namespace ctquota::enforce
