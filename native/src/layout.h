// The shared-memory contract with native/index.ts. The wrapper compares these
// numbers with its own constants at load time, so a mismatch fails loudly
// instead of corrupting packets.
#pragma once

namespace dnstp {

// Int32 slots per packet in rxMeta / txMeta.
constexpr int kMetaStride = 16;

enum MetaField : int {
  kMetaLength = 0,     // payload bytes in the matching data slot
  kMetaFamily = 1,     // 4 or 6
  kMetaSrcPort = 2,    // rx: client port.  tx: port to send to
  kMetaDstPort = 3,    // rx: original destination port.  tx: port to send from
  kMetaIfindex = 4,    // rx: arrival interface.  tx: only used for IPv6 link-local
  // 5..7 reserved (zero)
  kMetaSrcAddr = 8,    // 16 raw bytes; IPv4 uses the first 4
  kMetaDstAddr = 12,   // 16 raw bytes; IPv4 uses the first 4
};

// Float64 counters. Keep the order in sync with COUNTER_NAMES in index.ts.
enum Counter : int {
  kReceived = 0,
  kSent,
  kRxBatches,
  kTxBatches,
  kDroppedEagain,
  kDroppedTruncated,
  kDroppedNoOrigDst,
  kRecvErrors,
  kSendErrors,
  kReplySocketsOpen,
  kReplySocketsOpened,
  kReplySocketsEvicted,
  kReplySocketsExpired,
  kReplySocketErrors,
  kDroppedLocalOrigDst,
  kDroppedInvalidTx,
  kCallbackErrors,
  kCounterCount
};

}  // namespace dnstp
