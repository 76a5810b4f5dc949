#include "overlay/filter.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "overlay/filter_quote.h"
#include "overlay/filter_scanner.h"
#include "re2/re2.h"

namespace zsnap::overlay {
namespace {

using filter_internal::kEof;
using filter_internal::kField;
using filter_internal::kIllegal;
using filter_internal::kOperator;
using filter_internal::kQuoted;
using filter_internal::kSeparator;
using filter_internal::kValue;
using filter_internal::Scanned;
using filter_internal::Scanner;
using filter_internal::Token;

// Recursive-descent parser of one filter string; errors quote the input around the position.
class Parser {
 public:
  explicit Parser(absl::string_view input) : input_(input), scanner_(input) {}

  absl::StatusOr<std::vector<Filter::Selector>> Selectors() {
    std::vector<Filter::Selector> all;
    absl::StatusOr<Filter::Selector> s = Selector();
    if (!s.ok()) return s.status();
    all.push_back(*std::move(s));
    while (true) {
      const Token next = scanner_.Peek();
      if (next == kEof) break;
      if (next != ',') {
        return Error(scanner_.read_offset(), absl::StrCat("unexpected input: ", TokenText(next)));
      }
      const Scanned sep = scanner_.Scan();
      if (sep.token != kSeparator) return Error(sep.pos, "expected a separator");
      s = Selector();
      if (!s.ok()) return s.status();
      all.push_back(*std::move(s));
    }
    return all;
  }

 private:
  absl::StatusOr<Filter::Selector> Selector() {
    Filter::Selector sel;
    absl::StatusOr<std::vector<std::string>> path = FieldPath();
    if (!path.ok()) return path.status();
    sel.fieldpath = *std::move(path);
    const Token next = scanner_.Peek();
    if (next == ',' || next == kEof) return sel;  // presence test

    absl::StatusOr<Filter::Op> op = Operator();
    if (!op.ok()) return op.status();
    sel.op = *op;
    absl::StatusOr<std::string> value = Value(/*allow_alt_quotes=*/sel.op == Filter::Op::kMatches);
    if (!value.ok()) return value.status();
    sel.value = *std::move(value);
    if (sel.op == Filter::Op::kMatches) {
      RE2::Options options;
      options.set_log_errors(false);
      auto re = std::make_shared<const RE2>(sel.value, options);
      if (re->ok()) sel.re = std::move(re);
    }
    return sel;
  }

  absl::StatusOr<std::vector<std::string>> FieldPath() {
    std::vector<std::string> fields;
    absl::StatusOr<std::string> f = Field();
    if (!f.ok()) return f.status();
    fields.push_back(*std::move(f));
    while (scanner_.Peek() == '.') {
      const Scanned sep = scanner_.Scan();
      if (sep.token != kSeparator) return Error(sep.pos, "expected a field separator (`.`)");
      f = Field();
      if (!f.ok()) return f.status();
      fields.push_back(*std::move(f));
    }
    return fields;
  }

  absl::StatusOr<std::string> Field() {
    const Scanned t = scanner_.Scan();
    switch (t.token) {
      case kField:
        return std::string(t.text);
      case kQuoted:
        return Unquote(t, /*allow_alt_quotes=*/false);
      case kIllegal:
        return Error(t.pos, scanner_.error());
      default:
        return Error(t.pos, "expected field or quoted");
    }
  }

  absl::StatusOr<Filter::Op> Operator() {
    const Scanned t = scanner_.Scan();
    if (t.token == kOperator) {
      if (t.text == "==") return Filter::Op::kEqual;
      if (t.text == "!=") return Filter::Op::kNotEqual;
      if (t.text == "~=") return Filter::Op::kMatches;
      return Error(t.pos, absl::StrFormat("unsupported operator \"%s\"", t.text));
    }
    if (t.token == kIllegal) return Error(t.pos, scanner_.error());
    return Error(t.pos, R"(expected an operator ("=="|"!="|"~="))");
  }

  absl::StatusOr<std::string> Value(bool allow_alt_quotes) {
    const Scanned t = scanner_.Scan();
    switch (t.token) {
      case kValue:
      case kField:
        return std::string(t.text);
      case kQuoted:
        return Unquote(t, allow_alt_quotes);
      case kIllegal:
        return Error(t.pos, scanner_.error());
      default:
        return Error(t.pos, "expected value or quoted");
    }
  }

  absl::StatusOr<std::string> Unquote(const Scanned& t, bool allow_alt_quotes) {
    if (!allow_alt_quotes && t.text[0] != '"') return Error(t.pos, "invalid quote encountered");
    absl::StatusOr<std::string> s = filter_internal::Unquote(t.text);
    if (!s.ok()) return Error(t.pos, absl::StrCat("unquoting failed: ", s.status().message()));
    return s;
  }

  static std::string TokenText(Token t) {
    if (t < 0) return t == kIllegal ? "Illegal" : "EOF";
    std::string out;
    filter_internal::AppendRune(static_cast<char32_t>(t), &out);
    return out;
  }

  // "filters: parse error: [before >|at|< after]: msg", as containerd words it.
  absl::Status Error(size_t pos, absl::string_view msg) const {
    std::string where;
    if (pos < input_.size()) {
      where = absl::StrCat("[", input_.substr(0, pos), " >|", input_.substr(pos, 1), "|< ",
                           input_.substr(pos + 1), "]");
    } else {
      where = absl::StrCat("[", input_, "]");
    }
    return absl::InvalidArgumentError(absl::StrCat("filters: parse error: ", where, ": ", msg));
  }

  absl::string_view input_;
  Scanner scanner_;
};

bool MatchSelector(const Filter::Selector& sel, Filter::FieldLookup lookup) {
  const std::optional<std::string> value = lookup(sel.fieldpath);
  switch (sel.op) {
    case Filter::Op::kPresent:
      return value.has_value();
    case Filter::Op::kEqual:
      return value.has_value() && *value == sel.value;
    case Filter::Op::kNotEqual:
      // An absent field compares as "" (so it differs from any non-empty value).
      return value.value_or("") != sel.value;
    case Filter::Op::kMatches:
      return sel.re != nullptr && RE2::PartialMatch(value.value_or(""), *sel.re);
  }
  return false;
}

}  // namespace

absl::StatusOr<Filter> Filter::ParseAll(const std::vector<std::string>& filters) {
  Filter f;
  f.match_all_ = filters.empty();
  for (const std::string& s : filters) {
    if (s.empty()) {
      f.alternatives_.emplace_back();  // matches everything
      continue;
    }
    absl::StatusOr<std::vector<Selector>> all = Parser(s).Selectors();
    if (!all.ok()) return all.status();
    f.alternatives_.push_back(*std::move(all));
  }
  return f;
}

bool Filter::Match(FieldLookup lookup) const {
  if (match_all_) return true;
  for (const std::vector<Selector>& all : alternatives_) {
    bool ok = true;
    for (const Selector& sel : all) {
      if (!MatchSelector(sel, lookup)) {
        ok = false;
        break;
      }
    }
    if (ok) return true;
  }
  return false;
}

bool Filter::Match(const Info& info) const {
  return Match([&info](const std::vector<std::string>& fieldpath) {
    return SnapshotField(info, fieldpath);
  });
}

std::optional<std::string> SnapshotField(const Info& info,
                                         const std::vector<std::string>& fieldpath) {
  if (fieldpath.empty()) return std::nullopt;
  const std::string& field = fieldpath[0];
  if (field == "kind") {
    if (info.kind == Kind::kUnknown) return std::nullopt;
    return std::string(KindName(info.kind));
  }
  if (field == "name") return info.name;
  if (field == "parent") return info.parent;
  if (field == "labels") {
    if (info.labels.empty()) return std::nullopt;
    const std::string key = absl::StrJoin(fieldpath.begin() + 1, fieldpath.end(), ".");
    auto it = info.labels.find(key);
    if (it == info.labels.end()) return std::nullopt;
    return it->second;
  }
  return std::nullopt;
}

}  // namespace zsnap::overlay
