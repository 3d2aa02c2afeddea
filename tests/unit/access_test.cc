// Users, token hashes and service::Access without a server: the users file's
// parsing and refusals, token lookups and their caches, rates across a
// SIGHUP, the queue quota under parallel creates, and the audit cap.
#include "broker/service/access.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include "broker/security/token_hash.h"
#include "broker/security/users.h"
#include "temp_dir.h"

namespace basin {
namespace {

using security::Permission;
using security::UserTable;
using service::Access;
using service::AccessOptions;
using service::Caller;

std::shared_ptr<const UserTable> Load(const std::string& text, std::string* error) {
  testing::TempDir dir;
  const std::string path = dir.Sub("users.toml");
  std::ofstream(path) << text;
  return UserTable::Load(path, error);
}

std::string User(const std::string& name, const std::string& token, const std::string& extra) {
  return "[[users]]\nname = \"" + name + "\"\ntokens = [\"" + security::HashToken(token) + "\"]\n" +
         extra + "\n";
}

TEST(TokenHashTest, HashesVerifyAndNameTheirToken) {
  const std::string token = security::NewToken();
  EXPECT_EQ(token.size(), 43u);
  security::TokenHash h;
  ASSERT_EQ(security::ParseTokenHash(security::HashToken(token), &h), "");
  EXPECT_TRUE(security::TokenMatches(token, h));
  EXPECT_FALSE(security::TokenMatches(token + "x", h));
  EXPECT_EQ(h.id, security::TokenId(token));
  // Two hashes of one token differ (the salt), and both verify.
  EXPECT_NE(security::HashToken(token), security::HashToken(token));
  for (const char* bad : {"", "sha256:", "md5:00:00:00", "sha256:zz:00:", "sha256:00000000:ab:cd",
                          "sha256:0000:abcd:"}) {
    EXPECT_NE(security::ParseTokenHash(bad, &h), "") << bad;
  }
  EXPECT_FALSE(security::ValidTokenText("has space"));
  EXPECT_FALSE(security::ValidTokenText(""));
  EXPECT_FALSE(security::ValidTokenText(std::string(4097, 'a')));
  EXPECT_TRUE(security::ValidTokenText("Abc-123_~!"));
}

TEST(UsersFileTest, ParsesUsersAndRefusesWhatIsWrong) {
  std::string error;
  auto table =
      Load(User("a", "token-a-0123456789", "read = \"jobs|news\\\\..*\"\ntags = [\"admin\"]") +
               "[[users]]\nname = \"b\"\ncertificates = [\"b.example\"]\nwrite = \".*\"\n",
           &error);
  ASSERT_NE(table, nullptr) << error;
  ASSERT_EQ(table->size(), 2u);
  const auto a = table->FindByToken("token-a-0123456789");
  ASSERT_NE(a, nullptr);
  EXPECT_TRUE(a->admin);
  EXPECT_TRUE(a->May(Permission::kRead, "jobs"));
  EXPECT_TRUE(a->May(Permission::kRead, "news.eu"));
  EXPECT_FALSE(a->May(Permission::kRead, "jobs2"));  // the whole name must match
  EXPECT_FALSE(a->May(Permission::kWrite, "jobs"));
  EXPECT_EQ(table->FindByToken("token-b"), nullptr);
  EXPECT_EQ(table->FindByCertificate({"x", "b.example"})->name, "b");

  for (const std::string& bad :
       {std::string("[[users]]\nname = \"x\"\n"),                                   // no credential
        User("x", "t-0123456789abcdef", "colour = \"red\""),                        // unknown key
        User("x", "t-0123456789abcdef", "read = \"(\""),                            // bad pattern
        User("x", "t-0123456789abcdef", "tags = [\"root\"]"),                       // unknown tag
        User("x", "t-0123456789abcdef", "rate = -1"),                               // bad rate
        User("x", "t-0123456789abcdef", "") + User("x", "u-0123456789abcdef", ""),  // twice
        std::string("[[users]]\nname = \"x\"\ntokens = [\"plain-token\"]\n"),       // not a hash
        std::string("users = 3\n"), std::string("[[users]]\nname = 5\n"),
        std::string("# no users\n")}) {
    error.clear();
    EXPECT_EQ(Load(bad, &error), nullptr) << bad;
    EXPECT_NE(error.find("users.toml"), std::string::npos) << error;
  }
}

class AccessTest : public ::testing::Test {
 protected:
  std::shared_ptr<const UserTable> Table(const std::string& text) {
    std::string error;
    auto t = Load(text, &error);
    EXPECT_NE(t, nullptr) << error;
    return t;
  }
  AccessOptions Options() {
    AccessOptions o;
    o.audit = [this](const std::string& line) {
      std::lock_guard lock(mu_);
      lines_.push_back(line);
    };
    return o;
  }
  std::optional<core::Error> Http(Access& access, const std::string& token, Permission p,
                                  const std::string& object, Caller* caller = nullptr) {
    return access.CheckHttp(token.empty() ? "" : "Bearer " + token, "ipv4:127.0.0.1:1", "test", p,
                            object, caller);
  }
  std::mutex mu_;
  std::vector<std::string> lines_;
};

TEST_F(AccessTest, WithoutUsersEverythingPasses) {
  Access access(nullptr, Options());
  EXPECT_FALSE(access.enabled());
  EXPECT_EQ(Http(access, "", Permission::kConfigure, "x"), std::nullopt);
}

TEST_F(AccessTest, TokensAreCheckedAndRefusalsAudited) {
  Access access(Table(User("app", "app-token-0123456789", "write = \"jobs\"")), Options());
  ASSERT_TRUE(access.enabled());
  EXPECT_EQ(Http(access, "app-token-0123456789", Permission::kWrite, "jobs"), std::nullopt);
  // Cached now; the same answer again.
  EXPECT_EQ(Http(access, "app-token-0123456789", Permission::kWrite, "jobs"), std::nullopt);
  EXPECT_EQ(Http(access, "", Permission::kWrite, "jobs")->code, core::Errc::kUnauthenticated);
  EXPECT_EQ(Http(access, "wrong", Permission::kWrite, "jobs")->code, core::Errc::kUnauthenticated);
  EXPECT_EQ(access.CheckHttp("Basic abc", "p", "m", Permission::kWrite, "jobs")->code,
            core::Errc::kUnauthenticated);
  const auto denied = Http(access, "app-token-0123456789", Permission::kRead, "jobs\"\n");
  ASSERT_TRUE(denied.has_value());
  EXPECT_EQ(denied->code, core::Errc::kPermissionDenied);
  EXPECT_EQ(access.counters().unauthenticated, 3u);
  EXPECT_EQ(access.counters().permission_denied, 1u);
  std::lock_guard lock(mu_);
  ASSERT_EQ(lines_.size(), 4u);
  // The object is escaped: one line, valid JSON.
  EXPECT_NE(lines_.back().find(R"("object":"jobs\"\u000a")"), std::string::npos) << lines_.back();
}

TEST_F(AccessTest, ManyUnknownTokensCostNoMemoryAndNoLeak) {
  Access access(Table(User("app", "app-token-0123456789", "read = \".*\"")), Options());
  for (int i = 0; i < 20'000; ++i) {
    ASSERT_TRUE(Http(access, "made-up-" + std::to_string(i), Permission::kRead, "x").has_value());
  }
  // Refusals beyond 100 a second are counted, not written.
  std::lock_guard lock(mu_);
  EXPECT_LE(lines_.size(), 200u);
  EXPECT_EQ(access.counters().unauthenticated, 20'000u);
}

TEST_F(AccessTest, TheRateHoldsAcrossASighupAndARemovedUserIsRefused) {
  auto table = Table(User("slow", "slow-token-0123456789", "write = \".*\"\nrate = 3"));
  Access access(table, Options());
  Caller caller;
  ASSERT_EQ(Http(access, "slow-token-0123456789", Permission::kWrite, "q", &caller), std::nullopt);
  EXPECT_EQ(access.Spend(caller, nullptr, "Put", "q", 3), std::nullopt);
  EXPECT_EQ(access.Spend(caller, nullptr, "Put", "q", 1)->code, core::Errc::kRateLimited);
  // The same users again (logrotate's SIGHUP): no fresh burst.
  access.Replace(table);
  EXPECT_EQ(access.Spend(caller, nullptr, "Put", "q", 1)->code, core::Errc::kRateLimited);
  // A user removed by a reload is refused from then on (streams: Recheck,
  // tested end to end in tests/security/test_permissions.py).
  access.Replace(Table(User("other", "other-token-0123456789", "write = \".*\"")));
  EXPECT_EQ(Http(access, "slow-token-0123456789", Permission::kWrite, "q")->code,
            core::Errc::kUnauthenticated);
}

TEST_F(AccessTest, ParallelCreatesStayWithinTheQuota) {
  Access access(Table(User("q", "q-token-0123456789", "configure = \".*\"\nmax_queues = 5")),
                Options());
  Caller caller;
  ASSERT_EQ(Http(access, "q-token-0123456789", Permission::kConfigure, "x", &caller), std::nullopt);
  std::atomic<int> granted{0};
  std::mutex names_mu;
  std::vector<std::string> names;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        if (!access.ReserveQueue(caller, [](const std::string&) { return true; })) {
          ++granted;
          const std::string name = "q" + std::to_string(t) + "-" + std::to_string(i);
          access.Settle(caller, name, true);
          std::lock_guard lock(names_mu);
          names.push_back(name);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(granted.load(), 5);
  // A create that made nothing gives its slot back; a delete frees one.
  access.Deleted(names.front());
  access.Deleted("never-made");
  ASSERT_EQ(access.ReserveQueue(caller, [](const std::string&) { return true; }), std::nullopt);
  access.Settle(caller, "existed", false);
  ASSERT_EQ(access.ReserveQueue(caller, [](const std::string&) { return true; }), std::nullopt);
  access.Settle(caller, "made", true);
  EXPECT_EQ(access.ReserveQueue(caller, [](const std::string&) { return true; })->code,
            core::Errc::kTooManyQueues);
  // Queues gone behind its back are noticed at the quota.
  EXPECT_EQ(access.ReserveQueue(caller, [](const std::string& q) { return q != "made"; }),
            std::nullopt);
}

}  // namespace
}  // namespace basin
