#include "core/usage_rules.hpp"

#include "core/calendar.hpp"

namespace ctquota::core {

Period CalendarMonthRules::period(SubscriberId /*subscriber*/, TimePoint t) const {
    return Period{month_start_utc(t), next_month_start_utc(t)};
}

}  // namespace ctquota::core
