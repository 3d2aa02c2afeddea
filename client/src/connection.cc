#include "connection.h"

#include <fstream>
#include <map>
#include <sstream>
#include <string_view>

namespace basin::detail {
namespace {

// Slack for the broker to answer after the wait it was asked for, so a timed
// call ends with the broker's typed answer rather than a transport deadline.
constexpr std::chrono::seconds kAnswerSlack{10};

template <typename E>
[[noreturn]] void Raise(const grpc::Status& s, std::string reason) {
  throw E(static_cast<int>(s.error_code()), std::move(reason), s.error_message());
}

std::string ReadPem(const std::string& path, const char* what) {
  if (path.empty()) return "";
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw Error(static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT), "",
                std::string("cannot read the TLS ") + what + " file " + path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::shared_ptr<grpc::ChannelCredentials> Credentials(const TlsOptions& tls,
                                                      grpc::ChannelArguments* args) {
  const bool enabled = tls.enabled || !tls.ca_file.empty() || !tls.cert_file.empty() ||
                       !tls.key_file.empty() || !tls.server_name.empty();
  if (!enabled) return grpc::InsecureChannelCredentials();
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    throw Error(static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT), "",
                "a TLS client certificate needs its key, and a key its certificate");
  }
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ReadPem(tls.ca_file, "CA");
  ssl.pem_cert_chain = ReadPem(tls.cert_file, "certificate");
  ssl.pem_private_key = ReadPem(tls.key_file, "key");
  if (!tls.server_name.empty()) args->SetSslTargetNameOverride(tls.server_name);
  return grpc::SslCredentials(ssl);
}

}  // namespace

Connection::Connection(const std::string& address, const ClientOptions& options)
    : options_(options) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(options.keepalive_time.count()));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, static_cast<int>(options.keepalive_timeout.count()));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // A restarted broker is back within a second or two: retry the connection
  // soon and often rather than on gRPC's default backoff (1 s growing to 2 min).
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  // Each Client owns its connection. gRPC would otherwise share one between
  // every channel to the same address in the process, and a new Client made
  // after the broker restarted could inherit a socket the old broker left
  // dead, failing its first call.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // No gRPC-level retries: the SDK reconnects its streams itself. A stream
  // opened as the broker shut down was seen (gRPC Python, about 1 restart in
  // 20 under load) to end with UNAVAILABLE yet never complete its pending
  // read, so the reader waited forever; gRPC 1.51's retry layer, which
  // replays such streams, is the suspect (docs/api.md, "Reconnects (SDK)").
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  auto credentials = Credentials(options.tls, &args);
  for (const char ch : options.token) {
    // HTTP/2 header values: anything else would fail every call, later and vaguely.
    if (ch < 0x21 || ch > 0x7e) {
      throw Error(static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT), "",
                  "a token is printable ASCII without spaces");
    }
  }
  if (!options.token.empty()) authorization_ = "Bearer " + options.token;
  channel_ = grpc::CreateCustomChannel(address, credentials, args);
  stub_ = v1::QueueService::NewStub(channel_);
  topic_stub_ = v1::TopicService::NewStub(channel_);
  server_stub_ = v1::ServerService::NewStub(channel_);
}

void SetCallDeadline(grpc::ClientContext* ctx, std::chrono::milliseconds wait) {
  ctx->set_deadline(std::chrono::system_clock::now() + wait + kAnswerSlack);
}

bool Broken(const grpc::Status& status, const grpc::ClientContext& ctx) {
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      return true;
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::UNKNOWN:
      return !ctx.GetServerTrailingMetadata().contains("basin-error-reason");
    default:
      return false;
  }
}

void Throw(const grpc::Status& status, const grpc::ClientContext& ctx) {
  std::string reason;
  const auto& trailers = ctx.GetServerTrailingMetadata();
  if (auto it = trailers.find("basin-error-reason"); it != trailers.end()) {
    reason.assign(it->second.data(), it->second.size());
  }
  using Thrower = void (*)(const grpc::Status&, std::string);
  static const std::map<std::string_view, Thrower> kByReason = {
      {"QUEUE_FULL", &Raise<Full>},
      {"BROKER_MEMORY", &Raise<BrokerMemory>},
      {"QUEUE_EMPTY", &Raise<Empty>},
      {"QUEUE_CLOSED", &Raise<Closed>},
      {"QUEUE_UNFINISHED", &Raise<JoinTimeout>},
      {"QUEUE_NOT_FOUND", &Raise<NotFound>},
      {"QUEUE_DELETED", &Raise<NotFound>},
      {"QUEUE_EXISTS", &Raise<AlreadyExists>},
      {"LEASE_EXPIRED", &Raise<LeaseExpired>},
      {"UNKNOWN_DELIVERY", &Raise<UnknownDelivery>},
      {"ALREADY_DONE", &Raise<AlreadyDone>},
      {"MESSAGE_TOO_LARGE", &Raise<MessageTooLarge>},
      {"INVALID_ARGUMENT", &Raise<InvalidArgument>},
      {"INVALID_NAME", &Raise<InvalidArgument>},
      {"INVALID_DURATION", &Raise<InvalidArgument>},
      {"INVALID_DELIVERY_TAG", &Raise<InvalidArgument>},
      {"RESERVED_HEADER", &Raise<InvalidArgument>},
      {"TOO_MANY_WAITERS", &Raise<TooManyWaiters>},
      {"SHUTTING_DOWN", &Raise<Unavailable>},
      {"STORAGE_UNAVAILABLE", &Raise<Unavailable>},
      {"INVALID_TOPIC", &Raise<InvalidArgument>},
      {"BINDING_NOT_FOUND", &Raise<NotFound>},
      {"SLOW_SUBSCRIBER", &Raise<SlowSubscriber>},
      {"UNAUTHENTICATED", &Raise<Unauthenticated>},
      {"PERMISSION_DENIED", &Raise<PermissionDenied>},
      {"RATE_LIMITED", &Raise<RateLimited>},
  };
  if (auto it = kByReason.find(reason); it != kByReason.end()) it->second(status, reason);
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) Raise<Unavailable>(status, reason);
  Raise<Error>(status, reason);
}

}  // namespace basin::detail
