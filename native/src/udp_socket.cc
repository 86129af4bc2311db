// TransparentUdpSocket: a UDP listener that hands packets to JS in batches
// through shared memory and sends replies from the original destination.
//
// Ownership is split in two on purpose:
//  - UdpCore holds everything the kernel and libuv know about (fd, uv
//    handles, reply sockets, per-slot msghdr arrays). It lives until libuv has
//    closed both handles, which can be after the JS object is gone.
//  - UdpSocketWrap (the ObjectWrap) holds everything V8 knows about (the
//    callback, the ArrayBuffers, the async context) and may only be touched
//    on the JS thread with a live environment.
// Whoever starts closing first (close(), the finalizer, the environment's
// async cleanup hook) cuts the link between the two; UdpCore then frees itself
// from the last uv_close callback.

#include "udp_socket.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "layout.h"
#include "net_util.h"

namespace dnstp {
namespace {

// Keeps one busy socket from starving the rest of the event loop: at most
// this many recvmmsg batches (each followed by one JS call) per wakeup. The
// fd is polled level-triggered, so anything left is picked up next turn.
constexpr int kMaxBatchesPerWakeup = 4;

// A negative reply-socket entry (local address, or bind failed) is retried
// after this long, so a transient failure does not black-hole a destination
// for the whole idle timeout while a steady failure costs at most one probe
// per second per destination.
constexpr uint64_t kNegativeEntryMs = 1000;

constexpr size_t kRxControlBytes = 256;  // ORIGDSTADDR + PKTINFO for either family, with room

union RxControl {
  char bytes[kRxControlBytes];
  cmsghdr alignment;
};

union TxControl {
  char bytes[CMSG_SPACE(sizeof(in6_pktinfo))];
  cmsghdr alignment;
};

struct RxSlot {
  sockaddr_in6 peer;  // large enough for sockaddr_in too
  iovec iov;
  RxControl control;
};

struct TxSlot {
  sockaddr_in6 peer;
  iovec iov;
  TxControl control;
};

struct ReplyKey {
  uint8_t family;  // 4 or 6
  uint16_t port;
  uint8_t address[16];
  bool operator==(const ReplyKey& other) const {
    return family == other.family && port == other.port &&
           std::memcmp(address, other.address, sizeof(address)) == 0;
  }
};

struct ReplyKeyHash {
  size_t operator()(const ReplyKey& key) const {
    uint64_t hash = 1469598103934665603ull;  // FNV-1a
    auto mix = [&hash](uint8_t byte) { hash = (hash ^ byte) * 1099511628211ull; };
    mix(key.family);
    mix(static_cast<uint8_t>(key.port >> 8));
    mix(static_cast<uint8_t>(key.port));
    for (uint8_t byte : key.address) mix(byte);
    return static_cast<size_t>(hash);
  }
};

struct ReplyEntry {
  int fd;                 // -1: negative entry, drop until retryAtMs
  uint64_t lastUsedMs;
  uint64_t retryAtMs;
  bool local = false;     // negative because the address is this host's
};

bool IsV4Mapped(const in6_addr& address) {
  static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(address.s6_addr, prefix, sizeof(prefix)) == 0;
}

bool IsLinkLocal6(const uint8_t* address) {
  return address[0] == 0xfe && (address[1] & 0xc0) == 0x80;
}

bool IsAllZero(const uint8_t* bytes, size_t length) {
  for (size_t i = 0; i < length; ++i) {
    if (bytes[i] != 0) return false;
  }
  return true;
}

bool IsTransientSendError(int err) {
  return err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS;
}

bool ReadSysctlFlag(const char* path) {
  FILE* file = std::fopen(path, "re");
  if (!file) return false;
  int value = 0;
  bool ok = std::fscanf(file, "%d", &value) == 1;
  std::fclose(file);
  return ok && value != 0;
}

class UdpSocketWrap;

struct OpenOptions {
  SocketEndpoint bindTo;
  ListenerSocketOptions listener;
  int slots = 64;
  int slotBytes = 4096;
  int txSlots = 128;
  int replySocketCap = 256;
  int replySocketIdleMs = 30000;
};

struct OpenFailure {
  int err = 0;
  const char* syscall = nullptr;
};

class UdpCore {
 public:
  // Arena pointers come from ArrayBuffers that UdpSocketWrap keeps alive.
  UdpCore(const OpenOptions& options, uint8_t* rxData, int32_t* rxMeta,
          uint8_t* txData, int32_t* txMeta, double* counters)
      : slots_(options.slots),
        slotBytes_(options.slotBytes),
        txSlots_(options.txSlots),
        replySocketCap_(static_cast<size_t>(options.replySocketCap)),
        replySocketIdleMs_(static_cast<uint64_t>(options.replySocketIdleMs)),
        transparent_(options.listener.transparent),
        rxData_(rxData),
        rxMeta_(rxMeta),
        txData_(txData),
        txMeta_(txMeta),
        counters_(counters),
        rxSlots_(options.slots),
        rxMessages_(options.slots),
        txSlotsState_(options.txSlots),
        txMessages_(options.txSlots) {
    std::memset(detachedCounters_, 0, sizeof(detachedCounters_));
    replySockets_.reserve(replySocketCap_);
    for (int i = 0; i < slots_; ++i) {
      RxSlot& slot = rxSlots_[i];
      slot.iov.iov_base = rxData_ + static_cast<size_t>(i) * slotBytes_;
      slot.iov.iov_len = static_cast<size_t>(slotBytes_);
      msghdr& header = rxMessages_[i].msg_hdr;
      header.msg_iov = &slot.iov;
      header.msg_iovlen = 1;
      header.msg_name = &slot.peer;
      header.msg_control = slot.control.bytes;
    }
    for (int i = 0; i < txSlots_; ++i) {
      msghdr& header = txMessages_[i].msg_hdr;
      header.msg_iov = &txSlotsState_[i].iov;
      header.msg_iovlen = 1;
      header.msg_name = &txSlotsState_[i].peer;
    }
  }

  // Creates, configures and binds the listener and starts polling.
  bool Open(napi_env env, uv_loop_t* loop, const OpenOptions& options,
            OpenFailure* failure) {
    const SocketEndpoint& endpoint = options.bindTo;
    family_ = endpoint.family;
    int fd = socket(family_, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      *failure = {errno, "socket"};
      return false;
    }
    int err = ApplyListenerOptions(fd, family_, options.listener);
    if (err == 0) err = EnableAncillaryData(fd, options.listener.ipv6Only);
    if (err != 0) {
      ::close(fd);
      *failure = {err, "setsockopt"};
      return false;
    }
    if (bind(fd, reinterpret_cast<const sockaddr*>(&endpoint.storage), endpoint.length) != 0) {
      *failure = {errno, "bind"};
      ::close(fd);
      return false;
    }
    sockaddr_storage bound{};
    socklen_t boundLength = sizeof(bound);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &boundLength) != 0) {
      *failure = {errno, "getsockname"};
      ::close(fd);
      return false;
    }
    boundPort_ = family_ == AF_INET
                     ? ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port)
                     : ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
    err = uv_poll_init(loop, &poll_, fd);
    if (err != 0) {
      ::close(fd);
      *failure = {-err, "uv_poll_init"};
      return false;
    }
    // From here on the fd belongs to the poll handle and is closed only
    // after libuv has closed the handle (OnHandleClosed).
    fd_ = fd;
    loop_ = loop;
    poll_.data = this;
    uv_timer_init(loop, &sweepTimer_);
    sweepTimer_.data = this;
    uv_unref(reinterpret_cast<uv_handle_t*>(&sweepTimer_));
    handlesOpen_ = 2;
    napi_add_async_cleanup_hook(env, OnEnvironmentCleanup, this, &cleanupHook_);
    err = uv_poll_start(&poll_, UV_READABLE, OnReadable);
    if (err != 0) {
      *failure = {-err, "uv_poll_start"};
      BeginClose();
      return false;
    }
    return true;
  }

  void AttachOwner(UdpSocketWrap* owner) { owner_ = owner; }
  bool closing() const { return closing_; }
  int boundPort() const { return boundPort_; }
  int family() const { return family_; }

  void SetPollRef(bool ref) {
    if (closing_) return;
    if (ref) {
      uv_ref(reinterpret_cast<uv_handle_t*>(&poll_));
    } else {
      uv_unref(reinterpret_cast<uv_handle_t*>(&poll_));
    }
  }

  // Starts the close sequence; safe to call any number of times from any of
  // the three closers. The poll handle is closed before the fd: closing an fd
  // that epoll still watches is undefined behaviour for libuv.
  void BeginClose();

  int Flush(int count);

 private:
  static void OnReadable(uv_poll_t* handle, int status, int events);
  static void OnSweep(uv_timer_t* handle);
  static void OnHandleClosed(uv_handle_t* handle);
  static void OnEnvironmentCleanup(napi_async_cleanup_hook_handle hook, void* arg);

  int EnableAncillaryData(int fd, bool ipv6Only);
  void DrainReadable();
  int ReceiveBatch(bool* drained);
  bool DecodeSlot(int receivedIndex, int deliverIndex);
  int SendQueued(int queued);
  bool SendViaReplySocket(int slot, int family, const uint8_t* peer, int peerPort,
                          const uint8_t* from, int fromPort, int ifindex, int length);
  int AcquireReplySocket(int family, const uint8_t* from, int fromPort, int ifindex);
  int OpenReplySocket(int family, const uint8_t* from, int fromPort, int ifindex, int* err);
  bool IsLocalAddress(int family, const uint8_t* address, int ifindex);
  void EvictLeastRecentlyUsed(bool negative);
  void AddNegativeEntry(const ReplyKey& key, uint64_t now, bool local);
  void StartSweepTimer();
  void CloseReplySocket(int fd);
  void Count(Counter counter, double amount = 1) { counters_[counter] += amount; }
  socklen_t FillPeerAddress(sockaddr_in6* out, int family, const uint8_t* address,
                            int port, int ifindex) const;

  const int slots_;
  const int slotBytes_;
  const int txSlots_;
  const size_t replySocketCap_;
  const uint64_t replySocketIdleMs_;
  const bool transparent_;

  uint8_t* rxData_;
  int32_t* rxMeta_;
  uint8_t* txData_;
  int32_t* txMeta_;
  // Switched to detachedCounters_ on close, so late bookkeeping never writes
  // into an ArrayBuffer that JS may already have released.
  double* counters_;
  double detachedCounters_[kCounterCount];

  std::vector<RxSlot> rxSlots_;
  std::vector<mmsghdr> rxMessages_;
  std::vector<TxSlot> txSlotsState_;
  std::vector<mmsghdr> txMessages_;
  std::unordered_map<ReplyKey, ReplyEntry, ReplyKeyHash> replySockets_;
  size_t replySocketsOpen_ = 0;
  // Negative entries hold no fd but are bounded by the same cap, kept
  // separately so a flood of refused destinations cannot evict live sockets.
  size_t negativeEntries_ = 0;

  int fd_ = -1;
  int family_ = AF_INET;
  int boundPort_ = 0;
  uv_loop_t* loop_ = nullptr;
  uv_poll_t poll_{};
  uv_timer_t sweepTimer_{};
  int handlesOpen_ = 0;
  bool closing_ = false;
  napi_async_cleanup_hook_handle cleanupHook_ = nullptr;
  UdpSocketWrap* owner_ = nullptr;
};

class UdpSocketWrap : public Napi::ObjectWrap<UdpSocketWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(
        env, "TransparentUdpSocketNative",
        {
            InstanceMethod<&UdpSocketWrap::Buffers>("buffers"),
            InstanceMethod<&UdpSocketWrap::Flush>("flush"),
            InstanceMethod<&UdpSocketWrap::Close>("close"),
            InstanceMethod<&UdpSocketWrap::PollRef>("ref"),
            InstanceMethod<&UdpSocketWrap::PollUnref>("unref"),
            InstanceMethod<&UdpSocketWrap::LocalInfo>("localInfo"),
        });
  }

  // new TransparentUdpSocketNative(options, onBatch, onError?)
  explicit UdpSocketWrap(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<UdpSocketWrap>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject() || !info[1].IsFunction()) {
      throw Napi::TypeError::New(env, "expected (options, onBatch[, onError])");
    }
    Napi::Object options = info[0].As<Napi::Object>();
    OpenOptions open;
    std::string address = ReadAddressOption(options);
    int port = ReadIntOption(options, "port", -1, 0, 65535);
    if (port < 0) {
      throw Napi::TypeError::New(env, "The \"port\" option is required");
    }
    if (!ParseEndpoint(address, port, &open.bindTo)) {
      throw MakeInvalidAddressError(env, address);
    }
    open.listener.transparent = ReadBoolOption(options, "transparent", true);
    open.listener.reuseAddr = ReadBoolOption(options, "reuseAddr", true);
    open.listener.reusePort = ReadBoolOption(options, "reusePort", false);
    open.listener.ipv6Only = ReadBoolOption(options, "ipv6Only", false);
    open.listener.recvBufferBytes = ReadIntOption(options, "recvBufferBytes", 4 << 20, 0, 1 << 30);
    open.listener.sendBufferBytes = ReadIntOption(options, "sendBufferBytes", 4 << 20, 0, 1 << 30);
    open.slots = ReadIntOption(options, "slots", 64, 32, 1024);
    open.slotBytes = ReadIntOption(options, "slotBytes", 4096, 512, 65536);
    open.txSlots = ReadIntOption(options, "txSlots", open.slots * 2, 1, 4096);
    open.replySocketCap = ReadIntOption(options, "replySocketCap", 256, 1, 65536);
    open.replySocketIdleMs =
        ReadIntOption(options, "replySocketIdleMs", 30000, 100, 24 * 3600 * 1000);

    onBatch_ = Napi::Persistent(info[1].As<Napi::Function>());
    if (info.Length() > 2 && info[2].IsFunction()) {
      onError_ = Napi::Persistent(info[2].As<Napi::Function>());
    }

    // V8 owns the arenas (plain ArrayBuffers, not external ones): they are
    // zeroed, accounted to the GC, work where external buffers are banned,
    // and close() detaches them so the memory goes back at once instead of
    // waiting for a collection.
    size_t rxBytes = static_cast<size_t>(open.slots) * open.slotBytes;
    size_t txBytes = static_cast<size_t>(open.txSlots) * open.slotBytes;
    Napi::ArrayBuffer rxData = Napi::ArrayBuffer::New(env, rxBytes);
    Napi::ArrayBuffer rxMeta =
        Napi::ArrayBuffer::New(env, static_cast<size_t>(open.slots) * kMetaStride * 4);
    Napi::ArrayBuffer txData = Napi::ArrayBuffer::New(env, txBytes);
    Napi::ArrayBuffer txMeta =
        Napi::ArrayBuffer::New(env, static_cast<size_t>(open.txSlots) * kMetaStride * 4);
    Napi::ArrayBuffer counters = Napi::ArrayBuffer::New(env, kCounterCount * sizeof(double));
    rxData_ = Napi::Persistent(rxData);
    rxMeta_ = Napi::Persistent(rxMeta);
    txData_ = Napi::Persistent(txData);
    txMeta_ = Napi::Persistent(txMeta);
    counters_ = Napi::Persistent(counters);

    napi_value resourceName;
    napi_create_string_utf8(env, "TransparentUdpSocket", NAPI_AUTO_LENGTH, &resourceName);
    napi_async_init(env, info.This(), resourceName, &asyncContext_);

    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
      ReleaseJsResources();
      throw Napi::Error::New(env, "no libuv loop for this environment");
    }
    auto* core = new UdpCore(open, static_cast<uint8_t*>(rxData.Data()),
                             static_cast<int32_t*>(rxMeta.Data()),
                             static_cast<uint8_t*>(txData.Data()),
                             static_cast<int32_t*>(txMeta.Data()),
                             static_cast<double*>(counters.Data()));
    OpenFailure failure;
    if (!core->Open(env, loop, open, &failure)) {
      // Open() either deleted nothing (early failure) or began closing,
      // which frees the core from libuv; tell them apart by closing().
      if (!core->closing()) delete core;
      ReleaseJsResources();
      throw MakeSystemError(env, failure.err, failure.syscall, address, port);
    }
    core_ = core;
    core_->AttachOwner(this);
    boundAddress_ = address;
    // An open socket pins its JS object, like a Node handle: dropping every
    // reference must not silently close a listening socket. close() unpins.
    Ref();
    pinned_ = true;
  }

  ~UdpSocketWrap() override {
    // Reached from GC only after close() (the object is pinned while open)
    // or during environment teardown; either way no JS may run here.
    if (core_ != nullptr) core_->BeginClose();
  }

  // Called by UdpCore::BeginClose: from now on the core is on its own.
  void DetachCore() { core_ = nullptr; }

  void DeliverBatch(uint32_t count) {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    napi_value argv[1];
    napi_create_uint32(env, count, &argv[0]);
    inCallback_ = true;
    try {
      // MakeCallback (not Call) so process.nextTick and promise jobs queued
      // by the handler run when it returns, as after any Node I/O callback.
      // napi_make_callback needs an object receiver; the native handle
      // is the cheapest one at hand.
      onBatch_.MakeCallback(Value(), 1, argv, asyncContext_);
    } catch (const Napi::Error& error) {
      ReportCallbackError(error.Value());
    }
    inCallback_ = false;
    if (core_ == nullptr && !jsReleased_) ReleaseJsResources();
  }

  double* CountersForErrors() {
    return counters_.IsEmpty() ? nullptr : static_cast<double*>(counters_.Value().Data());
  }

 private:
  // A throwing handler must not take the process down: the error is counted
  // and handed to onError (the wrapper's default warns once). An onError
  // that throws as well is only counted.
  void ReportCallbackError(Napi::Value error) {
    if (double* counters = CountersForErrors()) counters[kCallbackErrors] += 1;
    if (onError_.IsEmpty()) return;
    try {
      napi_value argv[1] = {error};
      onError_.MakeCallback(Value(), 1, argv, asyncContext_);
    } catch (const Napi::Error&) {
      if (double* counters = CountersForErrors()) counters[kCallbackErrors] += 1;
    }
  }

  // Returns the raw ArrayBuffers; the wrapper builds its typed views once.
  Napi::Value Buffers(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (core_ == nullptr) throw Napi::Error::New(env, "socket is closed");
    Napi::Object result = Napi::Object::New(env);
    result.Set("rxData", rxData_.Value());
    result.Set("rxMeta", rxMeta_.Value());
    result.Set("txData", txData_.Value());
    result.Set("txMeta", txMeta_.Value());
    result.Set("counters", counters_.Value());
    return result;
  }

  Napi::Value Flush(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int32_t count = info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : -1;
    if (core_ == nullptr) return Napi::Number::New(env, 0);
    if (count < 0) {
      throw Napi::TypeError::New(env, "flush(count): count must be a non-negative integer");
    }
    return Napi::Number::New(env, core_->Flush(count));
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (core_ != nullptr) core_->BeginClose();
    if (!inCallback_ && !jsReleased_) ReleaseJsResources();
    return info.Env().Undefined();
  }

  Napi::Value PollRef(const Napi::CallbackInfo& info) {
    if (core_ != nullptr) core_->SetPollRef(true);
    return info.Env().Undefined();
  }

  Napi::Value PollUnref(const Napi::CallbackInfo& info) {
    if (core_ != nullptr) core_->SetPollRef(false);
    return info.Env().Undefined();
  }

  Napi::Value LocalInfo(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object result = Napi::Object::New(env);
    result.Set("address", boundAddress_);
    if (core_ != nullptr) {
      result.Set("port", core_->boundPort());
      result.Set("family", core_->family() == AF_INET ? 4 : 6);
    }
    return result;
  }

  // JS-thread-only teardown: detach the views so stale JS code sees empty
  // arrays instead of memory the kernel no longer fills, then drop
  // everything that keeps JS objects alive, including the self-pin.
  void ReleaseJsResources() {
    jsReleased_ = true;
    Napi::Reference<Napi::ArrayBuffer>* buffers[] = {&rxData_, &rxMeta_, &txData_, &txMeta_};
    for (auto* buffer : buffers) {
      if (!buffer->IsEmpty()) {
        Napi::ArrayBuffer value = buffer->Value();
        if (!value.IsDetached()) value.Detach();
        buffer->Reset();
      }
    }
    // Counters stay readable after close: a final stats read is useful.
    counters_.Reset();
    onBatch_.Reset();
    onError_.Reset();
    if (asyncContext_ != nullptr) {
      napi_async_destroy(Env(), asyncContext_);
      asyncContext_ = nullptr;
    }
    if (pinned_) {
      pinned_ = false;
      Unref();
    }
  }

  UdpCore* core_ = nullptr;
  Napi::FunctionReference onBatch_;
  Napi::FunctionReference onError_;
  napi_async_context asyncContext_ = nullptr;
  Napi::Reference<Napi::ArrayBuffer> rxData_, rxMeta_, txData_, txMeta_, counters_;
  std::string boundAddress_;
  bool inCallback_ = false;
  bool jsReleased_ = false;
  bool pinned_ = false;
};

// ---------------------------------------------------------------------------
// UdpCore

int UdpCore::EnableAncillaryData(int fd, bool ipv6Only) {
  int err;
  if (family_ == AF_INET) {
    err = SetIntOption(fd, SOL_IP, IP_RECVORIGDSTADDR, 1);
    if (err == 0) err = SetIntOption(fd, SOL_IP, IP_PKTINFO, 1);
    return err;
  }
  err = SetIntOption(fd, SOL_IPV6, IPV6_RECVORIGDSTADDR, 1);
  if (err == 0) err = SetIntOption(fd, SOL_IPV6, IPV6_RECVPKTINFO, 1);
  // IPv4 arriving on a dual-stack socket reports its cmsgs at SOL_IP, and
  // only when the SOL_IP options are enabled on the IPv6 socket too.
  if (err == 0 && !ipv6Only) err = SetIntOption(fd, SOL_IP, IP_RECVORIGDSTADDR, 1);
  if (err == 0 && !ipv6Only) err = SetIntOption(fd, SOL_IP, IP_PKTINFO, 1);
  return err;
}

void UdpCore::BeginClose() {
  if (closing_) return;
  closing_ = true;
  counters_ = detachedCounters_;
  if (owner_ != nullptr) {
    owner_->DetachCore();
    owner_ = nullptr;
  }
  for (auto& item : replySockets_) {
    if (item.second.fd >= 0) ::close(item.second.fd);
  }
  replySockets_.clear();
  replySocketsOpen_ = 0;
  negativeEntries_ = 0;
  uv_poll_stop(&poll_);
  uv_close(reinterpret_cast<uv_handle_t*>(&poll_), OnHandleClosed);
  uv_timer_stop(&sweepTimer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&sweepTimer_), OnHandleClosed);
}

void UdpCore::OnHandleClosed(uv_handle_t* handle) {
  auto* core = static_cast<UdpCore*>(handle->data);
  if (--core->handlesOpen_ > 0) return;
  ::close(core->fd_);
  // Tells Node the environment may finish tearing down (if it is), or simply
  // unregisters the hook after an ordinary close.
  if (core->cleanupHook_ != nullptr) napi_remove_async_cleanup_hook(core->cleanupHook_);
  delete core;
}

void UdpCore::OnEnvironmentCleanup(napi_async_cleanup_hook_handle hook, void* arg) {
  static_cast<UdpCore*>(arg)->BeginClose();
}

void UdpCore::OnReadable(uv_poll_t* handle, int status, int events) {
  auto* core = static_cast<UdpCore*>(handle->data);
  if (core->closing_) return;
  if (status < 0) {
    core->Count(kRecvErrors);
    return;
  }
  core->DrainReadable();
}

void UdpCore::DrainReadable() {
  for (int round = 0; round < kMaxBatchesPerWakeup && !closing_; ++round) {
    bool drained = false;
    int delivered = ReceiveBatch(&drained);
    if (delivered > 0) {
      Count(kReceived, delivered);
      Count(kRxBatches);
      // The handler may call close(); closing_ is rechecked by the loop.
      owner_->DeliverBatch(static_cast<uint32_t>(delivered));
    }
    if (drained) break;
  }
}

// Returns how many packets were compacted into slots [0, n); sets *drained
// when the socket had nothing more to give.
int UdpCore::ReceiveBatch(bool* drained) {
  for (int i = 0; i < slots_; ++i) {
    msghdr& header = rxMessages_[i].msg_hdr;
    header.msg_namelen = sizeof(sockaddr_in6);
    header.msg_controllen = kRxControlBytes;
    header.msg_flags = 0;
  }
  int received = recvmmsg(fd_, rxMessages_.data(), static_cast<unsigned>(slots_),
                          MSG_DONTWAIT, nullptr);
  if (received < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      *drained = true;
    } else if (errno != EINTR) {
      // ECONNREFUSED and friends are ICMP errors queued on the socket;
      // reading them clears them, so counting and moving on is enough.
      Count(kRecvErrors);
    }
    return 0;
  }
  // A short batch means the queue is empty; skip the extra syscall that
  // would only return EAGAIN.
  if (received < slots_) *drained = true;
  int delivered = 0;
  for (int i = 0; i < received; ++i) {
    if (DecodeSlot(i, delivered)) ++delivered;
  }
  return delivered;
}

// Fills meta slot `deliverIndex` from received message `receivedIndex`,
// moving the payload down when earlier packets in the batch were dropped.
bool UdpCore::DecodeSlot(int receivedIndex, int deliverIndex) {
  const mmsghdr& message = rxMessages_[receivedIndex];
  const msghdr& header = message.msg_hdr;
  if (header.msg_flags & MSG_TRUNC) {
    Count(kDroppedTruncated);
    return false;
  }
  int32_t* meta = rxMeta_ + static_cast<size_t>(deliverIndex) * kMetaStride;
  uint8_t* srcBytes = reinterpret_cast<uint8_t*>(meta + kMetaSrcAddr);
  uint8_t* dstBytes = reinterpret_cast<uint8_t*>(meta + kMetaDstAddr);

  int family = 0;
  int srcPort = 0;
  uint8_t src[16] = {0};
  const sockaddr_in6& peer = rxSlots_[receivedIndex].peer;
  if (peer.sin6_family == AF_INET) {
    const auto* peer4 = reinterpret_cast<const sockaddr_in*>(&peer);
    family = 4;
    srcPort = ntohs(peer4->sin_port);
    std::memcpy(src, &peer4->sin_addr, 4);
  } else if (peer.sin6_family == AF_INET6) {
    srcPort = ntohs(peer.sin6_port);
    if (IsV4Mapped(peer.sin6_addr)) {
      family = 4;
      std::memcpy(src, peer.sin6_addr.s6_addr + 12, 4);
    } else {
      family = 6;
      std::memcpy(src, peer.sin6_addr.s6_addr, 16);
    }
  } else {
    Count(kRecvErrors);
    return false;
  }

  bool haveOrigDst = false, havePktinfo = false;
  uint8_t origDst[16] = {0}, pktinfoDst[16] = {0};
  int origDstPort = 0, ifindex = 0;
  int origFamily = 0, pktinfoFamily = 0;
  msghdr& mutableHeader = rxMessages_[receivedIndex].msg_hdr;
  for (cmsghdr* cmsg = CMSG_FIRSTHDR(&mutableHeader); cmsg != nullptr;
       cmsg = CMSG_NXTHDR(&mutableHeader, cmsg)) {
    const unsigned char* data = CMSG_DATA(cmsg);
    size_t dataLength = cmsg->cmsg_len - CMSG_LEN(0);
    if (cmsg->cmsg_level == SOL_IP && cmsg->cmsg_type == IP_ORIGDSTADDR &&
        dataLength >= sizeof(sockaddr_in)) {
      sockaddr_in original;
      std::memcpy(&original, data, sizeof(original));
      std::memcpy(origDst, &original.sin_addr, 4);
      origDstPort = ntohs(original.sin_port);
      origFamily = 4;
      haveOrigDst = true;
    } else if (cmsg->cmsg_level == SOL_IPV6 && cmsg->cmsg_type == IPV6_ORIGDSTADDR &&
               dataLength >= sizeof(sockaddr_in6)) {
      sockaddr_in6 original;
      std::memcpy(&original, data, sizeof(original));
      origDstPort = ntohs(original.sin6_port);
      if (IsV4Mapped(original.sin6_addr)) {
        std::memcpy(origDst, original.sin6_addr.s6_addr + 12, 4);
        origFamily = 4;
      } else {
        std::memcpy(origDst, original.sin6_addr.s6_addr, 16);
        origFamily = 6;
      }
      haveOrigDst = true;
    } else if (cmsg->cmsg_level == SOL_IP && cmsg->cmsg_type == IP_PKTINFO &&
               dataLength >= sizeof(in_pktinfo)) {
      in_pktinfo info;
      std::memcpy(&info, data, sizeof(info));
      // ipi_spec_dst is the address the kernel itself would answer from:
      // the packet's destination for unicast, the interface address for
      // broadcast, so it is always a valid reply source.
      std::memcpy(pktinfoDst, &info.ipi_spec_dst, 4);
      ifindex = info.ipi_ifindex;
      pktinfoFamily = 4;
      havePktinfo = true;
    } else if (cmsg->cmsg_level == SOL_IPV6 && cmsg->cmsg_type == IPV6_PKTINFO &&
               dataLength >= sizeof(in6_pktinfo)) {
      in6_pktinfo info;
      std::memcpy(&info, data, sizeof(info));
      if (IsV4Mapped(info.ipi6_addr)) {
        // IPv4 on a dual-stack socket gets this and IP_PKTINFO; the latter
        // carries ipi_spec_dst and wins whatever the order.
        if (havePktinfo && pktinfoFamily == 4) continue;
        std::memcpy(pktinfoDst, info.ipi6_addr.s6_addr + 12, 4);
        pktinfoFamily = 4;
      } else {
        std::memcpy(pktinfoDst, info.ipi6_addr.s6_addr, 16);
        pktinfoFamily = 6;
      }
      ifindex = static_cast<int>(info.ipi6_ifindex);
      havePktinfo = true;
    }
  }

  const uint8_t* dst = nullptr;
  int dstPort = 0;
  // A transparent socket must answer as the address the client asked for,
  // which only ORIGDSTADDR knows. A plain socket answers from the local
  // address the packet reached (PKTINFO), so multi-homed hosts reply from
  // the right address.
  if (transparent_) {
    if (haveOrigDst && origFamily == family) {
      dst = origDst;
      dstPort = origDstPort;
    }
  } else if (havePktinfo && pktinfoFamily == family) {
    dst = pktinfoDst;
    dstPort = boundPort_;
  } else if (haveOrigDst && origFamily == family) {
    dst = origDst;
    dstPort = origDstPort;
  }
  if (dst == nullptr) {
    Count(kDroppedNoOrigDst);
    return false;
  }

  size_t length = message.msg_len;
  if (receivedIndex != deliverIndex) {
    std::memcpy(rxData_ + static_cast<size_t>(deliverIndex) * slotBytes_,
                rxData_ + static_cast<size_t>(receivedIndex) * slotBytes_, length);
  }
  meta[kMetaLength] = static_cast<int32_t>(length);
  meta[kMetaFamily] = family;
  meta[kMetaSrcPort] = srcPort;
  meta[kMetaDstPort] = dstPort;
  meta[kMetaIfindex] = ifindex;
  meta[5] = meta[6] = meta[7] = 0;
  std::memcpy(srcBytes, src, 16);
  std::memcpy(dstBytes, dst, 16);
  if (family == 4) {
    // Keep the unused 12 bytes zero so JS can compare/copy whole slots.
    std::memset(srcBytes + 4, 0, 12);
    std::memset(dstBytes + 4, 0, 12);
  }
  return true;
}

socklen_t UdpCore::FillPeerAddress(sockaddr_in6* out, int family, const uint8_t* address,
                                   int port, int ifindex) const {
  if (family_ == AF_INET) {
    auto* out4 = reinterpret_cast<sockaddr_in*>(out);
    std::memset(out4, 0, sizeof(*out4));
    out4->sin_family = AF_INET;
    out4->sin_port = htons(static_cast<uint16_t>(port));
    std::memcpy(&out4->sin_addr, address, 4);
    return sizeof(sockaddr_in);
  }
  std::memset(out, 0, sizeof(*out));
  out->sin6_family = AF_INET6;
  out->sin6_port = htons(static_cast<uint16_t>(port));
  if (family == 4) {
    out->sin6_addr.s6_addr[10] = 0xff;
    out->sin6_addr.s6_addr[11] = 0xff;
    std::memcpy(out->sin6_addr.s6_addr + 12, address, 4);
  } else {
    std::memcpy(out->sin6_addr.s6_addr, address, 16);
    if (IsLinkLocal6(address)) out->sin6_scope_id = static_cast<uint32_t>(ifindex);
  }
  return sizeof(sockaddr_in6);
}

int UdpCore::Flush(int count) {
  if (closing_ || count <= 0) return 0;
  if (count > txSlots_) count = txSlots_;
  int queued = 0;
  int sent = 0;
  for (int i = 0; i < count; ++i) {
    const int32_t* meta = txMeta_ + static_cast<size_t>(i) * kMetaStride;
    int length = meta[kMetaLength];
    int family = meta[kMetaFamily];
    int peerPort = meta[kMetaSrcPort];
    int fromPort = meta[kMetaDstPort];
    int ifindex = meta[kMetaIfindex];
    if (length < 0 || length > slotBytes_ || (family != 4 && family != 6) ||
        (family == 6 && family_ == AF_INET) || peerPort <= 0 || peerPort > 65535 ||
        fromPort < 0 || fromPort > 65535) {
      Count(kDroppedInvalidTx);
      continue;
    }
    const uint8_t* peer = reinterpret_cast<const uint8_t*>(meta + kMetaSrcAddr);
    const uint8_t* from = reinterpret_cast<const uint8_t*>(meta + kMetaDstAddr);
    size_t addressLength = family == 4 ? 4 : 16;
    bool anySource = IsAllZero(from, addressLength);
    if (fromPort != 0 && fromPort != boundPort_ && !anySource) {
      if (SendViaReplySocket(i, family, peer, peerPort, from, fromPort, ifindex, length)) ++sent;
      continue;
    }

    TxSlot& slot = txSlotsState_[queued];
    msghdr& header = txMessages_[queued].msg_hdr;
    slot.iov.iov_base = txData_ + static_cast<size_t>(i) * slotBytes_;
    slot.iov.iov_len = static_cast<size_t>(length);
    header.msg_namelen = FillPeerAddress(&slot.peer, family, peer, peerPort, ifindex);
    header.msg_flags = 0;
    if (anySource) {
      header.msg_control = nullptr;
      header.msg_controllen = 0;
    } else {
      // Same-port reply from the listener itself: the source address is
      // chosen per packet with PKTINFO. IPv4 (also v4-mapped peers on a
      // dual-stack socket) takes IP_PKTINFO at SOL_IP.
      header.msg_control = slot.control.bytes;
      std::memset(slot.control.bytes, 0, sizeof(slot.control.bytes));
      cmsghdr* cmsg = reinterpret_cast<cmsghdr*>(slot.control.bytes);
      if (family == 4) {
        header.msg_controllen = CMSG_SPACE(sizeof(in_pktinfo));
        cmsg->cmsg_level = SOL_IP;
        cmsg->cmsg_type = IP_PKTINFO;
        cmsg->cmsg_len = CMSG_LEN(sizeof(in_pktinfo));
        in_pktinfo info{};
        std::memcpy(&info.ipi_spec_dst, from, 4);
        std::memcpy(CMSG_DATA(cmsg), &info, sizeof(info));
      } else {
        header.msg_controllen = CMSG_SPACE(sizeof(in6_pktinfo));
        cmsg->cmsg_level = SOL_IPV6;
        cmsg->cmsg_type = IPV6_PKTINFO;
        cmsg->cmsg_len = CMSG_LEN(sizeof(in6_pktinfo));
        in6_pktinfo info{};
        std::memcpy(&info.ipi6_addr, from, 16);
        // Only link-local sources need the interface pinned; forcing it for
        // global addresses would defeat policy routing on the way back.
        if (IsLinkLocal6(from)) info.ipi6_ifindex = static_cast<unsigned>(ifindex);
        std::memcpy(CMSG_DATA(cmsg), &info, sizeof(info));
      }
    }
    ++queued;
  }
  sent += SendQueued(queued);
  Count(kSent, sent);
  Count(kTxBatches);
  return sent;
}

// One sendmmsg for the whole batch. A partial send is resumed; a hard error
// skips exactly the message it belongs to; a full send buffer drops the
// rest, because queueing would make the memory bound depend on the peer.
int UdpCore::SendQueued(int queued) {
  int offset = 0;
  int sent = 0;
  while (offset < queued) {
    int result = sendmmsg(fd_, txMessages_.data() + offset,
                          static_cast<unsigned>(queued - offset), MSG_DONTWAIT);
    if (result > 0) {
      offset += result;
      sent += result;
      continue;
    }
    int err = result < 0 ? errno : EAGAIN;
    if (err == EINTR) continue;
    if (IsTransientSendError(err)) {
      Count(kDroppedEagain, queued - offset);
      break;
    }
    Count(kSendErrors);
    ++offset;
  }
  return sent;
}

bool UdpCore::SendViaReplySocket(int slot, int family, const uint8_t* peer, int peerPort,
                                 const uint8_t* from, int fromPort, int ifindex, int length) {
  int fd = AcquireReplySocket(family, from, fromPort, ifindex);
  if (fd < 0) return false;  // counted by AcquireReplySocket
  sockaddr_storage target{};
  socklen_t targetLength;
  if (family == 4) {
    auto* target4 = reinterpret_cast<sockaddr_in*>(&target);
    target4->sin_family = AF_INET;
    target4->sin_port = htons(static_cast<uint16_t>(peerPort));
    std::memcpy(&target4->sin_addr, peer, 4);
    targetLength = sizeof(sockaddr_in);
  } else {
    auto* target6 = reinterpret_cast<sockaddr_in6*>(&target);
    target6->sin6_family = AF_INET6;
    target6->sin6_port = htons(static_cast<uint16_t>(peerPort));
    std::memcpy(&target6->sin6_addr, peer, 16);
    if (IsLinkLocal6(peer)) target6->sin6_scope_id = static_cast<uint32_t>(ifindex);
    targetLength = sizeof(sockaddr_in6);
  }
  ssize_t result;
  do {
    result = sendto(fd, txData_ + static_cast<size_t>(slot) * slotBytes_,
                    static_cast<size_t>(length), MSG_DONTWAIT,
                    reinterpret_cast<sockaddr*>(&target), targetLength);
  } while (result < 0 && errno == EINTR);
  if (result >= 0) return true;
  Count(IsTransientSendError(errno) ? kDroppedEagain : kSendErrors);
  return false;
}

int UdpCore::AcquireReplySocket(int family, const uint8_t* from, int fromPort, int ifindex) {
  uint64_t now = uv_now(loop_);
  ReplyKey key{};
  key.family = static_cast<uint8_t>(family);
  key.port = static_cast<uint16_t>(fromPort);
  std::memcpy(key.address, from, family == 4 ? 4 : 16);
  auto found = replySockets_.find(key);
  if (found != replySockets_.end()) {
    ReplyEntry& entry = found->second;
    entry.lastUsedMs = now;
    if (entry.fd >= 0) return entry.fd;
    if (now < entry.retryAtMs) {
      Count(entry.local ? kDroppedLocalOrigDst : kSendErrors);
      return -1;
    }
    --negativeEntries_;
    replySockets_.erase(found);
  }

  if (IsLocalAddress(family, from, ifindex)) {
    // A reply socket on a real local address would also receive that
    // address's traffic (a local dnsmasq on :53, say), so never bind one.
    Count(kDroppedLocalOrigDst);
    AddNegativeEntry(key, now, /*local=*/true);
    return -1;
  }
  if (replySocketsOpen_ >= replySocketCap_) EvictLeastRecentlyUsed(/*negative=*/false);
  int err = 0;
  int fd = OpenReplySocket(family, from, fromPort, ifindex, &err);
  if (fd < 0) {
    Count(kReplySocketErrors);
    Count(kSendErrors);
    AddNegativeEntry(key, now, /*local=*/false);
    return -1;
  }
  replySockets_.emplace(key, ReplyEntry{fd, now, 0});
  ++replySocketsOpen_;
  counters_[kReplySocketsOpen] = static_cast<double>(replySocketsOpen_);
  Count(kReplySocketsOpened);
  StartSweepTimer();
  return fd;
}

// A reply socket only ever sends. It is bound to (origdst, origport), which
// the host does not own, so nothing is routed to it except what TPROXY
// steers, and TPROXY picks the listener (an unconnected socket is never an
// "established" match). Its receive side is still made as small as the
// kernel allows and shut, so a stray packet costs at most a few KB and is
// never read.
int UdpCore::OpenReplySocket(int family, const uint8_t* from, int fromPort, int ifindex,
                             int* errOut) {
  int domain = family == 4 ? AF_INET : AF_INET6;
  int fd = socket(domain, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *errOut = errno;
    return -1;
  }
  int err = SetIntOption(fd, SOL_SOCKET, SO_REUSEADDR, 1);
  if (err == 0) {
    err = family == 4 ? SetIntOption(fd, SOL_IP, IP_TRANSPARENT, 1)
                      : SetIntOption(fd, SOL_IPV6, IPV6_TRANSPARENT, 1);
  }
  if (err == 0 && family == 6) err = SetIntOption(fd, SOL_IPV6, IPV6_V6ONLY, 1);
  if (err == 0) SetIntOption(fd, SOL_SOCKET, SO_RCVBUF, 1);  // clamped to the kernel minimum
  sockaddr_storage local{};
  socklen_t localLength;
  if (family == 4) {
    auto* local4 = reinterpret_cast<sockaddr_in*>(&local);
    local4->sin_family = AF_INET;
    local4->sin_port = htons(static_cast<uint16_t>(fromPort));
    std::memcpy(&local4->sin_addr, from, 4);
    localLength = sizeof(sockaddr_in);
  } else {
    auto* local6 = reinterpret_cast<sockaddr_in6*>(&local);
    local6->sin6_family = AF_INET6;
    local6->sin6_port = htons(static_cast<uint16_t>(fromPort));
    std::memcpy(&local6->sin6_addr, from, 16);
    if (IsLinkLocal6(from)) local6->sin6_scope_id = static_cast<uint32_t>(ifindex);
    localLength = sizeof(sockaddr_in6);
  }
  if (err == 0 && bind(fd, reinterpret_cast<sockaddr*>(&local), localLength) != 0) err = errno;
  if (err != 0) {
    ::close(fd);
    *errOut = err;
    return -1;
  }
  // Unconnected UDP returns ENOTCONN here but still marks the receive side
  // shut; the error is expected.
  shutdown(fd, SHUT_RD);
  return fd;
}

// Whether the kernel treats `address` as one of this host's own. A plain
// (non-transparent) bind succeeds only for local addresses, which matches
// the kernel's own notion (local routes included). With ip_nonlocal_bind=1
// every bind succeeds, so interface addresses are compared instead.
bool UdpCore::IsLocalAddress(int family, const uint8_t* address, int ifindex) {
  if (family == 4 && address[0] == 127) return true;
  static const uint8_t loopback6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  if (family == 6 && std::memcmp(address, loopback6, 16) == 0) return true;

  int domain = family == 4 ? AF_INET : AF_INET6;
  const char* sysctl = family == 4 ? "/proc/sys/net/ipv4/ip_nonlocal_bind"
                                   : "/proc/sys/net/ipv6/ip_nonlocal_bind";
  if (!ReadSysctlFlag(sysctl)) {
    int probe = socket(domain, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (probe < 0) return false;
    sockaddr_storage local{};
    socklen_t localLength;
    if (family == 4) {
      auto* local4 = reinterpret_cast<sockaddr_in*>(&local);
      local4->sin_family = AF_INET;
      std::memcpy(&local4->sin_addr, address, 4);
      localLength = sizeof(sockaddr_in);
    } else {
      auto* local6 = reinterpret_cast<sockaddr_in6*>(&local);
      local6->sin6_family = AF_INET6;
      std::memcpy(&local6->sin6_addr, address, 16);
      if (IsLinkLocal6(address)) local6->sin6_scope_id = static_cast<uint32_t>(ifindex);
      localLength = sizeof(sockaddr_in6);
    }
    bool isLocal = bind(probe, reinterpret_cast<sockaddr*>(&local), localLength) == 0;
    ::close(probe);
    return isLocal;
  }
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return false;
  bool found = false;
  for (ifaddrs* item = list; item != nullptr && !found; item = item->ifa_next) {
    if (item->ifa_addr == nullptr || item->ifa_addr->sa_family != domain) continue;
    if (family == 4) {
      found = std::memcmp(&reinterpret_cast<sockaddr_in*>(item->ifa_addr)->sin_addr,
                          address, 4) == 0;
    } else {
      found = std::memcmp(&reinterpret_cast<sockaddr_in6*>(item->ifa_addr)->sin6_addr,
                          address, 16) == 0;
    }
  }
  freeifaddrs(list);
  return found;
}

void UdpCore::CloseReplySocket(int fd) {
  if (fd < 0) return;
  ::close(fd);
  --replySocketsOpen_;
  counters_[kReplySocketsOpen] = static_cast<double>(replySocketsOpen_);
}

void UdpCore::EvictLeastRecentlyUsed(bool negative) {
  auto oldest = replySockets_.end();
  for (auto it = replySockets_.begin(); it != replySockets_.end(); ++it) {
    if ((it->second.fd < 0) != negative) continue;
    if (oldest == replySockets_.end() || it->second.lastUsedMs < oldest->second.lastUsedMs) {
      oldest = it;
    }
  }
  if (oldest == replySockets_.end()) return;
  if (negative) {
    --negativeEntries_;
  } else {
    Count(kReplySocketsEvicted);
    CloseReplySocket(oldest->second.fd);
  }
  replySockets_.erase(oldest);
}

void UdpCore::AddNegativeEntry(const ReplyKey& key, uint64_t now, bool local) {
  if (negativeEntries_ >= replySocketCap_) EvictLeastRecentlyUsed(/*negative=*/true);
  replySockets_.emplace(key, ReplyEntry{-1, now, now + kNegativeEntryMs, local});
  ++negativeEntries_;
  StartSweepTimer();
}

void UdpCore::StartSweepTimer() {
  if (uv_is_active(reinterpret_cast<uv_handle_t*>(&sweepTimer_))) return;
  uint64_t interval = replySocketIdleMs_ / 2;
  if (interval < 50) interval = 50;
  if (interval > 5000) interval = 5000;
  uv_timer_start(&sweepTimer_, OnSweep, interval, interval);
}

void UdpCore::OnSweep(uv_timer_t* handle) {
  auto* core = static_cast<UdpCore*>(handle->data);
  if (core->closing_) return;
  uint64_t now = uv_now(core->loop_);
  for (auto it = core->replySockets_.begin(); it != core->replySockets_.end();) {
    const ReplyEntry& entry = it->second;
    bool expired = entry.fd >= 0 ? now - entry.lastUsedMs >= core->replySocketIdleMs_
                                 : now >= entry.retryAtMs;
    if (!expired) {
      ++it;
      continue;
    }
    if (entry.fd >= 0) {
      core->Count(kReplySocketsExpired);
      core->CloseReplySocket(entry.fd);
    } else {
      --core->negativeEntries_;
    }
    it = core->replySockets_.erase(it);
  }
  if (core->replySockets_.empty()) uv_timer_stop(&core->sweepTimer_);
}

}  // namespace

Napi::Function DefineTransparentUdpSocket(Napi::Env env) {
  return UdpSocketWrap::Define(env);
}

}  // namespace dnstp
