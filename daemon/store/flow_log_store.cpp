#include "store/flow_log_store.hpp"

#include <arpa/inet.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <pqxx/pqxx>
#include <set>

#include "store/sql_util.hpp"

namespace ctquota::store {
namespace {

using std::chrono::days;
using std::chrono::nanoseconds;

// Any constant works; the same in every ctquotad (partition DDL of several gateways).
constexpr long long kPartitionLock = 0x63747166;  // "ctqf"
constexpr std::size_t kCopyChunkBytes = 1 << 20;
constexpr const char* kColumns[] = {
    "gateway_id",    "flow_end",       "flow_start",   "final",       "start_first_seen",
    "subscriber_id", "direction",      "l4proto",      "orig_src",    "orig_sport",
    "orig_dst",      "orig_dport",     "reply_src",    "reply_sport", "reply_dst",
    "reply_dport",   "public_address", "public_port",  "orig_bytes",  "orig_packets",
    "reply_bytes",   "reply_packets",  "conntrack_id", "flow_id"};

std::int64_t day_of(std::int64_t ns) {
    return std::chrono::floor<days>(nanoseconds{ns}).count();
}

std::string day_text(std::int64_t day) {
    const std::chrono::year_month_day ymd{std::chrono::sys_days{days{day}}};
    char buf[16];
    std::snprintf(buf, sizeof buf, "%04d-%02u-%02u", static_cast<int>(ymd.year()),
                  static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()));
    return buf;
}

// `v` as exactly `width` digits, zero-padded.
void append_digits(std::string& out, long long v, int width) {
    char buf[8];
    for (int i = width - 1; i >= 0; --i) {
        buf[i] = static_cast<char>('0' + v % 10);
        v /= 10;
    }
    out.append(buf, static_cast<std::size_t>(width));
}

// "2024-05-01 12:00:00.123456+00": COPY's text form of a timestamptz, in UTC.
// Times and IPv4 addresses are formatted by hand: with snprintf and
// inet_ntop a line took 1.8 us, now 0.46 us (records_bench format, RESULTS.md).
void append_timestamp(std::string& out, std::int64_t ns) {
    const auto t = nanoseconds{ns};
    const auto day = std::chrono::floor<days>(t);
    const std::chrono::year_month_day ymd{std::chrono::sys_days{day}};
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(t - day).count();
    const auto secs = us / 1'000'000;
    append_digits(out, static_cast<int>(ymd.year()), 4);
    out += '-';
    append_digits(out, static_cast<unsigned>(ymd.month()), 2);
    out += '-';
    append_digits(out, static_cast<unsigned>(ymd.day()), 2);
    out += ' ';
    append_digits(out, secs / 3600, 2);
    out += ':';
    append_digits(out, secs / 60 % 60, 2);
    out += ':';
    append_digits(out, secs % 60, 2);
    out += '.';
    append_digits(out, us % 1'000'000, 6);
    out += "+00";
}

// inet text without a temporary string.
void append_address(std::string& out, const core::IpAddress& a) {
    if (a.family == core::Family::V4) {
        for (int i = 0; i < 4; ++i) {
            if (i != 0) {
                out += '.';
            }
            char buf[4];
            const auto end = std::to_chars(buf, buf + sizeof buf, a.bytes[i]).ptr;
            out.append(buf, end);
        }
        return;
    }
    char buf[INET6_ADDRSTRLEN];
    const int family = a.family == core::Family::V4 ? AF_INET : AF_INET6;
    if (inet_ntop(family, a.bytes.data(), buf, sizeof buf) != nullptr) {
        out += buf;
    }
}

template <typename T>
void append_number(std::string& out, T v) {
    char buf[24];
    const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, end);
}

// COPY text format: backslash, tab, newline and carriage return escaped.
void append_text(std::string& out, const std::string& s) {
    for (const char c : s) {
        switch (c) {
            case '\\':
                out += "\\\\";
                break;
            case '\t':
                out += "\\t";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            default:
                out += c;
        }
    }
}

void tab(std::string& out) {
    out += '\t';
}

std::string copy_statement() {
    std::string columns;
    for (const char* c : kColumns) {
        columns += (columns.empty() ? "" : ", ") + std::string(c);
    }
    return "COPY flow_log (" + columns + ") FROM STDIN";
}

std::string partition_ddl(std::int64_t day) {
    // Names and bounds come from our own date formatting, never from input.
    return "CREATE TABLE " + flow_log_partition_name(day) +
           " PARTITION OF flow_log FOR VALUES FROM ('" + day_text(day) + " 00:00:00+00') TO ('" +
           day_text(day + 1) + " 00:00:00+00')";
}

// flow_log_pYYYYMMDD -> its day; nullopt for any other name.
std::optional<std::int64_t> partition_day(const std::string& name) {
    constexpr std::string_view prefix = "flow_log_p";
    if (name.size() != prefix.size() + 8 || !name.starts_with(prefix)) {
        return std::nullopt;
    }
    int y = 0;
    unsigned m = 0, d = 0;
    const char* p = name.data() + prefix.size();
    if (std::from_chars(p, p + 4, y).ptr != p + 4 ||
        std::from_chars(p + 4, p + 6, m).ptr != p + 6 ||
        std::from_chars(p + 6, p + 8, d).ptr != p + 8) {
        return std::nullopt;
    }
    const std::chrono::year_month_day ymd{std::chrono::year{y}, std::chrono::month{m},
                                          std::chrono::day{d}};
    if (!ymd.ok()) {
        return std::nullopt;
    }
    return std::chrono::sys_days{ymd}.time_since_epoch().count();
}

}  // namespace

std::string flow_log_timestamp(std::int64_t unix_ns) {
    std::string out;
    append_timestamp(out, unix_ns);
    return out;
}

std::string flow_log_partition_name(std::int64_t day) {
    auto text = day_text(day);
    text.erase(std::remove(text.begin(), text.end(), '-'), text.end());
    return "flow_log_p" + text;
}

void append_flow_log_line(std::string& out, const std::string& gateway_id,
                          const core::FlowRecord& r) {
    const auto pub = core::public_endpoint(r);
    append_text(out, gateway_id);
    tab(out);
    append_timestamp(out, r.end_ns);
    tab(out);
    append_timestamp(out, r.start_ns);
    tab(out);
    out += r.kind == core::RecordKind::Final ? 't' : 'f';
    tab(out);
    out += r.start_is_first_seen ? 't' : 'f';
    tab(out);
    if (r.subscriber == core::kUnattributed) {
        out += "\\N";
    } else {
        append_number(out, r.subscriber);
    }
    tab(out);
    append_number(out, static_cast<int>(r.direction));
    tab(out);
    append_number(out, static_cast<int>(r.orig.l4proto));
    for (const auto* t : {&r.orig, &r.reply}) {
        tab(out);
        append_address(out, t->src);
        tab(out);
        append_number(out, t->src_port);
        tab(out);
        append_address(out, t->dst);
        tab(out);
        append_number(out, t->dst_port);
    }
    tab(out);
    append_address(out, pub.address);
    tab(out);
    append_number(out, pub.port);
    for (const auto* c : {&r.orig_total, &r.reply_total}) {
        tab(out);
        append_number(out, static_cast<std::int64_t>(c->bytes));
        tab(out);
        append_number(out, static_cast<std::int64_t>(c->packets));
    }
    tab(out);
    append_number(out, static_cast<std::int64_t>(r.conntrack_id));
    tab(out);
    append_number(out, static_cast<std::int64_t>(r.flow_id));  // the bits, as a signed bigint
    out += '\n';
}

FlowLogStore::FlowLogStore(Database& db, std::string gateway_id,
                           std::chrono::milliseconds statement_timeout)
    : db_(db), gateway_id_(std::move(gateway_id)), copy_(db.url(), statement_timeout) {}

void FlowLogStore::ensure_partition(core::TimePoint t) {
    const auto day = day_of(t.time_since_epoch().count());
    if (partitions_.contains(day)) {
        return;
    }
    const auto name = flow_log_partition_name(day);
    in_transaction(db_, "creating flow log partition", [&](pqxx::work& txn) {
        // Several gateways may need the same day at once: one creates it.
        txn.exec_params("SELECT pg_advisory_xact_lock($1)", kPartitionLock);
        const auto exists = txn.exec_params1("SELECT to_regclass($1) IS NOT NULL", name);
        if (!exists[0].as<bool>()) {
            txn.exec(partition_ddl(day));
            spdlog::info("flow log: created partition {}", name);
        }
        return 0;
    });
    partitions_.insert(day);
}

void FlowLogStore::ensure_partitions(std::span<const core::FlowRecord* const> records) {
    std::set<std::int64_t> needed;
    for (const auto* r : records) {
        needed.insert(day_of(r->end_ns));
    }
    for (const auto day : needed) {
        ensure_partition(core::TimePoint{days{day}});
    }
}

void FlowLogStore::write(std::span<const core::FlowRecord* const> records) {
    if (records.empty()) {
        return;
    }
    ensure_partitions(records);
    std::size_t next = 0;
    try {
        copy_.copy(copy_statement(), [&](std::string& chunk) {
            for (; next < records.size() && chunk.size() < kCopyChunkBytes; ++next) {
                append_flow_log_line(chunk, gateway_id_, *records[next]);
            }
            return next < records.size();
        });
    } catch (const DatabaseError&) {
        // A partition dropped behind our back (retention of another gateway)
        // fails the COPY: ask the catalog again next time.
        partitions_.clear();
        throw;
    }
}

std::vector<std::string> FlowLogStore::drop_partitions_before(core::TimePoint keep_from) {
    const auto keep_day = std::chrono::floor<days>(keep_from.time_since_epoch()).count();
    return in_transaction(db_, "dropping old flow log partitions", [&](pqxx::work& txn) {
        txn.exec_params("SELECT pg_advisory_xact_lock($1)", kPartitionLock);
        const auto rows = txn.exec(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'flow_log'::regclass");
        std::vector<std::string> dropped;
        for (const auto& row : rows) {
            const auto name = row[0].as<std::string>();
            const auto day = partition_day(name);
            // A partition covers [day, day + 1): it goes once all of it is older than keep_from.
            if (day && *day + 1 <= keep_day) {
                txn.exec("DROP TABLE " + name);  // a name of our own pattern, checked above
                dropped.push_back(name);
                partitions_.erase(*day);
            }
        }
        std::sort(dropped.begin(), dropped.end());
        return dropped;
    });
}

std::vector<core::SubscriberId> FlowLogStore::subscriber_ids(
    const std::vector<std::string>& external_ids) {
    return in_transaction(db_, "reading subscriber ids", [&](pqxx::work& txn) {
        // The ids travel as one JSON array parameter: no array literal to escape.
        const auto rows = txn.exec_params(
            "SELECT id FROM subscribers WHERE external_id IN "
            "(SELECT jsonb_array_elements_text($1::jsonb)) ORDER BY id",
            nlohmann::json(external_ids).dump());
        std::vector<core::SubscriberId> out;
        for (const auto& row : rows) {
            out.push_back(row[0].as<core::SubscriberId>());
        }
        return out;
    });
}

}  // namespace ctquota::store
