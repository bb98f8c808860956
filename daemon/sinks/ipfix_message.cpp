#include "sinks/ipfix_message.hpp"

#include <array>
#include <stdexcept>

namespace ctquota::sinks::ipfix {
namespace {

// What a field of a template carries, for one direction of a record.
enum class Value : std::uint8_t {
    SrcAddr,
    DstAddr,
    SrcPort,
    DstPort,
    Proto,
    PostSrcAddr,
    PostDstAddr,
    PostSrcPort,
    PostDstPort,
    Start,
    End,
    Octets,
    Packets,
    ReverseOctets,
    ReversePackets,
    EndReason,
    BiflowDirection,
    FlowId,
    NatEvent,
};

struct Field {
    std::uint16_t ie;
    std::uint16_t length;
    std::uint32_t enterprise;  // 0: IANA
    Value value;
};

// IANA Information Element numbers (RFC 7012 and the IANA registry).
namespace ie {
constexpr std::uint16_t octetDeltaCount = 1, packetDeltaCount = 2, protocolIdentifier = 4,
                        sourceTransportPort = 7, sourceIPv4Address = 8,
                        destinationTransportPort = 11, destinationIPv4Address = 12,
                        sourceIPv6Address = 27, destinationIPv6Address = 28, flowEndReason = 136,
                        flowId = 148, flowStartMilliseconds = 152, flowEndMilliseconds = 153,
                        postNATSourceIPv4Address = 225, postNATDestinationIPv4Address = 226,
                        postNAPTSourceTransportPort = 227, postNAPTDestinationTransportPort = 228,
                        natEvent = 230, biflowDirection = 239, postNATSourceIPv6Address = 281,
                        postNATDestinationIPv6Address = 282;
}  // namespace ie

constexpr std::uint8_t kNat44SessionDelete = 5;  // RFC 8158
constexpr std::uint8_t kIdleTimeout = 1, kActiveTimeout = 2, kEndOfFlow = 3;
constexpr std::uint8_t kInitiator = 1;  // RFC 5103 biflowDirection
constexpr std::uint8_t kTcp = 6;

std::vector<Field> fields(TemplateId id) {
    const bool v6 = id == TemplateId::BiflowV6 || id == TemplateId::UniV6;
    const bool biflow =
        id == TemplateId::BiflowV4 || id == TemplateId::BiflowV4Nat || id == TemplateId::BiflowV6;
    const bool nat = id == TemplateId::BiflowV4Nat || id == TemplateId::UniV4Nat;
    const std::uint16_t a = v6 ? 16 : 4;
    std::vector<Field> f = {
        {v6 ? ie::sourceIPv6Address : ie::sourceIPv4Address, a, 0, Value::SrcAddr},
        {v6 ? ie::destinationIPv6Address : ie::destinationIPv4Address, a, 0, Value::DstAddr},
        {ie::sourceTransportPort, 2, 0, Value::SrcPort},
        {ie::destinationTransportPort, 2, 0, Value::DstPort},
        {ie::protocolIdentifier, 1, 0, Value::Proto},
        {v6 ? ie::postNATSourceIPv6Address : ie::postNATSourceIPv4Address, a, 0,
         Value::PostSrcAddr},
        {v6 ? ie::postNATDestinationIPv6Address : ie::postNATDestinationIPv4Address, a, 0,
         Value::PostDstAddr},
        {ie::postNAPTSourceTransportPort, 2, 0, Value::PostSrcPort},
        {ie::postNAPTDestinationTransportPort, 2, 0, Value::PostDstPort},
        {ie::flowStartMilliseconds, 8, 0, Value::Start},
        {ie::flowEndMilliseconds, 8, 0, Value::End},
        {ie::octetDeltaCount, 8, 0, Value::Octets},
        {ie::packetDeltaCount, 8, 0, Value::Packets},
    };
    if (biflow) {
        f.push_back({ie::octetDeltaCount, 8, kReversePen, Value::ReverseOctets});
        f.push_back({ie::packetDeltaCount, 8, kReversePen, Value::ReversePackets});
    }
    f.push_back({ie::flowEndReason, 1, 0, Value::EndReason});
    if (biflow) {
        f.push_back({ie::biflowDirection, 1, 0, Value::BiflowDirection});
    }
    f.push_back({ie::flowId, 8, 0, Value::FlowId});
    if (nat) {
        f.push_back({ie::natEvent, 1, 0, Value::NatEvent});
    }
    return f;
}

constexpr std::array<TemplateId, 3> kBiflowTemplates = {
    TemplateId::BiflowV4, TemplateId::BiflowV4Nat, TemplateId::BiflowV6};
constexpr std::array<TemplateId, 3> kUniTemplates = {TemplateId::UniV4, TemplateId::UniV4Nat,
                                                     TemplateId::UniV6};

void put16(std::vector<std::uint8_t>& b, std::uint16_t v) {
    b.push_back(static_cast<std::uint8_t>(v >> 8));
    b.push_back(static_cast<std::uint8_t>(v));
}

void put32(std::vector<std::uint8_t>& b, std::uint32_t v) {
    put16(b, static_cast<std::uint16_t>(v >> 16));
    put16(b, static_cast<std::uint16_t>(v));
}

void put64(std::vector<std::uint8_t>& b, std::uint64_t v) {
    put32(b, static_cast<std::uint32_t>(v >> 32));
    put32(b, static_cast<std::uint32_t>(v));
}

void set16(std::vector<std::uint8_t>& b, std::size_t at, std::size_t v) {
    b[at] = static_cast<std::uint8_t>(v >> 8);
    b[at + 1] = static_cast<std::uint8_t>(v);
}

void put_address(std::vector<std::uint8_t>& b, const core::IpAddress& a, std::uint16_t length) {
    b.insert(b.end(), a.bytes.begin(), a.bytes.begin() + length);
}

std::uint64_t millis(std::int64_t ns) {
    return ns <= 0 ? 0 : static_cast<std::uint64_t>(ns / 1'000'000);
}

// One direction of a record as a packet saw it: before and after NAT, and
// its counts (for a biflow record, `reverse` too).
struct View {
    core::FlowTuple before;
    core::FlowTuple after;
    core::Counters counts;
    core::Counters reverse;
};

core::FlowTuple reversed(const core::FlowTuple& t) {
    return {t.dst, t.src, t.dst_port, t.src_port, t.l4proto};
}

View view_of(const FlowRecord& r, bool reply_direction) {
    if (reply_direction) {
        return {r.reply, reversed(r.orig), r.reply_delta, r.orig_delta};
    }
    return {r.orig, reversed(r.reply), r.orig_delta, r.reply_delta};
}

std::uint8_t end_reason(const FlowRecord& r) {
    if (r.kind == RecordKind::Interim) {
        return kActiveTimeout;
    }
    return r.orig.l4proto == kTcp ? kEndOfFlow : kIdleTimeout;
}

void put_value(std::vector<std::uint8_t>& b, const Field& f, const FlowRecord& r, const View& v) {
    switch (f.value) {
        case Value::SrcAddr:
            return put_address(b, v.before.src, f.length);
        case Value::DstAddr:
            return put_address(b, v.before.dst, f.length);
        case Value::SrcPort:
            return put16(b, v.before.src_port);
        case Value::DstPort:
            return put16(b, v.before.dst_port);
        case Value::Proto:
            return b.push_back(v.before.l4proto);
        case Value::PostSrcAddr:
            return put_address(b, v.after.src, f.length);
        case Value::PostDstAddr:
            return put_address(b, v.after.dst, f.length);
        case Value::PostSrcPort:
            return put16(b, v.after.src_port);
        case Value::PostDstPort:
            return put16(b, v.after.dst_port);
        case Value::Start:
            return put64(b, millis(r.start_ns));
        case Value::End:
            return put64(b, millis(r.end_ns));
        case Value::Octets:
            return put64(b, v.counts.bytes);
        case Value::Packets:
            return put64(b, v.counts.packets);
        case Value::ReverseOctets:
            return put64(b, v.reverse.bytes);
        case Value::ReversePackets:
            return put64(b, v.reverse.packets);
        case Value::EndReason:
            return b.push_back(end_reason(r));
        case Value::BiflowDirection:
            return b.push_back(kInitiator);
        case Value::FlowId:
            return put64(b, r.flow_id);
        case Value::NatEvent:
            return b.push_back(kNat44SessionDelete);
    }
}

// The template of the record for `r` in `layout`, one direction.
TemplateId template_for(Layout layout, const FlowRecord& r, bool reply_direction) {
    const bool v6 = r.orig.src.family == core::Family::V6;
    const bool nat_delete = !v6 && !reply_direction && r.kind == RecordKind::Final && translated(r);
    if (layout == Layout::Biflow) {
        return v6 ? TemplateId::BiflowV6
                  : (nat_delete ? TemplateId::BiflowV4Nat : TemplateId::BiflowV4);
    }
    return v6 ? TemplateId::UniV6 : (nat_delete ? TemplateId::UniV4Nat : TemplateId::UniV4);
}

// Each template's fields, computed once.
const std::vector<Field>& cached_fields(TemplateId id) {
    static const std::array<std::vector<Field>, 6> kAll = {
        fields(TemplateId::BiflowV4), fields(TemplateId::BiflowV4Nat), fields(TemplateId::BiflowV6),
        fields(TemplateId::UniV4),    fields(TemplateId::UniV4Nat),    fields(TemplateId::UniV6)};
    return kAll[static_cast<std::size_t>(id) - 256];
}

}  // namespace

std::span<const TemplateId> templates_of(Layout layout) {
    return layout == Layout::Biflow ? std::span<const TemplateId>(kBiflowTemplates)
                                    : std::span<const TemplateId>(kUniTemplates);
}

std::vector<std::uint8_t> template_set(Layout layout) {
    std::vector<std::uint8_t> b;
    put16(b, kTemplateSetId);
    put16(b, 0);  // length, below
    for (const auto id : templates_of(layout)) {
        const auto& f = cached_fields(id);
        put16(b, static_cast<std::uint16_t>(id));
        put16(b, static_cast<std::uint16_t>(f.size()));
        for (const auto& field : f) {
            put16(b,
                  field.enterprise != 0 ? static_cast<std::uint16_t>(field.ie | 0x8000) : field.ie);
            put16(b, field.length);
            if (field.enterprise != 0) {
                put32(b, field.enterprise);
            }
        }
    }
    set16(b, 2, b.size());
    return b;
}

std::size_t record_bytes(TemplateId id) {
    std::size_t n = 0;
    for (const auto& f : cached_fields(id)) {
        n += f.length;
    }
    return n;
}

MessageBuilder::MessageBuilder(Layout layout, std::uint32_t observation_domain,
                               std::size_t max_bytes)
    : layout_(layout), domain_(observation_domain), max_bytes_(max_bytes) {
    const auto needed = kMessageHeaderBytes + template_set(layout).size() + kSetHeaderBytes +
                        2 * record_bytes(TemplateId::BiflowV6);
    if (max_bytes_ < needed || max_bytes_ > 65535) {
        throw std::invalid_argument("IPFIX message size must be in " + std::to_string(needed) +
                                    "..65535 bytes");
    }
}

void MessageBuilder::begin(std::uint32_t export_time, std::uint32_t sequence, bool with_templates) {
    buf_.clear();
    buf_.reserve(max_bytes_);
    put16(buf_, kVersion);
    put16(buf_, 0);  // length, in finish()
    put32(buf_, export_time);
    put32(buf_, sequence);
    put32(buf_, domain_);
    set_start_ = 0;
    records_ = 0;
    templates_ = with_templates;
    if (with_templates) {
        const auto set = template_set(layout_);
        buf_.insert(buf_.end(), set.begin(), set.end());
    }
}

void MessageBuilder::open_set(TemplateId id) {
    close_set();
    set_start_ = buf_.size();
    set_id_ = id;
    put16(buf_, static_cast<std::uint16_t>(id));
    put16(buf_, 0);
}

void MessageBuilder::close_set() {
    if (set_start_ != 0) {
        set16(buf_, set_start_ + 2, buf_.size() - set_start_);
        set_start_ = 0;
    }
}

void MessageBuilder::put_record(TemplateId id, const FlowRecord& r, bool reply_direction) {
    if (set_start_ == 0 || set_id_ != id) {
        open_set(id);
    }
    const View v = view_of(r, reply_direction);
    for (const auto& f : cached_fields(id)) {
        put_value(buf_, f, r, v);
    }
    ++records_;
}

bool MessageBuilder::add(const FlowRecord& r) {
    const bool reply = layout_ == Layout::PerDirection && r.reply_delta.packets != 0;
    const TemplateId first = template_for(layout_, r, false);
    std::size_t need =
        record_bytes(first) + (set_start_ == 0 || set_id_ != first ? kSetHeaderBytes : 0);
    if (reply) {
        need += record_bytes(template_for(layout_, r, true)) + kSetHeaderBytes;
    }
    if (buf_.size() + need > max_bytes_) {
        return false;
    }
    put_record(first, r, false);
    if (reply) {
        put_record(template_for(layout_, r, true), r, true);
    }
    return true;
}

std::vector<std::uint8_t> MessageBuilder::finish() {
    close_set();
    set16(buf_, 2, buf_.size());
    return std::move(buf_);
}

Session::Session(SessionOptions options)
    : options_(options),
      builder_(options.layout, options.observation_domain, options.max_message_bytes) {}

void Session::restart() {
    sequence_ = 0;
    templates_sent_ = false;
    messages_since_templates_ = 0;
}

bool Session::templates_due(core::TimePoint now) const {
    if (!templates_sent_) {
        return true;
    }
    if (!options_.refresh_templates) {
        return false;
    }
    return now - templates_at_ >= options_.template_refresh ||
           messages_since_templates_ >= options_.template_every;
}

std::vector<std::vector<std::uint8_t>> Session::encode(std::span<const FlowRecord* const> records,
                                                       core::TimePoint now) {
    std::vector<std::vector<std::uint8_t>> out;
    const auto export_time = static_cast<std::uint32_t>(
        std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count());
    auto start_message = [&] {
        const bool templates = templates_due(now);
        builder_.begin(export_time, sequence_, templates);
        if (templates) {
            templates_sent_ = true;
            templates_at_ = now;
            messages_since_templates_ = 0;
            ++template_messages_;
        }
    };
    auto finish_message = [&] {
        sequence_ += builder_.data_records();  // wraps modulo 2^32, as RFC 7011 says
        ++messages_since_templates_;
        out.push_back(builder_.finish());
    };
    start_message();
    for (const FlowRecord* r : records) {
        if (!builder_.add(*r)) {
            finish_message();
            start_message();
            builder_.add(*r);  // fits: the constructor checked two of the largest
        }
    }
    if (!builder_.empty()) {
        finish_message();
    }
    return out;
}

}  // namespace ctquota::sinks::ipfix
