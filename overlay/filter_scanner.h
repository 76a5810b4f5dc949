// Tokeniser of containerd's filter language (containerd filters/scanner.go), rune by rune
// over UTF-8 input. Tokens: field names ([A-Za-z0-9_]+), the separators `,` and `.`,
// operators (runs of `=`, `!`, `~`), quoted strings (`"..."`, `/.../`, `|...|`) and, right
// after an operator, bare values (anything up to a comma or white space). Any other rune is
// returned as itself. Errors (bad UTF-8, NUL, unterminated quotes, bad escapes) produce
// kIllegal and a message in error().
//
// Used only by the filter parser. Not thread-safe: one scanner per parse.
#pragma once

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace zsnap::overlay::filter_internal {

// A rune, or one of these negative token kinds.
using Token = int32_t;
inline constexpr Token kEof = -1;
inline constexpr Token kQuoted = -2;
inline constexpr Token kValue = -3;
inline constexpr Token kField = -4;
inline constexpr Token kSeparator = -5;
inline constexpr Token kOperator = -6;
inline constexpr Token kIllegal = -7;

struct Scanned {
  size_t pos;  // byte offset of the token in the input
  Token token;
  absl::string_view text;
};

class Scanner {
 public:
  explicit Scanner(absl::string_view input) : input_(input) {}

  Scanned Scan();
  // The next raw rune (not token), without consuming it; kEof at the end.
  Token Peek();
  // Byte offset just past the last rune read.
  size_t read_offset() const { return ppos_; }
  // The first error met, empty if none.
  const std::string& error() const { return err_; }

 private:
  Token Next();
  bool ScanQuoted(Token quote);
  // Consumes an escape after a backslash; returns the rune following it.
  Token ScanEscape(Token quote, bool* legal);
  Token ScanDigits(Token ch, int base, int n, bool* legal);
  void ScanWhile(bool (*pred)(Token));
  void Error(absl::string_view msg);

  absl::string_view input_;
  size_t pos_ = 0;      // start of the last rune read
  size_t ppos_ = 0;     // end of the last rune read
  bool value_ = false;  // an operator was just read: a bare word is a value
  std::string err_;
};

}  // namespace zsnap::overlay::filter_internal
