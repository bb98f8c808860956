#include "enforce/nft_session.hpp"

#include <nftables/libnftables.h>

#include "enforce/enforcer.hpp"

namespace ctquota::enforce {

NftSession::NftSession() {
    ctx_ = nft_ctx_new(NFT_CTX_DEFAULT);
    if (ctx_ == nullptr) {
        throw EnforceError("cannot create a libnftables context");
    }
    // JSON output also makes libnftables parse JSON input (libnftables 1.0.6).
    nft_ctx_output_set_flags(ctx_, NFT_CTX_OUTPUT_JSON);
    nft_ctx_buffer_output(ctx_);
    nft_ctx_buffer_error(ctx_);
}

NftSession::~NftSession() {
    if (ctx_ != nullptr) {
        nft_ctx_free(ctx_);
    }
}

std::string NftSession::run(const nlohmann::json& commands) {
    return run(commands.dump());
}

std::string NftSession::run(const std::string& text) {
    const int rc = nft_run_cmd_from_buffer(ctx_, text.c_str());
    std::string error = nft_ctx_get_error_buffer(ctx_);
    nft_ctx_get_output_buffer(ctx_);  // discard (and reset) whatever was printed
    if (rc == 0) {
        return {};
    }
    // libnftables prefixes JSON errors with "internal:0:0-0: Error: "; keep the reason.
    while (!error.empty() && (error.back() == '\n' || error.back() == ' ')) {
        error.pop_back();
    }
    if (auto pos = error.find("Error: "); pos != std::string::npos) {
        error = error.substr(pos + 7);
    }
    if (auto nl = error.find('\n'); nl != std::string::npos) {
        error = error.substr(0, nl);
    }
    return error.empty() ? "rejected by the kernel" : error;
}

std::string NftSession::text_command(const std::string& command) {
    nft_ctx_output_set_flags(ctx_, 0);
    const int rc = nft_run_cmd_from_buffer(ctx_, command.c_str());
    nft_ctx_output_set_flags(ctx_, NFT_CTX_OUTPUT_JSON);
    const std::string out = nft_ctx_get_output_buffer(ctx_);
    const std::string error = nft_ctx_get_error_buffer(ctx_);
    if (rc != 0) {
        throw EnforceError("nft " + command + ": " + error);
    }
    return out;
}

std::optional<nlohmann::json> NftSession::list_table(const std::string& table) {
    return list({{"table", {{"family", "inet"}, {"name", table}}}}, "table inet " + table);
}

std::optional<nlohmann::json> NftSession::list_chain(const std::string& table,
                                                     const std::string& chain) {
    return list({{"chain", {{"family", "inet"}, {"table", table}, {"name", chain}}}},
                "chain inet " + table + " " + chain);
}

std::optional<nlohmann::json> NftSession::list_quota(const std::string& table,
                                                     const std::string& name) {
    return list({{"quota", {{"family", "inet"}, {"table", table}, {"name", name}}}},
                "quota inet " + table + " " + name);
}

std::optional<nlohmann::json> NftSession::list(const nlohmann::json& object,
                                               const std::string& what) {
    const nlohmann::json cmd = {{"nftables", {{{"list", object}}}}};
    const std::string text = cmd.dump();
    const int rc = nft_run_cmd_from_buffer(ctx_, text.c_str());
    const std::string out = nft_ctx_get_output_buffer(ctx_);
    const std::string error = nft_ctx_get_error_buffer(ctx_);
    if (rc != 0) {
        if (error.find("No such file or directory") != std::string::npos) {
            return std::nullopt;
        }
        throw EnforceError("nft list " + what + ": " + error);
    }
    try {
        return nlohmann::json::parse(out);
    } catch (const nlohmann::json::exception& e) {
        throw EnforceError("nft list " + what + ": unparsable JSON: " + e.what());
    }
}

}  // namespace ctquota::enforce
