#include "core/sample_codec.hpp"

#include <cstring>

namespace ctquota::core {
namespace {

// Layout: version, kind, orig family, reply family | id u32 | zone u16,
// l4proto u8 x2 (orig, reply) | mark u32 | orig tuple | reply tuple |
// counters (orig bytes, packets, reply bytes, packets) | start, stop, as_of.
// A tuple: src, dst (4 or 16 bytes each), src port, dst port.
constexpr std::uint8_t kVersion = 1;

class Out {
  public:
    explicit Out(std::uint8_t* p) : p_(p) {}
    template <typename T>
    void put(T v) {
        std::memcpy(p_ + n_, &v, sizeof v);
        n_ += sizeof v;
    }
    void put_bytes(const void* src, std::size_t len) {
        std::memcpy(p_ + n_, src, len);
        n_ += len;
    }
    [[nodiscard]] std::size_t size() const { return n_; }

  private:
    std::uint8_t* p_;
    std::size_t n_ = 0;
};

class In {
  public:
    explicit In(std::span<const std::uint8_t> in) : in_(in) {}
    template <typename T>
    bool get(T& v) {
        return get_bytes(&v, sizeof v);
    }
    bool get_bytes(void* dst, std::size_t len) {
        if (in_.size() - n_ < len) {
            return false;
        }
        std::memcpy(dst, in_.data() + n_, len);
        n_ += len;
        return true;
    }
    [[nodiscard]] bool done() const { return n_ == in_.size(); }

  private:
    std::span<const std::uint8_t> in_;
    std::size_t n_ = 0;
};

std::size_t width(Family f) {
    return f == Family::V6 ? 16 : 4;
}

bool valid_family(std::uint8_t f) {
    return f == static_cast<std::uint8_t>(Family::V4) || f == static_cast<std::uint8_t>(Family::V6);
}

void put_tuple(Out& out, const FlowTuple& t) {
    out.put_bytes(t.src.bytes.data(), width(t.src.family));
    out.put_bytes(t.dst.bytes.data(), width(t.dst.family));
    out.put(t.src_port);
    out.put(t.dst_port);
}

bool get_tuple(In& in, Family family, std::uint8_t l4proto, FlowTuple& t) {
    t.src.family = family;
    t.dst.family = family;
    t.l4proto = l4proto;
    return in.get_bytes(t.src.bytes.data(), width(family)) &&
           in.get_bytes(t.dst.bytes.data(), width(family)) && in.get(t.src_port) &&
           in.get(t.dst_port);
}

}  // namespace

std::size_t encode_sample(const FlowSample& s, std::uint8_t* out_bytes) {
    Out out(out_bytes);
    out.put(kVersion);
    out.put(static_cast<std::uint8_t>(s.kind));
    out.put(static_cast<std::uint8_t>(s.orig.src.family));
    out.put(static_cast<std::uint8_t>(s.reply.src.family));
    out.put(s.id);
    out.put(s.zone);
    out.put(s.orig.l4proto);
    out.put(s.reply.l4proto);
    out.put(s.mark);
    put_tuple(out, s.orig);
    put_tuple(out, s.reply);
    for (const Counters* c : {&s.orig_counters, &s.reply_counters}) {
        out.put(c->bytes);
        out.put(c->packets);
    }
    out.put(s.start_ns);
    out.put(s.stop_ns);
    out.put(s.as_of_ns);
    return out.size();
}

std::optional<FlowSample> decode_sample(std::span<const std::uint8_t> bytes) {
    In in(bytes);
    std::uint8_t version = 0, kind = 0, orig_family = 0, reply_family = 0;
    std::uint8_t orig_l4 = 0, reply_l4 = 0;
    FlowSample s;
    if (!in.get(version) || version != kVersion || !in.get(kind) || kind > 1 ||
        !in.get(orig_family) || !in.get(reply_family) || !valid_family(orig_family) ||
        !valid_family(reply_family) || !in.get(s.id) || !in.get(s.zone) || !in.get(orig_l4) ||
        !in.get(reply_l4) || !in.get(s.mark)) {
        return std::nullopt;
    }
    s.kind = static_cast<SampleKind>(kind);
    if (!get_tuple(in, static_cast<Family>(orig_family), orig_l4, s.orig) ||
        !get_tuple(in, static_cast<Family>(reply_family), reply_l4, s.reply)) {
        return std::nullopt;
    }
    for (Counters* c : {&s.orig_counters, &s.reply_counters}) {
        if (!in.get(c->bytes) || !in.get(c->packets)) {
            return std::nullopt;
        }
    }
    if (!in.get(s.start_ns) || !in.get(s.stop_ns) || !in.get(s.as_of_ns) || !in.done()) {
        return std::nullopt;
    }
    return s;
}

}  // namespace ctquota::core
