// Pure parts of enforce/: desired kernel items, their difference, the nft
// JSON parser on output captured from libnftables 1.0.6 / kernel 6.18, and
// the tc class message bytes. No kernel needed.
#include <doctest/doctest.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <limits>

#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "enforce/flowtables.hpp"
#include "enforce/kernel_model.hpp"
#include "enforce/nft_json.hpp"
#include "enforce/tc_netlink.hpp"

using namespace ctquota;
using namespace ctquota::enforce;

namespace {

core::Prefix P(const char* text) {
    return *core::Prefix::parse(text);
}

SubscriberTarget target(core::StateKind kind, core::Rate rate = {},
                        std::optional<std::uint64_t> quota = std::nullopt,
                        core::CountedDirections counts = core::CountedDirections::Both) {
    SubscriberTarget t;
    t.id = 7;
    t.prefixes = {P("100.64.1.7"), P("2001:db8:0:7::/64")};
    t.state.kind = kind;
    t.state.rate = rate;
    t.kernel_quota_bytes = quota;
    t.counts = counts;
    return t;
}

std::vector<std::string> sets_of(const SubscriberItems& items) {
    std::vector<std::string> out;
    for (const auto& e : items.elements) {
        out.push_back(e.set + "=" + e.value);
    }
    return out;
}

}  // namespace

TEST_CASE("desired items per state (table-driven)") {
    const std::set<std::string> plans{"prepaid"};
    struct Row {
        const char* description;
        SubscriberTarget target;
        bool shaping;
        std::uint64_t arm_below;
        std::vector<std::string> elements;
        std::size_t limits;
        bool quota;
        bool tc_class;
    };
    auto blocked_prepaid = target(core::StateKind::Blocked);
    blocked_prepaid.plan = "prepaid";
    auto blocked_other = target(core::StateKind::Blocked);
    blocked_other.plan = "home";
    const std::vector<Row> rows = {
        {"normal without quota: nothing",
         target(core::StateKind::Normal),
         true,
         0,
         {},
         0,
         false,
         false},
        {"blocked, plan with allowed list: its chain",
         blocked_prepaid,
         true,
         0,
         {"active_v4=", "active_v6=", "blocked_v4=block_prepaid", "blocked_v6=block_prepaid"},
         0,
         false,
         false},
        {"blocked, plan without allowed list: plain block",
         blocked_other,
         true,
         0,
         {"active_v4=", "active_v6=", "blocked_v4=block", "blocked_v6=block"},
         0,
         false,
         false},
        {"blocked ignores the kernel quota",
         target(core::StateKind::Blocked, {}, 100),
         true,
         0,
         {"active_v4=", "active_v6=", "blocked_v4=block", "blocked_v6=block"},
         0,
         false,
         false},
        {"throttled with HTB: class + up limit",
         target(core::StateKind::Throttled, {2'000'000, 1'000'000}),
         true,
         0,
         {"active_v4=", "active_v6=", "throttle_v4=40:10", "throttle_v6=40:10", "up_limit_v4=up_7",
          "up_limit_v6=up_7"},
         1,
         false,
         true},
        {"throttled with HTB and a block tier ahead: no kernel quota (it counts before the shaper)",
         target(core::StateKind::Throttled, {2'000'000, 0}, 5000),
         true,
         0,
         {"active_v4=", "active_v6=", "throttle_v4=40:10", "throttle_v6=40:10"},
         0,
         false,
         true},
        {"throttled and policed, a block tier ahead: the quota counts after the policer",
         target(core::StateKind::Throttled, {2'000'000, 0}, 5000),
         false,
         0,
         {"active_v4=", "active_v6=", "down_limit_v4=down_7", "down_limit_v6=down_7",
          "quota_down_v4=q_7", "quota_down_v6=q_7", "quota_up_v4=q_7", "quota_up_v6=q_7"},
         1,
         true,
         false},
        {"throttled without HTB: policing both ways",
         target(core::StateKind::Throttled, {2'000'000, 1'000'000}),
         false,
         0,
         {"active_v4=", "active_v6=", "down_limit_v4=down_7", "down_limit_v6=down_7",
          "up_limit_v4=up_7", "up_limit_v6=up_7"},
         2,
         false,
         false},
        {"quota counting both directions",
         target(core::StateKind::Normal, {}, 5000, core::CountedDirections::Both),
         true,
         0,
         {"active_v4=", "active_v6=", "quota_down_v4=q_7", "quota_down_v6=q_7", "quota_up_v4=q_7",
          "quota_up_v6=q_7"},
         0,
         true,
         false},
        {"quota counting downloads only",
         target(core::StateKind::Normal, {}, 5000, core::CountedDirections::Down),
         true,
         0,
         {"active_v4=", "active_v6=", "quota_down_v4=q_7", "quota_down_v6=q_7"},
         0,
         true,
         false},
        {"quota not armed above arm_quota_below_bytes",
         target(core::StateKind::Normal, {}, 5000),
         true,
         5000,
         {},
         0,
         false,
         false},
        {"quota armed below arm_quota_below_bytes",
         target(core::StateKind::Normal, {}, 4999),
         true,
         5000,
         {"active_v4=", "active_v6=", "quota_down_v4=q_7", "quota_down_v6=q_7", "quota_up_v4=q_7",
          "quota_up_v6=q_7"},
         0,
         true,
         false},
    };
    for (const auto& row : rows) {
        CAPTURE(row.description);
        ModelContext ctx{row.shaping, row.arm_below, &plans};
        const auto items = desired_items(row.target, ctx, std::uint32_t{0x400010});
        CHECK(sets_of(items) == row.elements);
        CHECK(items.limits.size() == row.limits);
        CHECK(items.quota.has_value() == row.quota);
        CHECK(items.tc_class.has_value() == row.tc_class);
    }
}

TEST_CASE("an armed kernel quota never exceeds what nft accepts (INT64_MAX)") {
    ModelContext ctx{true, 0, nullptr};
    constexpr auto kInt64Max = std::uint64_t{std::numeric_limits<std::int64_t>::max()};
    for (const auto asked :
         {kInt64Max - 1, kInt64Max, kInt64Max + 1, std::numeric_limits<std::uint64_t>::max()}) {
        const auto items = desired_items(target(core::StateKind::Normal, {}, asked), ctx, 0);
        REQUIRE(items.quota);
        CHECK(items.quota->bytes == std::min(asked, kInt64Max));
    }
}

TEST_CASE("rates round to what the kernel keeps") {
    ModelContext ctx{true, 0, nullptr};
    const auto items =
        desired_items(target(core::StateKind::Throttled, {2'000'003, 1'000'007}), ctx, 0x400010u);
    REQUIRE(items.tc_class);
    CHECK(items.tc_class->rate_bps == 2'000'000);  // HTB stores bytes/s
    CHECK(items.limits.at(0).bytes_per_second == 125'000);
    CHECK(items.limits.at(0).burst_bytes == limit_burst_bytes(125'000));
}

TEST_CASE("nested prefixes are dropped (nft rejects overlapping intervals)") {
    auto out = without_nested({P("100.64.1.7"), P("100.64.1.0/24"), P("2001:db8::/32"),
                               P("2001:db8:0:7::/64"), P("100.65.0.1")});
    CHECK(out ==
          std::vector<core::Prefix>{P("100.64.1.0/24"), P("100.65.0.1"), P("2001:db8::/32")});
}

TEST_CASE("diff: nothing, rate change, throttle to block") {
    ModelContext ctx{true, 0, nullptr};
    const auto slow =
        desired_items(target(core::StateKind::Throttled, {2'000'000, 1'000'000}), ctx, 0x400010u);
    CHECK(diff_items(7, slow, slow).empty());

    const auto faster =
        desired_items(target(core::StateKind::Throttled, {4'000'000, 2'000'000}), ctx, 0x400010u);
    auto d = diff_items(7, slow, faster);
    CHECK(d.tc_set.size() == 1);  // class changed in place, same id
    CHECK(d.tc_del.empty());
    CHECK(d.del_objects.size() == 1);  // a limit cannot be updated: replaced ...
    CHECK(d.add_limits.size() == 1);
    CHECK(d.del_elements.size() == 2);  // ... with the elements naming it
    CHECK(d.add_elements.size() == 2);
    CHECK(d.newly_blocked.empty());

    const auto blocked = desired_items(target(core::StateKind::Blocked), ctx, std::nullopt);
    d = diff_items(7, slow, blocked);
    CHECK(d.tc_del == std::vector<std::uint32_t>{0x400010u});
    CHECK(d.del_elements.size() == 4);
    CHECK(d.add_elements.size() == 2);
    CHECK(d.newly_blocked.size() == 2);
    CHECK(diff_items(7, blocked, {}).nft_commands() == 4);  // blocked_v4/v6, active_v4/v6
}

TEST_CASE("diff: a renewed lease raises the quota in place, a fresh one re-creates it") {
    ModelContext ctx{false, 0, nullptr};
    const auto small =
        desired_items(target(core::StateKind::Normal, {}, 100'000), ctx, std::nullopt);
    const auto more =
        desired_items(target(core::StateKind::Normal, {}, 900'000), ctx, std::nullopt);
    auto d = diff_items(7, small, more);  // renewal: the kernel keeps what it counted
    CHECK(d.del_objects.empty());
    REQUIRE(d.add_quotas.size() == 1);
    CHECK(d.add_quotas[0].bytes == 900'000);
    CHECK(d.del_elements.empty());
    CHECK(d.add_elements.empty());
    CHECK(diff_items(7, more, small).del_objects.empty());  // a shrink (a lapse) too

    d = diff_items(7, small, more, true);  // a new epoch: counted from zero again
    CHECK(d.del_objects == std::vector<ObjectRef>{ObjectRef{true, "q_7"}});
    CHECK(d.add_quotas.size() == 1);
    CHECK(d.del_elements.size() == 4);  // quota_up/down v4/v6 name it: re-added with it
    CHECK(d.add_elements.size() == 4);
    d = diff_items(7, small, small, true);  // same limit, fresh counter
    CHECK(d.del_objects.size() == 1);
    CHECK(d.add_quotas.size() == 1);
    CHECK(diff_items(7, small, small).empty());
}

TEST_CASE("class ids as nft and tc print them") {
    CHECK(classid_text(0x2001a) == "2:1a");
    CHECK(parse_classid("2:1a") == 0x2001au);
    CHECK(parse_classid("41:ffff") == 0x41ffffu);
    CHECK_FALSE(parse_classid("2:0"));
    CHECK_FALSE(parse_classid("2"));
    CHECK_FALSE(parse_classid("x:1"));
}

TEST_CASE("libnftables list output parses into owned elements and objects") {
    // Captured from `list table` (libnftables 1.0.6, kernel 6.18), shortened.
    const auto out = nftjson::Json::parse(R"({"nftables": [
      {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
      {"table": {"family": "inet", "name": "ctquota", "handle": 1}},
      {"limit": {"family": "inet", "name": "up_2", "table": "ctquota", "handle": 4, "rate": 125000,
                 "per": "second", "inv": true, "rate_unit": "bytes", "burst": 16,
                 "burst_unit": "kbytes"}},
      {"quota": {"family": "inet", "name": "q_2", "table": "ctquota", "handle": 5,
                 "bytes": 5000000, "used": 1234, "inv": true}},
      {"map": {"family": "inet", "name": "blocked_v6", "table": "ctquota", "type": "ipv6_addr",
               "handle": 7, "map": "verdict", "flags": ["interval"],
               "elem": [[{"elem": {"val": {"prefix": {"addr": "2001:db8:0:1::", "len": 64}},
                                   "comment": "1"}}, {"jump": {"target": "block_prepaid"}}]]}},
      {"map": {"family": "inet", "name": "throttle_v4", "table": "ctquota", "type": "ipv4_addr",
               "handle": 8, "map": "classid", "flags": ["interval"],
               "elem": [[{"elem": {"val": "100.64.1.2", "comment": "2"}}, "4:1"],
                        ["100.64.9.9", "4:2"]]}},
      {"set": {"family": "inet", "name": "allow_prepaid_v4", "table": "ctquota",
               "type": "ipv4_addr", "handle": 9, "flags": ["interval"], "elem": ["198.18.0.53"]}},
      {"chain": {"family": "inet", "table": "ctquota", "name": "block_prepaid", "handle": 2}}
    ]})");
    const auto t = nftjson::parse_table(out);
    CHECK(t.present);
    CHECK(t.limits.at("up_2").burst_bytes == 16384);
    CHECK(t.limits.at("up_2").bytes_per_second == 125000);
    CHECK(t.quotas.at("q_2").second == 1234);
    const auto& b = t.maps.at("blocked_v6").at(0);
    CHECK(b.key == P("2001:db8:0:1::/64"));
    CHECK(b.value == "block_prepaid");
    CHECK(b.owner == 1);
    const auto& th = t.maps.at("throttle_v4");
    CHECK(th.at(0).owner == 2);
    CHECK(th.at(0).key == P("100.64.1.2/32"));
    CHECK_FALSE(th.at(1).owner);  // no comment: nobody's, reconcile deletes it
    CHECK(t.allow_sets.at("allow_prepaid_v4") == std::vector<core::Prefix>{P("198.18.0.53")});
    CHECK(t.chains.contains("block_prepaid"));
}

namespace {

std::vector<const nlmsghdr*> messages_in(const std::vector<char>& buf) {
    std::vector<const nlmsghdr*> msgs;
    int len = static_cast<int>(buf.size());
    for (auto* nlh = reinterpret_cast<const nlmsghdr*>(buf.data()); NLMSG_OK(nlh, len);
         nlh = NLMSG_NEXT(nlh, len)) {
        msgs.push_back(nlh);
    }
    return msgs;
}

const rtattr* first_attr(const tcmsg* t) {
    return reinterpret_cast<const rtattr*>(reinterpret_cast<const char*>(t) +
                                           NLMSG_ALIGN(sizeof(tcmsg)));
}

const rtattr* next_attr(const rtattr* a) {
    return reinterpret_cast<const rtattr*>(reinterpret_cast<const char*>(a) +
                                           RTA_ALIGN(a->rta_len));
}

// The first attribute inside TCA_OPTIONS (after TCA_KIND).
template <typename T>
T first_option(const nlmsghdr* nlh, unsigned short type) {
    const auto* kind = first_attr(static_cast<const tcmsg*>(NLMSG_DATA(nlh)));
    const auto* parms = static_cast<const rtattr*>(RTA_DATA(next_attr(kind)));
    REQUIRE(parms->rta_type == type);
    T out{};
    std::memcpy(&out, RTA_DATA(parms), sizeof out);
    return out;
}

}  // namespace

TEST_CASE("HTB class messages: a set is the class, its tbf and the bands; a delete one") {
    std::vector<char> buf;
    const TcDevice dev{5, 1500};
    const std::uint32_t cls = 0x410020;  // shard 1, j = 2
    CHECK(leaf_queue_handle(cls) == (0x80u + 1 * kClassesPerShard + 1) << 16);
    CHECK(append_class_message(buf, dev, TcOp{TcOp::Kind::Set, cls, 20'000'000, "s"}, 77, true) ==
          kSetMessages);
    TcOp change{TcOp::Kind::Set, cls, 10'000'000, "s"};
    change.queue_in_place = true;  // pfifo_fast cannot be changed: only the class and the tbf
    CHECK(append_class_message(buf, dev, change, 80, true) == 2);
    CHECK(append_class_message(buf, dev, TcOp{TcOp::Kind::Delete, cls, 0, "s"}, 82, false) == 1);
    const auto msgs = messages_in(buf);
    REQUIRE(msgs.size() == kSetMessages + 3);
    const auto tbf = leaf_queue_handle(cls);
    struct Row {
        std::uint16_t type;
        std::uint32_t handle;
        std::uint32_t parent;
    };
    const Row rows[] = {
        {RTM_NEWTCLASS, cls, 0x410000},  // the subscriber's class, in its shard
        {RTM_NEWQDISC, tbf, cls},        // the tbf over HTB's default pfifo
        {RTM_NEWQDISC, 0, tbf | 1},      // the bands over the tbf's bfifo (a kernel handle)
        {RTM_NEWTCLASS, cls, 0x410000}, {RTM_NEWQDISC, tbf, cls},
        {RTM_DELTCLASS, cls, 0x410000},  // the leaf queue goes with it
    };
    for (std::size_t i = 0; i < msgs.size(); ++i) {
        CAPTURE(i);
        CHECK(msgs[i]->nlmsg_type == rows[i].type);
        CHECK((msgs[i]->nlmsg_flags & NLM_F_EXCL) == 0);  // create or change
        const auto* tcm = static_cast<const tcmsg*>(NLMSG_DATA(msgs[i]));
        CHECK(tcm->tcm_ifindex == 5);
        CHECK(tcm->tcm_handle == rows[i].handle);
        CHECK(tcm->tcm_parent == rows[i].parent);
    }
    for (std::size_t i : {0, 1, 2}) {
        CHECK(msgs[i]->nlmsg_seq == 77 + i);
        CHECK((msgs[i]->nlmsg_flags & NLM_F_ACK) != 0);
    }
    const auto htb = first_option<tc_htb_opt>(msgs[0], TCA_HTB_PARMS);
    CHECK(htb.rate.rate == 2'500'000u);
    CHECK(htb.ceil.rate == 2'500'000u);
    CHECK((msgs[1]->nlmsg_flags & (NLM_F_CREATE | NLM_F_REPLACE)) ==
          (NLM_F_CREATE | NLM_F_REPLACE));  // grafted over the pfifo, or changed
    const auto q = first_option<tc_tbf_qopt>(msgs[1], TCA_TBF_PARMS);
    CHECK(q.rate.rate == 2 * 2'500'000u);  // twice the plan: HTB shapes, not the tbf
    const auto* kind = first_attr(static_cast<const tcmsg*>(NLMSG_DATA(msgs[2])));
    CHECK(std::string(static_cast<const char*>(RTA_DATA(kind))) == "pfifo_fast");
}

TEST_CASE("leaf queue handles: one per class, none outside our classes, below the kernel's") {
    std::set<std::uint32_t> seen;
    for (std::uint32_t shard = 0; shard < kHtbShards; ++shard) {
        for (std::uint32_t j = 1; j <= kClassesPerShard; j += 37) {
            const auto h = leaf_queue_handle(((kHtbFirstShardMajor + shard) << 16) | (j * 16));
            CHECK(h != 0);
            CHECK((h >> 16) < 0x8000u);  // the kernel's automatic handles start above
            CHECK(seen.insert(h).second);
        }
    }
    CHECK(leaf_queue_handle(0x400000) == 0);                                  // minor 0
    CHECK(leaf_queue_handle(0x400018) == 0);                                  // not 16j
    CHECK(leaf_queue_handle(0x3f0010) == 0);                                  // not our shard
    CHECK(leaf_queue_handle(0x400000 | ((kClassesPerShard + 1) * 16)) == 0);  // past the last
    CHECK(class_of_priority(0x400026) == 0x400020u);  // a young packet's class
    CHECK(throttle_class("40:20") == 0x400020u);
    CHECK_FALSE(throttle_class("nonsense"));
}

// `nft list flowtables` as nftables 1.0.6 prints it (this kernel has no
// flowtable support, so these are fixtures, not captures).
TEST_CASE("flowtables: found in any table, with their counter and offload flags") {
    const char* text =
        "table inet isp {\n"
        "\tflowtable fast {\n"
        "\t\thook ingress priority filter\n"
        "\t\tdevices = { eth0, eth1 }\n"
        "\t\tcounter\n"
        "\t}\n"
        "\tflowtable hw {\n"
        "\t\thook ingress priority filter + 10\n"
        "\t\tdevices = { \"wan0\" }\n"
        "\t\tflags offload\n"
        "\t}\n"
        "}\n"
        "table ip legacy {\n"
        "\tflowtable ft {\n"
        "\t\thook ingress priority -100\n"
        "\t\tdevices = { ppp0 }\n"
        "\t}\n"
        "}\n";
    const auto found = parse_flowtables(text);
    REQUIRE(found.size() == 3);
    CHECK(found[0] == Flowtable{"inet", "isp", "fast", {"eth0", "eth1"}, true, false});
    CHECK(found[1] == Flowtable{"inet", "isp", "hw", {"wan0"}, false, true});
    CHECK(found[2] == Flowtable{"ip", "legacy", "ft", {"ppp0"}, false, false});
    CHECK(describe(found[0]).find("still counts them") != std::string::npos);
    CHECK(describe(found[1]).find("does NOT count them") != std::string::npos);
    CHECK(describe(found[1]).find("hardware offload") != std::string::npos);
    CHECK(describe(found[2]).find("table ip legacy") != std::string::npos);
}

TEST_CASE("flowtables: none in an empty listing or one without flowtables") {
    CHECK(parse_flowtables("").empty());
    CHECK(parse_flowtables("table inet filter {\n}\n").empty());
}
