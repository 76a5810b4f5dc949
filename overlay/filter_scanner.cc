#include "overlay/filter_scanner.h"

#include "overlay/filter_quote.h"

namespace zsnap::overlay::filter_internal {
namespace {

bool IsSpace(Token r) {
  switch (r) {
    case '\t':
    case '\n':
    case '\v':
    case '\f':
    case '\r':
    case ' ':
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return r >= 0x2000 && r <= 0x200A;
  }
}

bool IsAlpha(Token r) { return (r >= 'A' && r <= 'Z') || (r >= 'a' && r <= 'z'); }
bool IsDigit(Token r) { return r >= '0' && r <= '9'; }
bool IsFieldRune(Token r) { return r == '_' || IsAlpha(r) || IsDigit(r); }
bool IsOperatorRune(Token r) { return r == '=' || r == '!' || r == '~'; }
bool IsQuoteRune(Token r) { return r == '/' || r == '|' || r == '"'; }
bool IsSeparatorRune(Token r) { return r == ',' || r == '.'; }

// Go accepts graphic or punctuation runes that are not white space or a comma. For ASCII that
// is exactly the printable range; beyond ASCII we accept everything but white space and the
// C1 controls (a superset of Go's set: format and unassigned code points are accepted too).
bool IsValueRune(Token r) {
  if (r < 0 || r == ',' || IsSpace(r)) return false;
  if (r < 0x80) return r > 0x20 && r < 0x7F;
  return r > 0x9F;
}

int DigitValue(Token ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return 16;  // larger than any legal digit
}

}  // namespace

Token Scanner::Next() {
  if (pos_ >= input_.size()) return kEof;
  pos_ = ppos_;
  const DecodedRune d = DecodeRune(input_.substr(ppos_));
  ppos_ += d.width;
  if (d.rune == kRuneError) {
    if (d.width > 0) {
      Error("rune error");
      return kIllegal;
    }
    return kEof;
  }
  if (d.rune == 0) {
    Error("unexpected null");
    return kIllegal;
  }
  return static_cast<Token>(d.rune);
}

Token Scanner::Peek() {
  const size_t pos = pos_;
  const size_t ppos = ppos_;
  const Token ch = Next();
  pos_ = pos;
  ppos_ = ppos;
  return ch;
}

Scanned Scanner::Scan() {
  Token ch = Next();
  size_t pos = pos_;
  while (IsSpace(ch)) {
    ch = Next();
    pos = pos_;
  }
  const auto text = [&] { return input_.substr(pos, ppos_ - pos); };
  if (ch == kEof || ch == kIllegal) return {pos_, ch, {}};
  if (IsQuoteRune(ch)) {
    if (!ScanQuoted(ch)) return {pos, kIllegal, text()};
    return {pos, kQuoted, text()};
  }
  if (IsSeparatorRune(ch)) {
    value_ = false;
    return {pos, kSeparator, text()};
  }
  if (IsOperatorRune(ch)) {
    ScanWhile(IsOperatorRune);
    value_ = true;
    return {pos, kOperator, text()};
  }
  if (value_) {
    ScanWhile(IsValueRune);
    value_ = false;
    return {pos, kValue, text()};
  }
  if (IsFieldRune(ch)) {
    ScanWhile(IsFieldRune);
    return {pos, kField, text()};
  }
  return {pos_, ch, {}};
}

void Scanner::ScanWhile(bool (*pred)(Token)) {
  while (pred(Peek())) Next();
}

bool Scanner::ScanQuoted(Token quote) {
  bool illegal = false;
  Token ch = Next();  // the rune after the opening quote
  while (ch != quote) {
    if (ch == '\n' || ch < 0) {
      Error("quoted literal not terminated");
      return false;
    }
    if (ch == '\\') {
      bool legal = false;
      ch = ScanEscape(quote, &legal);
      if (!legal) illegal = true;
    } else {
      ch = Next();
    }
  }
  return !illegal;
}

Token Scanner::ScanEscape(Token quote, bool* legal) {
  Token ch = Next();  // the rune after the backslash
  *legal = false;
  if (ch == quote) {
    *legal = true;
    return Next();
  }
  switch (ch) {
    case 'a':
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't':
    case 'v':
    case '\\':
      *legal = true;
      return Next();
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
      return ScanDigits(ch, 8, 3, legal);
    case 'x':
      return ScanDigits(Next(), 16, 2, legal);
    case 'u':
      return ScanDigits(Next(), 16, 4, legal);
    case 'U':
      return ScanDigits(Next(), 16, 8, legal);
    default:
      Error("illegal escape sequence");
      return ch;
  }
}

Token Scanner::ScanDigits(Token ch, int base, int n, bool* legal) {
  while (n > 0 && DigitValue(ch) < base) {
    ch = Next();
    --n;
  }
  if (n > 0) {
    Error("illegal numeric escape sequence");
    *legal = false;
    return ch;
  }
  *legal = true;
  return ch;
}

void Scanner::Error(absl::string_view msg) {
  if (err_.empty()) err_ = std::string(msg);
}

}  // namespace zsnap::overlay::filter_internal
