#pragma once
// The eBPF programs of the tc shaping (tc_messages.cpp: the shaper root's
// shard classifier, each shard's band classifier, the subscriber interface's
// redirect match), loaded once. Loading a program needs CAP_BPF; attaching a
// loaded one to a filter needs only CAP_NET_ADMIN. So the daemon loads them
// while it still holds CAP_BPF, gives CAP_BPF up, and every later build of
// the shaper (a repair, the subscriber interface created again) reuses them.

namespace ctquota::enforce {

// One loaded program, closed with its owner.
class ProgramFd {
  public:
    ProgramFd(int fd, const char* what);  // throws EnforceError for fd < 0 (errno)
    ~ProgramFd();
    ProgramFd(const ProgramFd&) = delete;
    ProgramFd& operator=(const ProgramFd&) = delete;
    [[nodiscard]] int get() const { return fd_; }

  private:
    int fd_;
};

class TcPrograms {
  public:
    TcPrograms();  // throws EnforceError (no CAP_BPF, no cls_bpf)

    [[nodiscard]] int shard() const { return shard_.get(); }
    [[nodiscard]] int band() const { return band_.get(); }
    [[nodiscard]] int redirect() const { return redirect_.get(); }

  private:
    ProgramFd shard_;
    ProgramFd band_;
    ProgramFd redirect_;
};

}  // namespace ctquota::enforce
