#include "api/tokens.hpp"

#include <openssl/evp.h>
#include <sys/random.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "api/base64.hpp"
#include "core/hex.hpp"

namespace ctquota::api {
namespace {

constexpr std::string_view kPrefix = "ctq_";
constexpr std::size_t kRandomBytes = 32;
constexpr std::size_t kEncodedLength = 43;  // ceil(32 * 8 / 6)

void fill_random(unsigned char* buf, std::size_t n) {
    std::size_t got = 0;
    while (got < n) {
        const auto r = getrandom(buf + got, n - got, 0);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw std::runtime_error(std::string("getrandom failed: ") + std::strerror(errno));
        }
        got += static_cast<std::size_t>(r);
    }
}

}  // namespace

std::string generate_token() {
    unsigned char buf[kRandomBytes];
    fill_random(buf, sizeof buf);
    return std::string(kPrefix) +
           base64url_encode(std::string_view(reinterpret_cast<const char*>(buf), sizeof buf));
}

bool is_token_syntax(std::string_view token) {
    if (!token.starts_with(kPrefix) || token.size() != kPrefix.size() + kEncodedLength) {
        return false;
    }
    return base64url_decode(token.substr(kPrefix.size())).has_value();
}

std::string sha256_hex(std::string_view text) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    if (EVP_Digest(text.data(), text.size(), digest, &length, EVP_sha256(), nullptr) != 1) {
        throw std::runtime_error("SHA-256 failed (OpenSSL EVP_Digest)");
    }
    return core::hex(digest, length);
}

std::optional<std::string> bearer_token(std::string_view authorization) {
    constexpr std::string_view kScheme = "bearer ";
    if (authorization.size() <= kScheme.size() ||
        !std::equal(kScheme.begin(), kScheme.end(), authorization.begin(), [](char a, char b) {
            return a == std::tolower(static_cast<unsigned char>(b));
        })) {
        return std::nullopt;
    }
    auto token = authorization.substr(kScheme.size());
    while (!token.empty() && token.front() == ' ') {
        token.remove_prefix(1);
    }
    while (!token.empty() && token.back() == ' ') {
        token.remove_suffix(1);
    }
    return std::string(token);
}

std::optional<Role> parse_role(std::string_view text) {
    if (text == "admin") {
        return Role::Admin;
    }
    if (text == "billing") {
        return Role::Billing;
    }
    return std::nullopt;
}

const char* role_name(Role role) {
    return role == Role::Admin ? "admin" : "billing";
}

}  // namespace ctquota::api
