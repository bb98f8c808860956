#include "app/daemon.hpp"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "api/server.hpp"
#include "app/install_paths.hpp"
#include "conntrack/sysctl.hpp"
#include "drops/drop_map.hpp"
#include "enforce/tc_programs.hpp"
#include "metrics/metrics.hpp"
#include "notify/webhook_sender.hpp"
#include "policy/plan_files.hpp"
#include "policy/policy_engine.hpp"
#include "runtime/accountant.hpp"
#include "runtime/event_journal.hpp"
#include "runtime/fd_store.hpp"
#include "runtime/flusher.hpp"
#include "runtime/journal_replay.hpp"
#include "runtime/offset_clock.hpp"
#include "runtime/readers.hpp"
#include "sinks/flow_records.hpp"
#include "store/migrations.hpp"

namespace ctquota::app {
namespace {

constexpr auto kStatusEvery = std::chrono::seconds(30);
constexpr auto kShutdownGrace = std::chrono::seconds(15);
constexpr auto kRecordsGrace = std::chrono::seconds(5);

sigset_t control_signals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    return set;
}

// Waits up to `d` for a control signal; returns it, or 0 on timeout.
int wait_signal(std::chrono::nanoseconds d) {
    const sigset_t set = control_signals();
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(d);
    timespec ts{static_cast<time_t>(secs.count()), static_cast<long>((d - secs).count())};
    const int sig = sigtimedwait(&set, nullptr, &ts);
    return sig > 0 ? sig : 0;
}

bool is_stop(int sig) {
    return sig == SIGTERM || sig == SIGINT;
}

// Sizes the ledger for the kernel's own table limit, so it never rehashes mid-burst.
std::size_t expected_flows() {
    constexpr std::size_t kCap = 4'000'000;
    const auto max = conntrack::read_sysctl("net/netfilter/nf_conntrack_max");
    try {
        return max ? std::min<std::size_t>(std::stoull(*max), kCap) : 65536;
    } catch (const std::exception&) {
        return 65536;
    }
}

void check_kernel(const Config& config) {
    const auto kernel =
        conntrack::ensure_conntrack_accounting(config.conntrack.enable_accounting_sysctl);
    if (kernel.rmem_max && *kernel.rmem_max < config.conntrack.event_buffer_bytes) {
        spdlog::warn(
            "net.core.rmem_max is {} bytes, below conntrack.event_buffer_bytes ({}); the event "
            "buffer is forced past it when running as root, otherwise capped",
            *kernel.rmem_max, config.conntrack.event_buffer_bytes);
    }
}

// Start-up needs the database: without the checkpoint, counting would start
// from scratch and double count live flows. Retry until it answers or we are told to stop.
bool prepare_database(const Config& config, store::Database& db, runtime::Accountant& accountant,
                      runtime::Flusher& flusher, store::StoredFlush& stored) {
    auto wait = std::chrono::milliseconds(500);
    while (true) {
        try {
            const int applied = store::apply_migrations(db, schema_dir(config));
            if (applied > 0) {
                spdlog::info("applied {} schema migrations", applied);
            }
            store::UsageStore usage(db, config.accounting.gateway_id);
            const auto checkpoint = usage.load_checkpoint();
            accountant.restore_ledger(checkpoint);
            const auto lost = std::count_if(checkpoint.begin(), checkpoint.end(),
                                            [](const auto& e) { return e.lost; });
            spdlog::info(
                "ledger checkpoint: {} live flows restored, and {} lost ones remembered for "
                "their late DESTROY",
                checkpoint.size() - static_cast<std::size_t>(lost), lost);
            stored = flusher.load_stored_flush();
            flusher.refresh_index(true);
            return true;
        } catch (const std::exception& e) {
            db.reset();
            spdlog::error("database not ready ({}); retrying in {} ms", e.what(), wait.count());
        }
        if (is_stop(wait_signal(wait))) {
            return false;
        }
        wait = std::min(wait * 2, std::chrono::milliseconds(10000));
    }
}

// Plans, subscribers, states and the first full reconcile: before counting
// starts, so a restart re-applies (never lifts) what is in force.
bool start_policy_engine(policy::PolicyEngine& engine) {
    auto wait = std::chrono::milliseconds(500);
    while (true) {
        try {
            engine.start_up();
            engine.start();
            return true;
        } catch (const policy::PlanFileError&) {
            throw;  // fatal (README, error policy): main prints file:line:key and exits 1
        } catch (const std::exception& e) {
            spdlog::error("policy engine start-up failed ({}); retrying in {} ms", e.what(),
                          wait.count());
        }
        if (is_stop(wait_signal(wait))) {
            return false;
        }
        wait = std::min(wait * 2, std::chrono::milliseconds(10000));
    }
}

std::unique_ptr<enforce::Enforcer> make_enforcer(
    const Config& config, std::shared_ptr<const enforce::TcPrograms> programs) {
    if (!config.enforce.enabled) {
        spdlog::warn(
            "enforce.enabled = false: usage is accounted and states are recorded, but "
            "nothing is throttled or blocked in the kernel");
        return nullptr;
    }
    // The Enforcer itself says what an empty subscriber_interface falls back to.
    const enforce::EnforceConfig& e = config.enforce;
    // EnforceError: fatal, like a bad config.
    return std::make_unique<enforce::Enforcer>(e, std::move(programs));
}

// The tc shaping's eBPF programs, loaded while CAP_BPF is still held (the
// drops' open_drops() gives it up): every build of the shaper reuses them.
std::shared_ptr<const enforce::TcPrograms> load_tc_programs(const Config& config) {
    if (!config.enforce.enabled || config.enforce.subscriber_interface.empty()) {
        return nullptr;
    }
    return std::make_shared<const enforce::TcPrograms>();  // EnforceError: fatal
}

void log_status(const metrics::Metrics& m) {
    spdlog::info(
        "status: events {} dumps {} samples {} flows {} flushes {} db_errors {} enobufs {} "
        "lost_flows {} unattributed_bytes {} queue_full_waits {} queue_overflows {}",
        m.events_read.load(), m.dumps.load(), m.samples_applied.load(), m.flows_tracked.load(),
        m.flushes.load(), m.db_errors.load(), m.enobufs.load(), m.flows_lost.load(),
        m.unattributed_bytes.load(), m.queue_full_waits.load(), m.queue_overflows.load());
}

api::ServerOptions api_options(const Config& config) {
    api::ServerOptions o;
    o.host = config.api.host;
    o.port = config.api.port;
    o.listen_text = config.api.listen;
    o.limits.max_body_bytes = config.api.max_body_bytes;
    o.limits.connections.total = config.api.max_connections;
    o.limits.connections.per_address = config.api.max_connections_per_address;
    o.limits.max_header_bytes = config.api.max_header_bytes;
    o.limits.max_headers = config.api.max_headers;
    o.limits.request_timeout =
        std::chrono::duration_cast<std::chrono::milliseconds>(config.api.request_timeout);
    o.limits.write_timeout =
        std::chrono::duration_cast<std::chrono::milliseconds>(config.api.write_timeout);
    o.limits.max_queued_requests = config.api.max_queued_requests;
    o.database_url = config.database.url;
    o.tls_cert = config.api.tls_cert.string();
    o.tls_key = config.api.tls_key.string();
    o.binding_rules = config.subscribers;
    o.auth_failure_log_interval = config.api.auth_failure_log_interval;
    o.web_dir = config.api.web_dir.empty() ? data_dir("web", CTQUOTA_WEB_DIR) : config.api.web_dir;
    return o;
}

// From [webhooks] and [database] of the config.
notify::WebhookSenderOptions webhook_sender_options(const Config& config) {
    notify::WebhookSenderOptions o;
    o.database_url = config.database.url;
    o.gateway_id = config.accounting.gateway_id;
    o.urls = config.webhooks.urls;
    o.secret = config.webhooks.secret;
    o.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(config.webhooks.timeout);
    o.backoff.max =
        std::chrono::duration_cast<std::chrono::milliseconds>(config.webhooks.max_backoff);
    o.backoff.first = std::min(o.backoff.first, o.backoff.max);
    return o;
}

}  // namespace

std::filesystem::path schema_dir(const Config& config) {
    return config.database.schema_dir.empty() ? data_dir("schema", CTQUOTA_SCHEMA_DIR)
                                              : config.database.schema_dir;
}

namespace {

std::unique_ptr<api::Server> start_api(const Config& config, metrics::Metrics& metrics,
                                       const core::Clock& clock) {
    if (!config.api.enabled) {
        return nullptr;
    }
    auto server = std::make_unique<api::Server>(api_options(config), metrics, clock);
    server->start();
    return server;
}

std::unique_ptr<notify::WebhookSender> start_webhooks(const Config& config,
                                                      metrics::Metrics& metrics) {
    if (config.webhooks.urls.empty()) {
        return nullptr;
    }
    auto sender = std::make_unique<notify::WebhookSender>(webhook_sender_options(config), metrics);
    sender->start();
    return sender;
}

void log_running(const Config& config) {
    using std::chrono::duration_cast;
    using std::chrono::milliseconds;
    spdlog::info("ctquotad running: gateway {}, poll every {} ms, flush every {} ms",
                 config.accounting.gateway_id,
                 duration_cast<milliseconds>(config.conntrack.poll_interval).count(),
                 duration_cast<milliseconds>(config.accounting.flush_interval).count());
}

// [journal] dir, or the service manager's state directory; none otherwise.
std::unique_ptr<runtime::EventJournal> open_journal(const Config& config) {
    auto dir = config.journal.dir;
    if (const char* state = std::getenv("STATE_DIRECTORY"); dir.empty() && state != nullptr) {
        const std::string first(state, std::strcspn(state, ":"));
        dir = std::filesystem::path(first) / "journal";
    }
    if (dir.empty()) {
        spdlog::warn(
            "no event journal (journal.dir unset): events read but not yet flushed are lost if "
            "ctquotad is killed");
        return nullptr;
    }
    auto journal = std::make_unique<runtime::EventJournal>(dir, config.journal.segment_bytes);
    spdlog::info("event journal {} (id {:016x}, {} bytes on disk)", dir.string(), journal->id(),
                 journal->stats().disk_bytes.load());
    return journal;
}

// The event socket of the previous run when the service manager kept it (its
// queued events are still in it); a new one otherwise, handed to the manager.
std::unique_ptr<runtime::Readers> make_readers(const Config& config, runtime::SampleQueue& queue,
                                               metrics::Metrics& metrics, const core::Clock& clock,
                                               runtime::EventJournal* journal) {
    auto passed = runtime::take_passed_fds();
    int fd = -1;
    for (auto& [name, passed_fd] : passed) {
        if (name == runtime::Readers::kEventSocketName) {
            fd = passed_fd;
        } else {
            spdlog::warn("file descriptor {} named '{}' handed to ctquotad: not ours, closed",
                         passed_fd, name);
            ::close(passed_fd);
        }
    }
    std::unique_ptr<runtime::Readers> readers;
    if (fd >= 0) {
        try {
            readers = std::make_unique<runtime::Readers>(config.conntrack, queue, metrics, clock,
                                                         journal, fd);
        } catch (const std::exception& e) {
            spdlog::warn("{}; opening a new one", e.what());
        }
    }
    if (!readers) {
        readers =
            std::make_unique<runtime::Readers>(config.conntrack, queue, metrics, clock, journal);
        readers->keep_event_socket();
    }
    return readers;
}

// Until SIGTERM/SIGINT: SIGHUP reloads the plan files, and a status line every 30 s.
void serve_signals(policy::PolicyEngine& engine, const metrics::Metrics& metrics) {
    auto next_status = std::chrono::steady_clock::now() + kStatusEvery;
    while (true) {
        const int sig = wait_signal(std::chrono::seconds(1));
        if (is_stop(sig)) {
            spdlog::info("signal {}: flushing and stopping", sig);
            return;
        }
        if (sig == SIGHUP) {
            spdlog::info("SIGHUP: reloading the plan files");
            engine.request_reload();
        }
        if (std::chrono::steady_clock::now() >= next_status) {
            log_status(metrics);
            next_status += kStatusEvery;
        }
    }
}

// The BPF program that records drops after conntrack, loaded (or its pins
// reused) while this is the only thread; then CAP_PERFMON and CAP_BPF go,
// from every thread to come (the tc shaping's programs are loaded already:
// load_tc_programs). Unavailable: billed as counted, said loudly (mode
// auto), or fatal (mode required).
std::unique_ptr<drops::DropMap> open_drops(const Config& full, metrics::Metrics& metrics) {
    const drops::DropConfig& config = full.drops;
    std::unique_ptr<drops::DropMap> map;
    if (config.mode == drops::DropConfig::Mode::Off) {
        spdlog::info("drops.mode = off: packets the gateway drops after conntrack are billed");
    } else {
        try {
            map = drops::DropMap::open(config);
            metrics.drop_attribution = true;
        } catch (const drops::DropMapError& e) {
            if (config.mode == drops::DropConfig::Mode::Required) {
                throw;  // fatal, named by main
            }
            spdlog::warn(
                "drops: {}; packets the gateway drops after conntrack counted them (blocks, "
                "kernel quotas, policers, throttle queues) are billed "
                "(ctquota_drop_attribution_active 0; drops.mode = \"off\" silences this)",
                e.what());
        }
    }
    if (const auto problems = drops::drop_bpf_capabilities(); !problems.empty()) {
        spdlog::warn("drops: giving up CAP_PERFMON and CAP_BPF:{}", problems);
    }
    return map;
}

// The flow record sinks ([records], [flowlog], [ipfix]); null when none is configured.
sinks::SinksConfig sinks_config(const Config& config) {
    return {config.records, config.flowlog, config.ipfix, config.database.url,
            config.accounting.gateway_id};
}

std::unique_ptr<sinks::FlowRecords> make_flow_records(const sinks::SinksConfig& config,
                                                      metrics::Metrics& metrics) {
    return config.any() ? std::make_unique<sinks::FlowRecords>(config, metrics) : nullptr;
}

}  // namespace

namespace {

// The soft descriptor limit up to the hard one (systemd starts services at
// 1024 soft): the API's connection cap is what is left after a reserve for
// netlink and PostgreSQL (api::kReservedFds), so a low soft limit only
// shrinks the API, never starves the accounting.
void raise_descriptor_limit() {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
            spdlog::warn("cannot raise the open-file limit to {}", rl.rlim_max);
        }
    }
}

}  // namespace

int run_daemon(const Config& config) {
    // Threads inherit the mask; only this thread takes control signals.
    const sigset_t set = control_signals();
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    raise_descriptor_limit();

    check_kernel(config);
    runtime::OffsetClock clock(config.clock.offset_file);
    metrics::Metrics metrics;
    const auto tc_programs = load_tc_programs(config);
    const auto drop_map = open_drops(config, metrics);  // before any thread starts
    runtime::SampleQueue queue(config.conntrack.queue_samples);
    runtime::Accountant accountant(clock, queue, metrics);
    accountant.reserve_flows(expected_flows());
    accountant.set_drop_map(drop_map.get());
    store::Database db(config.database.url);
    runtime::Flusher flusher(config.accounting, clock, db, accountant, metrics);
    auto journal = open_journal(config);  // JournalError (dir in use, unwritable): fatal
    flusher.use_journal(journal.get(), config.journal.spill_after_bytes);
    const auto records_config = sinks_config(config);
    auto records = make_flow_records(records_config, metrics);
    // Subscribe to events before the first dump, so nothing ends unseen in between;
    // with a journal, read them from now on (the kernel need not hold them for us).
    auto readers = make_readers(config, queue, metrics, clock, journal.get());
    readers->start_reading();
    // Up before the database, so /healthz and /readyz answer while start-up waits for it;
    // a port that cannot be bound is fatal here, like a bad config.
    auto api_server = start_api(config, metrics, clock);
    store::StoredFlush stored;
    if (!prepare_database(config, db, accountant, flusher, stored)) {
        return 0;
    }
    std::unique_ptr<store::WebhookOutbox> outbox;
    if (!config.webhooks.urls.empty()) {
        outbox = std::make_unique<store::WebhookOutbox>(config.accounting.gateway_id,
                                                        config.webhooks.urls);
    }
    policy::PolicyEngine engine(config.policies, config.database.url, clock, accountant, metrics,
                                make_enforcer(config, tc_programs), outbox.get());
    engine.set_gateway_id(config.accounting.gateway_id);
    if (!start_policy_engine(engine)) {
        return 0;
    }
    flusher.on_flushed(
        [&engine](const auto& ids, auto began) { engine.usage_changed(ids, began); });
    engine.on_subscribers_changed([&flusher] { flusher.index_changed(); });
    metrics.database_ok = true;
    const auto journaled = readers->go_live();
    if (journal) {
        // Replayed events are billed, not recorded again: their records, if any,
        // left with the run that read them (README, "Flow records").
        runtime::replay_journal(*journal, stored, journaled, accountant, metrics);
    }
    if (records) {
        accountant.set_record_stage(&records->stage());
        records->start();
    }
    accountant.start();
    flusher.start();
    auto webhooks = start_webhooks(config, metrics);  // after the migrations: it needs the outbox
    log_running(config);
    serve_signals(engine, metrics);

    if (api_server) {
        api_server->stop();
    }
    if (webhooks) {
        webhooks->stop();
    }
    // From here on events go to the journal only: the next run replays them.
    readers->stop_applying();
    queue.close();
    accountant.join();
    const bool flushed = flusher.stop_and_flush(kShutdownGrace);
    if (records) {
        records->stop(kRecordsGrace);  // after the totals: they come first
    }
    engine.stop();  // after the last flush: the kernel state stays as it is
    readers->stop();
    log_status(metrics);
    return flushed ? 0 : 1;
}

}  // namespace ctquota::app
