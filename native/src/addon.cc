// Module entry. Napi::Addon keeps the class constructor per environment, so
// the addon loads in the main thread and in any number of worker_threads.

#include <napi.h>

#include "layout.h"
#include "tcp_listener.h"
#include "udp_socket.h"

namespace dnstp {

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
  }

 private:
  Napi::FunctionReference udpSocketConstructor_;
};

}  // namespace dnstp

using dnstp::NativeAddon;
NODE_API_ADDON(NativeAddon)
