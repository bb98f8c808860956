#include "core/spill_codec.hpp"

#include <cstring>

#include "core/checkpoint_codec.hpp"

namespace ctquota::core {
namespace {

// Layout (little-endian): magic, version | journal id, base token, journal
// position | hour rows | unattributed rows | checkpoint changes (blob) |
// tombstones (a checkpoint blob of removals). Counts and blob sizes precede
// what they count.
constexpr char kMagic[4] = {'C', 'T', 'Q', 'S'};
constexpr std::uint32_t kVersion = 1;

void put_u64(std::string& out, std::uint64_t v) {
    char b[8];
    std::memcpy(b, &v, 8);
    out.append(b, 8);
}

void put_usage(std::string& out, const Usage& u) {
    for (const Counters* c : {&u.up, &u.down}) {
        put_u64(out, c->bytes);
        put_u64(out, c->packets);
    }
}

void put_rows(std::string& out, const std::vector<HourUsage>& rows) {
    put_u64(out, rows.size());
    for (const auto& h : rows) {
        put_u64(out, static_cast<std::uint64_t>(h.subscriber));
        for (const TimePoint* t : {&h.hour, &h.period_start, &h.period_end}) {
            put_u64(out, static_cast<std::uint64_t>(t->time_since_epoch().count()));
        }
        put_usage(out, h.usage);
        put_usage(out, h.free);
        put_usage(out, h.zero_rated);
    }
}

void put_blob(std::string& out, const std::string& blob) {
    put_u64(out, blob.size());
    out += blob;
}

class In {
  public:
    explicit In(const std::string& s) : s_(s) {}
    bool u64(std::uint64_t& v) {
        if (s_.size() - pos_ < 8) {
            return false;
        }
        std::memcpy(&v, s_.data() + pos_, 8);
        pos_ += 8;
        return true;
    }
    bool time(TimePoint& t) {
        std::uint64_t v = 0;
        const bool ok = u64(v);
        t = TimePoint{std::chrono::nanoseconds{static_cast<std::int64_t>(v)}};
        return ok;
    }
    bool usage(Usage& u) {
        return u64(u.up.bytes) && u64(u.up.packets) && u64(u.down.bytes) && u64(u.down.packets);
    }
    bool blob(std::string& b) {
        std::uint64_t n = 0;
        if (!u64(n) || s_.size() - pos_ < n) {
            return false;
        }
        b.assign(s_, pos_, n);
        pos_ += n;
        return true;
    }
    bool rows(std::vector<HourUsage>& out) {
        std::uint64_t n = 0;
        if (!u64(n) || n > (s_.size() - pos_) / (16 * 8)) {
            return false;
        }
        out.resize(n);
        for (auto& h : out) {
            std::uint64_t sub = 0;
            if (!u64(sub) || !time(h.hour) || !time(h.period_start) || !time(h.period_end) ||
                !usage(h.usage) || !usage(h.free) || !usage(h.zero_rated)) {
                return false;
            }
            h.subscriber = static_cast<SubscriberId>(sub);
        }
        return true;
    }
    [[nodiscard]] bool done() const { return pos_ == s_.size(); }
    void skip(std::size_t n) { pos_ += n; }

  private:
    const std::string& s_;
    std::size_t pos_ = 0;
};

}  // namespace

std::string encode_spill(const Spill& spill) {
    std::string out(kMagic, 4);
    out.append(reinterpret_cast<const char*>(&kVersion), 4);
    put_u64(out, spill.journal_id);
    put_u64(out, spill.base_token);
    put_u64(out, spill.batch.journal_position);
    put_rows(out, spill.batch.usage.hours);
    put_rows(out, spill.batch.usage.unattributed);
    put_blob(out, encode_checkpoint(spill.batch.checkpoint));
    CheckpointChanges tombstones;
    tombstones.removals = spill.tombstones;
    put_blob(out, encode_checkpoint(tombstones));
    return out;
}

std::optional<Spill> decode_spill(const std::string& bytes) {
    std::uint32_t version = 0;
    if (bytes.size() < 8 || std::memcmp(bytes.data(), kMagic, 4) != 0) {
        return std::nullopt;
    }
    std::memcpy(&version, bytes.data() + 4, 4);
    if (version != kVersion) {
        return std::nullopt;
    }
    In in(bytes);
    in.skip(8);
    Spill s;
    std::string changes, tombstones;
    if (!in.u64(s.journal_id) || !in.u64(s.base_token) || !in.u64(s.batch.journal_position) ||
        !in.rows(s.batch.usage.hours) || !in.rows(s.batch.usage.unattributed) ||
        !in.blob(changes) || !in.blob(tombstones) || !in.done()) {
        return std::nullopt;
    }
    auto c = decode_checkpoint(changes);
    auto t = decode_checkpoint(tombstones);
    if (!c || !t) {
        return std::nullopt;
    }
    s.batch.checkpoint = std::move(*c);
    s.tombstones = std::move(t->removals);
    return s;
}

}  // namespace ctquota::core
