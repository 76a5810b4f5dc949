#include "plugin/bench_command.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "plugin/bench_chart.h"
#include "plugin/bench_report.h"
#include "plugin/cli.h"

namespace zsnap::plugin {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> SplitList(const std::string& text) {
  return absl::StrSplit(text, absl::ByAnyChar(", "), absl::SkipEmpty());
}

absl::Status CheckList(const std::vector<std::string>& list, absl::string_view flag,
                       const std::vector<std::string>& allowed) {
  if (list.empty()) return absl::InvalidArgumentError(absl::StrCat("--", flag, " is empty"));
  for (const std::string& item : list) {
    if (std::find(allowed.begin(), allowed.end(), item) == allowed.end()) {
      return absl::InvalidArgumentError(absl::StrCat("--", flag, ": unknown '", item, "' (want ",
                                                     absl::StrJoin(allowed, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::Status WriteFile(const std::string& path, absl::string_view text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << text;
    if (!f.flush()) return absl::InternalError(absl::StrCat("cannot write ", tmp));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return absl::InternalError(absl::StrCat("rename ", tmp, ": ", ec.message()));
  return absl::OkStatus();
}

// Runs argv (argv[0] found on PATH) with inherited stdio; its exit code, or 128+signal.
absl::StatusOr<int> RunChild(const std::vector<std::string>& argv) {
  std::vector<char*> cargv;
  for (const std::string& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", strerror(errno)));
  if (pid == 0) {
    execvp(cargv[0], cargv.data());
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return absl::InternalError(absl::StrCat("waitpid: ", strerror(errno)));
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

std::string SelfExe() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : p.string();
}

}  // namespace

absl::StatusOr<BenchOptions> ParseBenchOptions(const std::map<std::string, std::string>& values) {
  BenchOptions o;
  auto get = [&values](const std::string& k) -> const std::string* {
    auto it = values.find(k);
    return it == values.end() ? nullptr : &it->second;
  };
  if (const std::string* v = get("images")) {
    o.images = SplitList(*v);
    if (o.images.empty()) return absl::InvalidArgumentError("--images is empty");
    static const std::regex kName("[a-z0-9][a-z0-9-]*");
    for (const std::string& image : o.images) {
      if (!std::regex_match(image, kName)) {
        return absl::InvalidArgumentError(
            absl::StrCat("--images: '", image, "' is not a benchmark image name ([a-z0-9-]+)"));
      }
    }
  }
  if (const std::string* v = get("codecs")) {
    o.codecs = SplitList(*v);
    if (absl::Status s = CheckList(o.codecs, "codecs", {"gzip", "zstd", "zstd19"}); !s.ok()) {
      return s;
    }
  }
  if (const std::string* v = get("modes")) {
    o.modes = SplitList(*v);
    if (absl::Status s = CheckList(o.modes, "modes", {"native", "zsnap"}); !s.ok()) return s;
  }
  if (const std::string* v = get("reps")) {
    if (!absl::SimpleAtoi(*v, &o.reps) || o.reps < 1 || o.reps > 100) {
      return absl::InvalidArgumentError(
          absl::StrCat("--reps wants an integer in 1..100, got '", *v, "'"));
    }
  }
  if (const std::string* v = get("rate")) {
    static const std::regex kRate("[0-9]+(\\.[0-9]+)?[kmg]?bit");
    if (!std::regex_match(*v, kRate)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--rate wants a tc rate like 1gbit or 400mbit, got '", *v, "'"));
    }
    o.rate = *v;
  }
  if (const std::string* v = get("out")) o.out = *v;
  if (const std::string* v = get("cache")) o.cache = *v;
  if (const std::string* v = get("img-dir")) o.img_dir = *v;
  return o;
}

std::vector<std::string> ColdStartArgv(const BenchOptions& o, const std::string& script,
                                       const std::string& zsnap_binary) {
  std::vector<std::string> argv = {script,
                                   "--zsnap",
                                   zsnap_binary,
                                   "--out",
                                   o.out,
                                   "--reps",
                                   absl::StrCat(o.reps),
                                   "--images",
                                   absl::StrJoin(o.images, " "),
                                   "--codecs",
                                   absl::StrJoin(o.codecs, " "),
                                   "--modes",
                                   absl::StrJoin(o.modes, " "),
                                   "--cache",
                                   o.cache};
  if (!o.rate.empty()) argv.insert(argv.end(), {"--rate", o.rate});
  if (!o.img_dir.empty()) argv.insert(argv.end(), {"--img-dir", o.img_dir});
  return argv;
}

absl::StatusOr<std::string> FindBenchDir(const std::string& exe_path) {
  std::vector<std::string> tried;
  auto has_scripts = [&tried](const fs::path& dir) {
    tried.push_back(dir.string());
    std::error_code ec;
    return fs::is_regular_file(dir / "cold_start.sh", ec) &&
           fs::is_regular_file(dir / "images.sh", ec);
  };
  if (const char* env = std::getenv(kBenchScriptDirEnv); env != nullptr && *env != '\0') {
    if (has_scripts(env)) return std::string(env);
  }
  if (!exe_path.empty()) {
    // <prefix>/bin/zsnap -> <prefix>/share/zsnap/bench (lexically: bin/ need not exist in tests).
    const fs::path installed =
        fs::path(exe_path).parent_path().parent_path() / "share" / "zsnap" / "bench";
    if (has_scripts(installed)) return installed.string();
  }
#ifdef ZSNAP_SOURCE_DIR
  if (has_scripts(fs::path(ZSNAP_SOURCE_DIR) / "bench")) {
    return (fs::path(ZSNAP_SOURCE_DIR) / "bench").string();
  }
#endif
  return absl::NotFoundError(
      absl::StrCat("no benchmark scripts (cold_start.sh, images.sh); looked in ",
                   absl::StrJoin(tried, ", "), "; set ", kBenchScriptDirEnv));
}

absl::Status WriteBenchReport(const std::string& dir, std::ostream& out) {
  absl::StatusOr<std::string> jsonl = ReadFile(dir + "/runs.jsonl");
  if (!jsonl.ok()) return jsonl.status();
  absl::StatusOr<std::vector<BenchRun>> runs = ParseRuns(*jsonl);
  if (!runs.ok()) return runs.status();
  if (runs->empty())
    return absl::NotFoundError(absl::StrCat("no runs recorded in ", dir, "/runs.jsonl"));
  std::map<std::string, StageTimes> stages;
  for (const BenchRun& r : *runs) {
    if (r.zsnap_log.empty()) continue;
    absl::StatusOr<std::string> log = ReadFile(dir + "/" + r.zsnap_log);
    if (!log.ok()) continue;  // a run that failed before zsnap logged anything
    if (std::optional<StageTimes> t = ParseStageTimes(*log)) stages[r.zsnap_log] = *t;
  }
  const std::vector<BenchComparison> comparisons = Compare(*runs, stages);
  std::string machine;
  if (absl::StatusOr<std::string> env = ReadFile(dir + "/env.txt"); env.ok()) {
    // "machine: ..." and the load at the start, the two facts that qualify every figure.
    machine = env->substr(0, env->find('\n'));
    if (size_t at = env->find("\nstart: "); at != std::string::npos) {
      const size_t end = env->find('\n', at + 1);
      absl::StrAppend(&machine, "; ",
                      env->substr(at + 1, end == std::string::npos ? end : end - at - 1));
    }
  }
  const std::string table = FormatTable(comparisons);
  if (absl::Status s = WriteFile(dir + "/results.csv", ToCsv(*runs)); !s.ok()) return s;
  if (absl::Status s = WriteFile(dir + "/results.json", ToJson(*runs, comparisons).dump(2) + "\n");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = WriteFile(dir + "/results.md", table); !s.ok()) return s;
  if (absl::Status s = WriteFile(
          dir + "/results.svg",
          RenderSvg(comparisons, "Cold start: CRI pull + container to ready, zsnap vs containerd",
                    machine));
      !s.ok()) {
    return s;
  }
  out << table << "\nwrote " << dir << "/results.{csv,json,md,svg}\n";
  return absl::OkStatus();
}

int RunBench(const std::map<std::string, std::string>& values, std::ostream& out,
             std::ostream& err) {
  absl::StatusOr<BenchOptions> options = ParseBenchOptions(values);
  if (!options.ok()) {
    err << "zsnap bench: " << options.status().message() << "\nRun 'zsnap help bench' for usage.\n";
    return kExitUsage;
  }
  const std::string self = SelfExe();
  absl::StatusOr<std::string> dir = FindBenchDir(self);
  if (!dir.ok()) {
    err << "zsnap bench: " << dir.status().message() << "\n";
    return kExitFailure;
  }
  if (options->out.empty()) {
    options->out =
        absl::StrCat(options->cache, "/cold-start/",
                     absl::FormatTime("%Y%m%d-%H%M%S", absl::Now(), absl::UTCTimeZone()));
  }
  std::error_code ec;
  fs::create_directories(options->out, ec);
  if (ec) {
    err << "zsnap bench: cannot create " << options->out << ": " << ec.message() << "\n";
    return kExitFailure;
  }
  std::vector<std::string> argv = {"bash"};
  for (std::string& a : ColdStartArgv(*options, *dir + "/cold_start.sh", self)) {
    argv.push_back(std::move(a));
  }
  out.flush();
  absl::StatusOr<int> rc = RunChild(argv);
  if (!rc.ok() || *rc != 0) {
    err << "zsnap bench: " << argv[1] << " failed ("
        << (rc.ok() ? absl::StrCat("exit ", *rc) : std::string(rc.status().message())) << ")\n";
    // Whatever finished is still worth a report.
  }
  if (absl::Status s = WriteBenchReport(options->out, out); !s.ok()) {
    err << "zsnap bench: " << s.message() << "\n";
    return kExitFailure;
  }
  return rc.ok() && *rc == 0 ? kExitOk : kExitFailure;
}

int RunBenchImages(const std::map<std::string, std::string>& values, std::ostream& out,
                   std::ostream& err) {
  absl::StatusOr<std::string> dir = FindBenchDir(SelfExe());
  if (!dir.ok()) {
    err << "zsnap bench images: " << dir.status().message() << "\n";
    return kExitFailure;
  }
  auto it = values.find("cache");
  const std::string cache = it == values.end() ? kDefaultBenchCache : it->second;
  if (setenv("ZSNAP_BENCH_CACHE", cache.c_str(), 1) != 0) return kExitFailure;
  std::vector<std::string> argv = {"bash", *dir + "/images.sh"};
  if (auto p = values.find("push"); p != values.end())
    argv.insert(argv.end(), {"--push", p->second});
  out.flush();
  absl::StatusOr<int> rc = RunChild(argv);
  if (!rc.ok()) {
    err << "zsnap bench images: " << rc.status().message() << "\n";
    return kExitFailure;
  }
  return *rc == 0 ? kExitOk : kExitFailure;
}

int RunBenchReport(const std::string& dir, std::ostream& out, std::ostream& err) {
  if (absl::Status s = WriteBenchReport(dir, out); !s.ok()) {
    err << "zsnap bench report: " << s.message() << "\n";
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace zsnap::plugin
