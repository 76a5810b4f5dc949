#include "overlay/filter_quote.h"

#include <optional>

#include "absl/status/status.h"

namespace zsnap::overlay::filter_internal {
namespace {

constexpr char32_t kMaxRune = 0x10FFFF;

absl::Status QuoteSyntaxError() { return absl::InvalidArgumentError("quote syntax error"); }

std::optional<int> HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return std::nullopt;
}

bool IsQuote(char c) { return c == '"' || c == '/' || c == '|'; }

// Decodes one (possibly escaped) character at the front of `*s` and appends it to `*out`.
absl::Status UnquoteOne(absl::string_view* s, char quote, std::string* out) {
  const char c = (*s)[0];
  if (c == quote) return QuoteSyntaxError();  // an unescaped quote inside the literal
  if (static_cast<unsigned char>(c) >= 0x80) {
    // A non-ASCII character is copied as a code point; invalid bytes become U+FFFD as in Go.
    const DecodedRune d = DecodeRune(*s);
    AppendRune(d.rune, out);
    s->remove_prefix(d.width);
    return absl::OkStatus();
  }
  if (c != '\\') {
    out->push_back(c);
    s->remove_prefix(1);
    return absl::OkStatus();
  }
  if (s->size() <= 1) return QuoteSyntaxError();
  const char e = (*s)[1];
  s->remove_prefix(2);
  switch (e) {
    case 'a':
      out->push_back('\a');
      return absl::OkStatus();
    case 'b':
      out->push_back('\b');
      return absl::OkStatus();
    case 'f':
      out->push_back('\f');
      return absl::OkStatus();
    case 'n':
      out->push_back('\n');
      return absl::OkStatus();
    case 'r':
      out->push_back('\r');
      return absl::OkStatus();
    case 't':
      out->push_back('\t');
      return absl::OkStatus();
    case 'v':
      out->push_back('\v');
      return absl::OkStatus();
    case '\\':
      out->push_back('\\');
      return absl::OkStatus();
    case 'x':
    case 'u':
    case 'U': {
      const size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
      if (s->size() < n) return QuoteSyntaxError();
      char32_t v = 0;
      for (size_t i = 0; i < n; ++i) {
        const std::optional<int> digit = HexValue((*s)[i]);
        if (!digit) return QuoteSyntaxError();
        v = (v << 4) | static_cast<char32_t>(*digit);
      }
      s->remove_prefix(n);
      if (e == 'x') {
        out->push_back(static_cast<char>(v));  // \x is a byte, not a code point
        return absl::OkStatus();
      }
      if (v > kMaxRune) return QuoteSyntaxError();
      AppendRune(v, out);
      return absl::OkStatus();
    }
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7': {
      int v = e - '0';
      if (s->size() < 2) return QuoteSyntaxError();
      for (size_t i = 0; i < 2; ++i) {
        const int digit = (*s)[i] - '0';
        if (digit < 0 || digit > 7) return QuoteSyntaxError();
        v = (v << 3) | digit;
      }
      s->remove_prefix(2);
      if (v > 255) return QuoteSyntaxError();
      out->push_back(static_cast<char>(v));
      return absl::OkStatus();
    }
    case '"':
    case '/':
    case '|':
      // Only the quote that delimits this literal may be escaped.
      if (e != quote) return QuoteSyntaxError();
      out->push_back(e);
      return absl::OkStatus();
    default:
      return QuoteSyntaxError();
  }
}

}  // namespace

DecodedRune DecodeRune(absl::string_view s) {
  if (s.empty()) return {kRuneError, 0};
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char b0 = byte(0);
  if (b0 < 0x80) return {b0, 1};
  size_t width;
  char32_t r;
  char32_t min;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    width = 2, r = b0 & 0x1F, min = 0x80;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    width = 3, r = b0 & 0x0F, min = 0x800;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    width = 4, r = b0 & 0x07, min = 0x10000;
  } else {
    return {kRuneError, 1};
  }
  if (s.size() < width) return {kRuneError, 1};
  for (size_t i = 1; i < width; ++i) {
    if ((byte(i) & 0xC0) != 0x80) return {kRuneError, 1};
    r = (r << 6) | (byte(i) & 0x3F);
  }
  // Overlong forms, surrogates and values past U+10FFFF are invalid, as in Go.
  if (r < min || r > kMaxRune || (r >= 0xD800 && r <= 0xDFFF)) return {kRuneError, 1};
  return {r, width};
}

void AppendRune(char32_t r, std::string* out) {
  if (r > kMaxRune || (r >= 0xD800 && r <= 0xDFFF)) r = kRuneError;
  if (r < 0x80) {
    out->push_back(static_cast<char>(r));
  } else if (r < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (r >> 6)));
    out->push_back(static_cast<char>(0x80 | (r & 0x3F)));
  } else if (r < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (r >> 12)));
    out->push_back(static_cast<char>(0x80 | ((r >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (r & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (r >> 18)));
    out->push_back(static_cast<char>(0x80 | ((r >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((r >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (r & 0x3F)));
  }
}

absl::StatusOr<std::string> Unquote(absl::string_view quoted) {
  const size_t n = quoted.size();
  if (n < 2) return QuoteSyntaxError();
  const char quote = quoted[0];
  if (!IsQuote(quote) || quoted[n - 1] != quote) return QuoteSyntaxError();
  absl::string_view body = quoted.substr(1, n - 2);
  if (body.find('\n') != absl::string_view::npos) return QuoteSyntaxError();
  if (body.find('\\') == absl::string_view::npos && body.find(quote) == absl::string_view::npos) {
    return std::string(body);
  }
  std::string out;
  out.reserve(body.size());
  while (!body.empty()) {
    if (absl::Status s = UnquoteOne(&body, quote, &out); !s.ok()) return s;
  }
  return out;
}

}  // namespace zsnap::overlay::filter_internal
