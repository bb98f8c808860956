#pragma once
// What accounting needs to know of a subscriber's plan while it counts: the
// billing period a delta belongs to, and whether bytes count toward the quota
// (free time windows, zero-rated destinations). The policy engine installs an
// implementation built from the plans; until then every subscriber has the
// calendar month in UTC and every byte counts.

#include <cstdint>

#include "core/address.hpp"
#include "core/clock.hpp"
#include "core/subscriber_index.hpp"

namespace ctquota::core {

enum class UsageClass : std::uint8_t {
    Counted = 0,    // toward the quota
    Free = 1,       // inside a free time window
    ZeroRated = 2,  // to a zero-rated destination (outside free windows)
};

struct Period {
    TimePoint start{};
    TimePoint end{};  // exclusive
    [[nodiscard]] bool contains(TimePoint t) const { return start <= t && t < end; }
    bool operator==(const Period&) const = default;
};

class UsageRules {
  public:
    virtual ~UsageRules() = default;
    // The billing period of `subscriber` that contains `t`.
    [[nodiscard]] virtual Period period(SubscriberId subscriber, TimePoint t) const = 0;
    // Which class bytes exchanged at `t` with `remote` belong to.
    [[nodiscard]] virtual UsageClass classify(SubscriberId subscriber, const IpAddress& remote,
                                              TimePoint t) const = 0;
    // True when no subscriber has a free window or a zero-rated destination:
    // accounting then skips classify().
    [[nodiscard]] virtual bool counts_everything() const { return false; }
};

// Calendar month in UTC for everybody; every byte counted.
class CalendarMonthRules final : public UsageRules {
  public:
    [[nodiscard]] Period period(SubscriberId subscriber, TimePoint t) const override;
    [[nodiscard]] UsageClass classify(SubscriberId, const IpAddress&, TimePoint) const override {
        return UsageClass::Counted;
    }
    [[nodiscard]] bool counts_everything() const override { return true; }
};

}  // namespace ctquota::core
