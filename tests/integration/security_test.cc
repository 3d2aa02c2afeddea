// The C++ SDK against a secured basind: TLS, mutual TLS, bearer tokens, and
// the typed exceptions of refusals (docs/security.md). Certificates are made
// by the openssl command in a directory of the test's own.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "basin/client.h"
#include "basin/consumer.h"
#include "basin/producer.h"
#include "integration/broker_process.h"

namespace basin {
namespace {

namespace fs = std::filesystem;
using testing::BrokerProcess;

int Run(const std::string& command) { return std::system((command + " >/dev/null 2>&1").c_str()); }

class Certificates {
 public:
  Certificates() {
    char tmpl[] = "/tmp/basin-sec-XXXXXX";
    dir_ = mkdtemp(tmpl);
    const std::string key = "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1";
    ok_ = Run("cd " + dir_ + " && " + key + " -out ca.key && " +
              "openssl req -x509 -new -key ca.key -out ca.pem -days 2 -subj /CN=ca && " + key +
              " -out server.key && openssl req -new -key server.key -out server.csr -subj "
              "/CN=server && printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san && "
              "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out "
              "server.pem -days 2 -extfile san && " +
              key +
              " -out client.key && openssl req -new -key client.key -out client.csr -subj "
              "/CN=alice && openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key "
              "-CAcreateserial -out client.pem -days 2") == 0;
  }
  ~Certificates() { fs::remove_all(dir_); }
  bool ok() const { return ok_; }
  std::string operator[](const std::string& name) const { return dir_ + "/" + name; }

 private:
  std::string dir_;
  bool ok_ = false;
};

std::string HashToken(const std::string& token) {
  char tmpl[] = "/tmp/basin-token-XXXXXX";
  const int fd = mkstemp(tmpl);
  close(fd);
  const std::string out = tmpl;
  const std::string command =
      "echo '" + token + "' | " + BASIN_BASIND_PATH + " --hash-token > " + out + " 2>/dev/null";
  EXPECT_EQ(std::system(command.c_str()), 0);
  std::ifstream in(out);
  std::string hash;
  std::getline(in, hash);
  fs::remove(out);
  return hash;
}

std::string UsersFile(const std::string& dir) {
  const std::string path = dir + "/users.toml";
  std::ofstream f(path);
  f << "[[users]]\nname = \"app\"\ntokens = [\"" << HashToken("app-token-0123456789abcdef")
    << "\"]\nconfigure = \"jobs.*\"\nwrite = \"jobs.*\"\nread = \"jobs.*\"\n"
    << "[[users]]\nname = \"alice\"\ncertificates = [\"alice\"]\nread = \"jobs\"\n"
    << "[[users]]\nname = \"slow\"\ntokens = [\"" << HashToken("slow-token-0123456789abcdef")
    << "\"]\nwrite = \".*\"\nconfigure = \".*\"\nrate = 2\n";
  return path;
}

TEST(SecurityTest, TlsTokenAndStreamsThroughTheSdk) {
  Certificates certs;
  ASSERT_TRUE(certs.ok()) << "openssl failed";
  BrokerProcess broker({"--tls-cert", certs["server.pem"], "--tls-key", certs["server.key"],
                        "--users", UsersFile(certs["."])});
  ClientOptions options;
  options.tls.ca_file = certs["ca.pem"];
  options.token = "app-token-0123456789abcdef";
  Client client(broker.address(), options);
  auto q = client.queue("jobs", {.max_size = 10});
  q.put("one");
  EXPECT_EQ(q.get().payload(), "one");
  // Streams carry the token too.
  {
    Producer producer(client, "jobs");
    auto id = producer.send("streamed");
    producer.flush();
    EXPECT_GT(id.get(), 0u);
  }
  Consumer consumer(client, "jobs", {.prefetch = 4});
  auto m = consumer.next();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->payload(), "streamed");
  consumer.ack(*m);
  consumer.close();

  EXPECT_THROW(client.queue("other", {}), PermissionDenied);
  ClientOptions wrong = options;
  wrong.token = "not-a-token-of-anyone";
  EXPECT_THROW(Client(broker.address(), wrong).list_queues(), Unauthenticated);
  ClientOptions plaintext;
  plaintext.token = options.token;
  EXPECT_THROW(Client(broker.address(), plaintext).list_queues(), Unavailable);
  ClientOptions no_token;
  no_token.tls = options.tls;
  EXPECT_THROW(Client(broker.address(), no_token).list_queues(), Unauthenticated);
}

TEST(SecurityTest, ClientCertificatesNameUsersAndRatesLimitWrites) {
  Certificates certs;
  ASSERT_TRUE(certs.ok()) << "openssl failed";
  BrokerProcess broker({"--tls-cert", certs["server.pem"], "--tls-key", certs["server.key"],
                        "--tls-client-ca", certs["ca.pem"], "--tls-client-auth", "request",
                        "--users", UsersFile(certs["."])});
  ClientOptions app;
  app.tls.ca_file = certs["ca.pem"];
  app.token = "app-token-0123456789abcdef";
  Client(broker.address(), app).queue("jobs", {}).put("for alice");

  ClientOptions alice;
  alice.tls.ca_file = certs["ca.pem"];
  alice.tls.cert_file = certs["client.pem"];
  alice.tls.key_file = certs["client.key"];
  Client as_alice(broker.address(), alice);
  EXPECT_EQ(as_alice.queue("jobs").get().payload(), "for alice");
  EXPECT_THROW(as_alice.queue("jobs").put("no"), PermissionDenied);

  ClientOptions slow = app;
  slow.token = "slow-token-0123456789abcdef";
  auto limited = Client(broker.address(), slow).queue("capped", {});
  int refused = 0;
  for (int i = 0; i < 10; ++i) {
    try {
      limited.put("x");
    } catch (const RateLimited& e) {
      EXPECT_EQ(e.reason(), "RATE_LIMITED");
      ++refused;
    }
  }
  // A bucket of 2 (a second of rate 2) and ten puts in far less than 4 s.
  EXPECT_GE(refused, 4);
}

TEST(SecurityTest, UnreadableTlsFilesAndBadTokensFailAtConstruction) {
  ClientOptions missing;
  missing.tls.ca_file = "/nonexistent/ca.pem";
  EXPECT_THROW(Client("127.0.0.1:1", missing), Error);
  ClientOptions spaced;
  spaced.token = "has a space";
  EXPECT_THROW(Client("127.0.0.1:1", spaced), Error);
  ClientOptions half;
  half.tls.cert_file = "/tmp/x.pem";
  EXPECT_THROW(Client("127.0.0.1:1", half), Error);
}

}  // namespace
}  // namespace basin
