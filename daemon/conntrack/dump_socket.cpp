#include "conntrack/dump_socket.hpp"

#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

#include "conntrack/sample_parser.hpp"

namespace ctquota::conntrack {
namespace {

struct Context {
    const DumpSocket::BatchFn* on_batch;
    std::size_t batch_size;
    std::vector<core::FlowSample> batch;
    DumpResult* result;
    bool interrupted = false;
};

int on_entry(const nlmsghdr* nlh, void* data) {
    auto* ctx = static_cast<Context*>(data);
    if ((nlh->nlmsg_flags & NLM_F_DUMP_INTR) != 0) {
        ctx->interrupted = true;  // the table changed under the dump; entries may be missing
    }
    if (auto s = sample_from_message(nlh, core::SampleKind::Poll)) {
        ctx->batch.push_back(*s);
        ++ctx->result->entries;
        if (ctx->batch.size() >= ctx->batch_size) {
            (*ctx->on_batch)(std::move(ctx->batch));
            ctx->batch = {};
            ctx->batch.reserve(ctx->batch_size);
        }
    }
    return MNL_CB_OK;
}

}  // namespace

DumpSocket::DumpSocket() {
    nl_ = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
    if (nl_ == nullptr || mnl_socket_bind(nl_, 0, MNL_SOCKET_AUTOPID) < 0) {
        throw std::runtime_error(std::string("cannot open the ctnetlink dump socket: ") +
                                 std::strerror(errno));
    }
    portid_ = mnl_socket_get_portid(nl_);
    int size = 8 << 20;  // the kernel fills a dump as fast as it can; give it room
    setsockopt(mnl_socket_get_fd(nl_), SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size);
}

DumpSocket::~DumpSocket() {
    if (nl_ != nullptr) {
        mnl_socket_close(nl_);
    }
}

DumpResult DumpSocket::dump(const BatchFn& on_batch, std::size_t batch_size) {
    DumpResult result;
    char request[512];
    nlmsghdr* nlh = mnl_nlmsg_put_header(request);
    nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    nlh->nlmsg_seq = ++seq_;
    auto* nfg = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
    nfg->nfgen_family = AF_UNSPEC;
    nfg->version = NFNETLINK_V0;
    nfg->res_id = 0;
    if (mnl_socket_sendto(nl_, nlh, nlh->nlmsg_len) < 0) {
        result.error = errno;
        return result;
    }
    Context ctx{&on_batch, batch_size, {}, &result};
    ctx.batch.reserve(batch_size);
    std::vector<char> buf(1 << 20);
    while (true) {
        const ssize_t n = mnl_socket_recvfrom(nl_, buf.data(), buf.size());
        if (n < 0) {
            result.error = errno;
            break;
        }
        const int rc =
            mnl_cb_run(buf.data(), static_cast<std::size_t>(n), seq_, portid_, on_entry, &ctx);
        if (rc == MNL_CB_STOP) {
            result.complete = !ctx.interrupted;
            break;
        }
        if (rc == MNL_CB_ERROR) {
            result.error = errno;
            break;
        }
    }
    if (!ctx.batch.empty()) {
        on_batch(std::move(ctx.batch));
    }
    return result;
}

}  // namespace ctquota::conntrack
