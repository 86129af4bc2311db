// Module entry. Napi::Addon keeps the class constructor per environment, so
// the addon loads in the main thread and in any number of worker_threads.

#include <napi.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "layout.h"
#include "tcp_listener.h"
#include "udp_socket.h"

namespace dnstp {
namespace {

// glibc keeps freed memory in its per-thread arenas and returns only the top
// of the main heap to the kernel on its own. TLS records, OpenSSL state and
// Buffer backing stores are malloc'ed and freed at query rate, mostly from
// other threads' arenas, so after a burst tens of MiB of free pages stay
// resident. malloc_trim(0) madvises them away in every arena. It walks every
// free chunk (measured 10-22 ms after freeing 40-100 MiB of small blocks), so
// it runs on the libuv thread pool rather than stalling the event loop;
// glibc locks each arena while trimming it, so concurrent mallocs only wait
// for that arena. Resolves to whether anything was released (always false on
// libcs without malloc_trim).
class TrimWorker : public Napi::AsyncWorker {
 public:
  explicit TrimWorker(Napi::Env env)
      : Napi::AsyncWorker(env, "dnsTproxyReleaseFreedHeap"), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override {
#if defined(__GLIBC__)
    released_ = malloc_trim(0) == 1;
#endif
  }
  void OnOK() override { deferred_.Resolve(Napi::Boolean::New(Env(), released_)); }
  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  bool released_ = false;
};

Napi::Value ReleaseFreedHeap(const Napi::CallbackInfo& info) {
  auto* worker = new TrimWorker(info.Env());  // deletes itself after OnOK/OnError
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace

class NativeAddon : public Napi::Addon<NativeAddon> {
 public:
  NativeAddon(Napi::Env env, Napi::Object exports) {
    Napi::Function udpSocket = DefineTransparentUdpSocket(env);
    udpSocketConstructor_ = Napi::Persistent(udpSocket);

    Napi::Object layout = Napi::Object::New(env);
    layout.Set("META_STRIDE", kMetaStride);
    layout.Set("M_LEN", static_cast<int>(kMetaLength));
    layout.Set("M_FAMILY", static_cast<int>(kMetaFamily));
    layout.Set("M_SRC_PORT", static_cast<int>(kMetaSrcPort));
    layout.Set("M_DST_PORT", static_cast<int>(kMetaDstPort));
    layout.Set("M_IFINDEX", static_cast<int>(kMetaIfindex));
    layout.Set("M_SRC_ADDR", static_cast<int>(kMetaSrcAddr));
    layout.Set("M_DST_ADDR", static_cast<int>(kMetaDstAddr));
    layout.Set("COUNTER_COUNT", static_cast<int>(kCounterCount));

    exports.Set("TransparentUdpSocketNative", udpSocket);
    exports.Set("openTransparentTcpListener",
                Napi::Function::New(env, OpenTransparentTcpListener, "openTransparentTcpListener"));
    exports.Set("layout", layout);
    exports.Set("releaseFreedHeap",
                Napi::Function::New(env, ReleaseFreedHeap, "releaseFreedHeap"));
  }

 private:
  Napi::FunctionReference udpSocketConstructor_;
};

}  // namespace dnstp

using dnstp::NativeAddon;
NODE_API_ADDON(NativeAddon)
