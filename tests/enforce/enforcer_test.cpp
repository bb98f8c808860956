// The Enforcer against the real kernel, in the test binary's own network
// namespace (main.cpp): nftables and tc are read back through the Enforcer
// and cross-checked with nft(8)/tc(8) output.
#include <doctest/doctest.h>
#include <libmnl/libmnl.h>
#include <net/if.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "core/plan.hpp"
#include "enforce/enforcer.hpp"
#include "enforce/kernel_model.hpp"
#include "enforce/tc_messages.hpp"

using namespace ctquota;
using namespace ctquota::enforce;

namespace {

core::Prefix P(const char* text) {
    return *core::Prefix::parse(text);
}

std::string run(const std::string& command) {
    std::string out;
    std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(("{ " + command + "; } 2>&1").c_str(), "r"),
                                               pclose);
    std::array<char, 4096> buf{};
    while (pipe && fgets(buf.data(), buf.size(), pipe.get()) != nullptr) {
        out += buf.data();
    }
    return out;
}

EnforceConfig config(bool shaping = true) {
    EnforceConfig c;
    c.table = "ctqh2test";
    c.subscriber_interface = shaping ? "ctqh2a" : "";
    return c;
}

SubscriberTarget blocked(core::SubscriberId id, std::vector<core::Prefix> p,
                         std::string plan = {}) {
    SubscriberTarget t;
    t.id = id;
    t.prefixes = std::move(p);
    t.state.kind = core::StateKind::Blocked;
    t.plan = std::move(plan);
    return t;
}

SubscriberTarget throttled(core::SubscriberId id, std::vector<core::Prefix> p, std::uint64_t down,
                           std::uint64_t up) {
    SubscriberTarget t;
    t.id = id;
    t.prefixes = std::move(p);
    t.state.kind = core::StateKind::Throttled;
    t.state.rate = core::Rate{down, up};
    return t;
}

// The shaper the Enforcer makes (EnforceConfig's default name).
const std::string kShaper = "ctqshaper";

struct Fresh {  // every test starts from an empty table, no shaper and no qdisc
    Fresh() {
        run("nft delete table inet ctqh2test; tc qdisc del dev ctqh2a root; "
            "tc qdisc del dev ctqh2a clsact; ip link del " +
            kShaper);
        run("nft add table inet someoneelse");
    }
};

// "80:" as tc prints a qdisc handle.
std::string major_text(std::uint32_t handle) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%x:", handle >> 16);
    return buf;
}

// What ctquotad before the shaper put on the subscriber interface: root
// htb 1: with the shard classifier (built with the same message code).
void install_old_root(const char* interface) {
    const int ifindex = static_cast<int>(if_nametoindex(interface));
    REQUIRE(ifindex > 0);
    std::vector<char> buf;
    put_htb_qdisc(buf, ifindex, kMajor, TC_H_ROOT, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE, 1);
    const int prog = load_shard_program();
    REQUIRE(prog >= 0);
    put_classifier(buf, ifindex, kMajor, prog, "ctquota_shard", 2);
    std::unique_ptr<mnl_socket, int (*)(mnl_socket*)> nl(mnl_socket_open(NETLINK_ROUTE),
                                                         mnl_socket_close);
    REQUIRE(nl);
    REQUIRE(mnl_socket_bind(nl.get(), 0, MNL_SOCKET_AUTOPID) == 0);
    REQUIRE(mnl_socket_sendto(nl.get(), buf.data(), buf.size()) ==
            static_cast<ssize_t>(buf.size()));
    close(prog);
    // No ACKs asked for: a dump after this request is answered after it ran.
}

}  // namespace

TEST_CASE_FIXTURE(Fresh, "apply installs what read_back reports, and other tables stay") {
    Enforcer e(config());
    e.set_allowed({{"prepaid", {P("198.18.0.53"), P("2001:db8:ffff::53")}}});
    auto r = e.apply({blocked(1, {P("100.64.1.1"), P("2001:db8:0:1::/64")}, "prepaid"),
                      throttled(2, {P("100.64.1.2")}, 8'000'000, 1'000'000)});
    CHECK(r.ok());
    CHECK(r.subscribers_changed == 2);
    CHECK(r.nft_transactions == 2);  // plan containers, then everything else
    auto k = e.read_back();
    REQUIRE(k.subscribers.size() == 2);
    CHECK(k.subscribers.at(1).kind == core::StateKind::Blocked);
    CHECK(k.subscribers.at(1).block_chain == "block_prepaid");
    CHECK(k.subscribers.at(1).prefixes ==
          std::vector<core::Prefix>{P("100.64.1.1"), P("2001:db8:0:1::/64")});
    CHECK(k.subscribers.at(2).kind == core::StateKind::Throttled);
    CHECK(k.subscribers.at(2).rate == core::Rate{8'000'000, 1'000'000});
    REQUIRE(k.subscribers.at(2).tc_classid);
    CHECK(k.tc_classes == 1);
    CHECK(k.allowed_by_plan.at("prepaid").size() == 2);
    // The subscriber's class on the shaper, its tbf, and the bands under it.
    const auto id = *k.subscribers.at(2).tc_classid;
    const auto cls = classid_text(id);
    const auto tc = run("tc class show dev " + kShaper);
    CAPTURE(tc);
    CHECK(tc.find("class htb " + cls + " root leaf") != std::string::npos);
    CHECK(tc.find("rate 8Mbit ceil 8Mbit") != std::string::npos);
    const auto qdiscs = run("tc qdisc show dev " + kShaper);
    CAPTURE(qdiscs);
    const auto tbf = major_text(leaf_queue_handle(id));
    CHECK(qdiscs.find("qdisc tbf " + tbf + " parent " + cls) != std::string::npos);
    CHECK(qdiscs.find(" parent " + tbf + "1 bands 3") != std::string::npos);
    // Downloads go to the class; the forward chain sets the young band for
    // young connections and ICMP.
    CHECK(
        run("nft list map inet ctqh2test throttle_v4").find("100.64.1.2 comment \"2\" : " + cls) !=
        std::string::npos);
    const auto chain = run("nft list chain inet ctqh2test forward");
    CHECK(chain.find("ct packets < 32 meta priority set meta priority | 0:6") != std::string::npos);
    CHECK(chain.find("meta l4proto { icmp, ipv6-icmp } meta priority set meta priority | 0:6") !=
          std::string::npos);
    const auto nft = run("nft list table inet ctqh2test");
    CHECK(nft.find("100.64.1.1 comment \"1\" : jump block_prepaid") != std::string::npos);
    CHECK(run("nft list tables").find("someoneelse") != std::string::npos);
}

TEST_CASE_FIXTURE(Fresh, "reconcile is idempotent, repairs drift and removes stale entries") {
    std::vector<SubscriberTarget> desired = {blocked(1, {P("100.64.1.1")}),
                                             throttled(2, {P("100.64.1.2")}, 2'000'000, 0),
                                             throttled(3, {P("100.64.1.3")}, 0, 512'000)};
    desired[0].kernel_quota_bytes = 1000;  // blocked: no quota
    SubscriberTarget q;
    q.id = 4;
    q.prefixes = {P("100.64.1.4")};
    q.kernel_quota_bytes = 10'000;
    desired.push_back(q);
    {
        Enforcer e(config());
        CHECK(e.reconcile(desired).subscribers_changed == 4);
    }
    Enforcer e(config());  // a restarted daemon: learns everything from the kernel
    auto again = e.reconcile(desired);
    CHECK(again.ok());
    CHECK(again.subscribers_changed == 0);
    CHECK(again.nft_commands == 0);
    CHECK(again.tc_messages == 0);

    // Drift: an element nobody owns, a class nobody uses, a subscriber's element lost.
    run("nft add element inet ctqh2test blocked_v4 '{ 100.64.9.9 : jump block }'");
    run("tc class add dev " + kShaper + " parent 45: classid 45:70 htb rate 1mbit");
    run("nft delete element inet ctqh2test blocked_v4 '{ 100.64.1.1 }'");
    auto repair = e.reconcile(desired);
    CHECK(repair.ok());
    CHECK(repair.subscribers_changed == 2);  // subscriber 1 + the unowned entries
    auto k = e.read_back();
    CHECK(k.subscribers.size() == 4);
    CHECK(k.subscribers.at(1).kind == core::StateKind::Blocked);
    CHECK(k.subscribers.at(4).quota_bytes == 10'000);
    CHECK(k.tc_classes == 1);
    CHECK(run("nft list table inet ctqh2test").find("100.64.9.9") == std::string::npos);
    CHECK(e.reconcile(desired).subscribers_changed == 0);

    CHECK(e.reconcile({}).subscribers_changed == 4);
    k = e.read_back();
    CHECK(k.subscribers.empty());
    CHECK(k.tc_classes == 0);
}

TEST_CASE_FIXTURE(Fresh, "the largest allowances arm a quota the kernel accepts") {
    Enforcer e(config());
    std::vector<SubscriberTarget> want(2);
    want[0].id = 11;
    want[0].prefixes = {P("100.64.5.11")};
    want[0].kernel_quota_bytes = core::kMaxAllowanceBytes;
    want[1].id = 12;
    want[1].prefixes = {P("100.64.5.12")};
    want[1].kernel_quota_bytes = std::numeric_limits<std::uint64_t>::max();
    const auto r = e.apply(want);
    CHECK(r.ok());
    const auto k = e.read_back();
    CHECK(k.subscribers.at(11).quota_bytes == core::kMaxAllowanceBytes);
    CHECK(k.subscribers.at(12).quota_bytes ==
          std::uint64_t{std::numeric_limits<std::int64_t>::max()});
}

TEST_CASE_FIXTURE(Fresh, "rate changes keep the HTB class; unthrottle deletes it") {
    Enforcer e(config());
    CHECK(e.apply({throttled(9, {P("100.64.2.9")}, 2'000'000, 1'000'000)}).ok());
    const auto classid = e.read_back().subscribers.at(9).tc_classid;
    CHECK(e.apply({throttled(9, {P("100.64.2.9")}, 4'000'000, 2'000'000)}).ok());
    auto k = e.read_back();
    CHECK(k.subscribers.at(9).tc_classid == classid);
    CHECK(k.subscribers.at(9).rate == core::Rate{4'000'000, 2'000'000});
    CHECK(e.remove({9}).ok());
    k = e.read_back();
    CHECK(k.subscribers.empty());
    CHECK(k.tc_classes == 0);
}

std::size_t count_of(const std::string& text, const std::string& what) {
    std::size_t n = 0;
    for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) {
        ++n;
    }
    return n;
}

TEST_CASE_FIXTURE(Fresh,
                  "a throttled class has a tbf leaf: kept by a restart, repaired when lost") {
    const std::vector<SubscriberTarget> desired{
        throttled(12, {P("100.64.2.12")}, 2'000'000, 1'000'000)};
    auto leaves = [] { return run("tc -j qdisc show dev " + kShaper); };
    {
        Enforcer e(config());
        CHECK(e.apply(desired).ok());
        CHECK(e.read_back().subscribers.at(12).tc_leaf_queue);
    }
    CHECK(count_of(leaves(), "\"kind\":\"tbf\"") == 1);
    CHECK(count_of(leaves(), "\"kind\":\"pfifo_fast\"") == 1);
    CHECK(count_of(leaves(), "\"rate\":500000,\"burst\":4100") == 1);  // 2 x 2 Mbit/s, 10 ms

    Enforcer e(config());  // a restart: the leaf queue is read back, not replayed
    auto again = e.reconcile(desired);
    CHECK(again.subscribers_changed == 0);
    CHECK(again.tc_messages == 0);
    CHECK(count_of(leaves(), "\"kind\":\"tbf\"") == 1);

    const auto id = *e.read_back().subscribers.at(12).tc_classid;
    const auto classid = classid_text(id);
    CHECK(run("tc qdisc del dev " + kShaper + " parent " + classid).empty());
    CHECK_FALSE(e.read_back().subscribers.at(12).tc_leaf_queue);  // HTB's pfifo again
    CHECK(e.reconcile(desired).subscribers_changed == 1);
    auto k = e.read_back();
    CHECK(k.subscribers.at(12).tc_leaf_queue);
    CHECK(classid_text(*k.subscribers.at(12).tc_classid) == classid);
    CHECK(count_of(leaves(), "\"kind\":\"tbf\"") == 1);

    // Lost bands (the tbf's own bfifo again) are repaired the same way.
    CHECK(run("tc qdisc del dev " + kShaper + " parent " + major_text(leaf_queue_handle(id)) + "1")
              .empty());
    CHECK_FALSE(e.read_back().subscribers.at(12).tc_leaf_queue);
    CHECK(e.reconcile(desired).subscribers_changed == 1);
    CHECK(e.read_back().subscribers.at(12).tc_leaf_queue);
    CHECK(count_of(leaves(), "\"kind\":\"pfifo_fast\"") == 1);

    CHECK(e.apply({throttled(12, {P("100.64.2.12")}, 4'000'000, 1'000'000)}).ok());
    CHECK(count_of(leaves(), "\"kind\":\"tbf\"") == 1);  // changed in place
    CHECK(count_of(leaves(), "\"kind\":\"pfifo_fast\"") == 1);
    CHECK(count_of(leaves(), "\"rate\":1000000,\"burst\":6600") == 1);
    CHECK(e.remove({12}).ok());
    CHECK(count_of(leaves(), "\"kind\":\"tbf\"") == 0);  // gone with its class
    CHECK(count_of(leaves(), "\"kind\":\"pfifo_fast\"") == 0);
}

TEST_CASE_FIXTURE(Fresh, "a rejected change names its subscriber; the others still apply") {
    Enforcer e(config());
    // 100.64.3.5 lies inside subscriber 1's /24: the interval map refuses the overlap.
    auto r = e.apply({blocked(1, {P("100.64.3.0/24")}), blocked(2, {P("100.64.3.5")}),
                      throttled(3, {P("100.64.4.1")}, 1'000'000, 0)});
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].find("subscriber ") == 0);
    CHECK(r.errors[0].find("blocked_v4") != std::string::npos);
    auto k = e.read_back();
    CHECK(k.subscribers.size() == 2);
    CHECK(k.subscribers.contains(3));
}

TEST_CASE_FIXTURE(Fresh, "one refused change among 2000 is found by bisecting") {
    Enforcer e(config());
    std::vector<SubscriberTarget> want = {blocked(1, {P("100.64.3.0/24")}),
                                          blocked(2, {P("100.64.3.5")})};  // inside 1's /24
    for (core::SubscriberId id = 10; id < 2010; ++id) {
        const auto text = "100.65." + std::to_string(id / 256) + "." + std::to_string(id % 256);
        want.push_back(blocked(id, {P(text.c_str())}));
    }
    const auto t0 = std::chrono::steady_clock::now();
    const auto r = e.apply(want);
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    MESSAGE("2002 changes, 1 refused: " << r.nft_transactions << " nft transactions, " << ms
                                        << " ms");
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].find("blocked_v4") != std::string::npos);
    // 1 whole + 2 per level of halving (11 levels for 2002), not one per subscriber.
    CHECK(r.nft_transactions <= 24);
    const auto k = e.read_back();
    CHECK(k.subscribers.size() == 2001);
    CHECK(k.subscribers.contains(1) != k.subscribers.contains(2));
    CHECK(k.subscribers.contains(2009));
    CHECK(e.reconcile(want).errors.size() == 1);  // still refused, the rest stays
    CHECK(e.read_back().subscribers.size() == 2001);
}

TEST_CASE_FIXTURE(Fresh, "a plan whose chain cannot be made blocks through the generic chain") {
    Enforcer e(config());
    CHECK(e.apply({}).ok());  // the skeleton
    // Someone else's set where the plan's always-allowed set would go.
    run("nft add set inet ctqh2test allow_bad_v4 '{ type inet_service; }'");
    e.set_allowed({{"bad", {P("198.18.0.53")}}, {"good", {P("198.18.0.54")}}});
    const auto r =
        e.apply({blocked(1, {P("100.64.6.1")}, "bad"), blocked(2, {P("100.64.6.2")}, "good")});
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].find("plan 'bad'") != std::string::npos);
    const auto k = e.read_back();
    CHECK(k.subscribers.at(1).block_chain == "block");
    CHECK(k.subscribers.at(2).block_chain == "block_good");
    const auto nft = run("nft list table inet ctqh2test");
    CHECK(nft.find("100.64.6.1 comment \"1\" : jump block") != std::string::npos);
    CHECK(nft.find("100.64.6.1 comment \"1\" : jump block_") == std::string::npos);
    // Repaired: the plan gets its chain and its subscribers move onto it.
    run("nft delete set inet ctqh2test allow_bad_v4");
    const auto again =
        e.reconcile({blocked(1, {P("100.64.6.1")}, "bad"), blocked(2, {P("100.64.6.2")}, "good")});
    CHECK(again.ok());
    CHECK(e.read_back().subscribers.at(1).block_chain == "block_bad");
}

TEST_CASE_FIXTURE(Fresh, "damage() sees lost kernel state; forget_kernel + reconcile rebuild it") {
    const std::vector<SubscriberTarget> want = {blocked(1, {P("100.64.7.1")}),
                                                throttled(2, {P("100.64.7.2")}, 2'000'000, 0)};
    Enforcer e(config());
    CHECK(e.reconcile(want).ok());
    CHECK(e.damage().empty());
    const auto before = e.read_back();
    for (const std::string& breakage : std::vector<std::string>{
             "nft delete table inet ctqh2test", "tc qdisc del dev " + kShaper + " root",
             "ip link del " + kShaper, "tc qdisc del dev ctqh2a clsact",
             "tc filter del dev ctqh2a egress pref 15473",
             "nft flush chain inet ctqh2test forward"}) {
        CAPTURE(breakage);
        run(breakage);
        const auto damage = e.damage();
        CHECK_FALSE(damage.empty());
        MESSAGE(breakage << " -> " << damage);
        e.forget_kernel();
        CHECK(e.reconcile(want).ok());
        CHECK(e.damage().empty());
        const auto after = e.read_back();
        CHECK(after.subscribers.size() == before.subscribers.size());
        CHECK(after.subscribers.at(1).kind == core::StateKind::Blocked);
        CHECK(after.subscribers.at(2).rate == core::Rate{2'000'000, 0});
        CHECK(after.tc_classes == 1);
    }
    CHECK(run("nft list tables").find("someoneelse") != std::string::npos);
}

TEST_CASE_FIXTURE(Fresh, "an interface gone for a while: damage stays reported until it is back") {
    const std::vector<SubscriberTarget> want = {throttled(2, {P("100.64.7.2")}, 2'000'000, 0)};
    Enforcer e(config());
    CHECK(e.reconcile(want).ok());
    run("ip link del ctqh2a");
    CHECK_FALSE(e.damage().empty());
    CHECK_THROWS_AS(e.forget_kernel(), EnforceError);     // cannot rebuild yet: nothing forgotten
    CHECK(e.damage().find("gone") != std::string::npos);  // so the next check still sees it
    run("ip link add ctqh2a type veth peer name ctqh2b && ip link set ctqh2a up && "
        "ip link set ctqh2b up");
    CHECK(e.damage().find("created again") != std::string::npos);
    e.forget_kernel();
    CHECK(e.reconcile(want).ok());
    CHECK(e.damage().empty());
    CHECK(run("tc filter show dev ctqh2a egress").find("ctquota_redirect") != std::string::npos);
}

TEST_CASE_FIXTURE(Fresh, "flowtables are listed from the kernel (none on this one)") {
    Enforcer e(config());
    CHECK(e.flowtables().empty());  // this kernel cannot hold one; parsing: model_test
}

TEST_CASE_FIXTURE(Fresh, "no_offload_mark: enforced subscribers' packets are marked for the ISP") {
    auto cfg = config();
    cfg.no_offload_mark = 0x00800000;
    {
        Enforcer e(cfg);
        CHECK(e.apply({throttled(3, {P("100.64.8.3")}, 2'000'000, 0)}).ok());
        CHECK(e.damage().empty());  // the skeleton check knows the mark rules
    }
    const auto chain = run("nft list chain inet ctqh2test forward");
    // Everybody without kernel state leaves the chain first (a download or an
    // upload after one lookup); the rest is marked.
    for (const char* rule :
         {"oifname \"ctqh2a\" iifname != \"ctqh2a\" ip daddr != @active_v4 return",
          "iifname \"ctqh2a\" oifname != \"ctqh2a\" ip saddr != @active_v4 return",
          "oifname \"ctqh2a\" iifname != \"ctqh2a\" ip6 daddr != @active_v6 return",
          "ip saddr != @active_v4 ip daddr != @active_v4 return",
          "ip6 saddr != @active_v6 ip6 daddr != @active_v6 return",
          "meta mark set meta mark | 0x00800000"}) {
        CAPTURE(rule);
        CHECK(chain.find(rule) != std::string::npos);
    }
    CHECK(run("nft list set inet ctqh2test active_v4").find("100.64.8.3") != std::string::npos);
    Enforcer again(cfg);  // a restart keeps them (no refill)
    CHECK(again.reconcile({throttled(3, {P("100.64.8.3")}, 2'000'000, 0)}).nft_commands == 0);
    CHECK(run("nft list chain inet ctqh2test forward") == chain);
    Enforcer without(config());  // turned off: the rules go with the next start
    CHECK(without.apply({}).ok());
    CHECK(run("nft list chain inet ctqh2test forward").find("meta mark") == std::string::npos);
}

TEST_CASE_FIXTURE(Fresh, "the shaper root's direct queue is set explicitly") {
    auto cfg = config();
    cfg.direct_queue_packets = 700;
    Enforcer e(cfg);
    CHECK(e.apply({}).ok());
    const auto qdisc = run("tc -d qdisc show dev " + kShaper + " root");
    CAPTURE(qdisc);
    CHECK(qdisc.find("direct_qlen 700") != std::string::npos);
}

TEST_CASE_FIXTURE(Fresh, "the subscriber interface keeps its own root qdisc; ours goes") {
    run("tc qdisc add dev ctqh2a root handle 9: tbf rate 10gbit burst 1mb latency 10ms");
    Enforcer e(config());
    CHECK(e.apply({throttled(4, {P("100.64.4.4")}, 2'000'000, 0)}).ok());
    CHECK(run("tc qdisc show dev ctqh2a root").find("qdisc tbf 9:") != std::string::npos);
    CHECK(run("tc filter show dev ctqh2a egress").find("ctquota_redirect") != std::string::npos);
    // An older ctquotad shaped on the subscriber interface itself: an HTB
    // root with the shard classifier. Found at start and removed.
    e.teardown();
    install_old_root("ctqh2a");
    REQUIRE(run("tc filter show dev ctqh2a parent 1:").find("ctquota_shard") != std::string::npos);
    Enforcer upgraded(config());
    CHECK(upgraded.apply({throttled(4, {P("100.64.4.4")}, 2'000'000, 0)}).ok());
    CHECK(run("tc qdisc show dev ctqh2a root").find("htb") == std::string::npos);
    // Somebody else's HTB root (no ctquota_shard filter) stays.
    run("tc qdisc replace dev ctqh2a root handle 1: htb");
    Enforcer again(config());
    CHECK(again.reconcile({throttled(4, {P("100.64.4.4")}, 2'000'000, 0)}).ok());
    CHECK(run("tc qdisc show dev ctqh2a root").find("qdisc htb 1:") != std::string::npos);
}

TEST_CASE_FIXTURE(Fresh, "without a subscriber interface throttles police both ways") {
    Enforcer e(config(false));
    CHECK(e.apply({throttled(5, {P("100.64.5.5")}, 3'000'000, 1'000'000)}).ok());
    auto k = e.read_back();
    CHECK(k.subscribers.at(5).rate == core::Rate{3'000'000, 1'000'000});
    CHECK_FALSE(k.subscribers.at(5).tc_classid);
    CHECK(run("nft list map inet ctqh2test down_limit_v4").find("down_5") != std::string::npos);
}

TEST_CASE_FIXTURE(Fresh, "teardown removes our table, filter and shaper only") {
    run("tc qdisc add dev ctqh2a clsact");
    run("tc filter add dev ctqh2a egress pref 7 bpf bytecode '1,6 0 0 0'");
    Enforcer e(config());
    CHECK(e.apply({throttled(1, {P("100.64.1.1")}, 1'000'000, 0)}).ok());
    e.teardown();
    CHECK(run("nft list tables").find("ctqh2test") == std::string::npos);
    CHECK(run("nft list tables").find("someoneelse") != std::string::npos);
    CHECK(run("ip link show " + kShaper).find("does not exist") != std::string::npos);
    const auto filters = run("tc filter show dev ctqh2a egress");
    CHECK(filters.find("ctquota_redirect") == std::string::npos);
    CHECK(filters.find("pref 7 bpf") != std::string::npos);
}

TEST_CASE_FIXTURE(Fresh, "an address that moves to another subscriber is released first") {
    Enforcer e(config());
    CHECK(e.apply({blocked(1, {P("100.64.6.6"), P("100.64.6.7")})}).ok());
    // Only the new owner is in the change list (its binding changed).
    auto r = e.apply({throttled(2, {P("100.64.6.6")}, 1'000'000, 0)});
    CHECK(r.ok());
    auto k = e.read_back();
    CHECK(k.subscribers.at(1).prefixes == std::vector<core::Prefix>{P("100.64.6.7")});
    CHECK(k.subscribers.at(2).kind == core::StateKind::Throttled);
    CHECK(
        e.reconcile({blocked(1, {P("100.64.6.7")}), throttled(2, {P("100.64.6.6")}, 1'000'000, 0)})
            .subscribers_changed == 0);
}

TEST_CASE_FIXTURE(Fresh, "a second start keeps the skeleton's rules; a foreign rule is replaced") {
    const auto handles = [] { return run("nft -a list chain inet ctqh2test forward"); };
    {
        Enforcer e(config());
        CHECK(e.apply({blocked(1, {P("100.64.1.1")})}).ok());
    }
    const auto first = handles();
    REQUIRE(first.find("# handle") != std::string::npos);
    {
        Enforcer e(config());
        CHECK(e.apply({blocked(1, {P("100.64.1.1")})}).ok());
    }
    CHECK(handles() == first);  // not flushed and re-added
    run("nft add rule inet ctqh2test forward counter");
    {
        Enforcer e(config());
        CHECK(e.apply({blocked(1, {P("100.64.1.1")})}).ok());
    }
    const auto refilled = handles();
    CHECK(refilled.find("counter") == std::string::npos);
    CHECK(refilled != first);
    auto other = config();
    other.subscriber_interface = "ctqh2b";  // the chain head names the interface
    {
        Enforcer e(other);
        CHECK(e.apply({blocked(1, {P("100.64.1.1")})}).ok());
    }
    CHECK(handles().find("oifname \"ctqh2b\"") != std::string::npos);
    CHECK(handles().find("ctqh2a") == std::string::npos);
    run("tc qdisc del dev ctqh2b clsact");
}

TEST_CASE_FIXTURE(Fresh, "many lifts at once refill the maps: the rest stays, nothing else") {
    Enforcer e(config());
    std::vector<SubscriberTarget> all;
    for (core::SubscriberId id = 1; id <= 80; ++id) {
        const auto p = P(("100.64.3." + std::to_string(id)).c_str());
        all.push_back(id % 2 ? blocked(id, {p}) : throttled(id, {p}, 2'000'000, 1'000'000));
    }
    REQUIRE(e.apply(all).ok());
    std::vector<SubscriberTarget> lift;
    for (core::SubscriberId id = 1; id <= 70; ++id) {  // 35 per map: over the refill threshold
        auto t = all[id - 1];
        t.state = core::DesiredState{};
        lift.push_back(t);
    }
    const auto r = e.apply(lift);
    CHECK(r.ok());
    CHECK(r.subscribers_changed == 70);
    CHECK(r.nft_transactions == 1);  // the refill itself accepted, not bisected into pieces
    const auto k = e.read_back();
    REQUIRE(k.subscribers.size() == 10);
    const auto active = run("nft list set inet ctqh2test active_v4");
    CHECK(active.find("100.64.3.71") != std::string::npos);  // refilled with what stays
    CHECK(active.find("100.64.3.1 ") == std::string::npos);
    for (core::SubscriberId id = 71; id <= 80; ++id) {
        CHECK(k.subscribers.at(id).kind == all[id - 1].state.kind);
    }
    CHECK(k.tc_classes == 5);
    const auto nft = run("nft list map inet ctqh2test blocked_v4");
    CHECK(nft.find("100.64.3.71 comment \"71\"") != std::string::npos);
    CHECK(nft.find("100.64.3.1 ") == std::string::npos);
    CHECK(e.reconcile(all).subscribers_changed == 70);  // and back, through the same path
    CHECK(e.read_back().subscribers.size() == 80);
}
