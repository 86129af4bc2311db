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
// resident. malloc_trim(0) madvises them away in every arena. Returns whether
// anything was released; false on libcs without it.
Napi::Value ReleaseFreedHeap(const Napi::CallbackInfo& info) {
#if defined(__GLIBC__)
  return Napi::Boolean::New(info.Env(), malloc_trim(0) == 1);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
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
