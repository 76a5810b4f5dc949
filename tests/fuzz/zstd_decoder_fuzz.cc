// libFuzzer: ZstdDecoder on arbitrary bytes, any chunking, with a small window limit so a
// hostile frame header cannot allocate much.
#include "tests/fuzz/decoder_fuzz_driver.h"
#include "unpack/zstd_decoder.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto d = zsnap::unpack::ZstdDecoder::Create(/*window_log_max=*/22);
  if (!d.ok()) std::abort();
  zsnap::unpack::FuzzDecoder(**d, data, size);
  return 0;
}
