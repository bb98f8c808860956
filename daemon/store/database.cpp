#include "store/database.hpp"

#include <poll.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <pqxx/pqxx>

namespace ctquota::store {
namespace {

// Server notices and libpqxx warnings go to the log instead of stderr.
class NoticeLogger final : public pqxx::errorhandler {
  public:
    explicit NoticeLogger(pqxx::connection_base& conn) : pqxx::errorhandler(conn) {}
    bool operator()(const char msg[]) noexcept override {
        std::string_view text(msg);
        while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) {
            text.remove_suffix(1);
        }
        if (text.starts_with("NOTICE") || text.starts_with("DEBUG") || text.starts_with("LOG") ||
            text.starts_with("INFO")) {
            spdlog::debug("postgresql: {}", text);
        } else {
            spdlog::warn("postgresql: {}", text);
        }
        return false;  // handled: do not print to stderr as well
    }
};

std::string trim_end(std::string s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) {
        s.pop_back();
    }
    return s;
}

std::string percent_decode(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%' && i + 2 < s.size() &&
            std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
            std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
            out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
            i += 2;
        } else {
            out += s[i];
        }
    }
    return out;
}

void uri_secrets(std::string_view rest, std::vector<std::string>& out) {
    const auto authority = rest.substr(0, rest.find_first_of("/?"));
    if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
        const auto userinfo = authority.substr(0, at);
        if (const auto colon = userinfo.find(':'); colon != std::string_view::npos) {
            out.emplace_back(userinfo.substr(colon + 1));
        }
    }
    const auto q = rest.find('?');
    if (q == std::string_view::npos) {
        return;
    }
    auto query = rest.substr(q + 1);
    while (!query.empty()) {
        const auto amp = query.find('&');
        const auto param = query.substr(0, amp);
        if (param.starts_with("password=")) {
            out.emplace_back(param.substr(9));
        }
        query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    }
}

// keyword = value pairs; values may be single-quoted with backslash escapes.
void keyword_secrets(std::string_view s, std::vector<std::string>& out) {
    std::size_t i = 0;
    const auto skip_space = [&] {
        while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) {
            ++i;
        }
    };
    while (true) {
        skip_space();
        const auto key_begin = i;
        while (i < s.size() && s[i] != '=' && !std::isspace(static_cast<unsigned char>(s[i]))) {
            ++i;
        }
        const auto key = s.substr(key_begin, i - key_begin);
        skip_space();
        if (i >= s.size() || s[i] != '=') {
            return;
        }
        ++i;
        skip_space();
        const bool quoted = i < s.size() && s[i] == '\'';
        i += quoted ? 1 : 0;
        const auto raw_begin = i;
        std::string value;
        while (i < s.size() &&
               (quoted ? s[i] != '\'' : !std::isspace(static_cast<unsigned char>(s[i])))) {
            if (s[i] == '\\' && i + 1 < s.size()) {
                ++i;
            }
            value += s[i++];
        }
        if (key == "password") {
            out.emplace_back(s.substr(raw_begin, i - raw_begin));
            out.push_back(value);
        }
        i += quoted ? 1 : 0;
    }
}

// Between transactions the server has nothing to say; a readable or hung-up
// socket means it closed the session (restart, pg_terminate_backend, idle
// timeout). Replacing the connection here spares the caller a failed call.
bool idle_and_alive(const pqxx::connection& conn) {
    pollfd p{conn.sock(), POLLIN, 0};
    if (p.fd < 0) {
        return false;
    }
    if (::poll(&p, 1, 0) <= 0) {
        return true;  // quiet (or EINTR: let the next statement find out)
    }
    spdlog::debug("database connection closed by the server while idle; reconnecting");
    return false;
}

}  // namespace

std::vector<std::string> connection_secrets(const std::string& url) {
    std::vector<std::string> found;
    std::string_view s(url);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) {
        s.remove_prefix(1);
    }
    if (s.starts_with("postgresql://") || s.starts_with("postgres://")) {
        uri_secrets(s.substr(s.find("://") + 3), found);
    } else {
        keyword_secrets(s, found);
    }
    std::vector<std::string> out;
    for (const auto& f : found) {
        out.push_back(f);
        out.push_back(percent_decode(f));
    }
    std::erase_if(out, [](const std::string& x) { return x.empty(); });
    // Longest first, so a password containing another is masked whole.
    std::sort(out.begin(), out.end(),
              [](const auto& a, const auto& b) { return a.size() > b.size(); });
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

Database::Database(std::string url, std::chrono::milliseconds statement_timeout)
    : url_(std::move(url)), statement_timeout_(statement_timeout) {}

Database::~Database() {
    reset();
}

std::string Database::redact(std::string text) const {
    for (const auto& secret : connection_secrets(url_)) {
        for (auto pos = text.find(secret); pos != std::string::npos;
             pos = text.find(secret, pos + 3)) {
            text.replace(pos, secret.size(), "***");
        }
    }
    return text;
}

pqxx::connection& Database::connection() {
    if (conn_ && conn_->is_open() && idle_and_alive(*conn_)) {
        return *conn_;
    }
    reset();
    try {
        auto conn = std::make_unique<pqxx::connection>(url_);
        if (statement_timeout_.count() > 0) {
            // A number we chose, never input: safe to spell into the statement.
            pqxx::nontransaction(*conn).exec0("SET statement_timeout = " +
                                              std::to_string(statement_timeout_.count()));
        }
        notices_ = std::make_unique<NoticeLogger>(*conn);
        conn_ = std::move(conn);
    } catch (const std::exception& e) {
        // libpq may quote parts of a malformed connection string back: redact.
        throw DatabaseError(
            redact("cannot connect to PostgreSQL (" + url_ + "): " + trim_end(e.what())));
    }
    return *conn_;
}

void Database::reset() {
    notices_.reset();
    conn_.reset();
}

void Database::fail(std::string_view what) {
    const std::string prefix(what);
    std::string reason;
    bool broken = false;
    try {
        throw;
    } catch (const pqxx::in_doubt_error& e) {
        broken = true;
        reason = "connection lost during COMMIT, outcome unknown: " + trim_end(e.what());
    } catch (const pqxx::broken_connection& e) {
        broken = true;
        reason = "connection lost: " + trim_end(e.what());
    } catch (const pqxx::sql_error& e) {
        reason = trim_end(e.what());
        if (!e.sqlstate().empty()) {
            reason += " [SQLSTATE " + e.sqlstate() + "]";
        }
    } catch (const pqxx::pqxx_exception& e) {
        reason = trim_end(e.base().what());
    }
    // Anything else (std::invalid_argument, DatabaseError) left the try above unchanged.
    if (broken || (conn_ && !conn_->is_open())) {
        reset();
    }
    throw DatabaseError(redact(prefix + ": " + reason));
}

}  // namespace ctquota::store
