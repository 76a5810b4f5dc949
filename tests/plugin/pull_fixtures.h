// Timing records for the plugin tests: a plausible, consistent image pull (CheckImageRecord
// passes) that tests then bend, and a helper reading one sample out of an exposition.
#pragma once

#include <sstream>
#include <string>

#include "unpack/pull_report.h"

namespace zsnap::plugin::testing {

// Layer `index` of a pull: 1 MB compressed -> 3 MB tar, 0.5 s unpack, ok.
inline unpack::LayerRecord FixtureLayer(int index, const std::string& codec = "gzip") {
  unpack::LayerRecord l;
  l.image = "127.0.0.1:5000/app:v1";
  l.manifest_digest = "sha256:" + std::string(64, 'm');
  l.digest = "sha256:" + std::string(63, 'a') + static_cast<char>('0' + index);
  l.media_type = "application/vnd.oci.image.layer.v1.tar+" + codec;
  l.chain_id = "sha256:" + std::string(63, 'c') + static_cast<char>('0' + index);
  l.index = index;
  l.queue_wait_s = 0.010;
  l.fetch = {.ttfb_s = 0.020, .duration_s = 0.400, .bytes = 1000000u + index, .retries = 0};
  l.unpack.layer = l.digest;
  l.unpack.codec = codec;
  l.unpack.digest = l.digest;
  l.unpack.diff_id = "sha256:" + std::string(64, 'd');
  l.unpack.bytes_in = l.fetch.bytes;
  l.unpack.bytes_out = 3000000u + index;
  l.unpack.entries = 100;
  l.unpack.file_bytes = 2900000;
  l.unpack.threads = 4;
  l.unpack.read = {0.05, 0.35};
  l.unpack.decode = {0.150, 0.30};
  l.unpack.extract = {0.100, 0.35};
  l.unpack.write = {0.300, 0.10};
  l.unpack.verify = {0.030, 0};
  l.unpack.total_s = 0.500;
  l.commit_s = 0.005;
  l.total_s = 0.520;
  l.outcome = "ok";
  return l;
}

// An image of `layers` layers pulled in parallel, started at `started_unix_ms`.
inline unpack::ImageRecord FixtureImage(int layers, int64_t started_unix_ms,
                                        const std::string& codec = "gzip") {
  unpack::ImageRecord r;
  r.image = "127.0.0.1:5000/app:v1";
  r.manifest_digest = "sha256:" + std::string(64, 'm');
  r.snapshot_namespace = "default";
  r.started_unix_ms = started_unix_ms;
  r.wall_s = 0.750;
  r.layers_total = layers;
  r.outcome = "ok";
  for (int i = 0; i < layers; ++i) {
    r.layers.push_back(FixtureLayer(i, codec));
    r.bytes_in += r.layers.back().fetch.bytes;
    r.bytes_out += r.layers.back().unpack.bytes_out;
    ++r.layers_remote;
  }
  return r;
}

// The value of the sample line "SERIES VALUE" in `exposition`, or -1 if absent.
inline double Sample(const std::string& exposition, const std::string& series) {
  std::istringstream in(exposition);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ') {
      return std::stod(line.substr(series.size() + 1));
    }
  }
  return -1;
}

}  // namespace zsnap::plugin::testing
