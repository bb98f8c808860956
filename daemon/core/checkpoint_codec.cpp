#include "core/checkpoint_codec.hpp"

#include <cstring>
#include <unordered_map>

namespace ctquota::core {
namespace {

// Layout (little-endian, fixed size records so decoding is a bounds check and
// a loop): header | upserts (key + 4 counters [+ lost flag + lost time]) |
// removals (key). Version 1 upserts have no lost fields (rows of live flows
// only): still read, as databases keep them until the next snapshot.
constexpr char kMagic[4] = {'C', 'T', 'Q', 'L'};
constexpr std::uint8_t kVersion = 2;
constexpr std::uint8_t kVersionLiveOnly = 1;
constexpr std::size_t kHeaderSize = 4 + 1 + 1 + 2 + 4 + 4;
constexpr std::size_t kKeySize = 4 + 2 + 1 + 1 + 16 + 16 + 2 + 2 + 8;
constexpr std::size_t kUpsertSizeV1 = kKeySize + 4 * sizeof(std::uint64_t);
constexpr std::size_t kUpsertSize = kUpsertSizeV1 + 1 + sizeof(std::int64_t);

class Writer {
  public:
    explicit Writer(std::size_t reserve) { out_.reserve(reserve); }
    template <typename T>
    void put(T v) {
        char buf[sizeof(T)];
        std::memcpy(buf, &v, sizeof(T));
        out_.append(buf, sizeof(T));
    }
    void put_bytes(const void* p, std::size_t n) { out_.append(static_cast<const char*>(p), n); }
    std::string take() { return std::move(out_); }

  private:
    std::string out_;
};

class Reader {
  public:
    explicit Reader(const std::string& in) : in_(in) {}
    template <typename T>
    T get() {
        T v{};
        std::memcpy(&v, in_.data() + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }
    void get_bytes(void* p, std::size_t n) {
        std::memcpy(p, in_.data() + pos_, n);
        pos_ += n;
    }
    [[nodiscard]] std::size_t remaining() const { return in_.size() - pos_; }

  private:
    const std::string& in_;
    std::size_t pos_ = 0;
};

void put_key(Writer& w, const FlowKey& k) {
    w.put(k.id);
    w.put(k.zone);
    w.put(k.orig.l4proto);
    w.put(static_cast<std::uint8_t>(k.orig.src.family));
    w.put_bytes(k.orig.src.bytes.data(), 16);
    w.put_bytes(k.orig.dst.bytes.data(), 16);
    w.put(k.orig.src_port);
    w.put(k.orig.dst_port);
    w.put(k.start_ns);
}

FlowKey get_key(Reader& r) {
    FlowKey k;
    k.id = r.get<std::uint32_t>();
    k.zone = r.get<std::uint16_t>();
    k.orig.l4proto = r.get<std::uint8_t>();
    const auto family = static_cast<Family>(r.get<std::uint8_t>());
    k.orig.src.family = family;
    k.orig.dst.family = family;
    r.get_bytes(k.orig.src.bytes.data(), 16);
    r.get_bytes(k.orig.dst.bytes.data(), 16);
    k.orig.src_port = r.get<std::uint16_t>();
    k.orig.dst_port = r.get<std::uint16_t>();
    k.start_ns = r.get<std::uint64_t>();
    return k;
}

}  // namespace

std::string encode_checkpoint(const CheckpointChanges& changes) {
    Writer w(kHeaderSize + changes.upserts.size() * kUpsertSize +
             changes.removals.size() * kKeySize);
    w.put_bytes(kMagic, 4);
    w.put(kVersion);
    w.put(static_cast<std::uint8_t>(changes.snapshot ? 1 : 0));
    w.put(std::uint16_t{0});
    w.put(static_cast<std::uint32_t>(changes.upserts.size()));
    w.put(static_cast<std::uint32_t>(changes.removals.size()));
    for (const auto& e : changes.upserts) {
        put_key(w, e.key);
        w.put(e.orig.bytes);
        w.put(e.orig.packets);
        w.put(e.reply.bytes);
        w.put(e.reply.packets);
        w.put(static_cast<std::uint8_t>(e.lost ? 1 : 0));
        w.put(static_cast<std::int64_t>(e.lost_at.time_since_epoch().count()));
    }
    for (const auto& k : changes.removals) {
        put_key(w, k);
    }
    return w.take();
}

std::optional<CheckpointChanges> decode_checkpoint(const std::string& blob) {
    if (blob.size() < kHeaderSize || std::memcmp(blob.data(), kMagic, 4) != 0) {
        return std::nullopt;
    }
    Reader r(blob);
    (void)r.get<std::uint32_t>();  // magic, checked above
    const auto version = r.get<std::uint8_t>();
    if (version != kVersion && version != kVersionLiveOnly) {
        return std::nullopt;
    }
    const bool has_lost = version == kVersion;
    CheckpointChanges c;
    c.snapshot = r.get<std::uint8_t>() != 0;
    (void)r.get<std::uint16_t>();
    const std::size_t n_upserts = r.get<std::uint32_t>();
    const std::size_t n_removals = r.get<std::uint32_t>();
    const std::size_t upsert_size = has_lost ? kUpsertSize : kUpsertSizeV1;
    if (r.remaining() != n_upserts * upsert_size + n_removals * kKeySize) {
        return std::nullopt;
    }
    c.upserts.reserve(n_upserts);
    for (std::size_t i = 0; i < n_upserts; ++i) {
        CheckpointEntry e;
        e.key = get_key(r);
        e.orig.bytes = r.get<std::uint64_t>();
        e.orig.packets = r.get<std::uint64_t>();
        e.reply.bytes = r.get<std::uint64_t>();
        e.reply.packets = r.get<std::uint64_t>();
        if (has_lost) {
            const auto lost = r.get<std::uint8_t>();
            e.lost_at = TimePoint{std::chrono::nanoseconds{r.get<std::int64_t>()}};
            if (lost > 1) {
                return std::nullopt;
            }
            e.lost = lost == 1;
        }
        c.upserts.push_back(e);
    }
    c.removals.reserve(n_removals);
    for (std::size_t i = 0; i < n_removals; ++i) {
        c.removals.push_back(get_key(r));
    }
    return c;
}

std::vector<CheckpointEntry> replay_checkpoints(const std::vector<CheckpointChanges>& log) {
    std::unordered_map<FlowKey, CheckpointEntry, FlowKeyHash> state;
    for (const auto& changes : log) {
        if (changes.snapshot) {
            state.clear();
        }
        for (const auto& k : changes.removals) {
            state.erase(k);
        }
        for (const auto& e : changes.upserts) {
            state[e.key] = e;
        }
    }
    std::vector<CheckpointEntry> out;
    out.reserve(state.size());
    for (auto& [key, e] : state) {
        out.push_back(e);
    }
    return out;
}

}  // namespace ctquota::core
