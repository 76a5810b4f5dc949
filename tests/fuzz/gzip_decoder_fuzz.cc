// libFuzzer: GzipDecoder (ISA-L) on arbitrary bytes, any chunking.
#include "tests/fuzz/decoder_fuzz_driver.h"
#include "unpack/gzip_decoder.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto d = zsnap::unpack::GzipDecoder::Create();
  if (!d.ok()) std::abort();
  zsnap::unpack::FuzzDecoder(**d, data, size);
  return 0;
}
