// UnpackLayer end to end: tars built in code, compressed in the test (single and multi-member
// gzip, multi-frame zstd with skippable frames, plain), then the failure modes: truncated,
// corrupt, trailing garbage, wrong digests, bombs, hostile zstd windows, source errors,
// cancellation. Every failure must leave `dest` as it was before the call.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <stop_token>
#include <string>
#include <thread>

#include "tests/unpack/codec_test_util.h"
#include "tests/unpack/tar_builder.h"
#include "tests/unpack/tar_test_util.h"
#include "unpack/digest.h"
#include "unpack/unpack.h"

namespace zsnap::unpack::testing {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

// Serves a string in reads of at most `chunk` bytes; optionally fails after `fail_after`.
class StringByteSource : public ByteSource {
 public:
  explicit StringByteSource(std::string data, size_t chunk = 1 << 20)
      : data_(std::move(data)), chunk_(chunk) {}
  absl::StatusOr<size_t> Read(std::span<std::byte> buf) override {
    if (off_ >= fail_after_) return absl::UnavailableError("connection reset");
    size_t n = std::min({buf.size(), chunk_, data_.size() - off_});
    std::memcpy(buf.data(), data_.data() + off_, n);
    off_ += n;
    return n;
  }
  size_t fail_after_ = SIZE_MAX;

 private:
  std::string data_;
  size_t chunk_;
  size_t off_ = 0;
};

// An endless stream of tar-ish bytes, slow enough to cancel mid-way.
class EndlessSource : public ByteSource {
 public:
  absl::StatusOr<size_t> Read(std::span<std::byte> buf) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    size_t n = std::min<size_t>(buf.size(), 64 << 10);
    std::memset(buf.data(), 0, n);
    reads_++;
    return n;
  }
  std::atomic<int> reads_{0};
};

std::string SampleTar(size_t big = 3 << 20) {
  TarBuilder b;
  b.Dir("etc").File("etc/hostname", "box\n").Dir("usr").Dir("usr/bin");
  b.File("usr/bin/big", MakePayload(big, 42), 0755).Symlink("usr/bin/link", "big");
  for (int i = 0; i < 50; ++i) b.File("many/f" + std::to_string(i), std::to_string(i));
  return b.Finish() + std::string(10240, '\0');  // record padding after end of archive
}

class PipelineTest : public ::testing::Test {
 protected:
  absl::StatusOr<LayerTiming> Unpack(const std::string& blob, UnpackOptions o = {},
                                     size_t read_chunk = 1 << 20) {
    StringByteSource src(blob, read_chunk);
    if (o.layer_name.empty()) o.layer_name = "test-layer";
    return UnpackLayer(src, dest(), o);
  }
  std::string dest() const { return dir_.base() + "/out"; }
  void ExpectSampleTree() {
    EXPECT_EQ(ReadFile(dest() + "/etc/hostname"), "box\n");
    EXPECT_EQ(ReadFile(dest() + "/usr/bin/big"), MakePayload(3 << 20, 42));
    EXPECT_EQ(fs::read_symlink(dest() + "/usr/bin/link"), "big");
    EXPECT_EQ(ReadFile(dest() + "/many/f49"), "49");
  }
  void ExpectFailedAndClean(const absl::StatusOr<LayerTiming>& r, absl::StatusCode code,
                            std::string_view text) {
    EXPECT_EQ(r.status().code(), code) << r.status();
    EXPECT_THAT(r.status().message(), HasSubstr("layer test-layer: "));
    EXPECT_THAT(r.status().message(), HasSubstr(text));
    EXPECT_FALSE(fs::exists(dest())) << "dest created by the call must be removed";
  }

  ScratchDir dir_;
};

TEST_F(PipelineTest, GzipDetectedAndDigestsReported) {
  std::string tar = SampleTar();
  std::string gz = GzipMember(tar);
  UnpackOptions o;
  o.expected_digest = Sha256Digest(AsBytes(gz));
  o.expected_diff_id = Sha256Digest(AsBytes(tar));
  auto t = Unpack(gz, o);
  ASSERT_TRUE(t.ok()) << t.status();
  ExpectSampleTree();
  EXPECT_EQ(t->codec, "gzip");
  EXPECT_EQ(t->digest, *o.expected_digest);
  EXPECT_EQ(t->diff_id, *o.expected_diff_id);
  EXPECT_EQ(t->bytes_in, gz.size());
  EXPECT_EQ(t->bytes_out, tar.size());
  EXPECT_EQ(t->layer, "test-layer");
  EXPECT_GE(t->entries, 55u);
  EXPECT_GE(t->threads, 4);  // reader, decoder, hasher, extractor
  EXPECT_GT(t->total_s, 0);
  EXPECT_GT(t->decode.busy_s, 0);
}

TEST_F(PipelineTest, MultiMemberGzipInSmallReads) {
  std::string tar = SampleTar();
  auto t = Unpack(GzipMultiMember(tar, 100'000), {}, 4093);
  ASSERT_TRUE(t.ok()) << t.status();
  ExpectSampleTree();
  EXPECT_EQ(t->diff_id, Sha256Digest(AsBytes(tar)));
}

TEST_F(PipelineTest, ZstdMultiFrameWithSkippableFrames) {
  std::string tar = SampleTar();
  std::string z = ZstdSkippableFrame("seekable index?") + ZstdFrame(tar.substr(0, 1'000'000)) +
                  ZstdFrame(tar.substr(1'000'000)) + ZstdSkippableFrame("x", 2);
  UnpackOptions o;
  o.codec = Codec::kZstd;
  auto t = Unpack(z, o);
  ASSERT_TRUE(t.ok()) << t.status();
  ExpectSampleTree();
  EXPECT_EQ(t->codec, "zstd");
  EXPECT_EQ(t->diff_id, Sha256Digest(AsBytes(tar)));
}

TEST_F(PipelineTest, PlainTarIntoExistingEmptyDir) {
  fs::create_directory(dest());
  std::string tar = SampleTar();
  auto t = Unpack(tar);
  ASSERT_TRUE(t.ok()) << t.status();
  ExpectSampleTree();
  EXPECT_EQ(t->codec, "plain");
  EXPECT_EQ(t->digest, t->diff_id);
}

TEST_F(PipelineTest, WrongCompressedDigestRemovesOutput) {
  UnpackOptions o;
  o.expected_digest = "sha256:" + std::string(64, '0');
  auto t = Unpack(GzipMember(SampleTar()), o);
  ExpectFailedAndClean(t, absl::StatusCode::kDataLoss,
                       "compressed digest mismatch: expected sha256:000");
  EXPECT_THAT(t.status().message(), HasSubstr(", got sha256:"));
}

TEST_F(PipelineTest, WrongDiffIdEmptiesPreexistingDir) {
  fs::create_directory(dest());
  UnpackOptions o;
  o.expected_diff_id = "sha256:" + std::string(64, 'f');
  auto t = Unpack(ZstdFrame(SampleTar()), o);
  EXPECT_EQ(t.status().code(), absl::StatusCode::kDataLoss) << t.status();
  EXPECT_THAT(t.status().message(), HasSubstr("diffID mismatch"));
  ASSERT_TRUE(fs::is_directory(dest())) << "a pre-existing dest stays";
  EXPECT_TRUE(fs::is_empty(dest())) << "but is emptied";
}

TEST_F(PipelineTest, MalformedExpectedDigestIsInvalidArgument) {
  UnpackOptions o;
  o.expected_digest = "md5:abc";
  auto t = Unpack(GzipMember(SampleTar(10)), o);
  ExpectFailedAndClean(t, absl::StatusCode::kInvalidArgument, "unsupported digest algorithm");
}

TEST_F(PipelineTest, TruncatedGzip) {
  std::string gz = GzipMember(SampleTar());
  auto t = Unpack(gz.substr(0, gz.size() - 3));
  ExpectFailedAndClean(t, absl::StatusCode::kDataLoss, "truncated");
}

TEST_F(PipelineTest, TruncatedZstd) {
  std::string z = ZstdFrame(SampleTar());
  auto t = Unpack(z.substr(0, z.size() / 2));
  ExpectFailedAndClean(t, absl::StatusCode::kDataLoss, "truncated");
}

TEST_F(PipelineTest, TruncatedAfterTarEndStillFails) {
  // The tar is complete (end-of-archive blocks decoded) but the gzip trailer is cut: the
  // extractor would succeed, so draining the decoder to EOF must catch it.
  std::string gz = GzipMember(SampleTar(1000));
  auto t = Unpack(gz.substr(0, gz.size() - 1));
  ExpectFailedAndClean(t, absl::StatusCode::kDataLoss, "truncated");
}

TEST_F(PipelineTest, CorruptGzipCrc) {
  std::string gz = GzipMember(SampleTar());
  gz[gz.size() - 7] ^= 0x40;
  auto t = Unpack(gz);
  ExpectFailedAndClean(t, absl::StatusCode::kDataLoss, "CRC32");
}

TEST_F(PipelineTest, CorruptDeflateStream) {
  std::string gz = GzipMember(SampleTar());
  for (size_t i = gz.size() / 2; i < gz.size() / 2 + 64; ++i) gz[i] = static_cast<char>(~gz[i]);
  auto t = Unpack(gz);
  EXPECT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("layer test-layer: "));
  EXPECT_FALSE(fs::exists(dest()));
}

TEST_F(PipelineTest, TrailingGarbageAfterGzipMember) {
  auto t = Unpack(GzipMember(SampleTar(1000)) + "GARBAGE-GARBAGE");
  ExpectFailedAndClean(t, absl::StatusCode::kDataLoss, "not a gzip member");
}

TEST_F(PipelineTest, TrailingGarbageAfterZstdFrame) {
  auto t = Unpack(ZstdFrame(SampleTar(1000)) + "GARBAGE-GARBAGE");
  ExpectFailedAndClean(t, absl::StatusCode::kDataLoss, "not a zstd frame");
}

TEST_F(PipelineTest, BombStopsAtTheLimit) {
  // 16 MiB file of zeros compresses to ~16 KiB; the limit is 2 MiB.
  TarHeader h;
  h.name = "zeros";
  std::string tar = TarBuilder().Add(h, std::string(16 << 20, '\0')).Finish();
  for (std::string blob : {GzipMember(tar, 1), ZstdFrame(tar, 1)}) {
    UnpackOptions o;
    o.limits.max_uncompressed_bytes = 2 << 20;
    auto t = Unpack(blob, o);
    ExpectFailedAndClean(t, absl::StatusCode::kResourceExhausted, "max_uncompressed_bytes=2097152");
  }
}

TEST_F(PipelineTest, ExactlyAtTheLimitIsFine) {
  std::string tar = SampleTar(1000);
  UnpackOptions o;
  o.limits.max_uncompressed_bytes = tar.size();
  EXPECT_TRUE(Unpack(GzipMember(tar), o).ok());
}

TEST_F(PipelineTest, ZstdWindowAboveLimit) {
  UnpackOptions o;
  o.limits.zstd_window_log_max = 20;
  auto t = Unpack(ZstdFrameWithWindow(SampleTar(), 23), o);
  ExpectFailedAndClean(t, absl::StatusCode::kResourceExhausted, "zstd_window_log_max=20");
}

// Issue 12: containerd's applier decides by the magic bytes, not the label (diff/stream.go
// compressedHandler -> compression.DecompressStream -> DetectCompression), for every media
// type that says "compressed" or, for docker's plain types, "maybe". So every blob, in every
// codec, extracts the same tree under every such label.
TEST_F(PipelineTest, MislabelledLayersApplyAsContainerdDoes) {
  const std::string tar = SampleTar();
  const std::pair<const char*, std::string> blobs[] = {
      {"plain", tar}, {"gzip", GzipMember(tar)}, {"zstd", ZstdFrame(tar)}};
  for (const char* label : {"application/vnd.oci.image.layer.v1.tar+gzip",
                            "application/vnd.oci.image.layer.v1.tar+zstd",
                            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                            "application/vnd.docker.image.rootfs.diff.tar",
                            "application/vnd.docker.image.rootfs.diff.tar.gzip",
                            "application/vnd.docker.image.rootfs.foreign.diff.tar"}) {
    for (const auto& [codec, blob] : blobs) {
      SCOPED_TRACE(std::string(codec) + " labelled " + label);
      absl::StatusOr<Codec> c = CodecForMediaType(label);
      ASSERT_TRUE(c.ok()) << c.status();
      UnpackOptions o;
      o.codec = *c;
      o.expected_diff_id = Sha256Digest(AsBytes(tar));
      auto t = Unpack(blob, o);
      ASSERT_TRUE(t.ok()) << t.status();
      EXPECT_EQ(t->codec, codec);
      ExpectSampleTree();
      fs::remove_all(dest());
    }
  }
}

// An OCI layer without a compression suffix is the tar stream itself in containerd
// (DiffCompression answers "", stdProcessor): compressed bytes under it are not a tar.
TEST_F(PipelineTest, UncompressedOciLabelIsNotSniffed) {
  const std::string tar = SampleTar(1000);
  absl::StatusOr<Codec> c = CodecForMediaType("application/vnd.oci.image.layer.v1.tar");
  ASSERT_TRUE(c.ok()) << c.status();
  UnpackOptions o;
  o.codec = *c;
  auto ok = Unpack(tar, o);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->codec, "plain");
  fs::remove_all(dest());
  auto t = Unpack(GzipMember(tar), o);
  EXPECT_FALSE(t.ok());
  EXPECT_FALSE(fs::exists(dest()));
}

// zstd --long=28: a 256 MiB window, within containerd's 512 MiB, with the default limits.
TEST_F(PipelineTest, ZstdLongWindowWithDefaultLimits) {
  const std::string tar = SampleTar();
  const std::string z = ZstdFrameWithWindow(tar, 28);
  ASSERT_EQ(ZstdDeclaredWindow(z), uint64_t{1} << 28);
  absl::StatusOr<Codec> c = CodecForMediaType("application/vnd.oci.image.layer.v1.tar+zstd");
  ASSERT_TRUE(c.ok());
  UnpackOptions o;
  o.codec = *c;
  auto t = Unpack(z, o);
  ASSERT_TRUE(t.ok()) << t.status();
  ExpectSampleTree();
  // Above the limit: refused with the limit named, nothing left behind.
  fs::remove_all(dest());
  ExpectFailedAndClean(Unpack(ZstdWithWindowDescriptor(z, 29 - 10, 1), o),
                       absl::StatusCode::kResourceExhausted, "zstd_window_log_max=29 (512 MiB)");
}

TEST_F(PipelineTest, SourceErrorKeepsItsCode) {
  StringByteSource src(GzipMember(SampleTar()), 65536);
  src.fail_after_ = 300'000;
  UnpackOptions o;
  o.layer_name = "test-layer";
  auto t = UnpackLayer(src, dest(), o);
  ExpectFailedAndClean(t, absl::StatusCode::kUnavailable, "connection reset");
}

TEST_F(PipelineTest, BadTarIsWrappedWithLayerName) {
  std::string junk(4096, 'x');
  auto t = Unpack(GzipMember(junk));
  EXPECT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("layer test-layer: "));
  EXPECT_FALSE(fs::exists(dest()));
}

TEST_F(PipelineTest, NonEmptyDestIsRefusedAndUntouched) {
  fs::create_directory(dest());
  { std::ofstream(dest() + "/keep") << "mine"; }
  auto t = Unpack(GzipMember(SampleTar(10)));
  EXPECT_EQ(t.status().code(), absl::StatusCode::kFailedPrecondition) << t.status();
  EXPECT_EQ(ReadFile(dest() + "/keep"), "mine");
}

TEST_F(PipelineTest, CancelledBeforeStart) {
  std::stop_source stop;
  stop.request_stop();
  UnpackOptions o;
  o.stop = stop.get_token();
  auto t = Unpack(GzipMember(SampleTar()), o);
  ExpectFailedAndClean(t, absl::StatusCode::kCancelled, "cancelled");
}

TEST_F(PipelineTest, CancelledMidStream) {
  EndlessSource src;
  std::stop_source stop;
  UnpackOptions o;
  o.layer_name = "test-layer";
  o.stop = stop.get_token();
  std::jthread canceller([&] {
    while (src.reads_ < 20) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    stop.request_stop();
  });
  auto t = UnpackLayer(src, dest(), o);
  ExpectFailedAndClean(t, absl::StatusCode::kCancelled, "cancelled");
}

TEST_F(PipelineTest, ManyBuffersOfOutputFlowThrough) {
  // ~24 MiB of tar through 1 MiB pooled buffers, with tiny reads: exercises backpressure.
  TarBuilder b;
  for (int i = 0; i < 8; ++i) b.File("d/f" + std::to_string(i), MakePayload(3 << 20, i));
  std::string tar = b.Finish();
  auto t = Unpack(ZstdFrame(tar, 1), {}, 10'000);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(ReadFile(dest() + "/d/f7"), MakePayload(3 << 20, 7));
  EXPECT_EQ(t->bytes_out, tar.size());
}

}  // namespace
}  // namespace zsnap::unpack::testing
