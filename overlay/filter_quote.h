// Unquoting of quoted strings in containerd's filter language (containerd filters/quote.go):
// Go string-literal rules, with `"`, `/` and `|` as interchangeable quote characters (the
// latter two are handy for regular expressions: /^a\/b$/). Inside the quotes:
//   \a \b \f \n \r \t \v \\   the usual control characters
//   \<quote>                   the quote character itself (only the one that opened)
//   \xHH \ooo                  one byte
//   \uHHHH \UHHHHHHHH          one code point, UTF-8 encoded
// No raw newline is allowed. Used by the filter parser only.
//
// Pure function; safe from any thread.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace zsnap::overlay::filter_internal {

// `quoted` includes its quote characters. InvalidArgument("quote syntax error") if malformed.
absl::StatusOr<std::string> Unquote(absl::string_view quoted);

// Go's utf8.DecodeRuneInString: {rune, width}; {U+FFFD, 1} for invalid bytes, {U+FFFD, 0} at
// the end of input.
struct DecodedRune {
  char32_t rune;
  size_t width;
};
inline constexpr char32_t kRuneError = 0xFFFD;
DecodedRune DecodeRune(absl::string_view s);

// Appends the UTF-8 encoding of `r` (U+FFFD for surrogates and values past U+10FFFF).
void AppendRune(char32_t r, std::string* out);

}  // namespace zsnap::overlay::filter_internal
