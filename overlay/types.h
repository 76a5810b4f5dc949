// Value types of the snapshot domain, in containerd's terms (core/snapshots/snapshotter.go).
//
// A snapshot is Active (writable, named by its *key*), a View (read-only, named by its key)
// or Committed (immutable, named by its *name*); keys and names share one key space.
// Plain values, no behaviour; safe to copy between threads.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace zsnap::overlay {

enum class Kind {
  kUnknown = 0,  // never stored; wire value UNKNOWN
  kView = 1,
  kActive = 2,
  kCommitted = 3,
};

using Labels = std::map<std::string, std::string>;

// Info is what Stat/List/Update return for one snapshot.
struct Info {
  std::string name;    // key for Active/View, name for Committed
  std::string parent;  // name of the committed parent, empty for none
  Kind kind = Kind::kUnknown;
  absl::Time created;
  absl::Time updated;
  Labels labels;

  friend bool operator==(const Info&, const Info&) = default;
};

// Usage is the disk usage of a snapshot's own layer (not its parents').
struct Usage {
  int64_t size = 0;    // bytes
  int64_t inodes = 0;  // inodes

  friend bool operator==(const Usage&, const Usage&) = default;
};

// Mount is one mount containerd performs to assemble a snapshot (containerd.types.Mount).
struct Mount {
  std::string type;
  std::string source;
  std::vector<std::string> options;

  friend bool operator==(const Mount&, const Mount&) = default;
};

std::string_view KindName(Kind kind);  // "active", "view", "committed", "unknown"

}  // namespace zsnap::overlay
