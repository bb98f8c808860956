#pragma once
// IPFIX (RFC 7011) message building: flow records -> message bytes. Pure:
// no sockets, no clock (the time is passed in), so the bytes are unit-tested.
//
// What a record says (README "IPFIX export" has the collector's view):
// * biflow (RFC 5103, the default): one Data Record per connection record.
//   The forward direction is the original one, from the initiator
//   (biflowDirection = 1); reverse octet and packet counts carry the
//   Reverse PEN 29305. One record per connection keeps the NAT mapping, both
//   directions and the end in one place, and halves the records.
// * per-direction: a Data Record for the original direction and one for
//   the reply direction (left out while the reply saw no packet), each
//   unidirectional, for collectors without RFC 5103.
// * sourceIPv*Address/destination... and ports: the packet as it arrived at
//   the gateway; postNAT*Address (225/226, IPv6 281/282) and postNAPT*Port
//   (227/228): the same packet after NAT (equal to the former when nothing
//   was translated). ICMP: source port = ICMP id, destination port =
//   type * 256 + code (the NetFlow v5 convention).
// * flowStartMilliseconds: the connection's start (the kernel's timestamp);
//   flowEndMilliseconds: its end (Final) or when it was seen (Interim).
// * octetDeltaCount/packetDeltaCount (64 bit): since the connection's
//   previous record, so the records of a connection sum to its counters.
// * flowEndReason: 2 (active timeout) on an interim record; 3 (end of flow
//   detected) for TCP and 1 (idle timeout) otherwise on the final one.
// * natEvent (RFC 8158): 5 (NAT44 session delete) on the final record of an
//   IPv4 connection NAT changed; no other record claims an event (there is
//   no "session update" event, nor any for IPv6 masquerade).
// * flowId: the same for every record of one connection.
// Sequence numbers count Data Records per transport session and observation
// domain; Template Records do not count.

#include <chrono>
#include <cstdint>
#include <span>
#include <vector>

#include "core/clock.hpp"
#include "core/flow_record.hpp"

namespace ctquota::sinks::ipfix {

using core::FlowRecord;
using core::RecordKind;

inline constexpr std::uint16_t kVersion = 10;
inline constexpr std::uint16_t kTemplateSetId = 2;
inline constexpr std::uint32_t kReversePen = 29305;  // RFC 5103
inline constexpr std::size_t kMessageHeaderBytes = 16;
inline constexpr std::size_t kSetHeaderBytes = 4;

enum class Layout : std::uint8_t { Biflow, PerDirection };

// Template IDs. Biflow: 256-258; per direction: 259-261.
enum class TemplateId : std::uint16_t {
    BiflowV4 = 256,
    BiflowV4Nat = 257,  // + natEvent
    BiflowV6 = 258,
    UniV4 = 259,
    UniV4Nat = 260,
    UniV6 = 261,
};

// The templates a layout uses, in the order they are sent.
std::span<const TemplateId> templates_of(Layout layout);
// One Template Set holding every template of `layout` (set header included).
std::vector<std::uint8_t> template_set(Layout layout);
// Bytes of one Data Record of template `id`.
std::size_t record_bytes(TemplateId id);

// Builds one message: header, optionally the Template Set, then Data Sets.
class MessageBuilder {
  public:
    MessageBuilder(Layout layout, std::uint32_t observation_domain, std::size_t max_bytes);

    void begin(std::uint32_t export_time, std::uint32_t sequence, bool with_templates);
    // Appends the Data Records of `r` (one, or two per direction); false when
    // they do not fit, leaving the message unchanged.
    bool add(const FlowRecord& r);
    // The finished message (lengths filled in); begin() starts the next.
    std::vector<std::uint8_t> finish();
    [[nodiscard]] std::uint32_t data_records() const { return records_; }
    [[nodiscard]] bool empty() const { return records_ == 0 && !templates_; }

  private:
    void open_set(TemplateId id);
    void close_set();
    void put_record(TemplateId id, const FlowRecord& r, bool reply_direction);

    Layout layout_;
    std::uint32_t domain_;
    std::size_t max_bytes_;
    std::vector<std::uint8_t> buf_;
    std::size_t set_start_ = 0;  // offset of the open Data Set's header; 0 = none
    TemplateId set_id_ = TemplateId::BiflowV4;
    std::uint32_t records_ = 0;
    bool templates_ = false;
};

struct SessionOptions {
    Layout layout = Layout::Biflow;
    std::uint32_t observation_domain = 1;
    std::size_t max_message_bytes = 1400;  // UDP: below the path MTU
    // UDP: templates again after this long, and every `template_every`
    // messages. Over TCP they go once per connection (RFC 7011 8.1).
    std::chrono::nanoseconds template_refresh = std::chrono::seconds(60);
    std::uint32_t template_every = 100;
    bool refresh_templates = true;  // false for TCP
};

// One transport session to one collector: its sequence number and when the
// templates are due. Pure: time comes in as an argument.
class Session {
  public:
    explicit Session(SessionOptions options);

    // The messages carrying `records` in order; templates go first in the
    // first message when due (never sent in this session, refresh time
    // passed, or `template_every` messages since). With no records, a
    // message of templates alone when they are due, else nothing.
    std::vector<std::vector<std::uint8_t>> encode(std::span<const FlowRecord* const> records,
                                                  core::TimePoint now);
    // A new transport session (TCP reconnected): sequence 0, templates first.
    void restart();

    [[nodiscard]] std::uint32_t sequence() const { return sequence_; }
    [[nodiscard]] std::uint64_t template_messages() const { return template_messages_; }

  private:
    bool templates_due(core::TimePoint now) const;

    SessionOptions options_;
    MessageBuilder builder_;
    std::uint32_t sequence_ = 0;  // Data Records sent before the next message (mod 2^32)
    bool templates_sent_ = false;
    core::TimePoint templates_at_{};
    std::uint32_t messages_since_templates_ = 0;
    std::uint64_t template_messages_ = 0;
};

}  // namespace ctquota::sinks::ipfix
