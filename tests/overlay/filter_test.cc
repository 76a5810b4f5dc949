#include "overlay/filter.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace zsnap::overlay {
namespace {

Info MakeInfo(std::string name, Kind kind, std::string parent, Labels labels) {
  Info info;
  info.name = std::move(name);
  info.kind = kind;
  info.parent = std::move(parent);
  info.labels = std::move(labels);
  return info;
}

bool Matches(const std::vector<std::string>& filters, const Info& info) {
  absl::StatusOr<Filter> f = Filter::ParseAll(filters);
  EXPECT_TRUE(f.ok()) << f.status();
  return f.ok() && f->Match(info);
}

absl::StatusCode ParseCode(const std::string& filter) {
  return Filter::ParseAll({filter}).status().code();
}

const Info kActive =
    MakeInfo("a1", Kind::kActive, "p", {{"l", "1"}, {"containerd.io/gc.root", "x"}});
const Info kCommitted = MakeInfo("c1", Kind::kCommitted, "", {});
const Info kView = MakeInfo("v1", Kind::kView, "p", {{"l", "2"}, {"a.b", "dotted"}});

TEST(FilterParse, Selectors) {
  absl::StatusOr<Filter> f = Filter::ParseAll({R"(name==a,labels."x/y"!=z,kind~=^act,parent)"});
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ(f->alternatives().size(), 1u);
  const auto& sels = f->alternatives()[0];
  ASSERT_EQ(sels.size(), 4u);
  EXPECT_EQ(sels[0].fieldpath, (std::vector<std::string>{"name"}));
  EXPECT_EQ(sels[0].op, Filter::Op::kEqual);
  EXPECT_EQ(sels[0].value, "a");
  EXPECT_EQ(sels[1].fieldpath, (std::vector<std::string>{"labels", "x/y"}));
  EXPECT_EQ(sels[1].op, Filter::Op::kNotEqual);
  EXPECT_EQ(sels[2].op, Filter::Op::kMatches);
  EXPECT_NE(sels[2].re, nullptr);
  EXPECT_EQ(sels[3].op, Filter::Op::kPresent);
}

TEST(FilterParse, ValuesAndQuoting) {
  absl::StatusOr<Filter> f = Filter::ParseAll(
      {R"(name==a.b:c/d@sha256:0f, name=="x,y \"q\"\t\x41\u00e9\101", name ~= /a\/b/, name~=|a\|b|)"});
  ASSERT_TRUE(f.ok()) << f.status();
  const auto& sels = f->alternatives()[0];
  ASSERT_EQ(sels.size(), 4u);
  EXPECT_EQ(sels[0].value, "a.b:c/d@sha256:0f");
  EXPECT_EQ(sels[1].value,
            "x,y \"q\"\tA\xc3\xa9"
            "A");
  EXPECT_EQ(sels[2].value, "a/b");
  EXPECT_EQ(sels[3].value, "a|b");
}

TEST(FilterParse, EmptyStringsAndNoStringsMatchEverything) {
  EXPECT_TRUE(Matches({}, kActive));
  EXPECT_TRUE(Matches({""}, kActive));
  EXPECT_TRUE(Matches({"name==nope", ""}, kActive));
}

TEST(FilterParse, Errors) {
  for (const std::string& bad : std::vector<std::string>{
           "name==",                      // missing value
           "name=a",                      // no such operator
           "name===a",                    // operator run
           "name>a",                      // not an operator
           "==a",                         // missing field
           ",name",                       // leading separator
           "name,",                       // trailing separator
           "name==a b",                   // stray input after a value
           "name==a ",                    // trailing white space is unexpected input
           "labels.",                     // dangling field separator
           "name==\"abc",                 // unterminated quote
           "name==\"a\\qb\"",             // bad escape
           "name==\"\\x4\"",              // short numeric escape
           "name==/abc/",                 // alternative quotes only with ~=
           "labels./x/==1",               // alternative quotes never in a field path
           std::string("name==a\0b", 9),  // NUL
           "name==\xff",                  // invalid UTF-8
       }) {
    EXPECT_EQ(ParseCode(bad), absl::StatusCode::kInvalidArgument) << bad;
  }
  const absl::Status s = Filter::ParseAll({"name==a", "kind=="}).status();
  EXPECT_NE(s.message().find("parse error"), absl::string_view::npos) << s;
}

TEST(FilterParse, WhiteSpaceBetweenTokens) {
  EXPECT_TRUE(Matches({"name == a1,kind== active"}, kActive));
  EXPECT_TRUE(Matches({"  name==a1"}, kActive));
}

TEST(FilterMatch, Operators) {
  EXPECT_TRUE(Matches({"name==a1"}, kActive));
  EXPECT_FALSE(Matches({"name==a"}, kActive));
  EXPECT_TRUE(Matches({"name!=a"}, kActive));
  EXPECT_FALSE(Matches({"name!=a1"}, kActive));
  EXPECT_TRUE(Matches({"name~=^a"}, kActive));  // unanchored RE2 search
  EXPECT_TRUE(Matches({"name~=1"}, kActive));
  EXPECT_FALSE(Matches({"name~=^1"}, kActive));
  EXPECT_TRUE(Matches({"name~=/^a[0-9]$/"}, kActive));
}

TEST(FilterMatch, Kinds) {
  EXPECT_TRUE(Matches({"kind==active"}, kActive));
  EXPECT_TRUE(Matches({"kind==committed"}, kCommitted));
  EXPECT_TRUE(Matches({"kind==view"}, kView));
  EXPECT_FALSE(Matches({"kind==view"}, kActive));
}

TEST(FilterMatch, ParentIsAlwaysPresent) {
  EXPECT_TRUE(Matches({"parent"}, kCommitted));
  EXPECT_TRUE(Matches({"parent==p"}, kActive));
  EXPECT_FALSE(Matches({"parent!=\"\""}, kCommitted));
  EXPECT_TRUE(Matches({"parent!=\"\""}, kActive));
  EXPECT_TRUE(Matches({"parent==\"\""}, kCommitted));
}

TEST(FilterMatch, Labels) {
  EXPECT_TRUE(Matches({"labels.l"}, kActive));
  EXPECT_FALSE(Matches({"labels.l"}, kCommitted));
  EXPECT_FALSE(Matches({"labels.nope"}, kActive));
  EXPECT_TRUE(Matches({"labels.l==2"}, kView));
  EXPECT_FALSE(Matches({"labels.l==2"}, kActive));
  EXPECT_TRUE(Matches({R"(labels."containerd.io/gc.root")"}, kActive));
  EXPECT_TRUE(Matches({R"(labels."containerd.io/gc.root"==x)"}, kActive));
  // A dotted key can be spelled quoted or as several fields.
  EXPECT_TRUE(Matches({R"(labels."a.b"==dotted)"}, kView));
  EXPECT_TRUE(Matches({"labels.a.b==dotted"}, kView));
  // != on an absent label compares against "".
  EXPECT_TRUE(Matches({"labels.nope!=x"}, kActive));
  EXPECT_FALSE(Matches({"labels.nope!=\"\""}, kActive));
  // Unknown fields are never present.
  EXPECT_FALSE(Matches({"size"}, kActive));
}

TEST(FilterMatch, CommaIsAndStringsAreOr) {
  EXPECT_TRUE(Matches({"kind==active,labels.l==1"}, kActive));
  EXPECT_FALSE(Matches({"kind==active,labels.l==2"}, kActive));
  EXPECT_TRUE(Matches({"name==c1", "name==a1"}, kActive));
  EXPECT_TRUE(Matches({"name==c1", "name==a1"}, kCommitted));
  EXPECT_FALSE(Matches({"name==c1", "name==a1"}, kView));
}

TEST(FilterMatch, InvalidRegexpMatchesNothing) {
  absl::StatusOr<Filter> f = Filter::ParseAll({"name~=\"(\""});
  ASSERT_TRUE(f.ok()) << f.status();  // as in containerd: not a parse error
  EXPECT_FALSE(f->Match(kActive));
}

TEST(FilterMatch, CustomLookup) {
  absl::StatusOr<Filter> f = Filter::ParseAll({"a.b==c"});
  ASSERT_TRUE(f.ok());
  EXPECT_TRUE(f->Match([](const std::vector<std::string>& path) -> std::optional<std::string> {
    if (path == std::vector<std::string>{"a", "b"}) return "c";
    return std::nullopt;
  }));
}

}  // namespace
}  // namespace zsnap::overlay
