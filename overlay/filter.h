// Filter: containerd's filter language (containerd filters/parser.go, filter.go) over
// snapshot Infos, as List needs it.
//
//   filter    := selector ("," selector)*          all selectors must match
//   selector  := fieldpath [operator value]        no operator: the field is present
//   fieldpath := field ("." field)*                field: [A-Za-z0-9_]+ or "quoted"
//   operator  := "==" | "!=" | "~="                ~= is an unanchored RE2 search
//   value     := quoted | [^\s,]+                  /.../ and |...| quotes only after ~=
//
// Several filter strings are OR-ed; no strings (or an empty string) match everything.
// Snapshot fields: `kind` (active|view|committed), `name`, `parent` (always present, maybe
// empty) and `labels.<key>` (present only when set; the key is the rest of the path joined
// with dots, so both labels."a.b" and labels.a.b name label "a.b").
//
// Like containerd, a regular expression that does not compile is not a parse error: the
// selector simply matches nothing.
//
// A parsed Filter is immutable and safe to share between threads.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "overlay/types.h"

namespace re2 {
class RE2;
}

namespace zsnap::overlay {

class Filter {
 public:
  // Looks up a field path on the object being matched; nullopt when the field is absent.
  using FieldLookup =
      absl::FunctionRef<std::optional<std::string>(const std::vector<std::string>& fieldpath)>;

  // Parses and OR-s `filters`. InvalidArgument naming the position on a syntax error.
  static absl::StatusOr<Filter> ParseAll(const std::vector<std::string>& filters);

  bool Match(const Info& info) const;
  bool Match(FieldLookup lookup) const;

  enum class Op { kPresent, kEqual, kNotEqual, kMatches };
  struct Selector {
    std::vector<std::string> fieldpath;
    Op op = Op::kPresent;
    std::string value;
    std::shared_ptr<const re2::RE2> re;  // kMatches only; null if the pattern is invalid
  };
  // The parse result, for tests: alternatives (OR) of selector lists (AND).
  const std::vector<std::vector<Selector>>& alternatives() const { return alternatives_; }

 private:
  bool match_all_ = true;
  std::vector<std::vector<Selector>> alternatives_;
};

// The value of `fieldpath` on a snapshot (containerd storage adaptSnapshot).
std::optional<std::string> SnapshotField(const Info& info,
                                         const std::vector<std::string>& fieldpath);

}  // namespace zsnap::overlay
